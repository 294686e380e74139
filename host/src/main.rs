//! The `wsplug` command line: `wsplug serve` and `wsplug talk`.

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use tokio::signal::unix::{SignalKind, signal};
use wsplug::config::LogFormat;
use wsplug::{Admin, App, Config, RouteConfig, Routes, Runtime, Server};

mod reload;
mod scaffold;
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
    Serve(Box<ServeArgs>),
    /// Check that a component is a handler this host can serve: what it
    /// exports and imports. Exit code 0 if it is, 1 (with the reason) if not.
    Check {
        /// The component file.
        component: PathBuf,
    },
    /// Create a handler crate at PATH that builds (`cargo handler`) and
    /// whose test passes (`cargo test`) as generated.
    New {
        /// Where to create it; its last part is the crate's name.
        path: PathBuf,
        /// A sink and a source (server push) instead of a flow.
        #[arg(long)]
        sink_source: bool,
        /// The wsplug checkout whose SDK and testkit the crate uses
        /// [default: the one this wsplug was built from].
        #[arg(long, value_name = "DIR")]
        wsplug: Option<PathBuf>,
    },
    /// Talk to a WebSocket endpoint: each line of standard input is sent as a
    /// text message, each message received is printed.
    Talk {
        /// The endpoint, e.g. ws://127.0.0.1:8080/greeter or
        /// wss://example.com/greeter
        url: String,
        /// Trust the certificates in this PEM file (a self-signed one, say)
        /// for a wss:// URL, besides the system's roots.
        #[arg(long, value_name = "PEM")]
        ca: Option<PathBuf>,
    },
}

/// Flags override the config file.
#[derive(clap::Args, Clone)]
struct ServeArgs {
    /// A TOML config file (see the README for its keys).
    #[arg(long)]
    config: Option<PathBuf>,
    /// The address to listen on [default: 127.0.0.1:8080].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// A route, as `/path=component.wasm`, with default settings; repeat for
    /// several routes. Replaces a config-file route of the same path.
    #[arg(long = "route", value_name = "PATH=COMPONENT", value_parser = parse_route)]
    routes: Vec<RouteConfig>,
    /// The log filter, e.g. `wsplug=debug` [default: wsplug=info]; RUST_LOG
    /// wins over it.
    #[arg(long)]
    log: Option<String>,
    /// How log lines look: text, or one JSON object per line [default: text].
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
    /// Open WebSocket connections allowed on the host [default: 10000].
    #[arg(long)]
    max_connections: Option<usize>,
    /// Serve the admin API (publishing to topics) on this address; never
    /// the public one [default: off].
    #[arg(long)]
    admin_listen: Option<SocketAddr>,
    /// Serve TLS (wss://, https://) with this PEM certificate chain (and
    /// --tls-key).
    #[arg(long, value_name = "PEM")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key for --tls-cert.
    #[arg(long, value_name = "PEM")]
    tls_key: Option<PathBuf>,
    /// Reload the routes whenever the config file or a component file
    /// changes (as on SIGHUP).
    #[arg(long)]
    watch: bool,
    /// Topics across hosts on this Redis, e.g. `redis://127.0.0.1:6379`
    /// [default: topics stay within this host].
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
    /// Compile every component, without the on-disk cache of compiled
    /// components.
    #[arg(long)]
    no_cache: bool,
}

fn parse_route(route: &str) -> anyhow::Result<RouteConfig> {
    let Some((path, component)) = route.split_once('=') else {
        bail!("expected PATH=COMPONENT, e.g. /greeter=greeter.wasm");
    };
    if !path.starts_with('/') {
        bail!("the path `{path}` must start with `/`");
    }
    if component.is_empty() {
        bail!("no component after `=`: expected PATH=COMPONENT, e.g. /greeter=greeter.wasm");
    }
    Ok(RouteConfig::new(path, component))
}

impl ServeArgs {
    /// The config file, if any, with the flags applied over it.
    fn config(&self) -> anyhow::Result<Config> {
        self.clone().into_config()
    }

    fn into_config(self) -> anyhow::Result<Config> {
        let mut config = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        if let Some(log) = self.log {
            config.log = log;
        }
        if let Some(format) = self.log_format {
            config.log_format = format;
        }
        if let Some(max) = self.max_connections {
            config.max_connections = max;
        }
        if let Some(admin) = self.admin_listen {
            config.admin_listen = Some(admin);
        }
        if let Some(cert) = self.tls_cert {
            config.tls_cert = Some(cert);
        }
        if let Some(key) = self.tls_key {
            config.tls_key = Some(key);
        }
        if let Some(redis) = self.redis {
            config.topics.redis = Some(redis);
        }
        if self.no_cache {
            config.cache = false;
        }
        for route in self.routes {
            config.set_route(route);
        }
        config.validate()?;
        Ok(config)
    }
}

/// Runs the command; an error is printed as its message and its causes, one
/// per line (never a backtrace, whatever `RUST_BACKTRACE` says), with exit
/// code 1.
fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        // `wsplug talk ... | head -1`: the reader has what it wanted.
        Err(err) if err.is::<StdoutClosed>() => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Standard output was closed by whoever read it.
#[derive(Debug)]
struct StdoutClosed;

impl std::fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("standard output closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// Prints a line on standard output. Unlike `println!`, which panics, a
/// closed pipe ends the command quietly ([`StdoutClosed`]) and any other
/// failure (a full disk) is an error like any other.
fn say(line: std::fmt::Arguments) -> anyhow::Result<()> {
    use std::io::Write as _;
    writeln!(std::io::stdout().lock(), "{line}").map_err(|err| match err.kind() {
        std::io::ErrorKind::BrokenPipe => anyhow::Error::new(StdoutClosed),
        _ => anyhow::Error::new(err).context("cannot write to standard output"),
    })
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let config = args.config()?;
            init_logging(&config.log, config.log_format)?;
            runtime()?.block_on(serve(config, *args))
        }
        Command::Check { component } => {
            // Quiet, but for a warning about the cache.
            init_logging("wsplug=warn", LogFormat::Text)?;
            check(&component)
        }
        Command::New { path, sink_source, wsplug } => {
            let kind = if sink_source { scaffold::Kind::SinkSource } else { scaffold::Kind::Flow };
            scaffold::new_handler(&path, kind, wsplug.as_deref())?;
            say(format_args!("created {}: `cargo test` there runs its test, `cargo handler` builds it", path.display()))
        }
        Command::Talk { url, ca } => {
            init_logging("wsplug=info", LogFormat::Text)?;
            let runtime = runtime()?;
            let talked = runtime.block_on(talk::talk(&url, ca.as_deref()));
            // Standard input is read on a blocking thread, which a normal
            // shutdown would wait for: until the next Enter, at a terminal.
            runtime.shutdown_background();
            talked
        }
    }
}

/// `wsplug check`: the same compile-and-link check `serve` makes at
/// startup (through the same cache of compiled components), then what the
/// component is.
fn check(component: &std::path::Path) -> anyhow::Result<()> {
    let handler =
        Runtime::for_config(&Config::default())?.load(component, RouteConfig::new("/", component).guest_policy())?;
    let described = handler.describe();
    say(format_args!("{}: a wsplug handler that this host can serve", component.display()))?;
    say(format_args!("  world:     {}", described.world))?;
    let handshake = if described.handshake {
        "exported: the component decides each upgrade (a Rust SDK handler without its own policy \
         exports the SDK's default)"
    } else {
        "the host's default"
    };
    say(format_args!("  handshake: {handshake}"))?;
    say(format_args!("  exports:   {}", described.exports.join(", ")))?;
    say(format_args!("  imports:   {}", described.imports.join(", ")))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Runtime::new().context("cannot start the async runtime")
}

/// Logs to standard error, filtered by `RUST_LOG` if set, else by `filter`
/// (the `log` setting). A filter that does not parse is an error: leniently
/// parsed, it would drop the bad part and log nothing at all.
fn init_logging(filter: &str, format: LogFormat) -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;
    // The parser's error repeats its cause in its own message: said once.
    let parse = |text: &str, named: String| {
        EnvFilter::try_new(text).map_err(|err| {
            anyhow::anyhow!("{named} is not a log filter (such as \"info\" or \"wsplug=debug,warn\"): {err}")
        })
    };
    let filter = match std::env::var("RUST_LOG") {
        Ok(env) if !env.is_empty() => parse(&env, format!("RUST_LOG={env:?}"))?,
        _ => parse(filter, format!("log = {filter:?}"))?,
    };
    let subscriber = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        // Colours only for a person at a terminal, not for files and pipes.
        LogFormat::Text => subscriber.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init(),
        LogFormat::Json => subscriber.json().init(),
    }
    Ok(())
}

async fn serve(config: Config, args: ServeArgs) -> anyhow::Result<()> {
    // The certificate and every component are checked before the port is
    // bound.
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(wsplug::http::tls::acceptor(cert, key)?),
        _ => None,
    };
    let runtime = Arc::new(Runtime::for_config(&config)?);
    // Before the components are read: a change from now on is a change.
    let first_look = reload::FirstLook::now(args.config.clone(), &config);
    let routes = Routes::load(&runtime, &config.routes)?;
    let paths: Vec<String> = routes.paths().into_iter().map(str::to_owned).collect();
    let app = App::new(routes, &config);
    let mut server = Server::bind(config.listen, app.clone()).await?;
    let (ws, http) = if let Some(tls) = tls {
        server = server.with_tls(tls);
        ("wss", "https")
    } else {
        ("ws", "http")
    };
    let admin = match config.admin_listen {
        Some(address) => Some(Admin::bind(address, app.clone(), config.admin_token.clone()).await?),
        None => None,
    };
    // Signals are taken over before the server says it is serving: from then
    // on, a SIGHUP or SIGTERM must not find the default action (the end of
    // the process) in place.
    let hangup = signal(SignalKind::hangup()).context("cannot wait for SIGHUP")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot wait for SIGTERM")?;
    let address = server.local_addr()?;
    for advice in config.advice() {
        tracing::warn!("{advice}");
    }
    for path in paths {
        tracing::info!("serving {ws}://{address}{path}");
    }
    for served in &config.static_dirs {
        tracing::info!("serving {} at {http}://{address}{}", served.dir.display(), served.path);
    }
    let stopped = tokio_util::sync::CancellationToken::new();
    if let Some(admin) = admin {
        tracing::info!("admin API on http://{}", admin.local_addr()?);
        let stopped = stopped.clone();
        tokio::spawn(async move { admin.run_until(stopped.cancelled_owned()).await });
    }
    let watch = args.watch;
    let reloads = reload::reload_when_asked(move || args.config(), hangup, runtime, app.clone(), first_look, watch);
    let reloads = tokio::spawn(async move {
        if let Err(err) = reloads.await {
            tracing::warn!("reloading is off: {err:#}");
        }
    });
    server
        .run_until(async {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
            tracing::info!("shutting down");
            stopped.cancel();
        })
        .await;
    reloads.abort();
    tracing::info!("stopped");
    Ok(())
}
