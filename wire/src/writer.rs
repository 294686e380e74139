//! Writes a server's frames: header and payload into one buffer, sent when
//! the caller flushes, so that a burst of messages costs one write.

use bytes::{BufMut, BytesMut};
use std::io;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Control, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{CloseFrame, FrameHeader};

/// Queued bytes beyond which [`FrameWriter::wants_flush`] says so, even if
/// more is about to be queued.
const FLUSH_SIZE: usize = 64 * 1024;

/// Frames on their way to the client.
#[derive(Debug)]
pub struct FrameWriter<W> {
    io: W,
    buffer: BytesMut,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    /// A writer of frames to `io`.
    pub fn new(io: W) -> Self {
        Self { io, buffer: BytesMut::new() }
    }

    /// Queues one frame. Server frames are not masked.
    pub fn queue(&mut self, opcode: OpCode, is_final: bool, payload: &[u8]) {
        let header = FrameHeader { is_final, opcode, ..FrameHeader::default() };
        let length = payload.len() as u64;
        self.buffer.reserve(header.len(length) + payload.len());
        header.format(length, &mut (&mut self.buffer).writer()).expect("writing to memory does not fail");
        self.buffer.extend_from_slice(payload);
    }

    /// Queues a close frame.
    pub fn queue_close(&mut self, frame: Option<&CloseFrame>) {
        let mut payload = Vec::new();
        if let Some(frame) = frame {
            payload.extend_from_slice(&u16::from(frame.code).to_be_bytes());
            payload.extend_from_slice(frame.reason.as_bytes());
        }
        self.queue(OpCode::Control(Control::Close), true, &payload);
    }

    /// Whether enough is queued to be worth a write even if more is coming.
    pub fn wants_flush(&self) -> bool {
        self.buffer.len() >= FLUSH_SIZE
    }

    /// Sends everything queued. Cancel-safe: what was not sent stays queued.
    pub async fn flush(&mut self) -> io::Result<()> {
        self.io.write_all_buf(&mut self.buffer).await?;
        self.io.flush().await
    }
}
