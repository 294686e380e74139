//! `wsplug talk`: a small WebSocket client for trying handlers out. Each line
//! of standard input is sent as a text message; each message received is
//! printed as it arrives.

use crate::say;
use anyhow::{Context as _, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error, Message};

/// After standard input ends, how long the server must stay quiet before the
/// connection is closed (replies may still be on their way).
const LINGER: Duration = Duration::from_millis(500);

/// Talks to `url` until standard input ends and the server has gone quiet, or
/// the server closes the connection.
pub async fn talk(url: &str) -> anyhow::Result<()> {
    if url.get(..6).is_some_and(|scheme| scheme.eq_ignore_ascii_case("wss://")) {
        bail!("wsplug talk speaks ws:// only, not {url}: try a client with TLS, such as websocat, for wss://");
    }
    let (socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .map_err(refusal)
        .with_context(|| format!("cannot connect to {url}"))?;
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
