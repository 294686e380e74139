//! The servers under test, each in a process of its own so that the client
//! does not share their threads: the native baseline (this binary,
//! `native-echo`), `target/release/wsplug serve` with the echo and greeter
//! components, and the Node and Bun peers when installed.

use anyhow::Context as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The largest message the greeter takes in the benchmark.
const LARGE: usize = 128 << 20;

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
        let mut command = Command::new(std::env::current_exe()?);
        command.arg("native-echo");
        Self::listening(command)
    }

    /// An echo server in another runtime, from `bench/peers/` (Node `ws`,
    /// Bun): `None` if it is not installed there (`npm install` in
    /// `bench/peers/`; `make bench` does it when npm is present).
    pub async fn peer(program: &str, script: &str) -> Option<Self> {
        let peers = root().join("bench/peers");
        let program = if program.contains('/') { peers.join(program) } else { PathBuf::from(program) };
        if !peers.join("node_modules").is_dir() {
            return None;
        }
        let mut command = Command::new(program);
        command.arg(peers.join(script));
        Self::listening(command).ok()
    }

    /// Starts `command`, which prints `listening on ADDRESS` once ready.
    fn listening(mut command: Command) -> anyhow::Result<Self> {
        let mut child = command.stdout(Stdio::piped()).spawn()?;
        let line = first_line_with(child.stdout.take().unwrap(), "listening on ")?;
        let address = line.trim_start_matches("listening on ").trim().to_owned();
        Ok(Self { child, address })
    }

    /// `wsplug serve` with the echo and the greeter; the greeter takes
    /// messages of up to 128 MiB in one frame. `WSPLUG_BENCH_POOL=1` turns
    /// the instance pool on.
    pub async fn wsplug() -> anyhow::Result<Self> {
        let root = root();
        let wsplug = root.join("target/release/wsplug");
        let components = root.join("guest-examples/target/wasm32-wasip2/release");
        let pool = std::env::var("WSPLUG_BENCH_POOL").is_ok_and(|value| value == "1");
        let config = format!(
            "instance-pool = {pool}\nmax-connections = 20000\n\n\
             [[route]]\npath = \"/echo\"\ncomponent = {:?}\n\n\
             [[route]]\npath = \"/greeter\"\ncomponent = {:?}\nmax-message-size = {LARGE}\nmax-frame-size = {LARGE}\n",
            components.join("echo.wasm"),
            components.join("greeter.wasm"),
        );
        let config_file = std::env::temp_dir().join(format!("wsplug-bench-{}.toml", std::process::id()));
        std::fs::write(&config_file, config)?;
        let mut child = Command::new(&wsplug)
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&config_file)
            .env("RUST_LOG", "wsplug=info")
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {} (make bench builds it)", wsplug.display()))?;
        let line = first_line_with(child.stderr.take().unwrap(), "serving ws://")?;
        // Read at startup; not needed any more.
        std::fs::remove_file(&config_file)?;
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
