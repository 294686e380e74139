//! permessage-deflate (RFC 7692): the negotiation of the
//! `Sec-WebSocket-Extensions` header, and compression either way, a chunk at
//! a time and bounded (flate2 on zlib-rs).
//!
//! | parameter in the client's offer | what the server does |
//! |---|---|
//! | `server_no_context_takeover` | accepted and echoed: it resets its compressor after every message anyway |
//! | `server_max_window_bits=N` | 9 to 15: echoed, and its compressor uses a window of 2^N; 8: the offer is declined (zlib cannot compress with a 256-byte window) |
//! | `client_no_context_takeover` | echoed: the client resets its compressor after each message, so the server drops its decompressor between messages |
//! | `client_max_window_bits[=N]` | accepted, not echoed: the server's decompressor takes any window |
//! | anything else, a repeated parameter, a bad value | the offer is declined (the next one is tried) |
//!
//! The server keeps no compressor between messages (resetting is always the
//! sender's right): a whole message is deflated with the worker thread's
//! compressor, a fragmented one with a compressor of its own while it lasts,
//! so an idle connection holds none. Its decompressor (about 48 KiB) lives
//! from the first compressed message on, and only for the message if the
//! client does not keep its context (`client_no_context_takeover`).

use bytes::{Buf, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};

/// What a compressed message drops at its end and the receiver adds back
/// (RFC 7692 section 7.2.1): the end of an empty stored block.
const TAIL: [u8; 4] = [0, 0, 0xff, 0xff];

/// The extension's name in the header.
const NAME: &str = "permessage-deflate";

/// The deflate level: fast. Most of the gain on text comes from the first
/// levels, and the server compresses every message it sends.
const LEVEL: u32 = 3;

/// The terms of a negotiated permessage-deflate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateParams {
    /// The client resets its compressor after each message.
    pub client_no_context_takeover: bool,
    /// The window of the server's compressor, in bits (9 to 15).
    pub server_max_window_bits: u8,
}

/// The first offer in `offers` (the values of the client's
/// `Sec-WebSocket-Extensions` headers) that the server can accept, and the
/// header value that accepts it; `None` if there is none.
pub fn negotiate<'a>(offers: impl IntoIterator<Item = &'a str>) -> Option<(DeflateParams, String)> {
    offers.into_iter().flat_map(|value| split_outside_quotes(value, ',')).find_map(|offer| accept(offer.trim()))
}

/// The server's answer to one offer, if it can accept it.
fn accept(offer: &str) -> Option<(DeflateParams, String)> {
    let mut parts = split_outside_quotes(offer, ';').into_iter().map(str::trim);
    if !parts.next()?.eq_ignore_ascii_case(NAME) {
        return None;
    }
    let mut params = DeflateParams { client_no_context_takeover: false, server_max_window_bits: 15 };
    let mut response = NAME.to_owned();
    let mut seen = Vec::new();
    for part in parts {
        let (name, value) = match part.split_once('=') {
            Some((name, value)) => (name.trim(), Some(value.trim().trim_matches('"'))),
            None => (part, None),
        };
        let name = name.to_ascii_lowercase();
        if seen.contains(&name) {
            return None;
        }
        match (name.as_str(), value) {
            ("server_no_context_takeover", None) => response.push_str("; server_no_context_takeover"),
            ("client_no_context_takeover", None) => {
                params.client_no_context_takeover = true;
                response.push_str("; client_no_context_takeover");
            }
            ("server_max_window_bits", Some(value)) => {
                let bits = window_bits(value).filter(|bits| *bits >= 9)?;
                params.server_max_window_bits = bits;
                response.push_str(&format!("; server_max_window_bits={bits}"));
            }
            ("client_max_window_bits", None) => {}
            ("client_max_window_bits", Some(value)) => {
                window_bits(value)?;
            }
            _ => return None,
        }
        seen.push(name);
    }
    Some((params, response))
}

/// A window size in bits, as RFC 7692 writes it: 8 to 15, no leading zero.
fn window_bits(value: &str) -> Option<u8> {
    if value.starts_with('0') {
        return None;
    }
    value.parse().ok().filter(|bits| (8..=15).contains(bits))
}

/// `value` split at `separator`s that are not inside a quoted string.
fn split_outside_quotes(value: &str, separator: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut quoted = false;
    let mut start = 0;
    for (at, character) in value.char_indices() {
        match character {
            '"' => quoted = !quoted,
            _ if character == separator && !quoted => {
                parts.push(&value[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    parts.push(&value[start..]);
    parts
}

/// Compressed data that does not inflate.
#[derive(Debug)]
pub struct InvalidDeflate;

/// The client's compressed messages, inflated a bounded piece at a time.
#[derive(Debug)]
pub struct Inflater {
    state: Option<Decompress>,
    keep_context: bool,
}

impl Inflater {
    /// For a connection with `params`; nothing is allocated until the first
    /// compressed message.
    pub fn new(params: DeflateParams) -> Self {
        Self { state: None, keep_context: !params.client_no_context_takeover }
    }

    /// Inflates from the front of `input` (advancing it past what it used)
    /// into at most `limit` bytes. Less than `limit` means nothing more
    /// comes out until there is more input.
    pub fn inflate(&mut self, input: &mut BytesMut, limit: usize) -> Result<BytesMut, InvalidDeflate> {
        // The decoder takes any window, whatever the client compresses with.
        let state = self.state.get_or_insert_with(|| Decompress::new(false));
        let mut output = Vec::with_capacity(limit);
        // Called even with no input left: the decoder may hold output it
        // had no room for (the rest of a long match).
        while output.len() < limit {
            let before = state.total_in();
            let produced = output.len();
            state.decompress_vec(input, &mut output, FlushDecompress::Sync).map_err(|_| InvalidDeflate)?;
            let used = usize::try_from(state.total_in() - before).expect("at most the input's length");
            input.advance(used);
            if used == 0 && output.len() == produced {
                break;
            }
        }
        Ok(BytesMut::from(&output[..]))
    }

    /// The tail to inflate after a message's last compressed byte.
    pub fn message_tail() -> &'static [u8] {
        &TAIL
    }

    /// The message is inflated: the state goes unless the client keeps its
    /// context.
    pub fn end_message(&mut self) {
        if !self.keep_context {
            self.state = None;
        }
    }
}

/// The server's messages, deflated as they are sent: a message is one
/// compression context, reset at its end (so nothing is held between
/// messages).
#[derive(Debug)]
pub struct Deflater {
    state: Option<Compress>,
    window_bits: u8,
}

impl Deflater {
    /// For a connection with `params`.
    pub fn new(params: DeflateParams) -> Self {
        Self { state: None, window_bits: params.server_max_window_bits }
    }

    /// Deflates the next piece of the message; with `last`, the message's
    /// end. The pieces, in order, are the payloads of the message's frames.
    ///
    /// A whole message (the first piece is the last) is deflated with this
    /// thread's compressor for the window, reset after it: a compressor's
    /// state is about 270 KiB, which a connection would otherwise allocate
    /// and free for every message (and the allocator then keeps in pieces
    /// between them). A fragmented message has one of its own until it ends.
    pub fn deflate(&mut self, input: &[u8], last: bool) -> Vec<u8> {
        let window_bits = self.window_bits;
        if last && self.state.is_none() {
            return SHARED.with_borrow_mut(|shared| {
                let state = shared[usize::from(window_bits - 9)].get_or_insert_with(|| new_compress(window_bits));
                let output = deflate_with(state, input, true);
                state.reset();
                output
            });
        }
        let state = self.state.get_or_insert_with(|| new_compress(window_bits));
        let output = deflate_with(state, input, last);
        if last {
            self.state = None;
        }
        output
    }
}

thread_local! {
    /// This thread's compressors for whole messages, one per window size
    /// (9 to 15 bits), made when first needed.
    static SHARED: std::cell::RefCell<[Option<Compress>; 7]> = const { std::cell::RefCell::new([None, None, None, None, None, None, None]) };
}

fn new_compress(window_bits: u8) -> Compress {
    Compress::new_with_window_bits(Compression::new(LEVEL), false, window_bits)
}

/// Deflates `input` with `state`, flushed so that the receiver can inflate
/// all of it now; with `last`, without the message's tail.
fn deflate_with(state: &mut Compress, input: &[u8], last: bool) -> Vec<u8> {
    let mut output = Vec::with_capacity(input.len() / 2 + 64);
    let mut input = input;
    loop {
        let before = state.total_in();
        if output.capacity() - output.len() < 64 {
            output.reserve(output.capacity().max(64));
        }
        state.compress_vec(input, &mut output, FlushCompress::Sync).expect("deflating memory does not fail");
        input = &input[usize::try_from(state.total_in() - before).expect("at most the input's length")..];
        // A sync flush is complete once it had room to spare.
        if input.is_empty() && output.len() < output.capacity() {
            break;
        }
    }
    if last {
        // Every sync flush ends with the tail; the message's last one drops
        // it (RFC 7692 section 7.2.1).
        if output.ends_with(&TAIL) {
            output.truncate(output.len() - TAIL.len());
        } else if output.is_empty() {
            // Nothing since the last flush (zlib flushes nothing twice): the
            // header byte of an empty stored block, which the tail the
            // receiver adds completes.
            output.push(0);
        }
    }
    output
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> DeflateParams {
        DeflateParams { client_no_context_takeover: false, server_max_window_bits: 15 }
    }

    #[test]
    fn offers_are_accepted_as_rfc_7692_says_or_declined() {
        assert_eq!(negotiate(["permessage-deflate"]), Some((params(), "permessage-deflate".into())));
        let (params, response) =
            negotiate(["permessage-deflate; client_max_window_bits; server_no_context_takeover"]).unwrap();
        assert_eq!((params.client_no_context_takeover, params.server_max_window_bits), (false, 15));
        assert_eq!(response, "permessage-deflate; server_no_context_takeover");
        let (params, response) =
            negotiate(["permessage-deflate; client_no_context_takeover; server_max_window_bits=9"]).unwrap();
        assert_eq!((params.client_no_context_takeover, params.server_max_window_bits), (true, 9));
        assert_eq!(response, "permessage-deflate; client_no_context_takeover; server_max_window_bits=9");
        // Declined: a window zlib cannot compress with, bad or repeated
        // parameters, unknown ones, other extensions; the next offer is tried.
        for declined in [
            "permessage-deflate; server_max_window_bits=8",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; mystery",
            "x-webkit-deflate-frame",
        ] {
            assert_eq!(negotiate([declined]), None, "{declined}");
        }
        let (params, _) = negotiate(["permessage-deflate; server_max_window_bits=8, permessage-deflate; \
             server_max_window_bits=\"12\""])
        .unwrap();
        assert_eq!(params.server_max_window_bits, 12);
        assert_eq!(negotiate(["foo, bar", "permessage-deflate"]).map(|(_, response)| response), Some(NAME.into()));
    }

    /// Inflates a whole message as the reader does, in pieces of `limit`.
    fn inflate_all(inflater: &mut Inflater, compressed: &[u8], limit: usize) -> Vec<u8> {
        let mut input = BytesMut::from(compressed);
        input.extend_from_slice(Inflater::message_tail());
        let mut inflated = Vec::new();
        loop {
            let piece = inflater.inflate(&mut input, limit).unwrap();
            assert!(piece.len() <= limit);
            inflated.extend_from_slice(&piece);
            if piece.len() < limit {
                break;
            }
        }
        inflater.end_message();
        inflated
    }

    #[test]
    fn messages_deflated_in_pieces_inflate_in_bounded_pieces() {
        let mut deflater = Deflater::new(params());
        let mut inflater = Inflater::new(params());
        let text = "{\"user\":\"peter\",\"text\":\"hello\"} ".repeat(2000);
        for _ in 0..3 {
            // One message in three frames, as a streamed reply goes out.
            let mut compressed = deflater.deflate(&text.as_bytes()[..100], false);
            compressed.extend(deflater.deflate(&text.as_bytes()[100..], false));
            compressed.extend(deflater.deflate(b"", true));
            assert!(compressed.len() < text.len() / 10, "{} bytes", compressed.len());
            assert_eq!(inflate_all(&mut inflater, &compressed, 4096), text.as_bytes());
        }
        let small = deflater.deflate(b"Hello", true);
        assert_eq!(inflate_all(&mut inflater, &small, 4096), b"Hello");
    }

    #[test]
    fn a_bomb_inflates_no_more_than_asked_at_a_time() {
        let mut deflater = Deflater::new(params());
        let bomb = deflater.deflate(&vec![0; 16 << 20], true);
        assert!(bomb.len() < 64 * 1024, "{} bytes", bomb.len());
        let mut inflater = Inflater::new(params());
        let mut input = BytesMut::from(&bomb[..]);
        let piece = inflater.inflate(&mut input, 1024).unwrap();
        assert_eq!(piece.len(), 1024);
        assert!(!input.is_empty());
        assert!(Inflater::new(params()).inflate(&mut BytesMut::from(&b"\xff\xff\xff\xff"[..]), 1024).is_err());
    }
}
