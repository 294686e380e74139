//! The client end of one accepted WebSocket connection, with expectations.

use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use std::collections::VecDeque;
use std::fmt;
use std::pin::pin;
use std::time::Duration;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{CloseFrame, Frame};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// How long an expectation waits unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);

/// A data message as received: fragmented messages arrive collected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
}

/// What came off the connection, for expectations and their failure messages.
enum Event {
    Message(Received),
    Close(Option<CloseFrame>),
    Ended,
    Failed(String),
    Nothing(Duration),
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Message(Received::Text(text)) => write!(f, "text {text:?}"),
            Event::Message(Received::Binary(data)) => {
                write!(f, "binary message of {} bytes {:02x?}", data.len(), &data[..data.len().min(16)])
            }
            Event::Close(Some(frame)) => write!(f, "close {} {:?}", u16::from(frame.code), frame.reason.as_str()),
            Event::Close(None) => write!(f, "close without a code"),
            Event::Ended => write!(f, "the end of the connection"),
            Event::Failed(err) => write!(f, "a connection error: {err}"),
            Event::Nothing(within) => write!(f, "nothing within {within:?}"),
        }
    }
}

type Socket = WebSocketStream<Box<dyn crate::app::Transport>>;

/// The client side of an accepted connection.
pub struct WsProbe {
    sink: SplitSink<Socket, Message>,
    stream: SplitStream<Socket>,
    /// What arrived while the probe was sending, not yet expected.
    received: VecDeque<Event>,
    /// Whether the connection has ended (nothing more to read).
    ended: bool,
    timeout: Duration,
}

impl WsProbe {
    pub(crate) fn new(socket: Socket) -> Self {
        let (sink, stream) = socket.split();
        Self { sink, stream, received: VecDeque::new(), ended: false, timeout: DEFAULT_TIMEOUT }
    }

    /// Uses `timeout` for every later expectation.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sends a text message.
    pub async fn send_text(&mut self, text: &str) {
        self.send(Message::text(text)).await;
    }

    /// Sends a binary message.
    pub async fn send_binary(&mut self, data: &[u8]) {
        self.send(Message::binary(data.to_vec())).await;
    }

    /// Sends one text message as fragments, in order, waiting `pause` before
    /// each fragment after the first.
    pub async fn send_text_stream(&mut self, fragments: &[&str], pause: Duration) {
        assert!(!fragments.is_empty(), "a message needs at least one fragment");
        for (index, fragment) in fragments.iter().enumerate() {
            if index > 0 {
                tokio::time::sleep(pause).await;
            }
            let opcode = OpCode::Data(if index == 0 { Data::Text } else { Data::Continue });
            let last = index + 1 == fragments.len();
            self.send(Message::Frame(Frame::message(Bytes::copy_from_slice(fragment.as_bytes()), opcode, last))).await;
        }
    }

    /// Starts the close handshake with `code` and `reason`.
    pub async fn send_close(&mut self, code: u16, reason: &str) {
        self.send(Message::Close(Some(CloseFrame { code: CloseCode::from(code), reason: Utf8Bytes::from(reason) })))
            .await;
    }

    /// Sends `message`, reading meanwhile as a client with a reader of its
    /// own would: a handler may answer a large message while it arrives, and
    /// would otherwise wait for room that never comes.
    async fn send(&mut self, message: Message) {
        let mut sending = pin!(self.sink.send(message));
        loop {
            tokio::select! {
                sent = &mut sending => match sent {
                    Ok(()) => return,
                    Err(err) => panic!("sending to the handler failed: {err}"),
                },
                event = read_event(&mut self.stream), if !self.ended => {
                    self.ended = matches!(event, Event::Ended | Event::Failed(_));
                    self.received.push_back(event);
                }
            }
        }
    }

    /// Expects the next message to be the text `expected`.
    pub async fn expect_text(&mut self, expected: &str) {
        match self.next_event(self.timeout).await {
            Event::Message(Received::Text(text)) if text == expected => {}
            other => panic!("expected text {expected:?}, got {other}"),
        }
    }

    /// Expects the next message to be binary with the bytes `expected`.
    pub async fn expect_binary(&mut self, expected: &[u8]) {
        match self.next_event(self.timeout).await {
            Event::Message(Received::Binary(data)) if data == expected => {}
            other => panic!(
                "expected binary message of {} bytes {:02x?}, got {other}",
                expected.len(),
                &expected[..expected.len().min(16)]
            ),
        }
    }

    /// Expects a data message, whatever it is, and returns it.
    pub async fn expect_message(&mut self) -> Received {
        match self.next_event(self.timeout).await {
            Event::Message(message) => message,
            other => panic!("expected a message, got {other}"),
        }
    }

    /// Expects no data or close message within `within`.
    pub async fn expect_no_message(&mut self, within: Duration) {
        match self.next_event(within).await {
            Event::Nothing(_) => {}
            other => panic!("expected no message within {within:?}, got {other}"),
        }
    }

    /// Expects a close frame with `code` (the probe answers it, as a client
    /// does).
    pub async fn expect_close(&mut self, code: u16) {
        match self.next_event(self.timeout).await {
            Event::Close(Some(frame)) if u16::from(frame.code) == code => {}
            other => panic!("expected close {code}, got {other}"),
        }
    }

    /// Expects the connection to end: the close handshake done and nothing
    /// more coming.
    pub async fn expect_completion(&mut self) {
        loop {
            match self.next_event(self.timeout).await {
                Event::Ended => return,
                // The server's answer to our close.
                Event::Close(_) => continue,
                other => panic!("expected the connection to end, got {other}"),
            }
        }
    }

    /// The next message, close or end: first what arrived while sending.
    async fn next_event(&mut self, within: Duration) -> Event {
        if let Some(event) = self.received.pop_front() {
            return event;
        }
        tokio::time::timeout(within, read_event(&mut self.stream)).await.unwrap_or(Event::Nothing(within))
    }
}

/// The next message, close or end off the connection, skipping pings and
/// pongs.
async fn read_event(stream: &mut SplitStream<Socket>) -> Event {
    loop {
        match stream.next().await {
            Some(Ok(Message::Text(text))) => return Event::Message(Received::Text(text.to_string())),
            Some(Ok(Message::Binary(data))) => return Event::Message(Received::Binary(data.to_vec())),
            Some(Ok(Message::Close(frame))) => return Event::Close(frame),
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            Some(Err(err)) => return Event::Failed(err.to_string()),
            None => return Event::Ended,
        }
    }
}
