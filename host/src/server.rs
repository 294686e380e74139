//! The HTTP side: the accept loop ([`Server`]), routing by path and the
//! hand-over of an upgraded connection to [`connection::serve`] ([`App`]).

use crate::bindings::ConnectionInfo;
use crate::connection;
use crate::runtime::{Handler, Runtime};
use crate::upgrade::{self, text_response};
use anyhow::{Context as _, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

/// How much of a rejected request's body is read and discarded so that the
/// connection can serve the next request; past this the connection is closed.
const DRAIN_LIMIT: usize = 64 * 1024;

/// Which handler serves which path.
#[derive(Clone, Default)]
pub struct Routes {
    handlers: HashMap<String, Handler>,
}

impl Routes {
    /// Compiles each `(path, component file)` pair with `runtime`. Fails on
    /// the first bad component or bad path, naming it.
    pub fn load(runtime: &Runtime, routes: impl IntoIterator<Item = (String, PathBuf)>) -> anyhow::Result<Self> {
        let mut handlers = HashMap::new();
        for (path, component) in routes {
            if !path.starts_with('/') {
                bail!("route path `{path}` must start with `/`");
            }
            if handlers.contains_key(&path) {
                bail!("route path `{path}` is given twice");
            }
            let handler = runtime.load(&component).with_context(|| format!("route {path}"))?;
            handlers.insert(path, handler);
        }
        Ok(Self { handlers })
    }

    /// The routed paths, sorted.
    pub fn paths(&self) -> Vec<&str> {
        let mut paths: Vec<_> = self.handlers.keys().map(String::as_str).collect();
        paths.sort_unstable();
        paths
    }
}

/// Everything needed to serve a connection, whatever carries its bytes: the
/// routes and the counter that numbers connections in the logs.
#[derive(Clone)]
pub struct App {
    routes: Arc<Routes>,
    connection_ids: Arc<AtomicU64>,
}

impl App {
    /// An app serving `routes`.
    pub fn new(routes: Routes) -> Self {
        Self { routes: Arc::new(routes), connection_ids: Arc::new(AtomicU64::new(0)) }
    }

    /// Serves HTTP/1.1, with WebSocket upgrades, on one connection until it
    /// closes. The server calls this for each TCP connection; the testkit for
    /// an in-memory one.
    pub async fn serve_io<I>(&self, io: I) -> Result<(), hyper::Error>
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let app = self.clone();
        let service = service_fn(move |request| {
            let app = app.clone();
            async move { Ok::<_, Infallible>(app.route(request).await) }
        });
        http1::Builder::new().serve_connection(TokioIo::new(io), service).with_upgrades().await
    }

    /// Answers one request: 404 for an unknown path, the handshake's verdict
    /// for a WebSocket route.
    async fn route(&self, mut request: Request<Incoming>) -> Response<Full<Bytes>> {
        let Some(handler) = self.routes.handlers.get(request.uri().path()) else {
            return drained(request, text_response(StatusCode::NOT_FOUND, "Unknown resource!")).await;
        };
        let response = match upgrade::accept(&request) {
            Ok(response) => response,
            Err(rejection) => return drained(request, rejection.into_response()).await,
        };
        let id = self.connection_ids.fetch_add(1, Ordering::Relaxed);
        let info = connection_info(&request);
        let handler = handler.clone();
        // The upgrade resolves only once the 101 has been sent, so wait for it
        // in a task of its own.
        let upgraded = hyper::upgrade::on(&mut request);
        tokio::spawn(async move {
            match upgraded.await {
                Ok(upgraded) => {
                    tracing::debug!(connection = id, path = info.path, "WebSocket connection opened");
                    let socket = WebSocketStream::from_raw_socket(
                        TokioIo::new(upgraded),
                        Role::Server,
                        Some(WebSocketConfig::default()),
                    )
                    .await;
                    connection::serve(socket, &handler, info, id).await;
                }
                Err(err) => tracing::debug!(connection = id, "upgrade failed: {err}"),
            }
        });
        response
    }
}

/// A bound WebSocket server.
pub struct Server {
    listener: TcpListener,
    app: App,
}

impl Server {
    /// Binds `address` (port 0 picks a free port).
    pub async fn bind(address: SocketAddr, routes: Routes) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(address).await.with_context(|| format!("cannot listen on {address}"))?;
        Ok(Self { listener, app: App::new(routes) })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts connections until the future is dropped. A failing connection
    /// never ends the loop.
    pub async fn run(self) {
        loop {
            let (tcp, peer) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Typically out of file descriptors: wait for some to be
                    // released instead of spinning.
                    tracing::warn!("accept failed: {err}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            // WebSocket messages are small and interactive: no Nagle delay.
            let _ = tcp.set_nodelay(true);
            let app = self.app.clone();
            tokio::spawn(async move {
                if let Err(err) = app.serve_io(tcp).await {
                    tracing::debug!(%peer, "HTTP connection failed: {err}");
                }
            });
        }
    }
}

/// What the handler learns about the connection from the upgrade request.
fn connection_info<B>(request: &Request<B>) -> ConnectionInfo {
    ConnectionInfo {
        path: request.uri().path().to_owned(),
        query: request.uri().query().map(str::to_owned),
        headers: request
            .headers()
            .iter()
            .filter_map(|(name, value)| Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned())))
            .collect(),
        subprotocol: None,
    }
}

/// Discards the body of a request that is answered without being served, so
/// that the connection can carry the next request. A body larger than
/// [`DRAIN_LIMIT`] is not worth reading: the connection is closed instead.
async fn drained(request: Request<Incoming>, mut response: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
    let mut body = request.into_body();
    let mut discarded = 0;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => discarded += frame.data_ref().map_or(0, Bytes::len),
            Err(_) => break,
        }
        if discarded > DRAIN_LIMIT {
            response.headers_mut().insert(header::CONNECTION, header::HeaderValue::from_static("close"));
            break;
        }
    }
    response
}
