//! UTF-8-safe chunking of a byte stream: output is cut into `String` chunks
//! without ever splitting a multi-byte character, and invalid bytes are
//! replaced by U+FFFD with the chunk flagged as lossy.

/// Turns arbitrary byte chunks into valid UTF-8 strings, carrying an
/// incomplete trailing character over to the next chunk.
#[derive(Debug, Default)]
pub struct Utf8Chunker {
    pending: Vec<u8>,
}

/// One decoded chunk; `lossy` is true when invalid bytes were replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub text: String,
    pub lossy: bool,
}

impl Utf8Chunker {
    /// Decodes `bytes` after whatever was carried over. A character cut at
    /// the end is kept back for the next call.
    pub fn push(&mut self, bytes: &[u8]) -> Decoded {
        self.pending.extend_from_slice(bytes);
        let cut = complete_prefix_len(&self.pending);
        let rest = self.pending.split_off(cut);
        let decoded = decode(&self.pending);
        self.pending = rest;
        decoded
    }

    /// Decodes what is left at end of stream; an incomplete character is invalid here.
    pub fn finish(&mut self) -> Decoded {
        let decoded = decode(&self.pending);
        self.pending.clear();
        decoded
    }

    /// Drops a carried-over partial character (used when output is truncated).
    pub fn discard(&mut self) {
        self.pending.clear();
    }
}

fn decode(bytes: &[u8]) -> Decoded {
    match String::from_utf8_lossy(bytes) {
        std::borrow::Cow::Borrowed(s) => Decoded {
            text: s.to_owned(),
            lossy: false,
        },
        std::borrow::Cow::Owned(s) => Decoded {
            text: s,
            lossy: true,
        },
    }
}

/// Length of the longest prefix that does not end inside a character that
/// more bytes could still complete.
fn complete_prefix_len(buf: &[u8]) -> usize {
    let len = buf.len();
    for back in 1..=len.min(3) {
        let byte = buf[len - back];
        if byte & 0b1100_0000 == 0b1000_0000 {
            continue; // continuation byte: look further back for the lead
        }
        let needed = match byte {
            0xC2..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF4 => 4,
            _ => return len, // ASCII or invalid lead: nothing to wait for
        };
        return if needed > back { len - back } else { len };
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_splits_a_character_at_any_boundary() {
        let text = "aé€😀z".repeat(7);
        let bytes = text.as_bytes();
        for size in 1..=bytes.len() {
            let mut c = Utf8Chunker::default();
            let mut out = String::new();
            for chunk in bytes.chunks(size) {
                let d = c.push(chunk);
                assert!(!d.lossy, "chunk size {size}");
                out.push_str(&d.text);
            }
            out.push_str(&c.finish().text);
            assert_eq!(out, text, "chunk size {size}");
        }
    }

    #[test]
    fn invalid_bytes_are_replaced_and_flagged() {
        let mut c = Utf8Chunker::default();
        let d = c.push(b"ok\xff\xfeok");
        assert_eq!(d.text, "ok\u{fffd}\u{fffd}ok");
        assert!(d.lossy);
        let d = c.push(b"\xe2\x82");
        assert_eq!(d.text, "");
        let d = c.finish();
        assert!(d.lossy);
    }
}
