//! A real `redis-server` for the tests of topics across hosts: on a free
//! port of 127.0.0.1, without persistence, killed when dropped, and able to
//! die and come back on the same port.

use anyhow::Context as _;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A `redis-server` process of the test's own.
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts one on a free port.
    pub async fn start() -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut server = Self { port, child: None };
        server.restart().await?;
        Ok(server)
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills it (as a crash would: no goodbye to its clients).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops it (SIGSTOP) or lets it go on (SIGCONT): a stalled server,
    /// which keeps its connections open and answers nothing.
    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let child = self.child.as_ref().context("redis-server is not running")?;
        let sent = Command::new("kill").arg(format!("-{signal}")).arg(child.id().to_string()).status()?;
        anyhow::ensure!(sent.success(), "kill -{signal} failed");
        Ok(())
    }

    /// Starts it again on the same port, once it answers.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        let port = self.port.to_string();
        let child = Command::new("redis-server")
            .args(["--port", &port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .context("cannot start redis-server: install it with `apt-get install redis-server` (make test does)")?;
        self.child = Some(child);
        crate::guard(async {
            while self.cli(&["PING"]).is_err() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
    }

    /// Runs a command with `redis-cli`; its answer.
    pub fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        let output = Command::new("redis-cli").args(["-p", &self.port.to_string()]).args(args).output()?;
        let answer = String::from_utf8(output.stdout)?;
        anyhow::ensure!(output.status.success() && !answer.starts_with("Could not connect"), "redis-cli: {answer}");
        Ok(answer.trim().to_owned())
    }

    /// How many connections subscribe to `channel` (hosts, for wsplug).
    pub fn subscribers(&self, channel: &str) -> anyhow::Result<usize> {
        let answer = self.cli(&["PUBSUB", "NUMSUB", channel])?;
        answer.lines().nth(1).context("no count in PUBSUB NUMSUB")?.trim().parse().context("PUBSUB NUMSUB")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
