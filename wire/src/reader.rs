//! Reads a client's frames as they arrive: the receiving half of the
//! WebSocket protocol (RFC 6455 section 5), on tungstenite's frame types.
//!
//! tungstenite reassembles whole messages and buffers a whole frame before
//! handing it over. This reader passes a data frame's payload on in chunks
//! as its bytes come in, so a message of any size costs the host one read
//! buffer, and a handler sees a fragmented message fragment by fragment.
//!
//! Every rule the protocol sets for a client's frames is checked here:
//! masking, reserved bits and opcodes, control frames (at most 125 bytes, not
//! fragmented), the order of fragments, UTF-8 in text messages (across
//! chunks, failing as soon as invalid bytes arrive), close frame payloads,
//! and the route's frame and message size limits (checked against a frame's
//! declared length before any of its payload is read).
//!
//! With permessage-deflate negotiated, a message whose first frame has RSV1
//! set is compressed: its payload is inflated as it arrives, at most a chunk
//! at a time from at most a chunk of compressed input, and the message size
//! limit applies to the inflated size as it grows (so a small frame that
//! inflates without end is closed with 1009 after one chunk over the limit,
//! never buffered). Text is checked for UTF-8 after inflation.

use super::deflate::{DeflateParams, Inflater};
use super::utf8::Utf8Validator;
use bytes::{Buf, Bytes, BytesMut};
use std::future::poll_fn;
use std::io::{self, Cursor};
use std::pin::Pin;
use tokio::io::AsyncRead;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{CloseFrame, FrameHeader};
use tokio_util::io::poll_read_buf;

/// How much the reader asks the socket for at once: 16 KiB of payload and
/// the largest frame header, so that a frame of up to 16 KiB (the most a
/// chunk holds) comes in one read, into a buffer that does not have to grow
/// (and copy what it holds) for the last bytes of the frame.
const READ_SIZE: usize = 16 * 1024 + MAX_HEADER;

/// The largest frame header a client sends: 2 bytes, a 64-bit length and a
/// mask.
const MAX_HEADER: usize = 14;

/// The largest payload a control frame may have.
const MAX_CONTROL_PAYLOAD: u64 = 125;

/// The sizes a reader works with.
#[derive(Debug, Clone, Copy)]
pub struct ReadLimits {
    /// The largest message, summed over its frames.
    pub max_message_size: usize,
    /// The largest frame payload.
    pub max_frame_size: usize,
    /// A message that arrives in one frame of at most this many bytes is
    /// read whole ([`Event::Text`], [`Event::Binary`]); anything else is
    /// passed on in chunks.
    pub strict_size: usize,
    /// The largest chunk passed on at once.
    pub chunk_size: usize,
}

/// What the client sent.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// A whole text message, from one frame.
    Text(String),
    /// A whole binary message, from one frame.
    Binary(Bytes),
    /// A message starts whose payload follows as [`Event::Chunk`]s.
    MessageStart {
        /// Whether it is a text message.
        text: bool,
    },
    /// Part of the open message's payload, as it arrived. For a text message,
    /// whole characters of valid UTF-8.
    Chunk(Bytes),
    /// The open message is complete.
    MessageEnd,
    /// A ping, with its payload (to be answered with a pong).
    Ping(Bytes),
    /// A pong.
    Pong,
    /// A close frame, validated (to be echoed).
    Close(Option<CloseFrame>),
}

/// Why reading stopped.
#[derive(Debug)]
pub enum ReadError {
    /// The client broke the protocol or a limit: answer with this close
    /// frame (1002, 1007 or 1009) and drop the connection.
    Violation(CloseFrame),
    /// The connection ended without a close frame: end of stream, or an I/O
    /// error (`None` for a clean end of stream).
    Lost(Option<io::Error>),
}

type ReadResult<T> = Result<T, ReadError>;

fn violation(code: CloseCode, reason: impl Into<String>) -> ReadError {
    ReadError::Violation(CloseFrame { code, reason: reason.into().into() })
}

fn protocol_error(reason: impl Into<String>) -> ReadError {
    violation(CloseCode::Protocol, reason)
}

fn invalid_utf8() -> ReadError {
    violation(CloseCode::Invalid, "invalid UTF-8 in a text message")
}

fn invalid_deflate() -> ReadError {
    violation(CloseCode::Invalid, "compressed data that does not inflate")
}

/// The data frame whose payload is being passed on.
#[derive(Debug)]
struct OpenFrame {
    remaining: u64,
    mask: [u8; 4],
    /// How many payload bytes have been unmasked (the mask's phase).
    offset: usize,
    is_final: bool,
}

/// A message whose frames are being passed on.
#[derive(Debug)]
struct OpenMessage {
    /// The bytes announced so far (inflated so far, if compressed), against
    /// the message size limit.
    size: u64,
    /// For a text message, its validation state.
    utf8: Option<Utf8Validator>,
    /// For a compressed message, what waits to be inflated.
    deflated: Option<Deflated>,
}

/// A compressed message's input not yet inflated.
#[derive(Debug, Default)]
struct Deflated {
    /// Unmasked compressed bytes, at most a chunk's worth beyond what
    /// inflation has caught up with.
    input: BytesMut,
    /// Its last frame is read and the tail added to `input`: once nothing
    /// more comes out, the message is complete.
    ended: bool,
    /// The last inflation had room to spare: nothing more comes out without
    /// more input.
    drained: bool,
    /// Inflated, not yet passed on (a first frame tried as a strict
    /// message), at most a strict message's size.
    inflated: BytesMut,
}

/// Reads frames from a client's byte stream (`R`).
///
/// [`FrameReader::next`] is cancel-safe: the reader's state changes only
/// between reads from the socket.
#[derive(Debug)]
pub struct FrameReader<R> {
    io: R,
    buffer: BytesMut,
    limits: ReadLimits,
    frame: Option<OpenFrame>,
    message: Option<OpenMessage>,
    /// With permessage-deflate negotiated.
    inflater: Option<Inflater>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// A reader of the frames on `io`.
    pub fn new(io: R, limits: ReadLimits) -> Self {
        Self { io, buffer: BytesMut::new(), limits, frame: None, message: None, inflater: None }
    }

    /// With permessage-deflate negotiated on `params`: messages whose first
    /// frame has RSV1 set are compressed.
    pub fn with_deflate(mut self, params: DeflateParams) -> Self {
        self.inflater = Some(Inflater::new(params));
        self
    }

    /// The byte stream, for what comes after the last frame read (what a
    /// client sends after a violation, to be dropped).
    pub fn into_inner(self) -> R {
        self.io
    }

    /// Whether a message has started and not yet ended.
    pub fn in_message(&self) -> bool {
        self.message.is_some()
    }

    /// The next thing the client sent.
    pub async fn next(&mut self) -> ReadResult<Event> {
        loop {
            // A compressed message's input inflates before more is read.
            if let Some(event) = self.inflate_next()? {
                return Ok(event);
            }
            if self.frame.is_some() {
                if let Some(event) = self.next_chunk().await? {
                    return Ok(event);
                }
                continue;
            }
            let (header, length, header_size) = self.header().await?;
            if let Some(event) = self.start_frame(header, length, header_size).await? {
                return Ok(event);
            }
        }
    }

    /// Passes on the open frame's next chunk, or ends the frame.
    async fn next_chunk(&mut self) -> ReadResult<Option<Event>> {
        let frame = self.frame.as_mut().expect("called with an open frame");
        if frame.remaining == 0 {
            let is_final = frame.is_final;
            self.frame = None;
            if !is_final {
                return Ok(None);
            }
            let message = self.message.as_mut().expect("a data frame belongs to a message");
            if let Some(deflated) = &mut message.deflated {
                deflated.input.extend_from_slice(Inflater::message_tail());
                deflated.ended = true;
                deflated.drained = false;
                return Ok(None);
            }
            let message = self.message.take().expect("a data frame belongs to a message");
            if message.utf8.is_some_and(|utf8| utf8.finish().is_err()) {
                return Err(invalid_utf8());
            }
            return Ok(Some(Event::MessageEnd));
        }
        if self.buffer.is_empty() {
            self.fill().await?;
        }
        let frame = self.frame.as_mut().expect("called with an open frame");
        let count =
            self.buffer.len().min(self.limits.chunk_size).min(usize::try_from(frame.remaining).unwrap_or(usize::MAX));
        let mut chunk = self.buffer.split_to(count);
        unmask(&mut chunk, frame.mask, frame.offset);
        frame.offset += count;
        frame.remaining -= count as u64;
        let message = self.message.as_mut().expect("a data frame belongs to a message");
        if let Some(deflated) = &mut message.deflated {
            deflated.input.extend_from_slice(&chunk);
            return Ok(None);
        }
        let chunk = match &mut message.utf8 {
            Some(utf8) => utf8.feed(chunk).map_err(|_| invalid_utf8())?,
            None => chunk.freeze(),
        };
        Ok((!chunk.is_empty()).then_some(Event::Chunk(chunk)))
    }

    /// Reads the next frame header, leaving it in the buffer; returns it with
    /// the payload length and the header's size in bytes.
    async fn header(&mut self) -> ReadResult<(FrameHeader, u64, usize)> {
        loop {
            let mut cursor = Cursor::new(&self.buffer[..]);
            match FrameHeader::parse(&mut cursor) {
                Ok(Some((header, length))) => {
                    let size = usize::try_from(cursor.position()).expect("a header is at most 14 bytes");
                    return Ok((header, length, size));
                }
                Ok(None) => self.fill().await?,
                Err(err) => return Err(protocol_error(err.to_string())),
            }
        }
    }

    /// Checks a frame header against the protocol and the limits, then
    /// either reads the whole frame (control frames, small whole messages) or
    /// opens it for chunked reading.
    async fn start_frame(&mut self, header: FrameHeader, length: u64, header_size: usize) -> ReadResult<Option<Event>> {
        if header.rsv2 || header.rsv3 || (header.rsv1 && self.inflater.is_none()) {
            return Err(protocol_error("reserved bits set without an extension"));
        }
        // RSV1 marks a compressed message on its first frame, and nowhere
        // else (RFC 7692 section 6).
        let compressed = header.rsv1;
        if compressed && !matches!(header.opcode, OpCode::Data(Data::Text | Data::Binary)) {
            return Err(protocol_error("RSV1 set on a control or continuation frame"));
        }
        let Some(mask) = header.mask else {
            return Err(protocol_error("unmasked frame from the client"));
        };
        // A 64-bit length's most significant bit must be 0 (RFC 6455 5.2):
        // a broken frame, not merely a large one.
        if length > i64::MAX as u64 {
            return Err(protocol_error("frame length with its most significant bit set"));
        }
        match header.opcode {
            OpCode::Control(control) => {
                if length > MAX_CONTROL_PAYLOAD {
                    return Err(protocol_error("control frame payload over 125 bytes"));
                }
                if !header.is_final {
                    return Err(protocol_error("fragmented control frame"));
                }
                let payload = self.whole_payload(header_size, length, mask).await?;
                control_event(control, payload).map(Some)
            }
            OpCode::Data(data) => {
                if length > self.limits.max_frame_size as u64 {
                    return Err(violation(
                        CloseCode::Size,
                        format!("frame of {length} bytes, over the limit of {}", self.limits.max_frame_size),
                    ));
                }
                let text = match (data, &self.message) {
                    (Data::Continue, None) => return Err(protocol_error("continuation frame without a message")),
                    (Data::Continue, Some(_)) => None,
                    (Data::Text | Data::Binary, Some(_)) => {
                        return Err(protocol_error("new message before the last one ended"));
                    }
                    (Data::Text, None) => Some(true),
                    (Data::Binary, None) => Some(false),
                    (Data::Reserved(_), _) => unreachable!("FrameHeader::parse rejects reserved opcodes"),
                };
                let compressed_message =
                    compressed || self.message.as_ref().is_some_and(|message| message.deflated.is_some());
                if compressed_message {
                    return self.start_compressed_frame(header, text, length, header_size, mask).await;
                }
                let size = self.message.as_ref().map_or(0, |message| message.size) + length;
                if size > self.limits.max_message_size as u64 {
                    return Err(violation(
                        CloseCode::Size,
                        format!("message of at least {size} bytes, over the limit of {}", self.limits.max_message_size),
                    ));
                }
                if let Some(text) = text
                    && header.is_final
                    && length <= self.limits.strict_size as u64
                {
                    let payload = self.whole_payload(header_size, length, mask).await?;
                    return Ok(Some(if text {
                        Event::Text(String::from_utf8(payload.into()).map_err(|_| invalid_utf8())?)
                    } else {
                        Event::Binary(payload.freeze())
                    }));
                }
                self.open_frame(header_size, length, mask, header.is_final);
                match text {
                    Some(text) => {
                        self.message =
                            Some(OpenMessage { size, utf8: text.then(Utf8Validator::default), deflated: None });
                        Ok(Some(Event::MessageStart { text }))
                    }
                    None => {
                        self.message.as_mut().expect("checked above").size = size;
                        Ok(None)
                    }
                }
            }
        }
    }

    /// Takes the header that starts the buffer out, and opens its frame for
    /// its payload to be read a chunk at a time.
    fn open_frame(&mut self, header_size: usize, length: u64, mask: [u8; 4], is_final: bool) {
        self.buffer.advance(header_size);
        self.frame = Some(OpenFrame { remaining: length, mask, offset: 0, is_final });
    }

    /// Starts a frame of a compressed message: `text` is whether it starts a
    /// text message (`None` for a continuation). A first frame that is the
    /// whole message and small is inflated at once, and if it inflates to no
    /// more than a strict message, it is one; anything else goes through
    /// [`FrameReader::inflate_next`] a chunk at a time.
    async fn start_compressed_frame(
        &mut self,
        header: FrameHeader,
        text: Option<bool>,
        length: u64,
        header_size: usize,
        mask: [u8; 4],
    ) -> ReadResult<Option<Event>> {
        let Some(text) = text else {
            // A continuation: its payload is read into the message's input.
            self.open_frame(header_size, length, mask, header.is_final);
            return Ok(None);
        };
        let utf8 = text.then(Utf8Validator::default);
        if !(header.is_final && length <= self.limits.strict_size as u64) {
            self.open_frame(header_size, length, mask, header.is_final);
            self.message = Some(OpenMessage { size: 0, utf8, deflated: Some(Deflated::default()) });
            return Ok(Some(Event::MessageStart { text }));
        }
        let mut input = self.whole_payload(header_size, length, mask).await?;
        input.extend_from_slice(Inflater::message_tail());
        let strict = self.limits.strict_size.min(self.limits.max_message_size);
        let inflater = self.inflater.as_mut().expect("compressed only when negotiated");
        let inflated = inflater.inflate(&mut input, strict + 1).map_err(|_| invalid_deflate())?;
        // Up to a strict message's size plus one byte: held until passed
        // on, bounded like a strict message.
        if inflated.len() <= strict {
            inflater.end_message();
            return Ok(Some(if text {
                Event::Text(String::from_utf8(inflated.into()).map_err(|_| invalid_utf8())?)
            } else {
                Event::Binary(inflated.freeze())
            }));
        }
        // Larger than a strict message: streamed, starting with what is
        // inflated already.
        let deflated = Deflated { input, ended: true, drained: false, inflated };
        self.message = Some(OpenMessage { size: 0, utf8, deflated: Some(deflated) });
        Ok(Some(Event::MessageStart { text }))
    }

    /// The next piece of the open compressed message, if any is ready: a
    /// chunk inflated from the input at hand, or the message's end once its
    /// last frame is read and nothing more comes out.
    fn inflate_next(&mut self) -> ReadResult<Option<Event>> {
        let Some(message) = self.message.as_mut() else { return Ok(None) };
        let Some(deflated) = message.deflated.as_mut() else { return Ok(None) };
        let ended = deflated.ended;
        let inflater = self.inflater.as_mut().expect("compressed only when negotiated");
        let inflated = if !deflated.inflated.is_empty() {
            let take = deflated.inflated.len().min(self.limits.chunk_size);
            deflated.inflated.split_to(take)
        } else if deflated.drained && deflated.input.is_empty() {
            BytesMut::new()
        } else {
            let inflated =
                inflater.inflate(&mut deflated.input, self.limits.chunk_size).map_err(|_| invalid_deflate())?;
            deflated.drained = inflated.len() < self.limits.chunk_size;
            inflated
        };
        if inflated.is_empty() {
            if !ended {
                return Ok(None);
            }
            let message = self.message.take().expect("checked above");
            inflater.end_message();
            if message.utf8.is_some_and(|utf8| utf8.finish().is_err()) {
                return Err(invalid_utf8());
            }
            return Ok(Some(Event::MessageEnd));
        }
        let mut message = self.message.take().expect("checked above");
        let chunk = self.checked_chunk(&mut message, inflated);
        self.message = Some(message);
        Ok(chunk?.map(Event::Chunk))
    }

    /// An inflated piece of `message`, counted against the message size
    /// limit and, for text, checked for UTF-8 (whole characters only, the
    /// rest kept for the next piece; `None` if that leaves nothing).
    fn checked_chunk(&self, message: &mut OpenMessage, inflated: BytesMut) -> ReadResult<Option<Bytes>> {
        message.size += inflated.len() as u64;
        if message.size > self.limits.max_message_size as u64 {
            return Err(violation(
                CloseCode::Size,
                format!(
                    "message inflating to at least {} bytes, over the limit of {}",
                    message.size, self.limits.max_message_size
                ),
            ));
        }
        let chunk = match &mut message.utf8 {
            Some(utf8) => utf8.feed(inflated).map_err(|_| invalid_utf8())?,
            None => inflated.freeze(),
        };
        Ok((!chunk.is_empty()).then_some(chunk))
    }

    /// Waits until the frame whose header starts the buffer is there whole,
    /// then takes it out and returns its unmasked payload.
    async fn whole_payload(&mut self, header_size: usize, length: u64, mask: [u8; 4]) -> ReadResult<BytesMut> {
        let length = usize::try_from(length).expect("checked against a limit");
        while self.buffer.len() < header_size + length {
            self.buffer.reserve(header_size + length - self.buffer.len());
            self.fill().await?;
        }
        self.buffer.advance(header_size);
        let mut payload = self.buffer.split_to(length);
        if self.buffer.is_empty() {
            // Nothing read beyond the frame: the payload keeps the allocation
            // to itself, so that making it a `Vec` for the guest moves the
            // bytes in place instead of copying them into a new one.
            self.buffer = BytesMut::new();
        }
        unmask(&mut payload, mask, 0);
        Ok(payload)
    }

    /// Reads more from the socket into the buffer.
    ///
    /// While the client is quiet and nothing is left over, the reader holds
    /// no buffer: an idle connection would otherwise keep `READ_SIZE` bytes
    /// that it does not use, the largest single part of what the host
    /// allocates for it. The buffer comes back, in a single allocation, when the
    /// socket wakes the reader.
    async fn fill(&mut self) -> ReadResult<()> {
        let read = poll_fn(|cx| {
            self.buffer.reserve(READ_SIZE);
            let read = poll_read_buf(Pin::new(&mut self.io), cx, &mut self.buffer);
            if read.is_pending() && self.buffer.is_empty() {
                self.buffer = BytesMut::new();
            }
            read
        });
        match read.await {
            Ok(0) => Err(ReadError::Lost(None)),
            Ok(_) => Ok(()),
            Err(err) => Err(ReadError::Lost(Some(err))),
        }
    }
}

/// The event for a control frame, its payload checked.
fn control_event(control: Control, payload: BytesMut) -> ReadResult<Event> {
    match control {
        Control::Ping => Ok(Event::Ping(payload.freeze())),
        Control::Pong => Ok(Event::Pong),
        Control::Close => close_event(&payload),
        Control::Reserved(_) => unreachable!("FrameHeader::parse rejects reserved opcodes"),
    }
}

/// A close frame's payload: empty, or a code and a UTF-8 reason.
fn close_event(payload: &[u8]) -> ReadResult<Event> {
    match payload {
        [] => Ok(Event::Close(None)),
        [_] => Err(protocol_error("close frame with a one-byte payload")),
        [high, low, reason @ ..] => {
            let code = CloseCode::from(u16::from_be_bytes([*high, *low]));
            if !code.is_allowed() {
                return Err(protocol_error(format!("close code {} may not be sent", u16::from(code))));
            }
            let reason = std::str::from_utf8(reason)
                .map_err(|_| violation(CloseCode::Invalid, "invalid UTF-8 in a close reason"))?;
            Ok(Event::Close(Some(CloseFrame { code, reason: reason.to_owned().into() })))
        }
    }
}

/// Unmasks `data`, which starts `offset` bytes into its frame's payload.
fn unmask(data: &mut [u8], mask: [u8; 4], offset: usize) {
    let mut mask = mask;
    mask.rotate_left(offset % 4);
    // Four bytes at a time: the compiler turns this into vector code.
    let word = u32::from_ne_bytes(mask);
    let mut words = data.chunks_exact_mut(4);
    for chunk in &mut words {
        let unmasked = u32::from_ne_bytes(chunk.try_into().expect("chunks of four")) ^ word;
        chunk.copy_from_slice(&unmasked.to_ne_bytes());
    }
    for (byte, mask) in words.into_remainder().iter_mut().zip(mask) {
        *byte ^= mask;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::pin;
    use tokio::io::AsyncWriteExt;

    const LIMITS: ReadLimits =
        ReadLimits { max_message_size: 1 << 20, max_frame_size: 1 << 19, strict_size: 64, chunk_size: 16 };

    /// A frame as a client sends it: masked.
    fn client_frame(opcode: OpCode, is_final: bool, payload: &[u8]) -> Vec<u8> {
        client_frame_rsv1(opcode, is_final, false, payload)
    }

    /// A frame as a client sends it, with RSV1 (compressed) as given.
    fn client_frame_rsv1(opcode: OpCode, is_final: bool, rsv1: bool, payload: &[u8]) -> Vec<u8> {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let header = FrameHeader { is_final, rsv1, opcode, mask: Some(mask), ..FrameHeader::default() };
        let mut bytes = Vec::new();
        header.format(payload.len() as u64, &mut bytes).unwrap();
        let start = bytes.len();
        bytes.extend_from_slice(payload);
        unmask(&mut bytes[start..], mask, 0);
        bytes
    }

    const TEXT: OpCode = OpCode::Data(Data::Text);
    const BINARY: OpCode = OpCode::Data(Data::Binary);
    const CONTINUE: OpCode = OpCode::Data(Data::Continue);
    const PING: OpCode = OpCode::Control(Control::Ping);
    const CLOSE: OpCode = OpCode::Control(Control::Close);

    /// Everything a reader makes of `bytes`, up to the first error.
    async fn read_all(bytes: Vec<u8>) -> (Vec<Event>, ReadError) {
        read_all_from(FrameReader::new(&bytes[..], LIMITS)).await
    }

    const DEFLATE: DeflateParams = DeflateParams { client_no_context_takeover: false, server_max_window_bits: 15 };

    /// Everything a reader with permessage-deflate makes of `bytes`.
    async fn read_all_deflated(bytes: Vec<u8>, limits: ReadLimits) -> (Vec<Event>, ReadError) {
        read_all_from(FrameReader::new(&bytes[..], limits).with_deflate(DEFLATE)).await
    }

    /// A message compressed as a client would, in frames of these sizes of
    /// compressed payload (the rest in the last).
    fn compressed_message(opcode: OpCode, payload: &[u8], frame_sizes: &[usize]) -> Vec<u8> {
        let mut compressed = crate::deflate::Deflater::new(DEFLATE).deflate(payload, true);
        let mut bytes = Vec::new();
        let mut first = true;
        for size in frame_sizes {
            let rest = compressed.split_off(*size);
            bytes.extend(client_frame_rsv1(if first { opcode } else { CONTINUE }, false, first, &compressed));
            compressed = rest;
            first = false;
        }
        bytes.extend(client_frame_rsv1(if first { opcode } else { CONTINUE }, true, first, &compressed));
        bytes
    }

    /// The text of a streamed message's events, checked for their order.
    fn streamed_text(events: &[Event]) -> String {
        assert_eq!(events.first(), Some(&Event::MessageStart { text: true }), "{events:?}");
        assert_eq!(events.last(), Some(&Event::MessageEnd), "{events:?}");
        let mut text = String::new();
        for event in &events[1..events.len() - 1] {
            let Event::Chunk(chunk) = event else { panic!("unexpected {event:?}") };
            assert!(chunk.len() <= LIMITS.chunk_size + 3, "a chunk of {}", chunk.len());
            text.push_str(std::str::from_utf8(chunk).unwrap());
        }
        text
    }

    #[tokio::test]
    async fn compressed_messages_are_inflated_strict_when_small_and_streamed_otherwise() {
        let mut bytes = compressed_message(TEXT, b"Peter", &[]);
        bytes.extend(client_frame(TEXT, true, b"plain"));
        bytes.extend(compressed_message(BINARY, &[7; 40], &[]));
        let (events, end) = read_all_deflated(bytes, LIMITS).await;
        assert_eq!(
            events,
            [Event::Text("Peter".into()), Event::Text("plain".into()), Event::Binary(Bytes::from(vec![7; 40]))]
        );
        assert!(matches!(end, ReadError::Lost(None)));

        // Over the strict size, in one small frame or in three.
        let text = "Grüße aus Köln! ".repeat(20);
        for frames in [&[][..], &[3, 5][..]] {
            let (events, _) = read_all_deflated(compressed_message(TEXT, text.as_bytes(), frames), LIMITS).await;
            assert_eq!(streamed_text(&events), text, "{frames:?}");
        }
    }

    #[tokio::test]
    async fn a_compressed_message_that_inflates_past_the_limit_is_closed_as_it_inflates() {
        let limits = ReadLimits { max_message_size: 1000, ..LIMITS };
        // 16 MiB of zeros: a few KiB compressed, in frames under the limit.
        let bomb = compressed_message(BINARY, &vec![0; 16 << 20], &[500, 500, 500]);
        assert!(bomb.len() < 64 * 1024);
        let (events, end) = read_all_deflated(bomb, limits).await;
        assert_eq!(close_code(end), 1009);
        let inflated: usize =
            events.iter().map(|event| if let Event::Chunk(chunk) = event { chunk.len() } else { 0 }).sum();
        assert!(inflated <= 1000, "{inflated} bytes passed on");
    }

    #[tokio::test]
    async fn rsv1_is_only_for_the_first_frame_of_a_negotiated_compressed_message() {
        let compressed = compressed_message(TEXT, b"Peter", &[]);
        // Not negotiated.
        assert_eq!(close_code(read_all(compressed.clone()).await.1), 1002);
        // On a continuation, on a control frame.
        let mut continuation = client_frame(TEXT, false, b"a");
        continuation.extend(client_frame_rsv1(CONTINUE, true, true, b"b"));
        let ping = client_frame_rsv1(PING, true, true, b"");
        for bytes in [continuation, ping] {
            assert_eq!(close_code(read_all_deflated(bytes, LIMITS).await.1), 1002);
        }
        // Not deflate data; invalid UTF-8 once inflated.
        let garbage = client_frame_rsv1(BINARY, true, true, &[0xff; 8]);
        assert_eq!(close_code(read_all_deflated(garbage, LIMITS).await.1), 1007);
        let invalid = compressed_message(TEXT, b"caf\xc3", &[]);
        assert_eq!(close_code(read_all_deflated(invalid, LIMITS).await.1), 1007);
    }

    async fn read_all_from(mut reader: FrameReader<&[u8]>) -> (Vec<Event>, ReadError) {
        let mut events = Vec::new();
        loop {
            match reader.next().await {
                Ok(event) => events.push(event),
                Err(err) => return (events, err),
            }
        }
    }

    fn chunk(text: &str) -> Event {
        Event::Chunk(Bytes::copy_from_slice(text.as_bytes()))
    }

    fn close_code(err: ReadError) -> u16 {
        match err {
            ReadError::Violation(frame) => frame.code.into(),
            ReadError::Lost(err) => panic!("expected a violation, the connection was lost: {err:?}"),
        }
    }

    #[tokio::test]
    async fn a_small_frame_is_a_whole_message_and_fragments_are_chunks() {
        let mut bytes = client_frame(TEXT, true, "Peter".as_bytes());
        bytes.extend(client_frame(BINARY, true, &[1, 2, 3]));
        bytes.extend(client_frame(TEXT, false, b"Stre"));
        bytes.extend(client_frame(PING, true, b"are you there"));
        bytes.extend(client_frame(CONTINUE, false, b"am"));
        bytes.extend(client_frame(CONTINUE, true, b"ing"));
        bytes.extend(client_frame(CLOSE, true, &[0x03, 0xe8, b'b', b'y', b'e']));
        let (events, end) = read_all(bytes).await;
        assert_eq!(
            events,
            [
                Event::Text("Peter".into()),
                Event::Binary(Bytes::from_static(&[1, 2, 3])),
                Event::MessageStart { text: true },
                chunk("Stre"),
                Event::Ping(Bytes::from_static(b"are you there")),
                chunk("am"),
                chunk("ing"),
                Event::MessageEnd,
                Event::Close(Some(CloseFrame { code: CloseCode::Normal, reason: "bye".into() })),
            ]
        );
        assert!(matches!(end, ReadError::Lost(None)));
    }

    #[tokio::test]
    async fn a_large_frame_is_passed_on_in_bounded_chunks_as_it_arrives() {
        let payload: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let bytes = client_frame(BINARY, true, &payload);
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let mut reader = FrameReader::new(server, LIMITS);
        // Only the header and ten bytes so far: they are passed on at once.
        client.write_all(&bytes[..bytes.len() - 990]).await.unwrap();
        assert_eq!(reader.next().await.unwrap(), Event::MessageStart { text: false });
        assert_eq!(reader.next().await.unwrap(), Event::Chunk(Bytes::copy_from_slice(&payload[..10])));
        client.write_all(&bytes[bytes.len() - 990..]).await.unwrap();
        let mut received = payload[..10].to_vec();
        loop {
            match reader.next().await.unwrap() {
                Event::Chunk(chunk) => {
                    assert!(chunk.len() <= LIMITS.chunk_size);
                    received.extend_from_slice(&chunk);
                }
                Event::MessageEnd => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(received, payload);
    }

    #[tokio::test]
    async fn a_quiet_reader_holds_no_buffer_and_a_partial_frame_keeps_its_bytes() {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let mut reader = FrameReader::new(server, LIMITS);
        let waiting = |reader: &mut FrameReader<_>| {
            let mut context = std::task::Context::from_waker(std::task::Waker::noop());
            assert!(pin!(reader.next()).poll(&mut context).is_pending());
        };
        client.write_all(&client_frame(TEXT, true, b"hello")).await.unwrap();
        assert_eq!(reader.next().await.unwrap(), Event::Text("hello".into()));
        waiting(&mut reader);
        assert_eq!(reader.buffer.capacity(), 0);
        // Half a header: it stays in the buffer while the rest is awaited.
        let bytes = client_frame(TEXT, true, b"again");
        client.write_all(&bytes[..1]).await.unwrap();
        waiting(&mut reader);
        assert_eq!(&reader.buffer[..], &bytes[..1]);
        client.write_all(&bytes[1..]).await.unwrap();
        assert_eq!(reader.next().await.unwrap(), Event::Text("again".into()));
    }

    #[tokio::test]
    async fn a_huge_declared_length_is_refused_before_any_payload() {
        let mut bytes = Vec::new();
        let header = FrameHeader { opcode: BINARY, mask: Some([1, 2, 3, 4]), ..FrameHeader::default() };
        header.format(1 << 62, &mut bytes).unwrap();
        let (events, end) = read_all(bytes).await;
        assert!(events.is_empty());
        assert_eq!(close_code(end), 1009);
    }

    #[tokio::test]
    async fn a_message_over_the_limit_across_fragments_is_refused() {
        let mut bytes = client_frame(BINARY, false, &vec![0; LIMITS.max_frame_size]);
        bytes.extend(client_frame(CONTINUE, false, &vec![0; LIMITS.max_frame_size]));
        bytes.extend(client_frame(CONTINUE, true, &[0]));
        let (_, end) = read_all(bytes).await;
        assert_eq!(close_code(end), 1009);
    }

    #[tokio::test]
    async fn invalid_utf8_fails_at_the_fragment_that_makes_it_invalid() {
        let mut bytes = client_frame(TEXT, false, b"ok \xF4");
        bytes.extend(client_frame(CONTINUE, false, b"\x90"));
        let (events, end) = read_all(bytes).await;
        assert_eq!(events, [Event::MessageStart { text: true }, chunk("ok ")]);
        assert_eq!(close_code(end), 1007);
        let (_, end) = read_all(client_frame(TEXT, true, b"caf\xC3")).await;
        assert_eq!(close_code(end), 1007, "a strict message");
    }

    #[tokio::test]
    async fn protocol_violations_close_with_1002() {
        let unmasked = {
            let mut bytes = Vec::new();
            FrameHeader { opcode: TEXT, ..FrameHeader::default() }.format(2, &mut bytes).unwrap();
            bytes.extend_from_slice(b"hi");
            bytes
        };
        let reserved_bit = {
            let mut bytes = client_frame(TEXT, true, b"hi");
            bytes[0] |= 0x40;
            bytes
        };
        let reserved_opcode = {
            let mut bytes = client_frame(TEXT, true, b"hi");
            bytes[0] = (bytes[0] & 0xF0) | 0x3;
            bytes
        };
        let cases = [
            ("unmasked", unmasked),
            ("reserved bit", reserved_bit),
            ("reserved opcode", reserved_opcode),
            ("continuation first", client_frame(CONTINUE, true, b"x")),
            ("new message inside one", [client_frame(TEXT, false, b"a"), client_frame(TEXT, true, b"b")].concat()),
            ("long ping", client_frame(PING, true, &[0; 126])),
            ("fragmented ping", client_frame(PING, false, b"")),
            ("one-byte close", client_frame(CLOSE, true, &[3])),
            ("close code 1005", client_frame(CLOSE, true, &1005u16.to_be_bytes())),
            ("close code 999", client_frame(CLOSE, true, &999u16.to_be_bytes())),
            ("length with its top bit set", [&[0x82, 0xff][..], &[0x80, 0, 0, 0, 0, 0, 0, 0], &[0; 4]].concat()),
        ];
        for (name, bytes) in cases {
            let (_, end) = read_all(bytes).await;
            assert_eq!(close_code(end), 1002, "{name}");
        }
        let (_, end) = read_all(client_frame(CLOSE, true, &[0x03, 0xe8, 0xff])).await;
        let ReadError::Violation(frame) = end else { panic!("a close reason that is not UTF-8: {end:?}") };
        assert_eq!((u16::from(frame.code), frame.reason.as_str()), (1007, "invalid UTF-8 in a close reason"));
    }

    #[tokio::test]
    async fn a_frame_cut_short_is_a_lost_connection() {
        let bytes = client_frame(BINARY, true, &[0; 100]);
        let (events, end) = read_all(bytes[..50].to_vec()).await;
        assert_eq!(events[0], Event::MessageStart { text: false });
        assert!(matches!(end, ReadError::Lost(None)));
    }

    #[test]
    fn unmasking_from_any_offset_matches_byte_by_byte() {
        let mask = [1, 2, 4, 8];
        let data: Vec<u8> = (0..23).collect();
        for offset in 0..8 {
            let mut fast = data.clone();
            unmask(&mut fast, mask, offset);
            let slow: Vec<u8> = data.iter().enumerate().map(|(i, b)| b ^ mask[(offset + i) % 4]).collect();
            assert_eq!(fast, slow, "offset {offset}");
        }
    }
}
