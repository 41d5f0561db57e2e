//! Line framing of one output stream, as cc_executor frames it: one
//! `process.output` per line (the newline stays in `data`), a line longer
//! than [`CHUNK`] bytes as numbered chunks.
//!
//! cc_executor reads a whole line before it sends it, so it always knows how
//! many chunks a line has. ccx streams with bounded memory, so the rule is:
//!
//! - a line is held until its newline arrives, up to [`LOOKAHEAD`] bytes; a
//!   line that ends within that bound is sent like cc_executor sends it: one
//!   message when it fits in [`CHUNK`] bytes, otherwise chunks carrying
//!   `chunk_index` and the exact `total_chunks`;
//! - a line that grows past [`LOOKAHEAD`], output that stops mid-line for a
//!   while ([`LineFramer::flush_partial`]), and output cut by the output cap
//!   are sent as chunks as they come: `chunk_index` counts up, and
//!   `total_chunks` is only given on the line's last chunk (it is not known
//!   before);
//! - `truncated` is true on every message whose `data` does not finish its
//!   line — the next message of the same stream continues it — and on the
//!   last message before the output cap dropped the rest (cc_executor's
//!   meaning on chunks: "not the last chunk").
//!
//! A chunk is cut on a character boundary (never inside a UTF-8 sequence),
//! so it may be a few bytes shorter than [`CHUNK`]. Invalid bytes become
//! U+FFFD and the message says `lossy: true`.

use crate::protocol::{Data, Output, StreamKind};

use super::utf8::{char_boundary_at_or_before, complete_prefix_len, decode};

/// Largest `data` of one message, in bytes of the process's output (cc_executor:
/// 65,536 characters; the two agree for ASCII).
pub const CHUNK: usize = 64 * 1024;
/// How much of a line is held waiting for its newline before it is streamed
/// as chunks whose total is not known in advance (16 chunks).
pub const LOOKAHEAD: usize = 16 * CHUNK;

/// Turns the bytes of one stream into line-framed [`Output`] messages.
#[derive(Debug)]
pub struct LineFramer {
    stream: StreamKind,
    /// Bytes of the current line not sent yet (no newline inside).
    pending: Vec<u8>,
    /// Chunks of the current line already sent (0: none, the line is whole so far).
    sent_chunks: u32,
}

impl LineFramer {
    pub fn new(stream: StreamKind) -> Self {
        LineFramer {
            stream,
            pending: Vec::new(),
            sent_chunks: 0,
        }
    }

    pub fn stream(&self) -> StreamKind {
        self.stream
    }

    /// True when part of a line is held back (what an idle flush would send).
    pub fn has_partial(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Frames `bytes`, appending the messages that are complete to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<Output>) {
        let mut rest = bytes;
        while let Some(pos) = memchr::memchr(b'\n', rest) {
            let (line, after) = rest.split_at(pos + 1);
            if self.pending.is_empty() && self.sent_chunks == 0 {
                self.whole_line(line, false, out);
            } else {
                let mut held = std::mem::take(&mut self.pending);
                held.extend_from_slice(line);
                self.line_end(&held, false, out);
                held.clear();
                self.pending = held;
            }
            rest = after;
        }
        self.pending.extend_from_slice(rest);
        if self.sent_chunks > 0 || self.pending.len() > LOOKAHEAD {
            self.stream_chunks(out);
        }
    }

    /// Sends the held part of a line now (output went quiet mid-line): as a
    /// chunk that the rest of the line will continue. A character whose
    /// bytes have not all arrived stays held.
    pub fn flush_partial(&mut self, out: &mut Vec<Output>) {
        let cut = complete_prefix_len(&self.pending);
        if cut == 0 {
            return;
        }
        self.stream_chunks(out);
        let cut = complete_prefix_len(&self.pending);
        if cut == 0 {
            return;
        }
        let (text, lossy) = decode(&self.pending[..cut]);
        out.push(self.message(text, lossy, true, Some(self.sent_chunks), None));
        self.sent_chunks += 1;
        self.pending.drain(..cut);
    }

    /// End of stream: whatever is held is the last (unterminated) line.
    pub fn finish(&mut self, out: &mut Vec<Output>) {
        self.end_held_line(false, out);
    }

    /// The output cap was reached: the held part of the line is sent, marked
    /// truncated, and nothing more of this stream will be. Returns whether a
    /// message was sent.
    pub fn truncate(&mut self, out: &mut Vec<Output>) -> bool {
        let before = out.len();
        self.end_held_line(true, out);
        out.len() > before
    }

    fn end_held_line(&mut self, truncated: bool, out: &mut Vec<Output>) {
        if self.pending.is_empty() {
            if self.sent_chunks > 0 && truncated {
                // The line's last chunk was already sent; say it ends cut.
                self.line_end(&[], true, out);
            }
            self.sent_chunks = 0;
            return;
        }
        let held = std::mem::take(&mut self.pending);
        self.line_end(&held, truncated, out);
    }

    /// The end of the current line is `tail` (after what was already sent).
    fn line_end(&mut self, tail: &[u8], truncated: bool, out: &mut Vec<Output>) {
        if self.sent_chunks == 0 {
            self.whole_line(tail, truncated, out);
            return;
        }
        let mut rest = tail;
        loop {
            let cut = if rest.len() > CHUNK {
                char_boundary_at_or_before(rest, CHUNK)
            } else {
                rest.len()
            };
            let (piece, after) = rest.split_at(cut);
            let last = after.is_empty();
            let (text, lossy) = decode(piece);
            let index = self.sent_chunks;
            let total = last.then_some(index + 1);
            out.push(self.message(text, lossy, !last || truncated, Some(index), total));
            self.sent_chunks += 1;
            rest = after;
            if last {
                break;
            }
        }
        self.sent_chunks = 0;
    }

    /// A line known from start to end: one message, or chunks with their total.
    fn whole_line(&mut self, line: &[u8], truncated: bool, out: &mut Vec<Output>) {
        if line.len() <= CHUNK {
            if line.is_empty() && !truncated {
                return;
            }
            let (text, lossy) = decode(line);
            out.push(self.message(text, lossy, truncated, None, None));
            return;
        }
        let mut cuts = Vec::new();
        let mut at = 0;
        while line.len() - at > CHUNK {
            at += char_boundary_at_or_before(&line[at..], CHUNK);
            cuts.push(at);
        }
        cuts.push(line.len());
        let total = cuts.len() as u32;
        let mut start = 0;
        for (index, &end) in cuts.iter().enumerate() {
            let last = end == line.len();
            let (text, lossy) = decode(&line[start..end]);
            out.push(self.message(
                text,
                lossy,
                !last || truncated,
                Some(index as u32),
                Some(total),
            ));
            start = end;
        }
    }

    /// Streams full chunks of a line whose end is not known, keeping at most
    /// one chunk's worth held for the line's last message.
    fn stream_chunks(&mut self, out: &mut Vec<Output>) {
        let mut start = 0;
        while self.pending.len() - start > CHUNK {
            let cut = char_boundary_at_or_before(&self.pending[start..], CHUNK);
            let (text, lossy) = decode(&self.pending[start..start + cut]);
            out.push(self.message(text, lossy, true, Some(self.sent_chunks), None));
            self.sent_chunks += 1;
            start += cut;
        }
        self.pending.drain(..start);
    }

    fn message(
        &self,
        data: String,
        lossy: bool,
        truncated: bool,
        chunk_index: Option<u32>,
        total_chunks: Option<u32>,
    ) -> Output {
        Output {
            stream: self.stream,
            data: Data::Text(data),
            truncated,
            lossy,
            chunk_index,
            total_chunks,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame<B: AsRef<[u8]>>(input: &[B]) -> Vec<Output> {
        let mut f = LineFramer::new(StreamKind::Stdout);
        let mut out = Vec::new();
        for bytes in input {
            f.push(bytes.as_ref(), &mut out);
        }
        f.finish(&mut out);
        out
    }

    fn data(out: &[Output]) -> Vec<&str> {
        out.iter()
            .map(|o| o.data.as_text().unwrap_or_default())
            .collect()
    }

    #[test]
    fn one_message_per_line_whatever_the_reads() {
        assert_eq!(data(&frame(&[b"a\nb\nc\n"])), ["a\n", "b\n", "c\n"]);
        assert_eq!(data(&frame(&["a", "\nb", "\n"])), ["a\n", "b\n"]);
        assert_eq!(data(&frame(&["x\n", "tail"])), ["x\n", "tail"]);
        assert_eq!(data(&frame(&[b"\n\n"])), ["\n", "\n"]);
        let out = frame(&[b"a\n"]);
        assert!(out[0].chunk_index.is_none() && !out[0].truncated);
    }

    #[test]
    fn a_long_line_within_the_lookahead_gets_exact_chunk_numbers() {
        let line = format!("{}\n", "x".repeat(200_000));
        let pieces: Vec<&[u8]> = line.as_bytes().chunks(4096).collect();
        let out = frame(&pieces[..]);
        assert_eq!(out.len(), 4);
        for (i, o) in out.iter().enumerate() {
            assert_eq!(o.chunk_index, Some(i as u32));
            assert_eq!(o.total_chunks, Some(4));
            assert_eq!(o.truncated, i < 3);
            assert!(o.data.len() <= CHUNK);
        }
        assert_eq!(
            out.iter()
                .map(|o| o.data.as_text().unwrap_or_default())
                .collect::<String>(),
            line
        );
    }

    #[test]
    fn the_exact_chunk_size_is_one_message_and_one_more_byte_is_two() {
        let line = format!("{}\n", "y".repeat(CHUNK - 1));
        assert_eq!(frame(&[line.as_bytes()]).len(), 1);
        let line = format!("{}\n", "y".repeat(CHUNK));
        let out = frame(&[line.as_bytes()]);
        assert_eq!(data(&out)[1], "\n");
        assert_eq!(out[1].total_chunks, Some(2));
    }

    #[test]
    fn a_line_past_the_lookahead_streams_and_numbers_its_last_chunk() {
        let line = format!("{}\n", "z".repeat(3 * LOOKAHEAD));
        let mut f = LineFramer::new(StreamKind::Stdout);
        let mut out = Vec::new();
        let mut held_max = 0;
        for piece in line.as_bytes().chunks(CHUNK) {
            f.push(piece, &mut out);
            held_max = held_max.max(f.pending.len());
        }
        f.finish(&mut out);
        assert!(held_max <= LOOKAHEAD + CHUNK, "held {held_max}");
        let n = out.len();
        for (i, o) in out.iter().enumerate() {
            assert_eq!(o.chunk_index, Some(i as u32));
            assert_eq!(o.total_chunks, (i == n - 1).then_some(n as u32));
            assert_eq!(o.truncated, i < n - 1);
        }
        assert_eq!(out.iter().map(|o| o.data.len()).sum::<usize>(), line.len());
        // The stream goes on framing lines after it.
        f.push(b"next\n", &mut out);
        assert_eq!(out.last().unwrap().data, Data::from("next\n"));
        assert_eq!(out.last().unwrap().chunk_index, None);
    }

    #[test]
    fn chunks_never_split_a_character() {
        // A 3-byte character straddles the 64 KiB boundary.
        let mut line = "a".repeat(CHUNK - 1);
        line.push('€');
        line.push_str(&"b".repeat(100));
        line.push('\n');
        let out = frame(&[line.as_bytes()]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].data.len(), CHUNK - 1);
        assert!(out[1].data.as_bytes().starts_with("€".as_bytes()));
        assert!(out.iter().all(|o| !o.lossy));
        // Same when streamed past the lookahead, byte by uneven byte.
        let long = format!(
            "{}€{}\n",
            "a".repeat(LOOKAHEAD + CHUNK - 2),
            "é".repeat(CHUNK)
        );
        let pieces: Vec<&[u8]> = long.as_bytes().chunks(7777).collect();
        let out = frame(&pieces[..]);
        assert!(out.iter().all(|o| !o.lossy && o.data.len() <= CHUNK));
        assert_eq!(
            out.iter()
                .map(|o| o.data.as_text().unwrap_or_default())
                .collect::<String>(),
            long
        );
    }

    #[test]
    fn an_idle_flush_sends_a_partial_line_that_the_rest_continues() {
        let mut f = LineFramer::new(StreamKind::Stderr);
        let mut out = Vec::new();
        f.push("prompt> €".as_bytes(), &mut out);
        assert!(out.is_empty());
        f.push(&"é".as_bytes()[..1], &mut out);
        f.flush_partial(&mut out);
        assert_eq!(data(&out), ["prompt> €"]);
        assert_eq!(
            (out[0].chunk_index, out[0].total_chunks, out[0].truncated),
            (Some(0), None, true)
        );
        f.push(&"é".as_bytes()[1..], &mut out);
        f.push(b"!\nnext\n", &mut out);
        assert_eq!(data(&out), ["prompt> €", "é!\n", "next\n"]);
        assert_eq!(
            (out[1].chunk_index, out[1].total_chunks, out[1].truncated),
            (Some(1), Some(2), false)
        );
        assert_eq!(out[2].chunk_index, None);
    }

    #[test]
    fn truncation_sends_what_is_held_marked_truncated() {
        let mut f = LineFramer::new(StreamKind::Stdout);
        let mut out = Vec::new();
        f.push(b"done\npart", &mut out);
        assert!(f.truncate(&mut out));
        assert_eq!(data(&out), ["done\n", "part"]);
        assert!(out[1].truncated);
        assert!(!f.truncate(&mut out));
    }

    #[test]
    fn invalid_bytes_are_replaced_and_flagged() {
        let out = frame(&[b"ok\xff\xfeok\n"]);
        assert_eq!(out[0].data, Data::from("ok\u{fffd}\u{fffd}ok\n"));
        assert!(out[0].lossy);
        let out = frame(&[b"cut \xe2\x82"]);
        assert!(out[0].lossy);
    }
}
