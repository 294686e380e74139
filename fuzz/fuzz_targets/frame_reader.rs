//! Feeds arbitrary bytes to the frame reader, as a client would send them,
//! cut into reads at arbitrary points, and checks what it makes of them:
//! no panic, chunks within their bound, text chunks whole UTF-8, messages
//! well nested and within the size limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use wsplug_wire::{Event, FrameReader, ReadError, ReadLimits};

const LIMITS: ReadLimits = ReadLimits { max_message_size: 4096, max_frame_size: 1024, strict_size: 64, chunk_size: 32 };

fuzz_target!(|input: &[u8]| {
    // The first byte says where the socket's reads end, so that chunk and
    // frame boundaries fall everywhere.
    let Some((&read_size, bytes)) = input.split_first() else { return };
    let socket = Reads { bytes, read_size: usize::from(read_size).max(1) };
    let mut reader = FrameReader::new(socket, LIMITS);
    let mut open: Option<(bool, usize)> = None;
    loop {
        // Reads never wait, so one poll finishes each call.
        let Poll::Ready(event) = pin!(reader.next()).poll(&mut Context::from_waker(Waker::noop())) else {
            panic!("the reader waited on a socket that never makes it wait");
        };
        match event {
            Ok(Event::MessageStart { text }) => {
                assert!(open.is_none(), "a message started inside another");
                open = Some((text, 0));
            }
            Ok(Event::Chunk(chunk)) => {
                let (text, size) = open.as_mut().expect("a chunk outside a message");
                assert!(!chunk.is_empty() && chunk.len() <= LIMITS.chunk_size);
                assert!(!*text || std::str::from_utf8(&chunk).is_ok(), "a text chunk that is not whole UTF-8");
                *size += chunk.len();
                assert!(*size <= LIMITS.max_message_size);
            }
            Ok(Event::MessageEnd) => assert!(open.take().is_some(), "a message ended that never started"),
            Ok(Event::Text(_) | Event::Binary(_)) => assert!(open.is_none(), "a whole message inside another"),
            Ok(Event::Ping(payload)) => assert!(payload.len() <= 125),
            Ok(Event::Pong | Event::Close(_)) => {}
            Err(ReadError::Violation(frame)) => {
                assert!(matches!(u16::from(frame.code), 1002 | 1007 | 1009));
                return;
            }
            Err(ReadError::Lost(_)) => return,
        }
    }
});

/// A socket whose reads return at most `read_size` bytes each.
struct Reads<'a> {
    bytes: &'a [u8],
    read_size: usize,
}

impl tokio::io::AsyncRead for Reads<'_> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let count = self.bytes.len().min(self.read_size).min(buf.remaining());
        let (read, rest) = self.bytes.split_at(count);
        buf.put_slice(read);
        self.bytes = rest;
        Poll::Ready(Ok(()))
    }
}
