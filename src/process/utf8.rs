//! UTF-8 helpers for framing output: where a chunk may be cut without
//! splitting a character, and decoding with invalid bytes replaced by
//! U+FFFD (reported, so that the message can say `lossy`).

/// Decodes `bytes`; the flag is true when invalid bytes were replaced.
pub fn decode(bytes: &[u8]) -> (String, bool) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (s.to_owned(), false),
        Err(_) => (String::from_utf8_lossy(bytes).into_owned(), true),
    }
}

/// Length of the longest prefix that does not end inside a character that
/// more bytes could still complete.
pub fn complete_prefix_len(buf: &[u8]) -> usize {
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

/// Where to cut `bytes` (longer than `max`) into a first piece of at most
/// `max` bytes without splitting a character: `max`, or up to three bytes
/// less when a character straddles it. Invalid input is cut at `max`.
pub fn char_boundary_at_or_before(bytes: &[u8], max: usize) -> usize {
    debug_assert!(bytes.len() > max && max > 3);
    (max - 3..=max)
        .rev()
        .find(|&i| bytes[i] & 0b1100_0000 != 0b1000_0000)
        .unwrap_or(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_fall_on_character_boundaries() {
        let text = "aé€😀z".repeat(7);
        let bytes = text.as_bytes();
        for max in 4..bytes.len() {
            let cut = char_boundary_at_or_before(bytes, max);
            assert!(cut <= max && max - cut <= 3, "max {max}");
            assert!(text.is_char_boundary(cut), "max {max}");
        }
    }

    #[test]
    fn an_unfinished_character_is_held_back() {
        let text = "a€".as_bytes();
        assert_eq!(complete_prefix_len(text), 4);
        assert_eq!(complete_prefix_len(&text[..3]), 1);
        assert_eq!(complete_prefix_len(&text[..2]), 1);
        assert_eq!(complete_prefix_len(b"ab\xff"), 3);
    }

    #[test]
    fn invalid_bytes_are_replaced_and_flagged() {
        assert_eq!(decode(b"ok"), ("ok".to_string(), false));
        assert_eq!(
            decode(b"ok\xff\xfeok"),
            ("ok\u{fffd}\u{fffd}ok".to_string(), true)
        );
    }
}
