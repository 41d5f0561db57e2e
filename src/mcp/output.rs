//! The output an MCP `execute` result carries, bounded by CCX_MCP_MAX_OUTPUT
//! while the command runs: the first half of the budget and the most recent
//! half, with a marker saying how much of the middle was left out. A result
//! is one JSON message that a model reads whole, so it keeps what a person
//! looks at first (how it started, how it ended), and memory stays at about
//! the budget whatever the command prints.

use crate::sanitize::floor_char_boundary;

/// Output gathered so far, at most about `limit` bytes of it kept.
#[derive(Debug)]
pub struct HeadTail {
    limit: usize,
    head: String,
    /// The latest output once the head is full; trimmed to the newest
    /// `limit - head` bytes whenever it reaches twice that, so that each
    /// byte is moved at most once.
    tail: String,
    omitted: u64,
}

impl HeadTail {
    pub fn new(limit: u64) -> HeadTail {
        HeadTail {
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            head: String::new(),
            tail: String::new(),
            omitted: 0,
        }
    }

    fn head_limit(&self) -> usize {
        self.limit / 2
    }

    fn tail_limit(&self) -> usize {
        self.limit - self.head_limit()
    }

    pub fn push(&mut self, mut data: &str) {
        if self.tail.is_empty() && self.omitted == 0 {
            let room = self.head_limit().saturating_sub(self.head.len());
            let take = floor_char_boundary(data, room.min(data.len()));
            self.head.push_str(&data[..take]);
            data = &data[take..];
            if data.is_empty() {
                return;
            }
        }
        self.tail.push_str(data);
        if self.tail.len() >= 2 * self.tail_limit().max(1) {
            self.trim_tail();
        }
    }

    /// Keeps the newest `tail_limit` bytes of the tail (from a character
    /// boundary), counting what is dropped.
    fn trim_tail(&mut self) {
        let excess = self.tail.len().saturating_sub(self.tail_limit());
        if excess == 0 {
            return;
        }
        let cut = ceil_boundary(&self.tail, excess);
        self.omitted += cut as u64;
        self.tail.drain(..cut);
    }

    /// Bytes left out of the middle so far.
    pub fn omitted(&self) -> u64 {
        self.omitted
    }

    /// The kept output, as one string (the head's buffer, extended).
    pub fn finish(mut self) -> String {
        self.trim_tail();
        if self.omitted == 0 {
            self.head.push_str(&self.tail);
            return self.head;
        }
        let marker = format!(
            "\n[… {} bytes of output left out here: an MCP result keeps the first and last \
             {} bytes (CCX_MCP_MAX_OUTPUT) …]\n",
            self.omitted,
            self.tail_limit()
        );
        self.head.reserve_exact(marker.len() + self.tail.len());
        self.head.push_str(&marker);
        self.head.push_str(&self.tail);
        self.head
    }
}

/// The smallest character boundary of `s` at or above `at`.
fn ceil_boundary(s: &str, mut at: usize) -> usize {
    while at < s.len() && !s.is_char_boundary(at) {
        at += 1;
    }
    at.min(s.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_output_is_kept_whole() {
        let mut out = HeadTail::new(16);
        out.push("abc");
        out.push("def\n");
        assert_eq!(out.omitted(), 0);
        assert_eq!(out.finish(), "abcdef\n");
    }

    #[test]
    fn long_output_keeps_head_and_tail_around_a_marker() {
        let mut out = HeadTail::new(8);
        for chunk in ["0123", "4567", "89ab", "cdef", "ghij"] {
            out.push(chunk);
        }
        assert_eq!(out.omitted(), 12);
        let text = out.finish();
        assert!(text.starts_with("0123\n[… 12 bytes"), "{text}");
        assert!(text.ends_with("…]\nghij"), "{text}");
    }

    #[test]
    fn memory_stays_near_the_limit_and_cuts_fall_on_characters() {
        let mut out = HeadTail::new(1000);
        let line = "é€😀 ascii\n";
        for _ in 0..10_000 {
            out.push(line);
            assert!(out.head.len() + out.tail.len() <= 1000 + 1000 / 2 * 2 + line.len());
        }
        let total = line.len() * 10_000;
        let text = out.finish();
        assert!(text.len() <= 1000 + 200, "{}", text.len());
        let at = text.find("\n[… ").expect("a marker");
        let end = at + text[at..].find("…]\n").expect("the marker's end") + "…]\n".len();
        let omitted: usize = text[at + "\n[… ".len()..]
            .split(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .expect("the count of bytes left out");
        assert_eq!(text.len() - (end - at) + omitted, total);
    }
}
