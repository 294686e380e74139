//! Writes a server's frames: header and payload into one buffer, sent when
//! the caller flushes, so that a burst of messages costs one write.
//!
//! A frame built elsewhere and shared (a topic message, framed once for all
//! its subscribers by [`frame`]) is queued as it is, without a copy, and so
//! is a large payload, behind its header; the flush hands the buffer and
//! those segments to the socket as one vectored write.
//!
//! With permessage-deflate negotiated, a whole message of at least the
//! threshold and every fragmented message go out compressed (RSV1 on the
//! first frame); a fragmented one is deflated fragment by fragment, each
//! frame's payload sent as it is ready. Shared frames go out as they are.

use super::deflate::{DeflateParams, Deflater};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{CloseFrame, FrameHeader};

/// Queued bytes beyond which [`FrameWriter::wants_flush`] says so, even if
/// more is about to be queued.
const FLUSH_SIZE: usize = 64 * 1024;

/// Payloads of at least this size are queued as they are, behind their
/// header, rather than copied into the buffer: past a few KiB the copy costs
/// more than one more segment of the vectored write.
const COPY_LIMIT: usize = 4 * 1024;

/// A whole server frame (unmasked, final) of `payload`, ready to be shared.
pub fn frame(opcode: OpCode, payload: &[u8]) -> Bytes {
    let mut buffer = BytesMut::new();
    put_frame(&mut buffer, opcode, true, false, payload);
    buffer.freeze()
}

/// The payload length of a whole unmasked frame made by [`frame`].
pub fn payload_length(frame: &[u8]) -> usize {
    let header = match frame.get(1).map(|byte| byte & 0x7f) {
        Some(126) => 4,
        Some(127) => 10,
        _ => 2,
    };
    frame.len().saturating_sub(header)
}

fn put_frame(buffer: &mut BytesMut, opcode: OpCode, is_final: bool, rsv1: bool, payload: &[u8]) {
    put_header(buffer, opcode, is_final, rsv1, payload.len(), payload.len());
    buffer.extend_from_slice(payload);
}

/// The header of a frame whose payload is `length` bytes, with room for
/// `then` more bytes after it.
fn put_header(buffer: &mut BytesMut, opcode: OpCode, is_final: bool, rsv1: bool, length: usize, then: usize) {
    let header = FrameHeader { is_final, rsv1, opcode, ..FrameHeader::default() };
    buffer.reserve(header.len(length as u64) + then);
    header.format(length as u64, &mut buffer.writer()).expect("writing to memory does not fail");
}

/// Frames on their way to the client.
#[derive(Debug)]
pub struct FrameWriter<W> {
    io: W,
    /// Frames built here, after the last of `shared`.
    buffer: BytesMut,
    /// Shared frames, and the buffer's earlier contents, in order; empty
    /// unless a shared frame was queued.
    shared: Segments,
    /// With permessage-deflate negotiated.
    compression: Option<Compression>,
}

/// The sending side of permessage-deflate.
#[derive(Debug)]
struct Compression {
    deflater: Deflater,
    /// Whole messages smaller than this go out uncompressed.
    threshold: usize,
    /// A fragmented message is open, and compressed.
    open: bool,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    /// A writer of frames to `io`.
    pub fn new(io: W) -> Self {
        Self { io, buffer: BytesMut::new(), shared: Segments::default(), compression: None }
    }

    /// With permessage-deflate negotiated on `params`: whole messages of at
    /// least `threshold` bytes, and fragmented ones, are compressed.
    pub fn with_deflate(mut self, params: DeflateParams, threshold: usize) -> Self {
        self.compression = Some(Compression { deflater: Deflater::new(params), threshold, open: false });
        self
    }

    /// Queues one frame as it is (a control frame, or data uncompressed).
    /// Server frames are not masked.
    pub fn queue(&mut self, opcode: OpCode, is_final: bool, payload: &[u8]) {
        put_frame(&mut self.buffer, opcode, is_final, false, payload);
    }

    /// Queues a frame of a message: a whole one (`is_final` with a text or
    /// binary opcode), or a fragment. Compressed if permessage-deflate says
    /// so (see the module's documentation).
    pub fn queue_data(&mut self, opcode: OpCode, is_final: bool, payload: Bytes) {
        let Some(compression) = &mut self.compression else {
            return self.queue_uncompressed(opcode, is_final, payload);
        };
        let first = matches!(opcode, OpCode::Data(Data::Text | Data::Binary));
        let compress = if first { !is_final || payload.len() >= compression.threshold } else { compression.open };
        if !compress {
            return self.queue_uncompressed(opcode, is_final, payload);
        }
        compression.open = !is_final;
        let deflated = compression.deflater.deflate(&payload, is_final);
        put_frame(&mut self.buffer, opcode, is_final, first, &deflated);
    }

    /// Queues a data frame as it is; a large payload is not copied.
    fn queue_uncompressed(&mut self, opcode: OpCode, is_final: bool, payload: Bytes) {
        if payload.len() < COPY_LIMIT {
            return self.queue(opcode, is_final, &payload);
        }
        put_header(&mut self.buffer, opcode, is_final, false, payload.len(), 0);
        self.queue_frame(payload);
    }

    /// Queues a whole frame made by [`frame`], or a payload behind the
    /// header just queued, without copying it.
    pub fn queue_frame(&mut self, frame: Bytes) {
        self.seal_buffer();
        self.shared.push(frame);
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

    /// Whether anything is queued.
    pub fn has_queued(&self) -> bool {
        !self.buffer.is_empty() || self.shared.has_remaining()
    }

    /// Whether enough is queued to be worth a write even if more is coming.
    pub fn wants_flush(&self) -> bool {
        self.buffer.len() + self.shared.remaining() >= FLUSH_SIZE
    }

    /// Sends everything queued. Cancel-safe: what was not sent stays queued.
    pub async fn flush(&mut self) -> io::Result<()> {
        if self.shared.is_empty() {
            self.io.write_all_buf(&mut self.buffer).await?;
        } else {
            self.seal_buffer();
            self.io.write_all_buf(&mut self.shared).await?;
        }
        self.io.flush().await
    }

    /// Moves what the buffer holds behind the shared frames, keeping the
    /// order in which frames were queued.
    fn seal_buffer(&mut self) {
        if !self.buffer.is_empty() {
            self.shared.push(self.buffer.split().freeze());
        }
    }
}

/// A queue of byte segments read as one buffer, so that writing it is one
/// vectored write.
#[derive(Debug, Default)]
struct Segments {
    segments: VecDeque<Bytes>,
    remaining: usize,
}

impl Segments {
    fn push(&mut self, segment: Bytes) {
        self.remaining += segment.len();
        self.segments.push_back(segment);
    }

    fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }
}

impl Buf for Segments {
    fn remaining(&self) -> usize {
        self.remaining
    }

    fn chunk(&self) -> &[u8] {
        self.segments.front().map_or(&[], |segment| segment.as_ref())
    }

    fn chunks_vectored<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> usize {
        let mut filled = 0;
        for (slice, segment) in slices.iter_mut().zip(&self.segments) {
            *slice = IoSlice::new(segment);
            filled += 1;
        }
        filled
    }

    fn advance(&mut self, mut count: usize) {
        assert!(count <= self.remaining, "advanced past the end of the segments");
        self.remaining -= count;
        while count > 0 {
            let front = self.segments.front_mut().expect("counted in remaining");
            if count < front.len() {
                front.advance(count);
                return;
            }
            count -= front.len();
            self.segments.pop_front();
        }
        // Empty segments are never pushed, so none is left at the front.
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deflate::Inflater;

    #[tokio::test]
    async fn shared_frames_go_out_in_the_order_they_were_queued() {
        let shared = frame(OpCode::Data(Data::Text), b"topic");
        let mut writer = FrameWriter::new(Vec::new());
        writer.queue(OpCode::Data(Data::Text), true, b"one");
        writer.queue_frame(shared.clone());
        writer.queue(OpCode::Data(Data::Binary), true, b"two");
        writer.queue_frame(shared.clone());
        writer.flush().await.unwrap();
        let mut expected = BytesMut::new();
        put_frame(&mut expected, OpCode::Data(Data::Text), true, false, b"one");
        expected.extend_from_slice(&shared);
        put_frame(&mut expected, OpCode::Data(Data::Binary), true, false, b"two");
        expected.extend_from_slice(&shared);
        assert_eq!(writer.io, expected);
        // The shared frame's bytes were not copied into the writer.
        assert!(writer.buffer.is_empty() && writer.shared.is_empty());
        for size in [0, 125, 126, 65535, 65536] {
            assert_eq!(payload_length(&frame(OpCode::Data(Data::Binary), &vec![0; size])), size);
        }
    }

    #[tokio::test]
    async fn large_payloads_go_out_behind_their_headers_without_a_copy() {
        let large = Bytes::from(vec![7; COPY_LIMIT]);
        let mut writer = FrameWriter::new(Vec::new());
        writer.queue_data(OpCode::Data(Data::Text), true, Bytes::from_static(b"small"));
        writer.queue_data(OpCode::Data(Data::Binary), false, large.clone());
        writer.queue_data(OpCode::Data(Data::Continue), true, Bytes::from_static(b"end"));
        // Queued as it is: the writer holds the payload's own bytes.
        assert!(writer.shared.segments.iter().any(|segment| segment.as_ptr() == large.as_ptr()));
        assert!(writer.buffer.len() < 16);
        writer.flush().await.unwrap();
        assert_eq!(
            frames(&writer.io),
            [
                (false, OpCode::Data(Data::Text), true, b"small".to_vec()),
                (false, OpCode::Data(Data::Binary), false, large.to_vec()),
                (false, OpCode::Data(Data::Continue), true, b"end".to_vec()),
            ]
        );
    }

    /// The frames in `bytes`: RSV1, opcode, fin and payload.
    fn frames(mut bytes: &[u8]) -> Vec<(bool, OpCode, bool, Vec<u8>)> {
        let mut frames = Vec::new();
        while !bytes.is_empty() {
            let mut cursor = std::io::Cursor::new(bytes);
            let (header, length) = FrameHeader::parse(&mut cursor).unwrap().unwrap();
            let start = cursor.position() as usize;
            let end = start + length as usize;
            frames.push((header.rsv1, header.opcode, header.is_final, bytes[start..end].to_vec()));
            bytes = &bytes[end..];
        }
        frames
    }

    fn inflate(payload: &[u8]) -> Vec<u8> {
        let params = DeflateParams { client_no_context_takeover: true, server_max_window_bits: 15 };
        let mut input = BytesMut::from(payload);
        input.extend_from_slice(Inflater::message_tail());
        Inflater::new(params).inflate(&mut input, 1 << 20).unwrap().to_vec()
    }

    #[tokio::test]
    async fn messages_over_the_threshold_and_fragmented_ones_go_out_compressed() {
        let params = DeflateParams { client_no_context_takeover: false, server_max_window_bits: 10 };
        let mut writer = FrameWriter::new(Vec::new()).with_deflate(params, 16);
        let long = "a message long enough to be worth it ".repeat(4);
        writer.queue_data(OpCode::Data(Data::Text), true, Bytes::from_static(b"short"));
        writer.queue_data(OpCode::Data(Data::Text), true, Bytes::from(long.clone()));
        writer.queue_data(OpCode::Data(Data::Binary), false, Bytes::from_static(b"frag"));
        writer.queue(OpCode::Control(Control::Ping), true, b"");
        writer.queue_data(OpCode::Data(Data::Continue), false, Bytes::from_static(b"ment"));
        writer.queue_data(OpCode::Data(Data::Continue), true, Bytes::new());
        writer.flush().await.unwrap();
        let frames = frames(&writer.io);
        assert_eq!(frames.len(), 6);
        assert_eq!(frames[0], (false, OpCode::Data(Data::Text), true, b"short".to_vec()));
        let (rsv1, _, _, payload) = &frames[1];
        assert!(*rsv1 && payload.len() < long.len());
        assert_eq!(inflate(payload), long.as_bytes());
        let rsv1s: Vec<bool> = frames[2..].iter().map(|frame| frame.0).collect();
        assert_eq!(rsv1s, [true, false, false, false]);
        let fragments: Vec<u8> =
            [&frames[2], &frames[4], &frames[5]].iter().flat_map(|frame| frame.3.clone()).collect();
        assert_eq!(inflate(&fragments), b"fragment");
    }
}
