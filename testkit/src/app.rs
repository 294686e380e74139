//! The app under test and the HTTP exchanges with it: plain requests and
//! WebSocket upgrade requests, each over its own in-memory connection.

use crate::probe::WsProbe;
use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::path::Path;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use wsplug::{App, Config, RouteConfig, Routes, Runtime};

/// Size of each direction's in-memory buffer: small, so that backpressure
/// behaves as it would on a socket.
const PIPE_CAPACITY: usize = 64 * 1024;

/// The key every probe sends; the server's accept value is checked against it.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// Routes to components, served through the host's real code path.
pub struct TestApp {
    app: App,
}

impl TestApp {
    /// Compiles each `(path, component file)` route, as `wsplug serve --route`
    /// does.
    pub fn new<P: AsRef<Path>>(routes: impl IntoIterator<Item = (&'static str, P)>) -> anyhow::Result<Self> {
        let mut config = Config::default();
        for (path, file) in routes {
            config.set_route(RouteConfig::new(path, file.as_ref()));
        }
        Self::with_config(config)
    }

    /// An app with the routes and settings of `config`, as `wsplug serve
    /// --config` builds it (`listen` is not used).
    pub fn with_config(config: Config) -> anyhow::Result<Self> {
        config.validate()?;
        let routes = Routes::load(&Runtime::for_config(&config)?, &config.routes)?;
        Ok(Self { app: App::new(routes, &config) })
    }

    /// Sends a plain `GET` (not an upgrade) and returns the answer.
    pub async fn get(&self, path: &str) -> anyhow::Result<HttpResponse> {
        let request = Request::get(path).header(header::HOST, "wsplug.test").body(Empty::<Bytes>::new())?;
        let (response, _) = self.exchange(request).await?;
        Ok(response)
    }

    /// Starts a WebSocket upgrade request to `path` (which may carry a query).
    pub fn websocket(&self, path: &str) -> WsRequest<'_> {
        WsRequest { app: self, path: path.to_owned(), protocols: Vec::new(), headers: Vec::new(), compression: false }
    }

    /// Connects to `path` and returns the probe; panics if the upgrade is
    /// refused.
    pub async fn connect(&self, path: &str) -> WsProbe {
        self.websocket(path).send().await.into_probe()
    }

    /// Opens an in-memory connection served by the app and sends `request`
    /// on it; on `101` also returns the upgraded connection.
    async fn exchange(
        &self,
        request: Request<Empty<Bytes>>,
    ) -> anyhow::Result<(HttpResponse, Option<hyper::upgrade::Upgraded>)> {
        let (client, server) = tokio::io::duplex(PIPE_CAPACITY);
        let app = self.app.clone();
        tokio::spawn(async move { app.serve_io(server).await });
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(client)).await?;
        tokio::spawn(connection.with_upgrades());
        let mut response = sender.send_request(request).await.context("the app did not answer")?;
        let status = response.status();
        let headers = response.headers().clone();
        if status == StatusCode::SWITCHING_PROTOCOLS {
            let upgraded = hyper::upgrade::on(&mut response).await?;
            return Ok((HttpResponse { status, headers, body: String::new() }, Some(upgraded)));
        }
        let body = response.into_body().collect().await?.to_bytes();
        Ok((HttpResponse { status, headers, body: String::from_utf8_lossy(&body).into_owned() }, None))
    }
}

/// What the probe's WebSocket runs on: the upgraded connection, or the
/// compression pumps in front of it.
pub(crate) trait Transport: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Transport for T {}

/// An answer to a plain HTTP request.
#[derive(Debug)]
pub struct HttpResponse {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body, as text.
    pub body: String,
}

/// A WebSocket upgrade request being built.
pub struct WsRequest<'a> {
    app: &'a TestApp,
    path: String,
    protocols: Vec<String>,
    headers: Vec<(String, String)>,
    compression: bool,
}

impl WsRequest<'_> {
    /// Offers a subprotocol (`Sec-WebSocket-Protocol`); call once per
    /// protocol, in order of preference.
    pub fn protocol(mut self, protocol: &str) -> Self {
        self.protocols.push(protocol.to_owned());
        self
    }

    /// Offers permessage-deflate, as browsers do. If the app accepts it, every
    /// message the probe sends goes out compressed, and the app's compressed
    /// messages are inflated before the probe sees them.
    pub fn compression(mut self) -> Self {
        self.compression = true;
        self
    }

    /// Adds a request header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sends the request. A refused upgrade is a [`WsResponse`] too, so that
    /// tests can check it.
    pub async fn send(self) -> WsResponse {
        match self.try_send().await {
            Ok(response) => response,
            Err(err) => panic!("the upgrade request to {} failed: {err:#}", self.path),
        }
    }

    async fn try_send(&self) -> anyhow::Result<WsResponse> {
        let mut request = Request::get(self.path.as_str())
            .header(header::HOST, "wsplug.test")
            .header(header::CONNECTION, "upgrade")
            .header(header::UPGRADE, "websocket")
            .header(header::SEC_WEBSOCKET_VERSION, "13")
            .header(header::SEC_WEBSOCKET_KEY, KEY);
        if !self.protocols.is_empty() {
            request = request.header(header::SEC_WEBSOCKET_PROTOCOL, self.protocols.join(", "));
        }
        for (name, value) in &self.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        if self.compression {
            request = request.header(header::SEC_WEBSOCKET_EXTENSIONS, "permessage-deflate; client_max_window_bits");
        }
        let (response, upgraded) = self.app.exchange(request.body(Empty::new())?).await?;
        let probe = match upgraded {
            Some(upgraded) => {
                let accept = response.headers.get(header::SEC_WEBSOCKET_ACCEPT);
                anyhow::ensure!(
                    accept.map(HeaderValue::as_bytes) == Some(derive_accept_key(KEY.as_bytes()).as_bytes()),
                    "101 with a wrong Sec-WebSocket-Accept: {accept:?}"
                );
                let accepted = response.headers.get(header::SEC_WEBSOCKET_EXTENSIONS);
                let compressed = accepted.is_some_and(|value| value.as_bytes().starts_with(b"permessage-deflate"));
                let io: Box<dyn Transport> = if compressed {
                    Box::new(crate::compression::compressing(TokioIo::new(upgraded)))
                } else {
                    Box::new(TokioIo::new(upgraded))
                };
                Some(WsProbe::new(WebSocketStream::from_raw_socket(io, Role::Client, None).await))
            }
            None => None,
        };
        Ok(WsResponse { response, probe })
    }
}

/// The answer to a WebSocket upgrade request.
pub struct WsResponse {
    response: HttpResponse,
    probe: Option<WsProbe>,
}

impl WsResponse {
    /// Whether the server switched to WebSocket (`101`, accept key checked).
    pub fn is_websocket_upgrade(&self) -> bool {
        self.probe.is_some()
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.response.status
    }

    /// The subprotocol the server chose, if any.
    pub fn subprotocol(&self) -> Option<&str> {
        self.header(header::SEC_WEBSOCKET_PROTOCOL.as_str())
    }

    /// A response header, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.response.headers.get(name)?.to_str().ok()
    }

    /// The body of a refused upgrade (empty after a `101`).
    pub fn body(&self) -> &str {
        &self.response.body
    }

    /// The probe for the accepted connection; panics, showing the answer, if
    /// the upgrade was refused.
    pub fn into_probe(self) -> WsProbe {
        match self.probe {
            Some(probe) => probe,
            None => panic!("expected a WebSocket upgrade, got {} {:?}", self.response.status, self.response.body),
        }
    }
}
