//! Configuration: the TOML file of `wsplug serve --config`, its defaults, and
//! the command-line flags that override it.
//!
//! ```toml
//! listen = "127.0.0.1:8080"
//! log = "wsplug=info"
//! log-format = "text"         # or "json"
//! max-connections = 10000     # WebSocket connections, whole host
//! cache = true                # keep compiled components on disk
//! cache-dir = "/var/cache/wsplug" # default: $XDG_CACHE_HOME/wsplug or ~/.cache/wsplug
//! handshake-timeout = 10      # seconds to send complete request headers
//! shutdown-grace = 10         # seconds guests get to finish on shutdown
//! tls-cert = "cert.pem"      # serve wss:// and https:// (PEM; with tls-key)
//! tls-key = "key.pem"
//! admin-listen = "127.0.0.1:8081" # the admin API (publishing); off if absent
//! max-connections-per-ip = 256    # WebSockets open per client address; 0: no limit
//! upgrades-per-second-per-ip = 20 # upgrades per client address (429 beyond); 0: no limit
//! upgrade-burst-per-ip = 100      # ... of which this many at once
//! trusted-proxies = ["10.0.0.0/8"] # peers whose X-Forwarded-For / Forwarded count
//! max-header-bytes = 32768    # request headers (431 beyond)
//! max-headers = 100           # request header count (431 beyond)
//! max-uri-length = 8192       # request target (414 beyond)
//! http2-max-concurrent-streams = 100
//! admin-token = "s3cret"      # bearer token the admin API requires, if set
//!
//! [topics]
//! max-message-size = 1048576  # largest published message, in bytes
//! redis = "redis://127.0.0.1:6379" # topics across hosts; default: this host only
//!
//! [[static]]
//! path = "/"                  # URL prefix
//! dir = "web"                 # directory served there (relative to this file)
//!
//! [[route]]
//! path = "/greeter"
//! component = "greeter.wasm"  # relative to this file
//! protocols = ["greeting.v1"] # offered subprotocols, in preference order
//! max-message-size = 67108864
//! max-frame-size = 16777216
//! max-connections = 1000
//! idle-timeout = 300          # seconds without data either way; 0: never
//! ping-interval = 30          # seconds between keep-alive pings; 0: none
//! memory-limit = 67108864     # bytes of linear memory per instance
//! cpu-budget = 1              # seconds a guest may compute without a break
//! env = { GREETING = "Hello" } # environment variables granted to the guest
//! dirs = [{ host = "static", guest = "/static" }]  # read-only directories
//! max-topics = 64             # topics a connection may join or subscribe to
//! max-buffered = 1048576      # bytes of topic messages queued per connection
//! slow-subscriber = "drop"    # or "close" (1008) when max-buffered is full
//! compression = true          # permessage-deflate, when the client offers it
//! compression-threshold = 1024 # smaller whole messages go out uncompressed
//! instance = "per-connection" # or "shared": one instance, many connections
//! shared-instances = 1        # with "shared": instances the connections share
//! allowed-origins = ["https://app.example.com"] # default: same origin only
//! max-messages-per-second = 1000 # per connection (1008 beyond); 0: no limit
//! message-burst = 1000
//! ```

use crate::topics::SlowSubscriber;
use crate::wasm::runtime::GuestPolicy;
use anyhow::{Context as _, bail};
use ipnet::IpNet;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `max-connections` unless set.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// The most `max-connections` (host or route) may be: far beyond what one
/// process can hold, and small enough for the arithmetic on it.
pub const MAX_CONNECTIONS_LIMIT: usize = 10_000_000;
/// The most `shared-instances` a route may have: each is a live instance.
const MAX_SHARED_INSTANCES: usize = 4096;
/// The most `max-header-bytes` and `max-uri-length` may be (1 MiB).
const MAX_HEADER_BYTES: usize = 1 << 20;
/// The most `max-headers` may be.
const MAX_HEADERS: usize = 10_000;

/// Everything `wsplug serve` needs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    /// Where to listen. Default `127.0.0.1:8080`.
    #[serde(default = "defaults::listen")]
    pub listen: SocketAddr,
    /// The log filter (`RUST_LOG` syntax), unless `RUST_LOG` is set.
    /// Default `wsplug=info`.
    #[serde(default = "defaults::log")]
    pub log: String,
    /// How log lines look: `text` (default) or `json`, one object per line.
    #[serde(default)]
    pub log_format: LogFormat,
    /// Open WebSocket connections allowed on the whole host; beyond it new
    /// upgrades get `503`. Default 10,000.
    #[serde(default = "defaults::max_connections")]
    pub max_connections: usize,
    /// Allocate instances from a pool sized for `max-connections` (plus the
    /// routes' shared instances), each with room for the largest route
    /// `memory-limit`: a hard host-wide bound on instance memory, and faster
    /// connection setup. Past what 64 TiB of 4 GiB slots hold (8,192
    /// instances, or 16,384 of components with one memory), at the cost of
    /// bounds checks on the guests' memory accesses. Default false.
    #[serde(default = "defaults::instance_pool")]
    pub instance_pool: bool,
    /// Keep compiled components on disk, so that the next start (or
    /// reload) of an unchanged component skips compiling it. Default true.
    #[serde(default = "defaults::cache")]
    pub cache: bool,
    /// Where compiled components are kept. Default `$XDG_CACHE_HOME/wsplug`,
    /// else `$HOME/.cache/wsplug`.
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
    /// How long a client may take to send complete request headers before
    /// its connection is closed (slowloris). Default 10 s.
    #[serde(default = "defaults::handshake_timeout", with = "seconds")]
    pub handshake_timeout: Duration,
    /// On shutdown, how long guests get to finish their output before their
    /// connections are closed with 1001. Default 10 s.
    #[serde(default = "defaults::shutdown_grace", with = "seconds")]
    pub shutdown_grace: Duration,
    /// The TLS certificate chain (PEM), relative to the config file; with
    /// `tls-key`, the host serves `wss://` and `https://` only. Default
    /// none: cleartext.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// The TLS private key (PEM) for `tls-cert`.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// WebSocket connections one client address may have open on the
    /// host; beyond it upgrades get `429`. Zero: no limit. Default 256.
    #[serde(default = "defaults::max_connections_per_ip")]
    pub max_connections_per_ip: usize,
    /// Upgrades a client address may make per second, on average; beyond
    /// it `429` with `Retry-After`. Zero: no limit. Default 20.
    #[serde(default = "defaults::upgrades_per_second_per_ip")]
    pub upgrades_per_second_per_ip: f64,
    /// How many upgrades a client address may make at once (the token
    /// bucket's size). Default 100.
    #[serde(default = "defaults::upgrade_burst_per_ip")]
    pub upgrade_burst_per_ip: f64,
    /// Peers (addresses or networks, e.g. `10.0.0.0/8`) whose
    /// `X-Forwarded-For` / `Forwarded` headers name the client. Default none:
    /// the client is the peer.
    #[serde(default, deserialize_with = "addresses_or_networks")]
    pub trusted_proxies: Vec<IpNet>,
    /// The most bytes of request headers (`431` beyond); at least 8192.
    /// Default 32 KiB.
    #[serde(default = "defaults::max_header_bytes")]
    pub max_header_bytes: usize,
    /// The most request headers (`431` beyond). Default 100.
    #[serde(default = "defaults::max_headers")]
    pub max_headers: usize,
    /// The longest request target, path and query (`414` beyond). Default
    /// 8 KiB.
    #[serde(default = "defaults::max_uri_length")]
    pub max_uri_length: usize,
    /// HTTP/2 streams a client may have open at once on a connection.
    /// Default 100.
    #[serde(default = "defaults::http2_max_concurrent_streams")]
    pub http2_max_concurrent_streams: u32,
    /// Where the admin API listens (publishing to topics); never on the
    /// public port. Default: no admin API.
    #[serde(default)]
    pub admin_listen: Option<SocketAddr>,
    /// The bearer token the admin API requires; default none (anyone who
    /// reaches the admin address may publish).
    #[serde(default)]
    pub admin_token: Option<String>,
    /// Host-wide topic settings, `[topics]`.
    #[serde(default)]
    pub topics: TopicsConfig,
    /// Directories served as static files, `[[static]]` tables.
    #[serde(default, rename = "static")]
    pub static_dirs: Vec<StaticDir>,
    /// The routes, `[[route]]` tables.
    #[serde(default, rename = "route")]
    pub routes: Vec<RouteConfig>,
}

/// How log lines look.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// Lines for people.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Host-wide topic settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TopicsConfig {
    /// The largest message a publish takes (from a handler or the admin
    /// API), in bytes. Default 1 MiB.
    #[serde(default = "defaults::topic_message_size")]
    pub max_message_size: usize,
    /// A Redis URL (`redis://HOST:PORT`): every publish then goes through
    /// Redis pub/sub and reaches subscribers on every host that uses it.
    /// Default none: topics stay within this host.
    #[serde(default)]
    pub redis: Option<String>,
}

impl Default for TopicsConfig {
    fn default() -> Self {
        Self { max_message_size: defaults::topic_message_size(), redis: None }
    }
}

/// A directory served as static files under a URL prefix, on paths that are
/// not WebSocket routes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StaticDir {
    /// The URL prefix, e.g. `/` or `/assets`.
    pub path: String,
    /// The directory (relative to the config file).
    pub dir: PathBuf,
}

/// One route: a path served by a component, with its limits.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RouteConfig {
    /// The request path, e.g. `/greeter`.
    pub path: String,
    /// The component file.
    pub component: PathBuf,
    /// Subprotocols this route speaks, in order of preference; the first one
    /// the client also offers is chosen. Default none.
    #[serde(default)]
    pub protocols: Vec<String>,
    /// The largest message accepted from a client, in bytes; a larger one
    /// closes the connection with 1009. Default 64 MiB.
    #[serde(default = "defaults::max_message_size")]
    pub max_message_size: usize,
    /// The largest frame accepted from a client, in bytes (1009 beyond).
    /// Default 16 MiB.
    #[serde(default = "defaults::max_frame_size")]
    pub max_frame_size: usize,
    /// Open connections allowed on this route (`503` beyond); default: only
    /// the host's limit applies.
    #[serde(default)]
    pub max_connections: Option<usize>,
    /// Close the connection (1001 `idle timeout`) after this long without a
    /// message or pong from the client and without a message to it. Zero
    /// disables it. Default 300 s.
    #[serde(default = "defaults::idle_timeout", with = "seconds")]
    pub idle_timeout: Duration,
    /// Send a ping after this long; a client that answers stays alive
    /// through the idle timeout. Zero disables pings. Default 30 s.
    #[serde(default = "defaults::ping_interval", with = "seconds")]
    pub ping_interval: Duration,
    /// Linear memory per instance, in bytes; growth past it traps (close
    /// 1011). Default 64 MiB.
    #[serde(default = "defaults::memory_limit")]
    pub memory_limit: usize,
    /// How long a guest may compute without a break (without waiting for a
    /// message, a timer or the client) before it is interrupted (close 1011).
    /// Default 1 s.
    #[serde(default = "defaults::cpu_budget", with = "seconds")]
    pub cpu_budget: Duration,
    /// Environment variables granted to the guest. Default none.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Host directories granted to the guest, read-only. Default none.
    #[serde(default)]
    pub dirs: Vec<DirGrant>,
    /// Topics a connection may hold at once (joined or subscribed); more is
    /// an error result for the handler. Default 64.
    #[serde(default = "defaults::max_topics")]
    pub max_topics: usize,
    /// Bytes of topic messages that may wait for one connection (for its
    /// socket and its handler's subscriptions together). Default 1 MiB.
    #[serde(default = "defaults::max_buffered")]
    pub max_buffered: usize,
    /// What happens when a topic message does not fit in `max-buffered`:
    /// `drop` it (default) or `close` the connection with 1008.
    #[serde(default)]
    pub slow_subscriber: SlowSubscriber,
    /// Offer permessage-deflate (RFC 7692) to clients that ask for it.
    /// Default true.
    #[serde(default = "defaults::compression")]
    pub compression: bool,
    /// With compression negotiated, whole messages the handler sends that
    /// are smaller than this many bytes go out uncompressed (streamed ones
    /// are always compressed). Default 1024.
    #[serde(default = "defaults::compression_threshold")]
    pub compression_threshold: usize,
    /// An instance of its own for each connection (`per-connection`, the
    /// default), or instances that serve many connections at once
    /// (`shared`).
    #[serde(default)]
    pub instance: InstanceMode,
    /// With `instance = "shared"`: how many shared instances the route's
    /// connections are spread over, in turn. Default 1.
    #[serde(default = "defaults::shared_instances")]
    pub shared_instances: usize,
    /// The pages (origins) that may open a WebSocket here, e.g.
    /// `https://app.example.com`, `https://*.example.com`, or `*` for any;
    /// a request with another `Origin` gets `403`. Default empty: only the
    /// host's own pages (same origin); requests without `Origin` (clients
    /// that are not browsers) are always let through.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Connections one client address may have open on this route (`429`
    /// beyond); default: only the host's `max-connections-per-ip` applies.
    #[serde(default)]
    pub max_connections_per_ip: Option<usize>,
    /// Messages a client may send per second on one connection, on average;
    /// beyond it the connection is closed with 1008. Zero: no limit. Default
    /// 1000.
    #[serde(default = "defaults::max_messages_per_second")]
    pub max_messages_per_second: f64,
    /// How many messages a client may send at once (the token bucket's
    /// size). Default 1000.
    #[serde(default = "defaults::message_burst")]
    pub message_burst: f64,
}

/// How a route's connections get instances of its handler.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstanceMode {
    /// A fresh instance per connection, dropped with it: nothing is shared
    /// between connections, not even a failure.
    #[default]
    PerConnection,
    /// Each connection is a concurrent call on a shared instance: its state
    /// is shared by its connections, and so is a failure (every connection
    /// on an instance that traps closes with 1011).
    Shared,
}

/// A host directory a route's guests may read.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DirGrant {
    /// The directory on the host (relative to the config file).
    pub host: PathBuf,
    /// Where the guest sees it, e.g. `/static`.
    pub guest: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: defaults::listen(),
            log: defaults::log(),
            log_format: LogFormat::default(),
            max_connections: defaults::max_connections(),
            instance_pool: defaults::instance_pool(),
            cache: defaults::cache(),
            cache_dir: None,
            handshake_timeout: defaults::handshake_timeout(),
            shutdown_grace: defaults::shutdown_grace(),
            max_connections_per_ip: defaults::max_connections_per_ip(),
            upgrades_per_second_per_ip: defaults::upgrades_per_second_per_ip(),
            upgrade_burst_per_ip: defaults::upgrade_burst_per_ip(),
            trusted_proxies: Vec::new(),
            max_header_bytes: defaults::max_header_bytes(),
            max_headers: defaults::max_headers(),
            max_uri_length: defaults::max_uri_length(),
            http2_max_concurrent_streams: defaults::http2_max_concurrent_streams(),
            tls_cert: None,
            tls_key: None,
            admin_listen: None,
            admin_token: None,
            topics: TopicsConfig::default(),
            static_dirs: Vec::new(),
            routes: Vec::new(),
        }
    }
}

impl RouteConfig {
    /// A route with every setting at its default.
    pub fn new(path: impl Into<String>, component: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            component: component.into(),
            protocols: Vec::new(),
            max_message_size: defaults::max_message_size(),
            max_frame_size: defaults::max_frame_size(),
            max_connections: None,
            idle_timeout: defaults::idle_timeout(),
            ping_interval: defaults::ping_interval(),
            memory_limit: defaults::memory_limit(),
            cpu_budget: defaults::cpu_budget(),
            env: BTreeMap::new(),
            dirs: Vec::new(),
            max_topics: defaults::max_topics(),
            max_buffered: defaults::max_buffered(),
            slow_subscriber: SlowSubscriber::default(),
            compression: defaults::compression(),
            compression_threshold: defaults::compression_threshold(),
            instance: InstanceMode::default(),
            shared_instances: defaults::shared_instances(),
            allowed_origins: Vec::new(),
            max_connections_per_ip: None,
            max_messages_per_second: defaults::max_messages_per_second(),
            message_burst: defaults::message_burst(),
        }
    }

    /// What this route's guests may use.
    pub fn guest_policy(&self) -> GuestPolicy {
        GuestPolicy {
            memory: self.memory_limit,
            cpu_budget: self.cpu_budget,
            env: self.env.iter().map(|(name, value)| (name.clone(), value.clone())).collect(),
            read_only_dirs: self.dirs.iter().map(|dir| (dir.host.clone(), dir.guest.clone())).collect(),
        }
    }
}

impl Config {
    /// Reads a TOML file. Errors name the file, the line and the key; a
    /// route's component path is taken relative to the file.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
        let mut config: Config =
            toml::from_str(&text).with_context(|| format!("bad config file {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new(""));
        for route in &mut config.routes {
            route.component = base.join(&route.component);
            for dir in &mut route.dirs {
                dir.host = base.join(&dir.host);
            }
        }
        for served in &mut config.static_dirs {
            served.dir = base.join(&served.dir);
        }
        for file in [&mut config.tls_cert, &mut config.tls_key, &mut config.cache_dir].into_iter().flatten() {
            *file = base.join(&*file);
        }
        Ok(config)
    }

    /// Adds a route, replacing one with the same path (flags override the
    /// file).
    pub fn set_route(&mut self, route: RouteConfig) {
        self.routes.retain(|existing| existing.path != route.path);
        self.routes.push(route);
    }

    /// Checks what the types cannot: paths, duplicates, at least one route.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.routes.is_empty() {
            bail!("no routes: give at least one --route PATH=COMPONENT or a [[route]] in the config file");
        }
        for (index, route) in self.routes.iter().enumerate() {
            if !route.path.starts_with('/') {
                bail!("route path `{}` must start with `/`", route.path);
            }
            if route.path.contains(['?', '#']) {
                bail!("route path `{}` must not contain `?` or `#`: a route matches the path alone", route.path);
            }
            if self.routes[..index].iter().any(|earlier| earlier.path == route.path) {
                bail!("route path `{}` is given twice", route.path);
            }
            if let Some(bad) = route.protocols.iter().find(|protocol| !is_token(protocol)) {
                bail!("route {}: `{bad}` is not a valid subprotocol name", route.path);
            }
            if let Err(why) = crate::http::edge::OriginPolicy::new(&route.allowed_origins) {
                bail!("route {}: allowed-origins: {why}", route.path);
            }
            if !is_rate(route.max_messages_per_second) {
                bail!("route {}: max-messages-per-second {RATES}", route.path);
            }
            if !is_burst(route.message_burst) {
                bail!("route {}: message-burst {BURSTS}", route.path);
            }
            if route.shared_instances > MAX_SHARED_INSTANCES {
                bail!("route {}: shared-instances must be at most {MAX_SHARED_INSTANCES}", route.path);
            }
            if route.shared_instances == 0 {
                bail!("route {}: shared-instances must be at least 1", route.path);
            }
            if route.shared_instances > 1 && route.instance != InstanceMode::Shared {
                bail!("route {}: shared-instances is for `instance = \"shared\"`, which this route is not", route.path);
            }
            for (key, duration) in [("idle-timeout", route.idle_timeout), ("ping-interval", route.ping_interval)] {
                if !duration.is_zero() && duration < MIN_TIMER {
                    bail!("route {}: {key} must be 0 (off) or at least {} s", route.path, MIN_TIMER.as_secs_f64());
                }
            }
            if route.max_connections.is_some_and(|max| max > MAX_CONNECTIONS_LIMIT) {
                bail!("route {}: max-connections must be at most {MAX_CONNECTIONS_LIMIT}", route.path);
            }
            let zero = [
                ("max-connections", route.max_connections == Some(0)),
                ("max-message-size", route.max_message_size == 0),
                ("max-frame-size", route.max_frame_size == 0),
                ("memory-limit", route.memory_limit == 0),
                ("cpu-budget", route.cpu_budget.is_zero()),
                ("max-buffered", route.max_buffered == 0),
            ];
            if let Some((key, _)) = zero.iter().find(|(_, zero)| *zero) {
                bail!("route {}: {key} must be positive", route.path);
            }
        }
        for served in &self.static_dirs {
            if !served.path.starts_with('/') {
                bail!("static path `{}` must start with `/`", served.path);
            }
            if self.routes.iter().any(|route| route.path == served.path) {
                bail!("`{}` is both a route and a static path", served.path);
            }
            if !served.dir.is_dir() {
                bail!("static path {}: {} is not a directory", served.path, served.dir.display());
            }
        }
        if self.admin_listen.is_some_and(|admin| admin == self.listen && admin.port() != 0) {
            bail!("admin-listen must not be the public address {}", self.listen);
        }
        if !is_rate(self.upgrades_per_second_per_ip) {
            bail!("upgrades-per-second-per-ip {RATES}");
        }
        if !is_burst(self.upgrade_burst_per_ip) {
            bail!("upgrade-burst-per-ip {BURSTS}");
        }
        // hyper allocates room for max-headers headers on every request.
        for (key, value, allowed) in [
            ("max-header-bytes", self.max_header_bytes, 8192..=MAX_HEADER_BYTES),
            ("max-headers", self.max_headers, 1..=MAX_HEADERS),
            ("max-uri-length", self.max_uri_length, 1..=MAX_HEADER_BYTES),
        ] {
            if !allowed.contains(&value) {
                bail!("{key} must be from {} to {}, not {value}", allowed.start(), allowed.end());
            }
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            bail!("tls-cert and tls-key go together: give both or neither");
        }
        if self.topics.max_message_size == 0 {
            bail!("[topics] max-message-size must be positive");
        }
        if let Some(url) = &self.topics.redis {
            crate::topics::redis::check_url(url).context("[topics] redis")?;
        }
        if self.max_connections == 0 || self.max_connections > MAX_CONNECTIONS_LIMIT {
            bail!("max-connections must be from 1 to {MAX_CONNECTIONS_LIMIT}");
        }
        if self.http2_max_concurrent_streams == 0 {
            bail!("http2-max-concurrent-streams must be at least 1: with 0 no WebSocket could open over HTTP/2");
        }
        match (&self.admin_token, self.admin_listen) {
            (Some(token), _) if token.is_empty() => {
                bail!("admin-token must not be empty: no request could give it (leave it out for no token)")
            }
            (Some(_), None) => bail!("admin-token is set but admin-listen is not: there is no admin API to protect"),
            _ => {}
        }
        if self.handshake_timeout.is_zero() {
            bail!("handshake-timeout must be positive: it is how long a client may take to send its request");
        }
        Ok(())
    }

    /// Settings that are valid but do not do what they seem to, each said as
    /// a warning to log.
    pub fn advice(&self) -> Vec<String> {
        self.routes
            .iter()
            .filter(|route| {
                let (ping, idle) = (route.ping_interval, route.idle_timeout);
                !ping.is_zero() && !idle.is_zero() && ping >= idle
            })
            .map(|route| {
                format!(
                    "route {}: idle-timeout ({} s) is not longer than ping-interval ({} s), so a quiet client is \
                     closed as idle before it is pinged; make ping-interval shorter to keep such clients",
                    route.path,
                    route.idle_timeout.as_secs_f64(),
                    route.ping_interval.as_secs_f64()
                )
            })
            .collect()
    }
}

/// The shortest `idle-timeout` and `ping-interval` but 0 (off): shorter
/// ones would close every connection at once or flood it with pings.
const MIN_TIMER: Duration = Duration::from_millis(100);

/// What a rate (per second) may be, said in errors.
const RATES: &str = "must be 0 (no limit) or a number from 0.001 up";
/// What a token bucket's burst may be.
const BURSTS: &str = "must be a number from 1 up";

/// A rate of tokens per second: 0 (no limit), or one whose wait for a
/// token fits in a `Duration` (NaN and infinity are no numbers here).
fn is_rate(rate: f64) -> bool {
    rate == 0.0 || (0.001..f64::INFINITY).contains(&rate)
}

/// A token bucket's size.
fn is_burst(burst: f64) -> bool {
    (1.0..f64::INFINITY).contains(&burst)
}

/// An HTTP token (RFC 9110), the syntax of a subprotocol name.
fn is_token(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|byte| byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte))
}

mod defaults {
    use std::net::SocketAddr;
    use std::time::Duration;

    pub fn listen() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 8080))
    }
    pub fn log() -> String {
        "wsplug=info".to_owned()
    }
    pub fn max_connections() -> usize {
        super::DEFAULT_MAX_CONNECTIONS
    }
    pub fn cache() -> bool {
        true
    }
    pub fn instance_pool() -> bool {
        false
    }
    pub fn handshake_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub fn shutdown_grace() -> Duration {
        Duration::from_secs(10)
    }
    pub fn max_message_size() -> usize {
        64 << 20
    }
    pub fn max_frame_size() -> usize {
        16 << 20
    }
    pub fn idle_timeout() -> Duration {
        Duration::from_secs(300)
    }
    pub fn ping_interval() -> Duration {
        Duration::from_secs(30)
    }
    pub fn memory_limit() -> usize {
        64 << 20
    }
    pub fn cpu_budget() -> Duration {
        Duration::from_secs(1)
    }
    pub fn topic_message_size() -> usize {
        1 << 20
    }
    pub fn max_connections_per_ip() -> usize {
        256
    }
    pub fn upgrades_per_second_per_ip() -> f64 {
        20.0
    }
    pub fn upgrade_burst_per_ip() -> f64 {
        100.0
    }
    pub fn max_header_bytes() -> usize {
        32 << 10
    }
    pub fn max_headers() -> usize {
        100
    }
    pub fn max_uri_length() -> usize {
        8 << 10
    }
    pub fn http2_max_concurrent_streams() -> u32 {
        100
    }
    pub fn max_messages_per_second() -> f64 {
        1000.0
    }
    pub fn message_burst() -> f64 {
        1000.0
    }
    pub fn max_topics() -> usize {
        64
    }
    pub fn max_buffered() -> usize {
        1 << 20
    }
    pub fn shared_instances() -> usize {
        1
    }
    pub fn compression() -> bool {
        true
    }
    pub fn compression_threshold() -> usize {
        1024
    }
}

/// Durations as a number of seconds (fractions allowed), at most a year:
/// deadlines are computed from them, and a longer one is a typo.
mod seconds {
    use serde::Deserializer;
    use serde::de::{Error, Visitor};
    use std::time::Duration;

    const A_YEAR: f64 = 365.0 * 24.0 * 3600.0;

    /// A number, integer or not; anything else (`"1ms"`) is refused with
    /// what is expected.
    struct Seconds;

    impl Visitor<'_> for Seconds {
        type Value = f64;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a number of seconds, such as 30 or 0.5")
        }

        fn visit_f64<E: Error>(self, seconds: f64) -> Result<f64, E> {
            Ok(seconds)
        }

        fn visit_i64<E: Error>(self, seconds: i64) -> Result<f64, E> {
            Ok(seconds as f64)
        }

        fn visit_u64<E: Error>(self, seconds: u64) -> Result<f64, E> {
            Ok(seconds as f64)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let seconds = deserializer.deserialize_f64(Seconds)?;
        match Duration::try_from_secs_f64(seconds) {
            Ok(duration) if seconds <= A_YEAR => Ok(duration),
            // Debug: 1e300 stays 1e300, not three hundred digits.
            _ => Err(D::Error::custom(format!("{seconds:?} is not a number of seconds from 0 to {A_YEAR} (a year)"))),
        }
    }
}

/// `trusted-proxies`: each entry an address (`10.0.0.1`, one peer) or a
/// network (`10.0.0.0/8`).
fn addresses_or_networks<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<IpNet>, D::Error> {
    use serde::de::Error;
    let entries = Vec::<String>::deserialize(deserializer)?;
    entries
        .iter()
        .map(|entry| {
            entry.parse::<IpNet>().or_else(|_| entry.parse::<std::net::IpAddr>().map(IpNet::from)).map_err(|_| {
                D::Error::custom(format!("`{entry}` is neither an address nor a network (such as 10.0.0.0/8)"))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<Config> {
        Ok(toml::from_str(text)?)
    }

    #[test]
    fn defaults_fill_what_the_file_leaves_out() {
        let config = parse("[[route]]\npath = \"/a\"\ncomponent = \"a.wasm\"\nidle-timeout = 0.5\n").unwrap();
        assert_eq!(config.listen, defaults::listen());
        let route = &config.routes[0];
        assert_eq!(route.idle_timeout, Duration::from_millis(500));
        assert_eq!(route.ping_interval, Duration::from_secs(30));
        config.validate().unwrap();
    }

    #[test]
    fn an_unknown_key_is_named_with_its_line() {
        let error =
            parse("listen = \"127.0.0.1:1\"\n\n[[route]]\npath = \"/a\"\ncomponent = \"a.wasm\"\nidle-timout = 3\n")
                .unwrap_err()
                .to_string();
        assert!(error.contains("line 6") && error.contains("idle-timout"), "{error}");
    }

    #[test]
    fn a_bad_value_is_named_with_its_line() {
        let error = parse("max-connections = -1\n").unwrap_err().to_string();
        assert!(error.contains("line 1") && error.contains("max-connections"), "{error}");
        let error = parse("shutdown-grace = -2\n").unwrap_err().to_string();
        assert!(error.contains("line 1") && error.contains("not a number of seconds"), "{error}");
    }

    #[test]
    fn absurd_values_are_refused_with_what_is_allowed() {
        let error = parse("shutdown-grace = 1e300\n").unwrap_err().to_string();
        assert!(error.contains("1e300 is not a number of seconds from 0 to 31536000"), "{error}");
        let route = "\n[[route]]\npath = \"/a\"\ncomponent = \"a.wasm\"\n";
        // A host-wide setting goes before the route, a route's after it.
        let host = |setting: &str| format!("{setting}\n{route}");
        let in_route = |setting: &str| format!("{route}{setting}\n");
        for (text, why) in [
            (host("max-connections = 18446744073709551615"), "max-connections must be from 1 to 10000000"),
            (host("handshake-timeout = 0"), "handshake-timeout must be positive"),
            (host("upgrades-per-second-per-ip = nan"), "upgrades-per-second-per-ip must be 0 (no limit) or a number"),
            (host("upgrades-per-second-per-ip = 1e-20"), "upgrades-per-second-per-ip must be 0 (no limit) or a number"),
            (host("upgrade-burst-per-ip = inf"), "upgrade-burst-per-ip must be a number from 1 up"),
            (host("max-headers = 100000000"), "max-headers must be from 1 to 10000, not 100000000"),
            (host("max-header-bytes = 100"), "max-header-bytes must be from 8192 to"),
            (in_route("max-connections = 4611686018427387904"), "max-connections must be at most 10000000"),
            (in_route("max-messages-per-second = nan"), "max-messages-per-second must be 0 (no limit)"),
            (in_route("max-messages-per-second = 5e-324"), "max-messages-per-second must be 0 (no limit)"),
            (in_route("shared-instances = 4611686018427387904"), "shared-instances must be at most 4096"),
            (in_route("shared-instances = 4"), "shared-instances is for `instance = \"shared\"`"),
            (in_route("ping-interval = 0.001"), "route /a: ping-interval must be 0 (off) or at least 0.1 s"),
            (in_route("idle-timeout = 1e-7"), "route /a: idle-timeout must be 0 (off) or at least 0.1 s"),
            (in_route("max-message-size = 0"), "route /a: max-message-size must be positive"),
            (in_route("cpu-budget = 0"), "route /a: cpu-budget must be positive"),
            (route.replace("/a", "/a?b=1"), "route path `/a?b=1` must not contain `?` or `#`"),
            (host("http2-max-concurrent-streams = 0"), "http2-max-concurrent-streams must be at least 1"),
            (host("admin-token = \"secret\""), "admin-token is set but admin-listen is not"),
            (host("admin-listen = \"127.0.0.1:0\"\nadmin-token = \"\""), "admin-token must not be empty"),
        ] {
            let error = parse(&text).unwrap().validate().unwrap_err().to_string();
            assert!(error.contains(why), "{text}: {error}");
        }
    }

    #[test]
    fn durations_are_seconds_and_a_timeout_before_the_first_ping_is_pointed_out() {
        let route = "[[route]]\npath = \"/a\"\ncomponent = \"a.wasm\"\n";
        let error = parse(&format!("{route}ping-interval = \"1ms\"\n")).unwrap_err().to_string();
        assert!(error.contains("expected a number of seconds, such as 30 or 0.5"), "{error}");
        let config = parse(&format!("{route}idle-timeout = 10\nping-interval = 0.5\n")).unwrap();
        assert_eq!((config.routes[0].idle_timeout, config.routes[0].ping_interval), (secs(10.0), secs(0.5)));
        assert!(config.advice().is_empty());
        // The default ping-interval is 30 s.
        let config = parse(&format!("{route}idle-timeout = 10\n")).unwrap();
        config.validate().unwrap();
        let advice = config.advice();
        assert_eq!(advice.len(), 1);
        assert!(
            advice[0].contains("route /a: idle-timeout (10 s) is not longer than ping-interval (30 s)"),
            "{advice:?}"
        );
        assert!(parse(&format!("{route}idle-timeout = 10\nping-interval = 0\n")).unwrap().advice().is_empty());
    }

    fn secs(seconds: f64) -> Duration {
        Duration::from_secs_f64(seconds)
    }

    #[test]
    fn a_trusted_proxy_is_an_address_or_a_network() {
        let config = parse("trusted-proxies = [\"127.0.0.1\", \"10.0.0.0/8\", \"::1\"]\n").unwrap();
        let shown: Vec<String> = config.trusted_proxies.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["127.0.0.1/32", "10.0.0.0/8", "::1/128"]);
        let error = parse("trusted-proxies = [\"proxy.local\"]\n").unwrap_err().to_string();
        assert!(error.contains("`proxy.local` is neither an address nor a network"), "{error}");
    }

    #[test]
    fn flags_replace_a_route_of_the_same_path() {
        let mut config = parse("[[route]]\npath = \"/a\"\ncomponent = \"a.wasm\"\n").unwrap();
        config.set_route(RouteConfig::new("/a", "b.wasm"));
        assert_eq!(config.routes.len(), 1);
        assert_eq!(config.routes[0].component, PathBuf::from("b.wasm"));
        config.set_route(RouteConfig::new("/a", "c.wasm"));
        config.routes.push(RouteConfig::new("/a", "d.wasm"));
        assert!(config.validate().unwrap_err().to_string().contains("given twice"));
    }
}
