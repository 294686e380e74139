//! Helpers for the end-to-end tests: the compiled components, a real server
//! on `127.0.0.1:0`, a tokio-tungstenite client, and two raw clients (HTTP
//! and WebSocket frames) for what a high-level client hides.

use futures_util::StreamExt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use wsplug::{Admin, App, Config, RouteConfig, Routes, Runtime, Server};

pub mod browser;
pub mod cli;
pub mod redis;

/// Guards every wait in the tests so that a bug fails a test instead of
/// hanging it. Not a performance threshold: nothing here should take more
/// than a fraction of it.
pub const HANG_GUARD: Duration = Duration::from_secs(20);

/// A component from `guest-examples/`, e.g. `example("greeter")`.
pub fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("WSPLUG_EXAMPLE_COMPONENTS")).join(format!("{name}.wasm"))
}

/// A component from `tests/guests/`, e.g. `test_guest("trap")`.
pub fn test_guest(name: &str) -> PathBuf {
    PathBuf::from(env!("WSPLUG_TEST_COMPONENTS")).join(format!("{}.wasm", name.replace('-', "_")))
}

/// A component `make` built into the repository's `target/`.
fn built(relative: &str) -> PathBuf {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(relative);
    assert!(
        file.exists(),
        "{} is missing: `make greeter-python greeter-js` builds it (`make test` does)",
        file.display()
    );
    file
}

/// The Python greeter (componentize-py), built by `make greeter-python`.
pub fn python_greeter() -> PathBuf {
    built("target/python/greeter.wasm")
}

/// The JavaScript greeter (componentize-qjs), built by `make greeter-js`.
pub fn js_greeter() -> PathBuf {
    built("target/js/greeter.wasm")
}

/// The `wsplug` binary of this build (`cargo test --workspace` builds it
/// before running any test).
pub fn wsplug_binary() -> PathBuf {
    // Tests run from target/<profile>/deps/; the binary is in target/<profile>/.
    let exe = std::env::current_exe().expect("the test's own path");
    let binary = exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>/deps").join("wsplug");
    assert!(binary.exists(), "{} is missing: build it with `cargo build -p wsplug`", binary.display());
    binary
}

/// A config with default host settings and the given routes.
pub fn config_with(routes: impl IntoIterator<Item = RouteConfig>) -> Config {
    let mut config = Config::default();
    for route in routes {
        config.set_route(route);
    }
    config
}

/// A wsplug server running in this process; stopped when dropped.
pub struct TestServer {
    /// Where it listens.
    pub address: SocketAddr,
    /// Its app: counters, shutdown.
    pub app: App,
    task: JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A tokio-tungstenite client connection.
pub type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

impl TestServer {
    /// Starts a server with the given `(path, component)` routes, all
    /// settings at their defaults.
    pub async fn start(routes: &[(&str, PathBuf)]) -> anyhow::Result<Self> {
        Self::start_with(config_with(routes.iter().map(|(path, component)| RouteConfig::new(*path, component.clone()))))
            .await
    }

    /// Starts a server with `config` (TLS too, if it says so), listening on
    /// `127.0.0.1:0` whatever `config.listen` says.
    pub async fn start_with(config: Config) -> anyhow::Result<Self> {
        config.validate()?;
        let routes = Routes::load(&Runtime::for_config(&config)?, &config.routes)?;
        let app = App::new(routes, &config);
        let mut server = Server::bind("127.0.0.1:0".parse()?, app.clone()).await?;
        if let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) {
            server = server.with_tls(wsplug::http::tls::acceptor(cert, key)?);
        }
        let address = server.local_addr()?;
        Ok(Self { address, app, task: tokio::spawn(server.run_until(std::future::pending())) })
    }

    /// Waits until the server has no connection open (its own counters),
    /// failing after [`HANG_GUARD`].
    pub async fn all_closed(&self) -> anyhow::Result<()> {
        self.until(|app| app.open_connections() == 0).await
    }

    /// Waits until the server has no WebSocket connection open.
    pub async fn websockets_closed(&self) -> anyhow::Result<()> {
        self.until(|app| app.open_websockets() == 0).await
    }

    async fn until(&self, done: impl Fn(&App) -> bool) -> anyhow::Result<()> {
        guard(async {
            while !done(&self.app) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
    }

    /// Starts the admin API for this server's app on `127.0.0.1:0`, with
    /// `token` if given; returns its address.
    pub async fn admin(&self, token: Option<&str>) -> anyhow::Result<SocketAddr> {
        let admin = Admin::bind("127.0.0.1:0".parse()?, self.app.clone(), token.map(str::to_owned)).await?;
        let address = admin.local_addr()?;
        tokio::spawn(admin.run_until(std::future::pending()));
        Ok(address)
    }

    /// Waits until `topic` has `count` subscriptions on this server.
    pub async fn subscribers(&self, topic: &str, count: usize) -> anyhow::Result<()> {
        self.until(|app| app.broker().subscribers(topic) == count).await
    }

    /// Opens a WebSocket connection to `path` (which may carry a query).
    pub async fn connect(&self, path: &str) -> anyhow::Result<Client> {
        self.connect_with(path, &[]).await
    }

    /// Opens a WebSocket connection to `path` with extra request headers.
    pub async fn connect_with(&self, path: &str, headers: &[(&'static str, &str)]) -> anyhow::Result<Client> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = format!("ws://{}{path}", self.address).into_client_request()?;
        for (name, value) in headers {
            request.headers_mut().insert(*name, value.parse()?);
        }
        let (client, _) = guard(tokio_tungstenite::connect_async(request)).await??;
        Ok(client)
    }
}

/// A WebSocket over HTTP/2 (RFC 8441): an extended CONNECT to `url` with
/// `:protocol websocket` on the HTTP/2 connection of `sender`, which must
/// be answered `200`.
pub async fn websocket_over_http2(
    sender: &mut hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    url: &str,
) -> anyhow::Result<WebSocketStream<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>>> {
    Ok(websocket_over_http2_with(sender, url, &[]).await?.0)
}

/// Like [`websocket_over_http2`], with extra request headers; returns the
/// response's headers too.
pub async fn websocket_over_http2_with(
    sender: &mut hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    url: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<(WebSocketStream<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>>, hyper::HeaderMap)> {
    let mut request = hyper::Request::connect(url).header("sec-websocket-version", "13");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut request = request.body(http_body_util::Empty::new())?;
    request.extensions_mut().insert(hyper::ext::Protocol::from_static("websocket"));
    let mut response = guard(sender.send_request(request)).await??;
    anyhow::ensure!(response.status() == 200, "the extended CONNECT got {}", response.status());
    let response_headers = response.headers().clone();
    let upgraded = guard(hyper::upgrade::on(&mut response)).await??;
    let io = hyper_util::rt::TokioIo::new(upgraded);
    let socket =
        WebSocketStream::from_raw_socket(io, tokio_tungstenite::tungstenite::protocol::Role::Client, None).await;
    Ok((socket, response_headers))
}

/// Awaits `future`, failing if it takes longer than [`HANG_GUARD`].
pub async fn guard<F: Future>(future: F) -> anyhow::Result<F::Output> {
    tokio::time::timeout(HANG_GUARD, future).await.map_err(|_| anyhow::anyhow!("no progress within {HANG_GUARD:?}"))
}

/// The next data or close message from the server (pings and pongs skipped);
/// `None` once the connection has ended.
pub async fn receive(client: &mut Client) -> anyhow::Result<Option<Message>> {
    loop {
        match guard(client.next()).await? {
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(message) => return Ok(Some(message?)),
            None => return Ok(None),
        }
    }
}

/// The next message, which must be text.
pub async fn receive_text(client: &mut Client) -> anyhow::Result<String> {
    match receive(client).await? {
        Some(Message::Text(text)) => Ok(text.to_string()),
        other => anyhow::bail!("expected a text message, got {other:?}"),
    }
}

/// A raw HTTP/1.1 response: status code and body.
#[derive(Debug)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The header block, as sent.
    pub head: String,
    /// The body.
    pub body: String,
}

/// Sends `request` (a complete HTTP/1.1 request, which should ask for
/// `Connection: close`) and reads the whole answer.
pub async fn http_exchange(address: SocketAddr, request: &str) -> anyhow::Result<HttpResponse> {
    let mut tcp = TcpStream::connect(address).await?;
    tcp.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    guard(tcp.read_to_end(&mut raw)).await??;
    parse_response(&String::from_utf8(raw)?)
}

/// Publishes `body` to `topic` through the admin API at `admin` with a
/// `POST /topics/{topic}` of `content_type`, with `token` if given.
pub async fn admin_publish(
    admin: SocketAddr,
    topic: &str,
    content_type: &str,
    body: &str,
    token: Option<&str>,
) -> anyhow::Result<HttpResponse> {
    let authorization = token.map(|token| format!("Authorization: Bearer {token}\r\n")).unwrap_or_default();
    let request = format!(
        "POST /topics/{topic} HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n{authorization}\
         Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    http_exchange(admin, &request).await
}

fn parse_response(raw: &str) -> anyhow::Result<HttpResponse> {
    let (head, body) = raw.split_once("\r\n\r\n").ok_or_else(|| anyhow::anyhow!("no end of headers in {raw:?}"))?;
    let status = head.split(' ').nth(1).ok_or_else(|| anyhow::anyhow!("no status in {head:?}"))?.parse()?;
    Ok(HttpResponse { status, head: head.to_owned(), body: body.to_owned() })
}

/// The resident memory of a process (`"self"` or a pid), from /proc.
pub fn resident_bytes(process: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{process}/status")).expect("/proc/<pid>/status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status");
    kib * 1024
}

/// A frame as it came off the wire.
#[derive(Debug, PartialEq, Eq)]
pub struct RawFrame {
    /// The FIN bit.
    pub fin: bool,
    /// The RSV1 bit: the first frame of a compressed message.
    pub rsv1: bool,
    /// The opcode: 0 continuation, 1 text, 2 binary, 8 close, 9 ping, 10 pong.
    pub opcode: u8,
    /// The payload.
    pub payload: Vec<u8>,
}

impl RawFrame {
    /// The code of a close frame; `None` for any other frame.
    pub fn close_code(&self) -> Option<u16> {
        match (self.opcode, self.payload.as_slice()) {
            (8, [high, low, ..]) => Some(u16::from_be_bytes([*high, *low])),
            _ => None,
        }
    }
}

/// A minimal WebSocket client that shows frames exactly as the server sent
/// them (tungstenite's client reassembles fragmented messages).
pub struct RawClient {
    tcp: TcpStream,
}

impl RawClient {
    /// Connects and performs the opening handshake.
    pub async fn connect(address: SocketAddr, path: &str) -> anyhow::Result<Self> {
        Ok(Self::connect_with(address, path, "").await?.0)
    }

    /// Connects and performs the opening handshake with `headers` (lines
    /// ending in CRLF) added to the request; returns the response's head too.
    pub async fn connect_with(address: SocketAddr, path: &str, headers: &str) -> anyhow::Result<(Self, String)> {
        let mut tcp = TcpStream::connect(address).await?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{headers}\r\n"
        );
        tcp.write_all(request.as_bytes()).await?;
        // Read the response head byte by byte so as not to swallow frames.
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            head.push(guard(tcp.read_u8()).await??);
        }
        let head = String::from_utf8(head)?;
        anyhow::ensure!(head.starts_with("HTTP/1.1 101"), "handshake refused: {head}");
        Ok((Self { tcp }, head))
    }

    /// Sends one masked frame. `opcode` may carry RSV1 (`0x40`): a
    /// compressed message's first frame.
    pub async fn send_frame(&mut self, fin: bool, opcode: u8, payload: &[u8]) -> anyhow::Result<()> {
        let mask = [0x5a, 0x17, 0xc3, 0x8e];
        let mut frame = vec![u8::from(fin) << 7 | opcode];
        match payload.len() {
            len @ 0..=125 => frame.push(0x80 | len as u8),
            len @ 126..=0xffff => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(len as u16).to_be_bytes());
            }
            len => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, byte)| byte ^ mask[i % 4]));
        self.tcp.write_all(&frame).await?;
        Ok(())
    }

    /// Sends the start of a frame: its header, declaring `length` bytes of
    /// payload, and no payload. Its mask key is zero, so that
    /// [`RawClient::send_payload`] can send the payload as it is.
    pub async fn send_frame_header(&mut self, fin: bool, opcode: u8, length: u64) -> anyhow::Result<()> {
        let mut header = vec![u8::from(fin) << 7 | opcode, 0x80 | 127];
        header.extend_from_slice(&length.to_be_bytes());
        header.extend_from_slice(&[0; 4]);
        self.tcp.write_all(&header).await?;
        Ok(())
    }

    /// Sends part of the payload of the frame [`RawClient::send_frame_header`]
    /// started.
    pub async fn send_payload(&mut self, payload: &[u8]) -> anyhow::Result<()> {
        self.tcp.write_all(payload).await?;
        Ok(())
    }

    /// Drops the connection with a TCP reset instead of a close.
    pub fn reset(self) -> anyhow::Result<()> {
        self.tcp.set_zero_linger()?;
        Ok(())
    }

    /// Reads the next frame the server sent.
    pub async fn read_frame(&mut self) -> anyhow::Result<RawFrame> {
        guard(self.read_frame_unguarded()).await?
    }

    async fn read_frame_unguarded(&mut self) -> anyhow::Result<RawFrame> {
        let [first, second] = {
            let mut header = [0; 2];
            self.tcp.read_exact(&mut header).await?;
            header
        };
        anyhow::ensure!(second & 0x80 == 0, "server frames must not be masked");
        let len = match second & 0x7f {
            126 => u64::from(self.tcp.read_u16().await?),
            127 => self.tcp.read_u64().await?,
            len => u64::from(len),
        };
        let mut payload = vec![0; usize::try_from(len)?];
        self.tcp.read_exact(&mut payload).await?;
        Ok(RawFrame { fin: first & 0x80 != 0, rsv1: first & 0x40 != 0, opcode: first & 0x0f, payload })
    }
}
