//! Reading: the stream of incoming messages, and one message's payload
//! whatever its form (strict or streamed).

use crate::bindings::{CloseFrame, Message};
use crate::read_ahead::ReadAhead;
use wit_bindgen::{FutureReader, StreamReader, StreamResult};

/// How many bytes a [`BinaryChunks::next`] asks the host for at most.
const BINARY_CHUNK_CAPACITY: usize = 64 * 1024;

/// The messages a client sends on one connection, in order.
pub struct Incoming {
    messages: ReadAhead<Message>,
    closed: Option<FutureReader<Option<CloseFrame>>>,
}

impl Incoming {
    pub(crate) fn new(messages: StreamReader<Message>, closed: FutureReader<Option<CloseFrame>>) -> Self {
        Self { messages: ReadAhead::new(messages), closed: Some(closed) }
    }

    /// The client's close frame, once the input has ended; `None` if the
    /// connection ended without one (dropped, or closed by the server), or if
    /// asked before. Code 1006 means the connection dropped in the middle of
    /// a streamed message, whose body is therefore incomplete.
    pub async fn close_frame(&mut self) -> Option<CloseFrame> {
        self.closed.take()?.await
    }

    /// The next message, or `None` once the client has closed the connection.
    ///
    /// A streamed message may be dropped before its body is read to the end:
    /// the host discards the rest and the next message arrives as usual. But
    /// the next message comes only after the body of a streamed one has been
    /// read to its end or dropped (messages arrive in order, and the host
    /// holds only a few chunks of a body): a handler that keeps a streamed
    /// message unread while it waits for the next one waits forever.
    ///
    /// Cancel-safe: dropped before it returns (the other branch of a
    /// `select!` won), it loses no message; the next call returns it.
    pub async fn next(&mut self) -> Option<Message> {
        self.messages.next().await
    }

    /// How many messages are here already: [`Incoming::next`] returns that
    /// many without waiting. Each read takes what the host has waiting (a
    /// burst comes over at once); a handler may use this to answer a burst
    /// with fewer, larger messages.
    pub fn buffered(&self) -> usize {
        self.messages.buffered()
    }
}

impl Message {
    /// A strict text message.
    pub fn text(text: impl Into<String>) -> Self {
        Message::Text(text.into())
    }

    /// A strict binary message.
    pub fn binary(data: impl Into<Vec<u8>>) -> Self {
        Message::Binary(data.into())
    }

    /// Whether this is a text message (strict or streamed).
    pub fn is_text(&self) -> bool {
        matches!(self, Message::Text(_) | Message::TextStream(_))
    }

    /// The payload of a text message as chunks, whatever its form; `None` for
    /// a binary message.
    pub fn into_text_chunks(self) -> Option<TextChunks> {
        match self {
            Message::Text(text) => Some(TextChunks::Strict(Some(text))),
            Message::TextStream(chunks) => Some(TextChunks::Streamed(chunks)),
            Message::Binary(_) | Message::BinaryStream(_) => None,
        }
    }

    /// The payload of a binary message as chunks, whatever its form; `None`
    /// for a text message.
    pub fn into_binary_chunks(self) -> Option<BinaryChunks> {
        match self {
            Message::Binary(data) => Some(BinaryChunks::Strict(Some(data))),
            Message::BinaryStream(chunks) => Some(BinaryChunks::Streamed(chunks)),
            Message::Text(_) | Message::TextStream(_) => None,
        }
    }

    /// The whole payload of a text message; `None` for a binary message.
    pub async fn into_text(self) -> Option<String> {
        let mut chunks = self.into_text_chunks()?;
        let mut text = String::new();
        while let Some(chunk) = chunks.next().await {
            text.push_str(&chunk);
        }
        Some(text)
    }

    /// The whole payload of a binary message; `None` for a text message.
    pub async fn into_binary(self) -> Option<Vec<u8>> {
        let mut chunks = self.into_binary_chunks()?;
        let mut data = Vec::new();
        while let Some(chunk) = chunks.next().await {
            data.extend_from_slice(&chunk);
        }
        Some(data)
    }
}

/// The payload of a text message, chunk by chunk, each chunk valid UTF-8.
pub enum TextChunks {
    /// A strict message: its one chunk, until taken.
    Strict(Option<String>),
    /// A streamed message: chunks as the host delivers them.
    Streamed(StreamReader<String>),
}

impl TextChunks {
    /// The next chunk, or `None` at the end of the message.
    pub async fn next(&mut self) -> Option<String> {
        match self {
            TextChunks::Strict(text) => text.take(),
            TextChunks::Streamed(chunks) => chunks.next().await,
        }
    }
}

/// The payload of a binary message, chunk by chunk.
pub enum BinaryChunks {
    /// A strict message: its one chunk, until taken.
    Strict(Option<Vec<u8>>),
    /// A streamed message: chunks as the host delivers them.
    Streamed(StreamReader<u8>),
}

impl BinaryChunks {
    /// The next non-empty chunk, or `None` at the end of the message.
    pub async fn next(&mut self) -> Option<Vec<u8>> {
        match self {
            BinaryChunks::Strict(data) => data.take(),
            BinaryChunks::Streamed(bytes) => loop {
                let (result, chunk) = bytes.read(Vec::with_capacity(BINARY_CHUNK_CAPACITY)).await;
                match result {
                    StreamResult::Complete(_) if chunk.is_empty() => continue,
                    StreamResult::Complete(_) => return Some(chunk),
                    StreamResult::Dropped | StreamResult::Cancelled => return None,
                }
            },
        }
    }
}
