//! `wsplug-bench`: the same closed-loop client against wsplug (echo and
//! greeter components) and a native tokio-tungstenite echo server, side by
//! side in one run, with a table of ratios against the native baseline; Node
//! and Bun echo servers too when `bench/peers/` has them installed.
//!
//! Run it with `make bench` (release builds of everything). Each server runs
//! in its own process; the client is this process. Figures: messages/s,
//! latency percentiles, connection setup rate (connect + first message +
//! close), the server's resident memory per idle connection, and the time
//! and server memory one 100 MiB message takes through the greeter. Then the
//! greeter in Rust and in Python, per-connection and shared instances (see
//! `languages.rs`), permessage-deflate against Bun and Node (see
//! `compression.rs`), and fan-out: one topic published to N subscribers, wsplug against Bun's
//! `server.publish` (see `fanout.rs`).

mod compression;
mod fanout;
mod idle;
mod languages;
mod native;
mod servers;

use anyhow::Context as _;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use servers::Server;
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Connections opened, used once and closed for the setup rate.
const SETUP_CYCLES: usize = 5000;

/// The size of the one large message sent through the greeter.
const LARGE_MESSAGE: usize = 100 << 20;

/// How long each throughput scenario measures, after a warm-up.
const MEASURE: Duration = Duration::from_secs(5);
const WARM_UP: Duration = Duration::from_secs(1);

/// A connection that takes longer than this fails the run, and one whose
/// reply takes longer than this stops and is reported: a lost message must
/// not hang the run (two runs on 2026-11-27 saw one, against the native
/// server and against Bun).
const STALLED: Duration = Duration::from_secs(30);

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("native-echo") {
        return native::serve();
    }
    let idle_connections = setting("WSPLUG_BENCH_IDLE", 1000);
    // Each idle connection is a socket here and one in the server (which
    // inherits this limit): raised as far as the hard limit allows.
    idle::raise_open_files();
    let in_flight = setting("WSPLUG_BENCH_IN_FLIGHT", 1).max(1);
    tokio::runtime::Runtime::new()?.block_on(run(idle_connections, in_flight))
}

/// A number from the environment, or `default`.
fn setting(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|value| value.parse().ok()).unwrap_or(default)
}

/// One server under test: a name and the URL of its endpoint.
#[derive(Clone)]
struct Target {
    name: &'static str,
    url: String,
    /// The server's process, whose CPU time is measured.
    pid: u32,
    /// What the server answers to `payload` is this much longer.
    reply_overhead: usize,
}

/// Whether the run includes `section` (`echo`, `languages`, `compression`,
/// `fanout`; or a part of `echo` alone: `throughput`, `setup`, `idle`,
/// `large`):
/// `WSPLUG_BENCH_SECTIONS` lists them, comma-separated; all by default.
fn section(name: &str) -> bool {
    std::env::var("WSPLUG_BENCH_SECTIONS")
        .map_or(true, |sections| sections.split(',').any(|listed| listed.trim() == name))
}

async fn run(idle_connections: usize, in_flight: usize) -> anyhow::Result<()> {
    println!("machine: {} cores; client and servers on 127.0.0.1", std::thread::available_parallelism()?.get());
    println!();
    if ["echo", "throughput", "setup", "idle", "large"].into_iter().any(section) {
        echo(idle_connections, in_flight).await?;
    }
    if section("languages") {
        languages::report().await?;
    }
    if section("compression") {
        compression::report().await?;
    }
    if section("fanout") {
        fanout::report().await?;
    }
    Ok(())
}

/// Echo and greeter against the native server and the peers: throughput,
/// setup, idle memory, one large message.
async fn echo(idle_connections: usize, in_flight: usize) -> anyhow::Result<()> {
    let part = |name| section("echo") || section(name);
    let native = Server::native().await?;
    let wsplug = Server::wsplug().await?;
    let targets = [
        Target { name: "native tokio-tungstenite echo", url: native.url("/"), pid: native.pid(), reply_overhead: 0 },
        Target { name: "wsplug + echo component", url: wsplug.url("/echo"), pid: wsplug.pid(), reply_overhead: 0 },
        Target {
            name: "wsplug + greeter component",
            url: wsplug.url("/greeter"),
            pid: wsplug.pid(),
            reply_overhead: 7,
        },
    ];
    if part("throughput") {
        let node = Server::peer("node", "echo-node.mjs").await;
        let bun = Server::peer("node_modules/.bin/bun", "echo-bun.js").await;
        let mut peers = Vec::new();
        for (name, server) in [("Node ws echo", &node), ("Bun echo", &bun)] {
            match server {
                Some(server) => peers.push(Target { name, url: server.url("/"), pid: server.pid(), reply_overhead: 0 }),
                None => println!("({name}: not installed in bench/peers, left out)"),
            }
        }
        throughput_table(&targets, &peers, in_flight).await?;
    }
    if !["setup", "idle", "large"].into_iter().any(part) {
        return Ok(());
    }
    println!("| scenario | server | result | ratio |");
    println!("|---|---|---|---|");
    let mut baseline = None;
    if part("setup") {
        // The pooling allocator instantiates in memory it keeps, instead of
        // mapping and unmapping some per connection: its own row.
        let pooled = Server::wsplug_pooled().await?;
        let with_pool = Target {
            name: "wsplug + echo component, instance-pool = true",
            url: pooled.url("/echo"),
            pid: pooled.pid(),
            reply_overhead: 0,
        };
        for target in targets[..2].iter().chain([&with_pool]) {
            let rate = setup_rate(target, SETUP_CYCLES).await?;
            let base = *baseline.get_or_insert(rate);
            println!(
                "| {SETUP_CYCLES} connect + message + close, 8 at a time | {} | {rate:.0} conn/s | {:.2} |",
                target.name,
                rate / base
            );
        }
    }
    let mut baseline = None;
    // More idle connections than the server has room for get a server of
    // their own (see `servers::ROOM`).
    let big = (part("idle") && idle_connections + 100 > servers::ROOM)
        .then(|| Server::wsplug_for_idle(idle_connections + 100))
        .transpose()?;
    let (idle_wsplug, idle_target) = match &big {
        Some(server) => (server, Target { url: server.url("/echo"), pid: server.pid(), ..targets[1].clone() }),
        None => (&wsplug, targets[1].clone()),
    };
    // The native server speaks HTTP/1.1 only.
    let idle_targets = [(&targets[0], &native, false), (&idle_target, idle_wsplug, true)];
    for (client_net, (target, server, speaks_http2)) in idle_targets.into_iter().enumerate().filter(|_| part("idle")) {
        let short_of_files = idle::open_files_short_of(idle_connections);
        let (scenario, per_connection) = match short_of_files {
            None => (
                format!("{idle_connections} idle connections"),
                idle::memory(target, server, idle_connections, client_net as u8 + 1).await?,
            ),
            Some(files) if !speaks_http2 => {
                println!(
                    "| {idle_connections} idle connections | {} | not run: the open-files limit (ulimit -Hn) is \
                     {files}, each side needs {} | - |",
                    target.name,
                    idle_connections + idle::FILES_BESIDES_IDLE
                );
                continue;
            }
            Some(_) => {
                let scenario = format!(
                    "{idle_connections} idle connections over HTTP/2, {} per TCP connection",
                    idle::STREAMS_PER_CONNECTION
                );
                match idle::memory_over_http2(target, server, idle_connections).await {
                    Ok(per_connection) => (scenario, per_connection),
                    Err(err) => {
                        println!("| {scenario} | {} | stopped: {err:#} | - |", target.name);
                        continue;
                    }
                }
            }
        };
        let ratio = match baseline {
            Some(base) => format!("{:.2}", per_connection / base),
            None if short_of_files.is_none() => {
                baseline = Some(per_connection);
                "1.00".to_owned()
            }
            None => "-".to_owned(),
        };
        println!("| {scenario} | {} | {:.1} KiB RSS each | {ratio} |", target.name, per_connection / 1024.0);
    }
    if part("large") {
        let (elapsed, growth) = large_message(&targets[2], &wsplug, LARGE_MESSAGE).await?;
        println!(
            "| one {} MiB text message, streamed back as it arrives | {} | {:.2} s ({:.0} MiB/s), server RSS +{:.1} MiB | - |",
            LARGE_MESSAGE >> 20,
            targets[2].name,
            elapsed.as_secs_f64(),
            (LARGE_MESSAGE >> 20) as f64 / elapsed.as_secs_f64(),
            growth as f64 / f64::from(1 << 20),
        );
    }
    println!();
    Ok(())
}

/// Messages per second, CPU per message and latency, each target against
/// the first.
async fn throughput_table(targets: &[Target], peers: &[Target], in_flight: usize) -> anyhow::Result<()> {
    println!("| scenario | server | msg/s | ratio | server CPU µs/msg | p50 µs | p90 µs | p99 µs | p99.9 µs |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut stalls = Vec::new();
    for (connections, size) in [(64, 32), (64, 16 * 1024)] {
        let mut baseline = None;
        for target in targets.iter().chain(peers) {
            let result = throughput(target, connections, size, in_flight).await.with_context(|| target.name)?;
            if result.stalled > 0 {
                stalls.push(format!(
                    "({}, {}: {} of {connections} connections waited {STALLED:?} for a reply and stopped)",
                    target.name,
                    human_size(size),
                    result.stalled
                ));
            }
            let base = *baseline.get_or_insert(result.rate);
            println!(
                "| {connections} conns × {} × {in_flight} in flight | {} | {:.0} | {:.2} | {:.1} | {} | {} | {} | {} |",
                human_size(size),
                target.name,
                result.rate,
                result.rate / base,
                result.cpu_per_message.as_secs_f64() * 1e6,
                result.latency.value_at_quantile(0.5),
                result.latency.value_at_quantile(0.9),
                result.latency.value_at_quantile(0.99),
                result.latency.value_at_quantile(0.999),
            );
        }
    }
    for stall in stalls {
        println!("{stall}");
    }
    println!();
    Ok(())
}

/// Sends one `size`-byte text message (one frame) while reading the reply;
/// returns how long the round trip took and how much the server's resident
/// memory grew at its peak.
async fn large_message(target: &Target, server: &Server, size: usize) -> anyhow::Result<(Duration, u64)> {
    let unlimited = WebSocketConfig::default().max_message_size(None).max_frame_size(None);
    let (socket, _) = tokio_tungstenite::connect_async_with_config(target.url.as_str(), Some(unlimited), false).await?;
    let (mut sink, mut stream) = socket.split();
    let payload = "a".repeat(size);
    let before = server.resident_bytes()?;
    let mut peak = before;
    let start = Instant::now();
    let exchange = async {
        let (sent, reply) = tokio::join!(sink.send(Message::text(payload)), stream.next());
        sent?;
        let reply = reply.context("connection closed")??;
        anyhow::ensure!(reply.len() == size + target.reply_overhead, "unexpected reply of {} bytes", reply.len());
        anyhow::Ok(())
    };
    let mut exchange = std::pin::pin!(exchange);
    let mut sample = tokio::time::interval(Duration::from_millis(5));
    loop {
        tokio::select! {
            done = &mut exchange => {
                done?;
                break;
            }
            _ = sample.tick() => peak = peak.max(server.resident_bytes()?),
        }
    }
    Ok((start.elapsed(), peak.saturating_sub(before)))
}

struct Throughput {
    rate: f64,
    /// The server's CPU time (user and system, all threads) per message
    /// while measured: what a message costs it, whatever the client gets of
    /// the machine.
    cpu_per_message: Duration,
    latency: Histogram<u64>,
    /// Connections that waited [`STALLED`] for a reply and stopped.
    stalled: usize,
}

/// `connections` clients, each keeping `in_flight` `size`-byte text messages
/// on their way: a reply lets the next message go (closed loop). Latency is
/// from a message's send to its reply.
async fn throughput(target: &Target, connections: usize, size: usize, in_flight: usize) -> anyhow::Result<Throughput> {
    let payload = "x".repeat(size);
    let start = Instant::now();
    let measure_from = start + WARM_UP;
    let end = measure_from + MEASURE;
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let connect = tokio_tungstenite::connect_async(target.url.as_str());
        let (mut socket, _) = tokio::time::timeout(STALLED, connect).await.context("connecting stalled")??;
        let payload = payload.clone();
        let expected = size + target.reply_overhead;
        tasks.push(tokio::spawn(async move {
            let mut latency = Histogram::<u64>::new(3)?;
            let mut count = 0u64;
            let mut sent_at = VecDeque::with_capacity(in_flight);
            while !sent_at.is_empty() || Instant::now() < end {
                // Top up to `in_flight` while the run lasts.
                while sent_at.len() < in_flight && Instant::now() < end {
                    socket.send(Message::text(payload.as_str())).await?;
                    sent_at.push_back(Instant::now());
                }
                let Ok(reply) = tokio::time::timeout(STALLED, socket.next()).await else {
                    return anyhow::Ok((count, latency, true));
                };
                let reply = reply.context("connection closed")??;
                anyhow::ensure!(reply.len() == expected, "unexpected reply of {} bytes", reply.len());
                let sent = sent_at.pop_front().context("a reply to nothing")?;
                if sent >= measure_from && sent < end {
                    latency.record(sent.elapsed().as_micros() as u64)?;
                    count += 1;
                }
            }
            socket.close(None).await.ok();
            anyhow::Ok((count, latency, false))
        }));
    }
    let pid = target.pid;
    let cpu = tokio::spawn(async move {
        tokio::time::sleep_until(measure_from.into()).await;
        let before = servers::cpu_time(pid)?;
        tokio::time::sleep_until(end.into()).await;
        anyhow::Ok(servers::cpu_time(pid)? - before)
    });
    let mut total = 0;
    let mut latency = Histogram::<u64>::new(3)?;
    let mut stalled = 0;
    for task in tasks {
        let (count, histogram, stall) = task.await??;
        total += count;
        latency.add(histogram)?;
        stalled += usize::from(stall);
    }
    let cpu_per_message = cpu.await?? / u32::try_from(total.max(1))?;
    Ok(Throughput { rate: total as f64 / MEASURE.as_secs_f64(), cpu_per_message, latency, stalled })
}

/// Connections per second, each opened, used for one message and closed.
async fn setup_rate(target: &Target, cycles: usize) -> anyhow::Result<f64> {
    const PARALLEL: usize = 8;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..PARALLEL {
        let url = target.url.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..cycles / PARALLEL {
                let (mut socket, _) = tokio_tungstenite::connect_async(url.as_str()).await?;
                socket.send(Message::text("hi")).await?;
                socket.next().await.context("connection closed")??;
                socket.close(None).await?;
                while socket.next().await.is_some() {}
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(cycles as f64 / start.elapsed().as_secs_f64())
}

fn human_size(bytes: usize) -> String {
    if bytes >= 1024 { format!("{} KiB", bytes / 1024) } else { format!("{bytes} B") }
}
