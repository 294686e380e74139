//! The servers under test, each in a process of its own so that the client
//! does not share their threads: the native baseline (this binary,
//! `native-echo`), `target/release/wsplug serve` with the echo and greeter
//! components or with the feed component and its admin API, and the Node
//! and Bun peers when installed.

use anyhow::Context as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

/// The largest message the greeter takes in the benchmark.
const LARGE: usize = 128 << 20;

/// Room for connections in a wsplug server: 20,000 idle ones and more than
/// the fan-out's 10,000 subscribers. A server sized for far more (50,000)
/// reserves less address space per memory and bounds-checks every access,
/// which the other scenarios must not pay: the idle scenario gets a server
/// of its own then.
pub const ROOM: usize = 20_100;

/// How long a server may take to say it is ready (wsplug compiles its
/// components first).
const STARTUP: Duration = Duration::from_secs(60);

pub struct Server {
    child: Child,
    /// Where it takes WebSockets, `IP:PORT`.
    address: String,
    /// Where its admin API listens, if it has one.
    admin: Option<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The repository root (the bench crate's parent).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("bench/ is in the repository").to_owned()
}

impl Server {
    pub async fn native() -> anyhow::Result<Self> {
        let mut command = Command::new(std::env::current_exe()?);
        command.arg("native-echo");
        Self::listening(command)
    }

    /// A server in another runtime, from `bench/peers/` (Node `ws` and Bun
    /// echo servers, Bun pub/sub): `None` if it is not installed there
    /// (`npm install` in `bench/peers/`; `make bench` does it when npm is
    /// present).
    pub async fn peer(program: &str, script: &str) -> Option<Self> {
        Self::peer_with(program, script, &[]).await
    }

    /// Like [`Server::peer`], with environment variables for the script
    /// (`PEER_DEFLATE=1`: permessage-deflate on).
    pub async fn peer_with(program: &str, script: &str, env: &[(&str, &str)]) -> Option<Self> {
        let peers = root().join("bench/peers");
        let program = if program.contains('/') { peers.join(program) } else { PathBuf::from(program) };
        if !peers.join("node_modules").is_dir() {
            return None;
        }
        let mut command = Command::new(program);
        command.arg(peers.join(script)).envs(env.iter().copied());
        Self::listening(command).ok()
    }

    /// Starts `command`, which prints `listening on ADDRESS` once ready.
    fn listening(mut command: Command) -> anyhow::Result<Self> {
        let mut child = command.stdout(Stdio::piped()).spawn()?;
        let stdout = child.stdout.take().unwrap();
        // Dropped (killed) if it never gets ready.
        let mut server = Self { child, address: String::new(), admin: None };
        let lines = lines_with(stdout, &["listening on "])?;
        server.address = lines[0].trim_start_matches("listening on ").trim().to_owned();
        Ok(server)
    }

    /// `wsplug serve` with the echo and the greeter; the greeter takes
    /// messages of up to 128 MiB in one frame.
    pub async fn wsplug() -> anyhow::Result<Self> {
        Self::wsplug_serving(&Self::echo_and_greeter(), false)
    }

    /// [`Server::wsplug`] with room for `max_connections`.
    pub fn wsplug_for_idle(max_connections: usize) -> anyhow::Result<Self> {
        Self::wsplug_for(&Self::echo_and_greeter(), false, max_connections)
    }

    /// The same with `instance-pool = true`, whatever `WSPLUG_BENCH_POOL`
    /// says, for the setup scenario (8 connections at a time): room for
    /// 1,000 connections, few enough for the pool's wide memory slots (no
    /// bounds checks; see the README's "Current limits").
    pub async fn wsplug_pooled() -> anyhow::Result<Self> {
        Self::wsplug_with(&Self::echo_and_greeter(), false, true, 1000)
    }

    /// The routes of [`Server::wsplug`].
    fn echo_and_greeter() -> String {
        let components = root().join("guest-examples/target/wasm32-wasip2/release");
        format!(
            "[[route]]\npath = \"/echo\"\ncomponent = {:?}\n\n\
             [[route]]\npath = \"/greeter\"\ncomponent = {:?}\nmax-message-size = {LARGE}\nmax-frame-size = {LARGE}\n",
            components.join("echo.wasm"),
            components.join("greeter.wasm"),
        )
    }

    /// `wsplug serve` with the feed component at `/feed` (a connection to
    /// `/feed?topic=NAME` gets what is published to topic `feed:NAME`) and
    /// the admin API, which publishes; with `redis`, its topics span every
    /// host on that Redis. Subscribers are never closed as idle nor pinged;
    /// each has 1 MiB for deliveries not yet written, and messages to a full
    /// one are dropped.
    pub async fn wsplug_feed(redis: Option<&str>) -> anyhow::Result<Self> {
        let feed = root().join("guest-examples/target/wasm32-wasip2/release/feed.wasm");
        let topics = redis.map(|url| format!("[topics]\nredis = {url:?}\n\n")).unwrap_or_default();
        let routes = format!(
            "{topics}[[route]]\npath = \"/feed\"\ncomponent = {feed:?}\nidle-timeout = 0\nping-interval = 0\n\
             max-buffered = 1048576\nslow-subscriber = \"drop\"\n",
        );
        Self::wsplug_serving(&routes, true)
    }

    /// A `redis-server` on a free port, without persistence; `None` if it
    /// is not installed (`apt-get install redis-server`). Returns it and
    /// its URL.
    pub fn redis() -> Option<(Self, String)> {
        let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .ok()?;
        let address = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + STARTUP;
        while std::net::TcpStream::connect(&address).is_err() {
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Some((Self { child, address, admin: None }, format!("redis://127.0.0.1:{port}")))
    }

    /// Starts `target/release/wsplug serve` with `routes` (config file
    /// text: `[[route]]` tables, top-level keys before them) on a free port,
    /// the per-client limits off, and with `admin`, its admin API on
    /// another. `WSPLUG_BENCH_POOL=1` turns the instance pool on.
    pub fn wsplug_serving(routes: &str, admin: bool) -> anyhow::Result<Self> {
        Self::wsplug_for(routes, admin, ROOM)
    }

    /// [`Server::wsplug_serving`] with room for `max_connections`: for more
    /// idle connections than [`ROOM`].
    fn wsplug_for(routes: &str, admin: bool, max_connections: usize) -> anyhow::Result<Self> {
        let pool = std::env::var("WSPLUG_BENCH_POOL").is_ok_and(|value| value == "1");
        Self::wsplug_with(routes, admin, pool, max_connections)
    }

    /// [`Server::wsplug_serving`], the instance pool on or off, with room
    /// for `max_connections`.
    fn wsplug_with(routes: &str, admin: bool, pool: bool, max_connections: usize) -> anyhow::Result<Self> {
        let wsplug = root().join("target/release/wsplug");
        let admin_listen = if admin { "admin-listen = \"127.0.0.1:0\"\n" } else { "" };
        // One client address opens thousands of connections here, as fast as
        // it can, and sends as fast as it can: the per-client limits are off.
        // Idle connections past the open-files limit come over HTTP/2, as
        // many per TCP connection as this.
        let streams = crate::idle::STREAMS_PER_CONNECTION;
        let config = format!(
            "instance-pool = {pool}\nmax-connections = {max_connections}\nmax-connections-per-ip = 0\n\
             upgrades-per-second-per-ip = 0\nhttp2-max-concurrent-streams = {streams}\n{admin_listen}\n{}",
            routes.replace("[[route]]\n", "[[route]]\nmax-messages-per-second = 0\n")
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
        let stderr = child.stderr.take().unwrap();
        // Dropped (killed) if it never gets ready.
        let mut server = Self { child, address: String::new(), admin: None };
        let markers: &[&str] = if admin { &["serving ws://", "admin API on http://"] } else { &["serving ws://"] };
        let lines = lines_with(stderr, markers);
        // Read at startup; not needed any more.
        std::fs::remove_file(&config_file)?;
        let lines = lines?;
        server.address = address_in(&lines[0], "ws://")?;
        server.admin = lines.get(1).map(|line| address_in(line, "http://")).transpose()?;
        Ok(server)
    }

    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.address)
    }

    /// Where topics are published, `IP:PORT`: the admin API, or the server
    /// itself for a peer that has none (Bun).
    pub fn publish_address(&self) -> &str {
        self.admin.as_deref().unwrap_or(&self.address)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server process's resident memory, in bytes (a peer's too:
    /// `node_modules/.bin/bun` is the Bun executable itself).
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

/// Reads `output` until it has had, for each of `markers`, a line
/// containing it, in any order, and returns those lines in the order of
/// `markers`; passes every other line on to this process's stderr (a
/// server's warnings and errors belong in the report). Fails if the server
/// exits, or takes longer than [`STARTUP`], before that.
fn lines_with(output: impl std::io::Read + Send + 'static, markers: &[&str]) -> anyhow::Result<Vec<String>> {
    let (found, receiver) = std::sync::mpsc::channel();
    let mut pending: Vec<(usize, String)> = markers.iter().map(|marker| marker.to_string()).enumerate().collect();
    std::thread::spawn(move || {
        for line in BufReader::new(output).lines().map_while(Result::ok) {
            if let Some(at) = pending.iter().position(|(_, marker)| line.contains(marker.as_str())) {
                let (index, _) = pending.swap_remove(at);
                let _ = found.send((index, line));
            } else {
                eprintln!("  server: {line}");
            }
        }
    });
    let deadline = Instant::now() + STARTUP;
    let mut lines = vec![String::new(); markers.len()];
    for _ in markers {
        let (index, line) = match receiver.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(found) => found,
            Err(RecvTimeoutError::Timeout) => anyhow::bail!("the server was not ready after {STARTUP:?}"),
            Err(RecvTimeoutError::Disconnected) => anyhow::bail!("the server exited before it was ready"),
        };
        lines[index] = line;
    }
    Ok(lines)
}

/// The `IP:PORT` of the first `scheme` URL in `line`.
fn address_in(line: &str, scheme: &str) -> anyhow::Result<String> {
    let url = line.split_whitespace().find(|word| word.starts_with(scheme)).context("no URL")?;
    Ok(url.trim_start_matches(scheme).split('/').next().context("no address")?.to_owned())
}

/// The CPU time process `pid` has used so far, its threads' user and
/// system time together.
pub fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces: count from its `)`.
    let fields: Vec<&str> =
        stat.rsplit_once(')').context("no command name in /proc/PID/stat")?.1.split_whitespace().collect();
    // utime and stime, fields 14 and 15, in clock ticks.
    let ticks: u64 = fields
        .get(11..13)
        .context("short /proc/PID/stat")?
        .iter()
        .map(|field| field.parse::<u64>())
        .sum::<Result<_, _>>()?;
    let per_second = rustix::param::clock_ticks_per_second();
    Ok(Duration::from_secs_f64(ticks as f64 / per_second as f64))
}
