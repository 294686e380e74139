//! `wsplug talk`: a small WebSocket client for trying handlers out. Each line
//! of standard input is sent as a text message; each message received is
//! printed as it arrives. It speaks `ws://` and `wss://` (TLS with rustls,
//! trusting the system's roots and, with `--ca`, certificates of your own).

use crate::say;
use anyhow::{Context as _, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::ServerName;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, BufReader};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error, Message};

/// After standard input ends, how long the server must stay quiet before the
/// connection is closed (replies may still be on their way).
const LINGER: Duration = Duration::from_millis(500);

/// Talks to `url` until standard input ends and the server has gone quiet, or
/// the server closes the connection. A `wss://` server's certificate must
/// chain to one of the system's roots or to a certificate in the PEM file
/// `ca`.
pub async fn talk(url: &str, ca: Option<&Path>) -> anyhow::Result<()> {
    let request = url.into_client_request().with_context(|| format!("{url} is not a WebSocket URL"))?;
    let tls = match request.uri().scheme_str() {
        Some("wss") => Some(tls_config(ca)?),
        _ if ca.is_some() => bail!("--ca is for wss:// URLs, not {url}"),
        _ => None,
    };
    let connecting = async {
        let host = request.uri().host().context("the URL has no host")?.to_owned();
        let port = request.uri().port_u16().unwrap_or(if tls.is_some() { 443 } else { 80 });
        // An IPv6 address comes in brackets, which neither connect nor TLS wants.
        let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        let tcp = TcpStream::connect((host.as_str(), port)).await?;
        tcp.set_nodelay(true)?;
        match tls {
            None => converse(handshake(request, tcp).await?).await,
            Some(config) => {
                let name = ServerName::try_from(host).context("the URL's host is not a name TLS can check")?;
                let tls = tokio_rustls::TlsConnector::from(config)
                    .connect(name, tcp)
                    .await
                    .map_err(|err| tls_failure(err, ca))?;
                converse(handshake(request, tls).await?).await
            }
        }
    };
    connecting.await.with_context(|| format!("cannot talk to {url}"))
}

/// The WebSocket handshake over `stream`.
async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    request: Request,
    stream: S,
) -> anyhow::Result<WebSocketStream<S>> {
    let (socket, _) = tokio_tungstenite::client_async(request, stream).await.map_err(refusal)?;
    Ok(socket)
}

/// The conversation: standard input out, messages in.
async fn converse<S: AsyncRead + AsyncWrite + Unpin>(socket: WebSocketStream<S>) -> anyhow::Result<()> {
    let (mut sink, mut stream) = socket.split();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut input_open = true;
    loop {
        tokio::select! {
            line = lines.next_line(), if input_open => match line? {
                Some(line) => {
                    say(format_args!("> {line}"))?;
                    sink.send(Message::text(line)).await?;
                }
                None => input_open = false,
            },
            received = next_or_quiet(&mut stream, input_open) => match received {
                Some(message) => match print_message(message?)? {
                    Received::Message => {}
                    Received::Closed(frame) => return closed_with(frame),
                },
                None => break,
            },
        }
    }
    sink.send(Message::Close(None)).await?;
    // Wait for the server's side of the close handshake.
    while let Some(Ok(_)) = stream.next().await {}
    Ok(())
}

/// What a `wss://` server's certificate is checked against: the system's
/// trusted roots, and the certificates in `ca`.
fn tls_config(ca: Option<&Path>) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    // A system without roots is no error: `--ca` may be all that is needed.
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if let Some(ca) = ca {
        for certificate in wsplug::http::tls::certificates(ca)? {
            roots
                .add(certificate)
                .with_context(|| format!("{} holds a certificate rustls cannot use", ca.display()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("the TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A failed TLS handshake, with a hint where the server's certificate is the
/// trouble (a self-signed one, typically).
fn tls_failure(err: std::io::Error, ca: Option<&Path>) -> anyhow::Error {
    let certificate = err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|err| matches!(err, rustls::Error::InvalidCertificate(_)));
    let err = anyhow::Error::new(err);
    match ca {
        _ if !certificate => err.context("the TLS handshake failed"),
        None => err.context(
            "the TLS handshake failed: the server's certificate is not signed by a root this system trusts \
             (to trust a certificate of your own, such as a self-signed one, pass it with --ca FILE)",
        ),
        Some(ca) => err.context(format!(
            "the TLS handshake failed: the server's certificate does not check out against the system's roots \
             and {} (a self-signed certificate must name the URL's host and not be a CA certificate: \
             see the README's openssl line)",
            ca.display()
        )),
    }
}

/// The next message; once input has ended, `None` when none came within
/// [`LINGER`].
async fn next_or_quiet<S>(
    stream: &mut S,
    input_open: bool,
) -> Option<Result<Message, tokio_tungstenite::tungstenite::Error>>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    if input_open {
        return stream.next().await;
    }
    tokio::time::timeout(LINGER, stream.next()).await.ok().flatten()
}

/// What a received message was.
enum Received {
    Message,
    /// The server closed the connection, with this frame if it gave one.
    Closed(Option<CloseFrame>),
}

/// Prints a received message.
fn print_message(message: Message) -> anyhow::Result<Received> {
    match message {
        Message::Text(text) => say(format_args!("< {text}"))?,
        Message::Binary(data) => say(format_args!("< [binary, {} bytes]", data.len()))?,
        Message::Close(frame) => {
            match &frame {
                Some(frame) => say(format_args!("closed by the server: {} {}", u16::from(frame.code), frame.reason))?,
                None => say(format_args!("closed by the server"))?,
            }
            return Ok(Received::Closed(frame));
        }
        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
    }
    Ok(Received::Message)
}

/// A server's close is a failure of the conversation unless it is a
/// normal end (1000), the server going away (1001) or a close without a
/// code: `talk` then exits with an error, for scripts.
fn closed_with(frame: Option<CloseFrame>) -> anyhow::Result<()> {
    match frame {
        None => Ok(()),
        Some(frame) => match frame.code {
            CloseCode::Normal | CloseCode::Away => Ok(()),
            code => bail!("the server closed the connection with {} {}", u16::from(code), frame.reason),
        },
    }
}

/// Why the server would not talk, said once: tungstenite's errors repeat
/// their cause, and its HTTP error leaves out the body that says why.
fn refusal(err: Error) -> anyhow::Error {
    match err {
        Error::Http(response) => {
            // The body as far as it came with the head (what a short answer
            // such as wsplug's own fits in).
            let body = response.body().as_deref().map(String::from_utf8_lossy).unwrap_or_default();
            match body.trim_end() {
                "" => anyhow!("the server answered {}", response.status()),
                body => anyhow!("the server answered {}: {body}", response.status()),
            }
        }
        Error::Io(err) => err.into(),
        err => anyhow!("{err}"),
    }
}
