//! The accept loop ([`Server`]), and per connection ([`App`]) HTTP/1.1 and
//! HTTP/2, routing by path (WebSocket routes first, then static files),
//! connection limits and the hand-over of an accepted WebSocket to
//! [`connection::serve`]; graceful shutdown.

use super::Body;
use super::edge::{ClientSlot, Clients, OriginPolicy, TokenBucket, client_address, is_trusted, public_authority};
use super::handshake::{self, Verdict};
use super::static_files::StaticFiles;
use super::upgrade::{self, Rejection, UNKNOWN_RESOURCE, text_response};
use crate::config::{Config, InstanceMode, RouteConfig};
use crate::connection::{self, Compression, Session};
use crate::metrics::{Metrics, Refused};
use crate::topics::{Broker, Budget, SlowSubscriber, TopicCounters, TopicsCtx, queue};
use crate::wasm::bindings::ConnectionInfo;
use crate::wasm::log::LogSource;
use crate::wasm::runtime::{Guest, Handler, Runtime};
use crate::wasm::shared::SharedInstances;
use crate::wasm::streams::{CHUNK_SIZE, STRICT_MESSAGE_LIMIT};
use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, header};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use ipnet::IpNet;
use std::collections::HashMap;
use std::convert::Infallible;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::net::{IpAddr, SocketAddr};
use std::pin::pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wasmtime::PoolConcurrencyLimitError;
use wsplug_wire::DeflateParams;
use wsplug_wire::ReadLimits;

/// How much of a rejected request's body is read and discarded so that the
/// connection can serve the next request; past this the connection is closed.
const DRAIN_LIMIT: usize = 64 * 1024;

/// How long a rejected request's body is read for at most; past this the
/// connection is closed instead.
const DRAIN_TIME: Duration = Duration::from_secs(2);

/// Beyond the grace period, how long shutdown waits for close handshakes.
const CLOSE_HANDSHAKE_ALLOWANCE: Duration = Duration::from_secs(5);

/// A route: its settings, its compiled handler, its connection permits.
struct Route {
    config: RouteConfig,
    handler: Handler,
    /// With `instance = "shared"`, the instances its connections share.
    shared: Option<SharedInstances>,
    permits: Option<Arc<Semaphore>>,
    origins: OriginPolicy,
    /// The component file's contents when it was compiled, hashed.
    fingerprint: u64,
}

/// Which handler serves which path.
pub struct Routes {
    routes: HashMap<String, Arc<Route>>,
}

/// What a reload changed, by path.
#[derive(Debug, Default)]
pub struct RouteChanges {
    /// New paths.
    pub added: Vec<String>,
    /// Paths whose component or settings changed: compiled again.
    pub replaced: Vec<String>,
    /// Paths no longer served.
    pub removed: Vec<String>,
    /// Paths kept as they were (same settings, same component file).
    pub unchanged: Vec<String>,
}

impl Routes {
    /// Compiles each route's component with `runtime`. Fails on the first bad
    /// component, naming the route and the file.
    pub fn load(runtime: &Runtime, routes: &[RouteConfig]) -> anyhow::Result<Self> {
        Self::reload(runtime, routes, &Routes { routes: HashMap::new() }).map(|(routes, _)| routes)
    }

    /// Like [`Routes::load`], keeping each route of `previous` whose
    /// settings and component file have not changed (its compiled handler
    /// and its connection count with it). All or nothing: a bad component
    /// fails the whole reload.
    pub fn reload(
        runtime: &Runtime,
        routes: &[RouteConfig],
        previous: &Routes,
    ) -> anyhow::Result<(Self, RouteChanges)> {
        let mut loaded = HashMap::new();
        let mut changes = RouteChanges::default();
        for config in routes {
            let path = &config.path;
            let bytes = std::fs::read(&config.component)
                .with_context(|| format!("cannot read component file {}", config.component.display()))
                .with_context(|| format!("route {path}"))?;
            let fingerprint = fingerprint(&bytes);
            let kept = previous.routes.get(path);
            if let Some(route) = kept.filter(|route| route.config == *config && route.fingerprint == fingerprint) {
                changes.unchanged.push(path.clone());
                loaded.insert(path.clone(), route.clone());
                continue;
            }
            let handler = runtime
                .load_bytes(&config.component, &bytes, config.guest_policy())
                .with_context(|| format!("route {path}"))?;
            // The same cap goes on counting the connections open under the
            // route before (else each reload would make room for as many
            // again); a new cap counts from the reload.
            let permits = match kept {
                Some(route) if route.config.max_connections == config.max_connections => route.permits.clone(),
                _ => config.max_connections.map(|max| Arc::new(Semaphore::new(max))),
            };
            let origins = OriginPolicy::new(&config.allowed_origins)
                .map_err(|why| anyhow::anyhow!("route {path}: allowed-origins: {why}"))?;
            let shared = (config.instance == InstanceMode::Shared)
                .then(|| SharedInstances::new(handler.clone(), path, config.shared_instances));
            let route = Route { config: config.clone(), handler, shared, permits, origins, fingerprint };
            if kept.is_some() { &mut changes.replaced } else { &mut changes.added }.push(path.clone());
            loaded.insert(path.clone(), Arc::new(route));
        }
        changes.removed = previous.routes.keys().filter(|path| !loaded.contains_key(*path)).cloned().collect();
        for list in [&mut changes.added, &mut changes.replaced, &mut changes.removed, &mut changes.unchanged] {
            list.sort_unstable();
        }
        Ok((Self { routes: loaded }, changes))
    }

    /// The routed paths, sorted.
    pub fn paths(&self) -> Vec<&str> {
        let mut paths: Vec<_> = self.routes.keys().map(String::as_str).collect();
        paths.sort_unstable();
        paths
    }
}

/// Everything needed to serve a connection, whatever carries its bytes.
#[derive(Clone)]
pub struct App {
    inner: Arc<AppInner>,
}

struct AppInner {
    /// Replaced as a whole by a reload; a request works with the routes it
    /// found when it came in.
    routes: RwLock<Arc<Routes>>,
    metrics: Arc<Metrics>,
    static_files: StaticFiles,
    broker: Arc<Broker>,
    edge: EdgeSettings,
    clients: Clients,
    /// Host-wide WebSocket connection permits.
    permits: Arc<Semaphore>,
    /// Permits for TCP connections that carry WebSockets (see
    /// [`SocketShare`]): the open-files limit's share of `permits`.
    socket_permits: Arc<Semaphore>,
    handshake_timeout: Duration,
    shutdown_grace: Duration,
    shutdown: CancellationToken,
    /// Every connection task, HTTP and WebSocket, so that shutdown can wait.
    tasks: TaskTracker,
    connection_ids: AtomicU64,
    open_http: AtomicUsize,
    open_websockets: AtomicUsize,
}

/// One TCP connection's socket permit, taken by its first WebSocket and
/// given back when its last one closes: over HTTP/1.1 a connection carries
/// one WebSocket, over HTTP/2 any number, and the open-files limit counts
/// sockets.
#[derive(Clone, Default)]
struct SocketShare(Arc<std::sync::Mutex<Weak<OwnedSemaphorePermit>>>);

impl SocketShare {
    /// The connection's permit: the one its open WebSockets hold, or a new
    /// one from `permits` (`None` if none is left).
    fn acquire(&self, permits: &Arc<Semaphore>) -> Option<Arc<OwnedSemaphorePermit>> {
        let mut held = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(permit) = held.upgrade() {
            return Some(permit);
        }
        let permit = Arc::new(permits.clone().try_acquire_owned().ok()?);
        *held = Arc::downgrade(&permit);
        Some(permit)
    }
}

/// Counts an open connection for as long as it lives.
struct Open<'a>(&'a AtomicUsize);

impl<'a> Open<'a> {
    fn new(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Self(counter)
    }
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Gives each route its series (connections open, messages, bytes) from the
/// start, at 0: a dashboard or an alert on a missing series sees the route
/// before its first connection.
fn show_routes(metrics: &Metrics, routes: &Routes) {
    for path in routes.paths() {
        metrics.route(path);
    }
}

impl App {
    /// An app serving `routes` with the host-wide settings of `config`.
    pub fn new(routes: Routes, config: &Config) -> Self {
        let metrics = Arc::<Metrics>::default();
        show_routes(&metrics, &routes);
        let room = host_room(config);
        Self {
            inner: Arc::new(AppInner {
                routes: RwLock::new(Arc::new(routes)),
                metrics,
                static_files: StaticFiles::new(&config.static_dirs),
                edge: EdgeSettings::from(config),
                clients: Clients::new(
                    (config.upgrades_per_second_per_ip > 0.0)
                        .then_some((config.upgrades_per_second_per_ip, config.upgrade_burst_per_ip)),
                ),
                broker: Broker::new(&config.topics),
                permits: Arc::new(Semaphore::new(room.connections)),
                socket_permits: Arc::new(Semaphore::new(room.sockets)),
                handshake_timeout: config.handshake_timeout,
                shutdown_grace: config.shutdown_grace,
                shutdown: CancellationToken::new(),
                tasks: TaskTracker::new(),
                connection_ids: AtomicU64::new(0),
                open_http: AtomicUsize::new(0),
                open_websockets: AtomicUsize::new(0),
            }),
        }
    }

    /// HTTP connections being served now (WebSocket ones included).
    pub fn open_connections(&self) -> usize {
        self.inner.open_http.load(Ordering::Relaxed) + self.open_websockets()
    }

    /// WebSocket connections open now.
    pub fn open_websockets(&self) -> usize {
        self.inner.open_websockets.load(Ordering::Relaxed)
    }

    /// The routes served now.
    pub fn routes(&self) -> Arc<Routes> {
        self.inner.routes.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Serves `routes` from now on: new connections get them; open
    /// connections keep the instance they have until they close.
    pub fn replace_routes(&self, routes: Routes) {
        show_routes(&self.inner.metrics, &routes);
        *self.inner.routes.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(routes);
    }

    /// The host's figures (what `GET /metrics` on the admin API shows).
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The host's topics: publish to them from outside a handler.
    pub fn broker(&self) -> &Arc<Broker> {
        &self.inner.broker
    }

    /// Serves HTTP/1.1 and cleartext HTTP/2 (both with WebSocket upgrades) on
    /// one connection until it closes, for a client whose address is not
    /// known (per-client limits do not apply): the testkit's in-memory
    /// connections.
    pub async fn serve_io<I>(&self, io: I) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        self.serve_peer(io, None).await
    }

    /// Like [`App::serve_io`], for a connection from `peer`: the server
    /// calls this for each TCP connection.
    pub async fn serve_peer<I>(
        &self,
        io: I,
        peer: Option<SocketAddr>,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let _open = Open::new(&self.inner.open_http);
        let app = self.clone();
        let socket = SocketShare::default();
        let service = service_fn(move |request| {
            let app = app.clone();
            let socket = socket.clone();
            async move { Ok::<_, Infallible>(app.route(request, peer, &socket).await) }
        });
        let edge = &self.inner.edge;
        let mut builder = auto::Builder::new(TokioExecutor::new());
        // Slowloris: a client that does not finish its headers in time loses
        // the connection. Headers over the limits get 431.
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.inner.handshake_timeout)
            .max_buf_size(edge.max_header_bytes)
            .max_headers(edge.max_headers);
        // Rapid reset (CVE-2023-44487): hyper's caps on streams reset before
        // they are served or answered with errors end the connection.
        builder
            .http2()
            .timer(TokioTimer::new())
            .enable_connect_protocol()
            .max_concurrent_streams(edge.http2_max_concurrent_streams)
            .max_header_list_size(u32::try_from(edge.max_header_bytes).unwrap_or(u32::MAX))
            .max_pending_accept_reset_streams(HTTP2_MAX_PENDING_RESETS)
            .max_local_error_reset_streams(HTTP2_MAX_ERROR_RESETS)
            // A peer that stops answering pings is gone: its connection is
            // closed instead of held.
            .keep_alive_interval(HTTP2_PING_INTERVAL)
            .keep_alive_timeout(HTTP2_PING_TIMEOUT);
        let mut connection = pin!(builder.serve_connection_with_upgrades(TokioIo::new(io), service));
        tokio::select! {
            result = connection.as_mut() => result,
            () = self.inner.shutdown.cancelled() => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        }
    }

    /// Answers one request from `peer`: the handshake's verdict for a
    /// WebSocket route, a file for a static path, else 404.
    async fn route(
        &self,
        mut request: Request<Incoming>,
        peer: Option<SocketAddr>,
        socket: &SocketShare,
    ) -> Response<Body> {
        if let Err(refusal) = check_request(&request, &self.inner.edge) {
            return drained(request, text_response(refusal.0, refusal.1)).await;
        }
        let routes = self.routes();
        let Some(route) = routes.routes.get(request.uri().path()) else {
            if let Some(file) = self.inner.static_files.serve(&request).await {
                return drained(request, file).await;
            }
            return drained(request, text_response(StatusCode::NOT_FOUND, UNKNOWN_RESOURCE)).await;
        };
        let path = &route.config.path;
        let metrics = &self.inner.metrics;
        let mut response = match upgrade::accept(&request) {
            Ok(response) => response,
            Err(rejection) => {
                metrics.refused(path, Refused::NotWebSocket);
                if rejection == Rejection::BodyOnUpgrade {
                    // Its body is not worth waiting for: answer, and close.
                    let mut response = rejection.into_response();
                    response.headers_mut().insert(header::CONNECTION, header::HeaderValue::from_static("close"));
                    return response;
                }
                return drained(request, rejection.into_response()).await;
            }
        };
        let from_proxy = peer.is_some_and(|peer| is_trusted(peer.ip(), &self.inner.edge.trusted_proxies));
        let public = public_authority(&request, self.inner.edge.tls, from_proxy);
        if !route.origins.allows(&request, &public) {
            let origins: Vec<_> =
                request.headers().get_all(header::ORIGIN).iter().map(|origin| origin.to_str().ok()).collect();
            match origins[..] {
                [origin] => tracing::info!(path, origin, "refused an upgrade from a page of another origin"),
                _ => tracing::info!(path, ?origins, "refused an upgrade with more than one Origin"),
            }
            metrics.refused(path, Refused::Origin);
            return drained(request, text_response(StatusCode::FORBIDDEN, "Origin not allowed.")).await;
        }
        let client_slots = match peer {
            Some(peer) => match self.admit_client(route, &request, peer.ip()) {
                Ok(slots) => slots,
                Err((retry_after, why)) => {
                    metrics.refused(path, Refused::RateLimited);
                    let mut response = text_response(StatusCode::TOO_MANY_REQUESTS, why);
                    let seconds = retry_after.as_secs_f64().ceil().max(1.0).to_string();
                    let value = header::HeaderValue::from_str(&seconds).expect("digits are a header value");
                    response.headers_mut().insert(header::RETRY_AFTER, value);
                    return drained(request, response).await;
                }
            },
            None => Vec::new(),
        };
        let Some(permits) = self.acquire_permits(route, socket) else {
            metrics.refused(path, Refused::Capacity);
            return drained(request, Rejection::TooManyConnections.into_response()).await;
        };
        let id = self.inner.connection_ids.fetch_add(1, Ordering::Relaxed);
        let route_metrics = metrics.route(path);
        let counters = TopicCounters {
            delivered: route_metrics.topic_deliveries.clone(),
            dropped: route_metrics.topic_drops.clone(),
        };
        let (topic_frames, topic_queue) =
            queue::channel(Budget::new(route.config.max_buffered, route.config.slow_subscriber, counters.clone()));
        // The instance that decides the handshake is the one that serves the
        // connection: what it learns there stays for the connection.
        let started = Instant::now();
        let guest = match &route.shared {
            None => {
                let topics = TopicsCtx::new(self.inner.broker.clone(), id, topic_frames, route.config.max_topics);
                route.handler.instantiate(LogSource::Connection(id), path, topics).await.map(Guest::Own)
            }
            Some(shared) => {
                // Numbered like the connections; its topic messages are
                // dropped when its handler does not keep up (no one
                // connection could be closed for it).
                let new_instance = || {
                    let instance = self.inner.connection_ids.fetch_add(1, Ordering::Relaxed);
                    let budget = Budget::new(route.config.max_buffered, SlowSubscriber::Drop, counters);
                    let topics =
                        TopicsCtx::shared(self.inner.broker.clone(), instance, budget, route.config.max_topics);
                    (instance, topics)
                };
                shared.lease(new_instance).await.map(Guest::Shared)
            }
        };
        let mut guest = match guest {
            Ok(guest) => guest,
            Err(err) if crate::system::memory_refused(&err) => {
                // The kernel refused the instance's memory: a capacity limit,
                // not the handler's fault.
                tracing::warn!(
                    connection = id,
                    path,
                    "cannot instantiate the handler: {}",
                    crate::system::MEMORY_REFUSED
                );
                metrics.refused(path, Refused::Capacity);
                return drained(request, Rejection::TooManyConnections.into_response()).await;
            }
            Err(err) if err.is::<PoolConcurrencyLimitError>() => {
                // Only if the pool is smaller than the connection caps allow.
                tracing::warn!(connection = id, path, "instance pool full: {err}");
                metrics.refused(path, Refused::Capacity);
                return drained(request, Rejection::TooManyConnections.into_response()).await;
            }
            Err(err) => {
                tracing::warn!(connection = id, path, cause = %err.root_cause(), "cannot instantiate the handler");
                tracing::debug!(connection = id, "instantiation failure in full: {err:?}");
                metrics.refused(path, Refused::Instantiation);
                let failed = text_response(StatusCode::INTERNAL_SERVER_ERROR, "The handler failed to start.");
                return drained(request, failed).await;
            }
        };
        let instantiation = started.elapsed();
        let subprotocol = match handshake::decide(&mut guest, &request, &route.config.protocols, id).await {
            Verdict::Accept { subprotocol, headers } => {
                if let Some(chosen) = &subprotocol {
                    // Offered by the client, so a valid header value.
                    let value = header::HeaderValue::from_str(chosen).expect("an offered protocol is a header value");
                    response.headers_mut().insert(header::SEC_WEBSOCKET_PROTOCOL, value);
                }
                response.headers_mut().extend(headers);
                subprotocol
            }
            Verdict::Reject(rejection) => {
                metrics.refused(path, Refused::Handshake);
                return drained(request, rejection).await;
            }
        };
        metrics.accepted(path, instantiation);
        let deflate = route.config.compression.then(|| negotiate_deflate(request.headers())).flatten().map(
            |(params, accepted)| {
                let value = header::HeaderValue::from_str(&accepted).expect("made of the offer's tokens");
                response.headers_mut().insert(header::SEC_WEBSOCKET_EXTENSIONS, value);
                Compression { params, threshold: route.config.compression_threshold }
            },
        );
        let session = Session {
            id,
            guest,
            topics: topic_queue,
            info: connection_info(&request, subprotocol),
            idle_timeout: route.config.idle_timeout,
            ping_interval: route.config.ping_interval,
            shutdown: self.inner.shutdown.clone(),
            shutdown_grace: self.inner.shutdown_grace,
            metrics: self.inner.metrics.clone(),
            route_metrics,
            message_rate: (route.config.max_messages_per_second > 0.0)
                .then(|| TokenBucket::new(route.config.max_messages_per_second, route.config.message_burst)),
            limits: ReadLimits {
                max_message_size: route.config.max_message_size,
                max_frame_size: route.config.max_frame_size,
                strict_size: STRICT_MESSAGE_LIMIT,
                chunk_size: CHUNK_SIZE,
            },
            deflate,
        };
        // The upgrade resolves only once the response has been sent, so wait
        // for it in a task of its own.
        let upgraded = hyper::upgrade::on(&mut request);
        let app = self.clone();
        self.inner.tasks.spawn(async move {
            let _permits = (permits, client_slots);
            let _open = Open::new(&app.inner.open_websockets);
            match upgraded.await {
                Ok(upgraded) => {
                    tracing::debug!(connection = id, path = session.info.path, "WebSocket connection opened");
                    connection::serve(TokioIo::new(upgraded), session).await;
                }
                Err(err) => tracing::debug!(connection = id, "upgrade failed: {err}"),
            }
        });
        response
    }

    /// Takes an upgrade from the client's allowance and counts its
    /// connection, for the host and the route; or how long the client
    /// should wait, and why.
    fn admit_client<B>(
        &self,
        route: &Route,
        request: &Request<B>,
        peer: IpAddr,
    ) -> Result<Vec<ClientSlot>, (Duration, &'static str)> {
        let edge = &self.inner.edge;
        let client = client_address(peer, request.headers(), &edge.trusted_proxies);
        let refuse = |wait: Duration, why: &'static str| {
            tracing::info!(%client, path = route.config.path, "refused an upgrade: {why}");
            (wait, why)
        };
        let clients = &self.inner.clients;
        clients.upgrade(client).map_err(|wait| refuse(wait, "Too many upgrades from your address; slow down."))?;
        let host_limit = Some(edge.max_connections_per_ip).filter(|&max| max > 0);
        let limits = [(None, host_limit), (Some(route.config.path.as_str()), route.config.max_connections_per_ip)];
        let mut slots = Vec::new();
        for (scope, limit) in limits {
            let Some(limit) = limit else { continue };
            let slot = clients
                .open(scope, client, limit)
                .ok_or_else(|| refuse(Duration::from_secs(1), "Too many connections from your address."))?;
            slots.push(slot);
        }
        Ok(slots)
    }

    /// A host-wide permit, the TCP connection's socket permit and, if the
    /// route has a limit, a route permit.
    fn acquire_permits(&self, route: &Route, socket: &SocketShare) -> Option<Permits> {
        let acquire = |permits: &Arc<Semaphore>| permits.clone().try_acquire_owned().ok();
        let host = acquire(&self.inner.permits)?;
        let socket = socket.acquire(&self.inner.socket_permits)?;
        let route = match &route.permits {
            Some(permits) => Some(acquire(permits)?),
            None => None,
        };
        Some((host, socket, route))
    }

    /// Starts a graceful shutdown: HTTP connections finish their current
    /// request, WebSocket guests see their input end and get the grace period
    /// to finish their output, then every connection is closed with 1001.
    pub fn shutdown(&self) {
        self.inner.shutdown.cancel();
    }

    /// Waits, after [`App::shutdown`], until every connection is closed or
    /// the grace period (plus time for close handshakes) is over. Returns
    /// whether all connections closed.
    pub async fn closed(&self) -> bool {
        self.inner.tasks.close();
        let deadline = self.inner.shutdown_grace + CLOSE_HANDSHAKE_ALLOWANCE;
        tokio::time::timeout(deadline, self.inner.tasks.wait()).await.is_ok()
    }
}

/// A bound WebSocket server.
pub struct Server {
    listener: TcpListener,
    app: App,
    /// With TLS: every connection is a TLS one.
    tls: Option<TlsAcceptor>,
}

impl Server {
    /// Binds `address` (port 0 picks a free port).
    pub async fn bind(address: SocketAddr, app: App) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(address).await.with_context(|| format!("cannot listen on {address}"))?;
        Ok(Self { listener, app, tls: None })
    }

    /// Serves TLS only, with `acceptor` (see [`super::tls::acceptor`]).
    pub fn with_tls(mut self, acceptor: TlsAcceptor) -> Self {
        self.tls = Some(acceptor);
        self
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The app, for its counters or to shut it down.
    pub fn app(&self) -> &App {
        &self.app
    }

    /// Accepts connections until `stop` resolves, then shuts down gracefully
    /// (see [`App::shutdown`]). A failing connection never ends the loop.
    pub async fn run_until(self, stop: impl Future<Output = ()>) {
        let mut stop = pin!(stop);
        loop {
            let (tcp, peer) = tokio::select! {
                accepted = super::accept(&self.listener) => accepted,
                () = &mut stop => break,
            };
            // WebSocket messages are small and interactive: no Nagle delay.
            let _ = tcp.set_nodelay(true);
            let app = self.app.clone();
            let tls = self.tls.clone();
            self.app.inner.tasks.spawn(async move {
                let served = match tls {
                    // A client that connects and says nothing is dropped at
                    // the handshake timeout: hyper's own header timeout only
                    // starts once it has seen the first bytes.
                    None => match tokio::time::timeout(app.inner.handshake_timeout, tcp.peek(&mut [0; 1])).await {
                        Ok(Ok(1..)) => app.serve_peer(tcp, Some(peer)).await,
                        Ok(_) => Ok(()),
                        Err(_) => Err("no request within the handshake timeout".into()),
                    },
                    // The TLS handshake is part of the time a client has to
                    // send its request headers.
                    Some(tls) => match tokio::time::timeout(app.inner.handshake_timeout, tls.accept(tcp)).await {
                        Ok(Ok(stream)) => app.serve_peer(stream, Some(peer)).await,
                        Ok(Err(err)) => Err(err.into()),
                        Err(_) => Err("the TLS handshake took too long".into()),
                    },
                };
                if let Err(err) = served {
                    tracing::debug!(%peer, "HTTP connection failed: {err}");
                }
            });
        }
        drop(self.listener);
        self.app.shutdown();
        if !self.app.closed().await {
            tracing::warn!("some connections were still open at the end of the shutdown grace period");
        }
    }
}

/// permessage-deflate, if the client offers it in a form the host accepts:
/// its terms and the `Sec-WebSocket-Extensions` value that accepts them.
fn negotiate_deflate(headers: &header::HeaderMap) -> Option<(DeflateParams, String)> {
    let offers = headers.get_all(header::SEC_WEBSOCKET_EXTENSIONS).into_iter().filter_map(|value| value.to_str().ok());
    wsplug_wire::negotiate(offers)
}

/// What a WebSocket connection holds for as long as it is open: a host
/// permit, its TCP connection's socket permit, a route permit.
type Permits = (OwnedSemaphorePermit, Arc<OwnedSemaphorePermit>, Option<OwnedSemaphorePermit>);

/// The connections the host takes: `max-connections`, or fewer if the
/// kernel's limits allow fewer (then a warning says how to raise them).
fn host_room(config: &Config) -> crate::system::Room {
    let room = crate::system::connections_allowed(config.max_connections);
    if room.warnings.is_empty() {
        return room;
    }
    let warnings = room.warnings.join("; ");
    let lowered = if room.sockets < room.connections {
        format!(
            "the host takes {} connections, on at most {} TCP connections (more get 503)",
            room.connections, room.sockets
        )
    } else {
        format!("the host takes {} connections (more get 503)", room.connections)
    };
    // Asked for: a warning. The default: worth knowing, not alarming.
    if config.max_connections == crate::config::DEFAULT_MAX_CONNECTIONS {
        tracing::info!("{warnings}; {lowered}");
    } else {
        tracing::warn!("{warnings}; {lowered}");
    }
    room
}

/// The host-wide limits on requests and clients, from the config.
struct EdgeSettings {
    tls: bool,
    max_header_bytes: usize,
    max_headers: usize,
    max_uri_length: usize,
    http2_max_concurrent_streams: u32,
    max_connections_per_ip: usize,
    trusted_proxies: Vec<IpNet>,
}

impl From<&Config> for EdgeSettings {
    fn from(config: &Config) -> Self {
        Self {
            tls: config.tls_cert.is_some(),
            max_header_bytes: config.max_header_bytes,
            max_headers: config.max_headers,
            max_uri_length: config.max_uri_length,
            http2_max_concurrent_streams: config.http2_max_concurrent_streams,
            max_connections_per_ip: config.max_connections_per_ip,
            trusted_proxies: config.trusted_proxies.clone(),
        }
    }
}

/// HTTP/2 streams a client may reset before the server has served them
/// (rapid reset), and streams the server may end with an error, before the
/// connection is closed.
const HTTP2_MAX_PENDING_RESETS: usize = 20;
const HTTP2_MAX_ERROR_RESETS: usize = 1024;

/// How often an HTTP/2 connection is pinged, and how long an answer may
/// take.
const HTTP2_PING_INTERVAL: Duration = Duration::from_secs(30);
const HTTP2_PING_TIMEOUT: Duration = Duration::from_secs(10);

/// What every request must be, whatever its path: a target of bounded
/// length, a `Host` on HTTP/1.1. `Err` is the status and reason.
fn check_request<B>(request: &Request<B>, edge: &EdgeSettings) -> Result<(), (StatusCode, &'static str)> {
    let target = request.uri().path_and_query().map_or(0, |target| target.as_str().len());
    if target > edge.max_uri_length {
        return Err((StatusCode::URI_TOO_LONG, "The request target is too long."));
    }
    let headers = request.headers();
    if request.version() == hyper::Version::HTTP_11 && !headers.contains_key(header::HOST) {
        return Err((StatusCode::BAD_REQUEST, "An HTTP/1.1 request needs a Host header."));
    }
    // Both Content-Length and Transfer-Encoding (request smuggling) never get
    // here: hyper drops the length, reads the chunked body and closes the
    // connection after the answer.
    Ok(())
}

/// A component file's contents, hashed: the same for the same bytes in
/// every run.
fn fingerprint(bytes: &[u8]) -> u64 {
    BuildHasherDefault::<DefaultHasher>::default().hash_one(bytes)
}

/// What the handler learns about the connection from the upgrade request.
fn connection_info<B>(request: &Request<B>, subprotocol: Option<String>) -> ConnectionInfo {
    ConnectionInfo {
        path: request.uri().path().to_owned(),
        query: request.uri().query().map(str::to_owned),
        headers: upgrade::header_pairs(request.headers()),
        subprotocol,
    }
}

/// Discards the body of a request that is answered without being served, so
/// that the connection can carry the next request. A body larger than
/// [`DRAIN_LIMIT`] is not worth reading: the connection is closed instead.
async fn drained(request: Request<Incoming>, mut response: Response<Body>) -> Response<Body> {
    // HTTP/2 resets just the stream; only HTTP/1 needs the connection closed.
    let http1 = request.version() < hyper::Version::HTTP_2;
    let mut body = request.into_body();
    let drain = async {
        let mut discarded = 0;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => discarded += frame.data_ref().map_or(0, Bytes::len),
                Err(_) => return true,
            }
            if discarded > DRAIN_LIMIT {
                return false;
            }
        }
        true
    };
    // A body that trickles in is not waited for either.
    let drained = tokio::time::timeout(DRAIN_TIME, drain).await.unwrap_or(false);
    if !drained && http1 {
        response.headers_mut().insert(header::CONNECTION, header::HeaderValue::from_static("close"));
    }
    response
}
