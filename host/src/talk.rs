//! `wsplug talk`: a small WebSocket client for trying handlers out. Each line
//! of standard input is sent as a text message; each message received is
//! printed as it arrives.

use anyhow::Context as _;
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite::Message;

/// After standard input ends, how long the server must stay quiet before the
/// connection is closed (replies may still be on their way).
const LINGER: Duration = Duration::from_millis(500);

/// Talks to `url` until standard input ends and the server has gone quiet, or
/// the server closes the connection.
pub async fn talk(url: &str) -> anyhow::Result<()> {
    let (socket, _) =
        tokio_tungstenite::connect_async(url).await.with_context(|| format!("cannot connect to {url}"))?;
    let (mut sink, mut stream) = socket.split();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut input_open = true;
    loop {
        tokio::select! {
            line = lines.next_line(), if input_open => match line? {
                Some(line) => {
                    println!("> {line}");
                    sink.send(Message::text(line)).await?;
                }
                None => input_open = false,
            },
            received = next_or_quiet(&mut stream, input_open) => match received {
                Some(message) => {
                    if !print_message(message?) {
                        return Ok(());
                    }
                }
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

/// Prints a received message; `false` when it ends the conversation.
fn print_message(message: Message) -> bool {
    match message {
        Message::Text(text) => println!("< {text}"),
        Message::Binary(data) => println!("< [binary, {} bytes]", data.len()),
        Message::Close(frame) => {
            match frame {
                Some(frame) => println!("closed by the server: {} {}", u16::from(frame.code), frame.reason),
                None => println!("closed by the server"),
            }
            return false;
        }
        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
    }
    true
}
