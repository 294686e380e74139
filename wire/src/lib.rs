//! The WebSocket protocol on an upgraded connection, after the handshake:
//! frames in as they arrive ([`reader`]), frames out ([`writer`]), and
//! permessage-deflate either way ([`deflate`]).
//!
//! tungstenite provides the frame types (headers, opcodes, close codes);
//! wsplug reads and writes the frames itself so that a message's payload can
//! stream through the host instead of being reassembled first.

#![deny(missing_docs)]

pub mod deflate;
pub mod reader;
pub mod utf8;
pub mod writer;

pub use deflate::{DeflateParams, Deflater, negotiate};
pub use reader::{Event, FrameReader, ReadError, ReadLimits};
pub use writer::{FrameWriter, frame, payload_length};
