//! Writing: the stream of outgoing messages, and writers for streamed ones.

use crate::bindings::{Message, StreamFactory};
use std::marker::PhantomData;
use wit_bindgen::StreamWriter;

/// The connection is gone: the client closed it or the host dropped it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the WebSocket connection is closed")
    }
}

impl std::error::Error for Closed {}

/// The messages a handler sends on one connection, in order.
///
/// Dropping it (returning from the handler) ends the output, and the host
/// then closes the connection.
pub struct Outgoing {
    messages: StreamWriter<Message>,
    streams: StreamFactory,
}

impl Outgoing {
    pub(crate) fn new(messages: StreamWriter<Message>, streams: StreamFactory) -> Self {
        Self { messages, streams }
    }

    /// Sends a message, strict or streamed. A received message may be sent
    /// on unchanged, streamed ones included.
    pub async fn send(&mut self, message: Message) -> crate::Result {
        match self.messages.write_one(message).await {
            None => Ok(()),
            Some(_) => Err(Closed),
        }
    }

    /// Sends a strict text message.
    pub async fn send_text(&mut self, text: impl Into<String>) -> crate::Result {
        self.send(Message::Text(text.into())).await
    }

    /// Sends a strict binary message.
    pub async fn send_binary(&mut self, data: impl Into<Vec<u8>>) -> crate::Result {
        self.send(Message::Binary(data.into())).await
    }

    /// Starts a streamed text message; it ends when the writer is dropped.
    /// The client sees a fragmented message whose first frame leaves with the
    /// first chunk. The writer borrows `self`: no other message can be sent
    /// before this one has ended.
    pub async fn text_stream(&mut self) -> crate::Result<TextWriter<'_>> {
        let (writer, reader) = (self.streams.text)();
        self.send(Message::TextStream(reader)).await?;
        Ok(TextWriter { writer, _outgoing: PhantomData })
    }

    /// Starts a streamed binary message (see [`Outgoing::text_stream`]).
    pub async fn binary_stream(&mut self) -> crate::Result<BinaryWriter<'_>> {
        let (writer, reader) = (self.streams.binary)();
        self.send(Message::BinaryStream(reader)).await?;
        Ok(BinaryWriter { writer, _outgoing: PhantomData })
    }
}

/// The body of a streamed text message being sent.
pub struct TextWriter<'a> {
    writer: StreamWriter<String>,
    _outgoing: PhantomData<&'a mut Outgoing>,
}

impl TextWriter<'_> {
    /// Sends one chunk of the message (empty chunks are skipped).
    pub async fn write(&mut self, chunk: impl Into<String>) -> crate::Result {
        let chunk = chunk.into();
        if chunk.is_empty() {
            return Ok(());
        }
        match self.writer.write_one(chunk).await {
            None => Ok(()),
            Some(_) => Err(Closed),
        }
    }
}

/// The body of a streamed binary message being sent.
pub struct BinaryWriter<'a> {
    writer: StreamWriter<u8>,
    _outgoing: PhantomData<&'a mut Outgoing>,
}

impl BinaryWriter<'_> {
    /// Sends one chunk of the message.
    pub async fn write(&mut self, chunk: impl Into<Vec<u8>>) -> crate::Result {
        let unsent = self.writer.write_all(chunk.into()).await;
        if unsent.is_empty() { Ok(()) } else { Err(Closed) }
    }
}
