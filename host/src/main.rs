//! The `wsplug` command line: `wsplug serve --route /path=component.wasm`.

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use wsplug::{Routes, Runtime, Server};

mod talk;

#[derive(Parser)]
#[command(version, about = "Serve WebSocket endpoints whose handlers are WebAssembly components")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve WebSocket routes, each handled by a component.
    Serve {
        /// The address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// A route, as `/path=component.wasm`; repeat for several routes.
        #[arg(long = "route", value_name = "PATH=COMPONENT", value_parser = parse_route, required = true)]
        routes: Vec<(String, PathBuf)>,
    },
    /// Talk to a WebSocket endpoint: each line of standard input is sent as a
    /// text message, each message received is printed.
    Talk {
        /// The endpoint, e.g. ws://127.0.0.1:8080/greeter
        url: String,
    },
}

fn parse_route(route: &str) -> anyhow::Result<(String, PathBuf)> {
    let Some((path, component)) = route.split_once('=') else {
        bail!("expected PATH=COMPONENT, e.g. /greeter=greeter.wasm");
    };
    if !path.starts_with('/') {
        bail!("the path `{path}` must start with `/`");
    }
    Ok((path.to_owned(), PathBuf::from(component)))
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "wsplug=info".into()))
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    match Cli::parse().command {
        Command::Serve { listen, routes } => runtime.block_on(serve(listen, routes)),
        Command::Talk { url } => runtime.block_on(talk::talk(&url)),
    }
}

async fn serve(listen: SocketAddr, routes: Vec<(String, PathBuf)>) -> anyhow::Result<()> {
    // Every component is compiled and checked before the port is bound.
    let routes = Routes::load(&Runtime::new()?, routes)?;
    let server = Server::bind(listen, routes.clone()).await?;
    let address = server.local_addr()?;
    for path in routes.paths() {
        tracing::info!("serving ws://{address}{path}");
    }
    tokio::select! {
        () = server.run() => Ok(()),
        signal = tokio::signal::ctrl_c() => signal.context("cannot wait for Ctrl-C"),
    }
}
