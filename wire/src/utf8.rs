//! UTF-8 validation across the chunks of a streamed text message.
//!
//! A chunk boundary may fall inside a character; the validator holds back
//! the incomplete tail (at most three bytes) until the next chunk completes
//! it, so every chunk it passes on is whole characters. Invalid bytes are
//! reported as soon as they arrive, not at the end of the message.

use bytes::{Bytes, BytesMut};

/// The state of one text message's validation.
#[derive(Debug, Default)]
pub struct Utf8Validator {
    /// The start of a character whose remaining bytes have not arrived yet.
    tail: Vec<u8>,
}

/// The bytes are not UTF-8.
#[derive(Debug, PartialEq, Eq)]
pub struct InvalidUtf8;

impl Utf8Validator {
    /// Validates the next chunk; returns the whole characters ready to pass on
    /// (possibly none, if the chunk only started a character).
    pub fn feed(&mut self, chunk: BytesMut) -> Result<Bytes, InvalidUtf8> {
        let mut chunk = chunk;
        if !self.tail.is_empty() {
            // Rare: only when a character straddles chunks.
            let mut joined = BytesMut::with_capacity(self.tail.len() + chunk.len());
            joined.extend_from_slice(&self.tail);
            joined.extend_from_slice(&chunk);
            self.tail.clear();
            chunk = joined;
        }
        match std::str::from_utf8(&chunk) {
            Ok(_) => Ok(chunk.freeze()),
            // `error_len() == None`: the chunk ends inside a character that
            // may yet be valid. Anything else is invalid now.
            Err(err) if err.error_len().is_none() => {
                self.tail.extend_from_slice(&chunk[err.valid_up_to()..]);
                chunk.truncate(err.valid_up_to());
                Ok(chunk.freeze())
            }
            Err(_) => Err(InvalidUtf8),
        }
    }

    /// Checks that the message did not end inside a character.
    pub fn finish(&self) -> Result<(), InvalidUtf8> {
        if self.tail.is_empty() { Ok(()) } else { Err(InvalidUtf8) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(chunks: &[&[u8]]) -> Result<Vec<u8>, InvalidUtf8> {
        let mut validator = Utf8Validator::default();
        let mut out = Vec::new();
        for chunk in chunks {
            let valid = validator.feed(BytesMut::from(*chunk))?;
            assert!(std::str::from_utf8(&valid).is_ok(), "passed on a partial character");
            out.extend_from_slice(&valid);
        }
        validator.finish()?;
        Ok(out)
    }

    #[test]
    fn characters_split_across_chunks_pass_whole() {
        let text = "Zoë Ωmega 😀";
        let bytes = text.as_bytes();
        for cut in 0..=bytes.len() {
            for second in cut..=bytes.len() {
                let out = feed_all(&[&bytes[..cut], &bytes[cut..second], &bytes[second..]]).unwrap();
                assert_eq!(out, bytes, "cuts at {cut} and {second}");
            }
        }
    }

    #[test]
    fn invalid_bytes_fail_as_soon_as_they_arrive() {
        let mut validator = Utf8Validator::default();
        // U+10FFFF is the last code point; F4 90 would start U+110000.
        assert_eq!(validator.feed(BytesMut::from(&b"ok \xF4"[..])).unwrap(), &b"ok "[..]);
        assert_eq!(validator.feed(BytesMut::from(&b"\x90"[..])), Err(InvalidUtf8));
    }

    #[test]
    fn a_message_that_ends_inside_a_character_is_invalid() {
        assert_eq!(feed_all(&[b"caf\xC3"]), Err(InvalidUtf8));
        assert_eq!(feed_all(&[b"\xED\xA0\x80"]), Err(InvalidUtf8), "a surrogate");
    }
}
