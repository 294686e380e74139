//! The servers under test, each in a process of its own so that the client
//! does not share their threads: the native baseline (this binary,
//! `native-echo`) and `target/release/wsplug serve` with the echo and greeter
//! components.

use anyhow::Context as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub struct Server {
    child: Child,
    address: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The repository root (the bench crate's parent).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("bench/ is in the repository").to_owned()
}

impl Server {
    pub async fn native() -> anyhow::Result<Self> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe).arg("native-echo").stdout(Stdio::piped()).spawn()?;
        let line = first_line_with(child.stdout.take().unwrap(), "listening on ")?;
        let address = line.trim_start_matches("listening on ").trim().to_owned();
        Ok(Self { child, address })
    }

    pub async fn wsplug() -> anyhow::Result<Self> {
        let root = root();
        let wsplug = root.join("target/release/wsplug");
        let components = root.join("guest-examples/target/wasm32-wasip2/release");
        let mut child = Command::new(&wsplug)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(["--route", &format!("/echo={}", components.join("echo.wasm").display())])
            .args(["--route", &format!("/greeter={}", components.join("greeter.wasm").display())])
            .env("RUST_LOG", "wsplug=info")
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {} (make bench builds it)", wsplug.display()))?;
        let line = first_line_with(child.stderr.take().unwrap(), "serving ws://")?;
        let url = line.split_whitespace().find(|word| word.starts_with("ws://")).context("no URL")?;
        let address = url.trim_start_matches("ws://").split('/').next().context("no address")?.to_owned();
        Ok(Self { child, address })
    }

    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.address)
    }

    /// The server process's resident memory, in bytes.
    pub fn resident_bytes(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .context("no VmRSS")?;
        Ok(kib * 1024)
    }
}

/// Reads `output` until a line containing `marker`; after that, passes its
/// lines on to this process's stderr (a server's warnings belong in the
/// report).
fn first_line_with(output: impl std::io::Read + Send + 'static, marker: &str) -> anyhow::Result<String> {
    let mut lines = BufReader::new(output).lines();
    loop {
        let line = lines.next().context("the server exited before it was ready")??;
        if line.contains(marker) {
            std::thread::spawn(move || lines.map_while(Result::ok).for_each(|line| eprintln!("  server: {line}")));
            return Ok(line);
        }
    }
}
