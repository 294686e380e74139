//! The greeter in Rust and in Python (`make greeter-python`), each with an
//! instance per connection and with one shared instance, side by side:
//! start-up (compiling, then from the cache of compiled components),
//! messages/s, connection setup and memory per open connection.

use crate::servers::{Server, root};
use crate::{Target, idle, setup_rate, throughput};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Connections opened, used once and closed, per handler and mode.
const SETUP_CYCLES: usize = 1000;

/// Open connections whose memory is measured, per handler and mode (a
/// Python instance of its own is about 10 MiB).
const OPEN_CONNECTIONS: usize = 200;

pub async fn report() -> anyhow::Result<()> {
    let python = root().join("target/python/greeter.wasm");
    if !python.exists() {
        println!("(the Python greeter is not built, `make greeter-python`: left out)");
        return Ok(());
    }
    let rust = root().join("guest-examples/target/wasm32-wasip2/release/greeter.wasm");
    let greeters = [("Rust", &rust), ("Python", &python)];

    println!("Start-up: `wsplug serve` until it listens, with an empty cache of compiled components, then again:");
    println!();
    println!("| greeter | component | first start (compiles) | next start (cached) |");
    println!("|---|---|---|---|");
    for (language, component) in greeters {
        let cache = std::env::temp_dir().join(format!("wsplug-bench-cache-{}-{language}", std::process::id()));
        let first = start_time(component, &cache).await?;
        let next = start_time(component, &cache).await?;
        std::fs::remove_dir_all(&cache)?;
        println!(
            "| {language} | {:.1} MB | {} ms | {} ms |",
            std::fs::metadata(component)?.len() as f64 / 1e6,
            first.as_millis(),
            next.as_millis()
        );
    }
    println!();

    println!(
        "| greeter | instance | RSS per open connection ({OPEN_CONNECTIONS} open) | msg/s (64 conns × 32 B) | p99 µs | \
         setup ({SETUP_CYCLES} × connect + message + close, 8 at a time) |"
    );
    println!("|---|---|---|---|---|---|");
    for (net, (language, component, mode)) in greeters
        .into_iter()
        .flat_map(|(language, component)| ["per-connection", "shared"].map(|mode| (language, component, mode)))
        .enumerate()
    {
        // A server of its own, memory first: memory another run freed would
        // be reused and hide what connections cost.
        let route = format!("[[route]]\npath = \"/greeter\"\ncomponent = {component:?}\ninstance = \"{mode}\"\n");
        let server = Server::wsplug_serving(&route, false)?;
        let target = Target { name: "greeter", url: server.url("/greeter"), pid: server.pid(), reply_overhead: 7 };
        // One connection first: a shared instance starts with it and is not
        // counted against the connections measured.
        let (first, _) = tokio_tungstenite::connect_async(target.url.as_str()).await?;
        let memory = idle::memory(&target, &server, OPEN_CONNECTIONS, 10 + net as u8).await?;
        drop(first);
        let throughput = throughput(&target, 64, 32, 1).await?;
        let setup = setup_rate(&target, SETUP_CYCLES).await?;
        println!(
            "| {language} | {mode} | {:.1} KiB | {:.0} | {} | {setup:.0} conn/s |",
            memory / 1024.0,
            throughput.rate,
            throughput.latency.value_at_quantile(0.99),
        );
    }
    println!();
    Ok(())
}

/// How long `wsplug serve` takes to listen with `component`, its compiled
/// components cached in `cache`.
async fn start_time(component: &Path, cache: &PathBuf) -> anyhow::Result<std::time::Duration> {
    let routes = format!("cache-dir = {cache:?}\n[[route]]\npath = \"/greeter\"\ncomponent = {component:?}\n");
    let started = Instant::now();
    let server = Server::wsplug_serving(&routes, false)?;
    let elapsed = started.elapsed();
    drop(server);
    Ok(elapsed)
}
