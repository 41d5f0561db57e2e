//! Batched framing of one output stream, for clients that ask for it (ccx's
//! own): a `process.output` carries the stream's bytes as they were read,
//! many lines at once, up to [`CHUNK`] bytes, cut only between characters.
//! Lines may span messages; concatenating `data` rebuilds the stream. No
//! line is held for its newline, so there is nothing to flush when output
//! goes quiet, except the first bytes of a character whose rest has not
//! arrived. cc_executor clients never ask for it and get `lines`.

use crate::protocol::{Output, StreamKind};

use super::lines::{LineFramer, CHUNK};
use super::utf8::{char_boundary_at_or_before, complete_prefix_len, decode};

/// How a stream's bytes become messages (see `protocol::Framing`).
#[derive(Debug)]
pub enum Framer {
    Lines(LineFramer),
    Batches(BatchFramer),
}

impl Framer {
    pub fn new(stream: StreamKind, batched: bool) -> Framer {
        match batched {
            true => Framer::Batches(BatchFramer {
                stream,
                held: Vec::new(),
            }),
            false => Framer::Lines(LineFramer::new(stream)),
        }
    }

    /// True when bytes are held back (what an idle flush would send).
    pub fn has_partial(&self) -> bool {
        match self {
            Framer::Lines(f) => f.has_partial(),
            Framer::Batches(f) => !f.held.is_empty(),
        }
    }

    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<Output>) {
        match self {
            Framer::Lines(f) => f.push(bytes, out),
            Framer::Batches(f) => f.push(bytes, out),
        }
    }

    pub fn flush_partial(&mut self, out: &mut Vec<Output>) {
        match self {
            Framer::Lines(f) => f.flush_partial(out),
            // An unfinished character stays unfinished: it waits for its
            // rest or the end of the stream.
            Framer::Batches(_) => {}
        }
    }

    pub fn finish(&mut self, out: &mut Vec<Output>) {
        match self {
            Framer::Lines(f) => f.finish(out),
            Framer::Batches(f) => f.end(false, out),
        }
    }

    /// The output cap was reached; see [`LineFramer::truncate`].
    pub fn truncate(&mut self, out: &mut Vec<Output>) -> bool {
        match self {
            Framer::Lines(f) => f.truncate(out),
            Framer::Batches(f) => {
                let before = out.len();
                f.end(true, out);
                out.len() > before
            }
        }
    }
}

/// See the module comment.
#[derive(Debug)]
pub struct BatchFramer {
    stream: StreamKind,
    /// The first bytes of a character whose rest has not arrived (at most 3).
    held: Vec<u8>,
}

impl BatchFramer {
    fn push(&mut self, bytes: &[u8], out: &mut Vec<Output>) {
        if self.held.is_empty() {
            let cut = complete_prefix_len(bytes);
            self.send(&bytes[..cut], out);
            self.held.extend_from_slice(&bytes[cut..]);
        } else {
            let mut joined = std::mem::take(&mut self.held);
            joined.extend_from_slice(bytes);
            let cut = complete_prefix_len(&joined);
            self.send(&joined[..cut], out);
            self.held.extend_from_slice(&joined[cut..]);
        }
    }

    /// End of stream (or of what the cap lets through): what is held goes.
    fn end(&mut self, truncated: bool, out: &mut Vec<Output>) {
        let held = std::mem::take(&mut self.held);
        let before = out.len();
        self.send(&held, out);
        if truncated {
            if let Some(last) = out.get_mut(before..).and_then(|sent| sent.last_mut()) {
                last.truncated = true;
            }
        }
    }

    fn send(&self, mut bytes: &[u8], out: &mut Vec<Output>) {
        while !bytes.is_empty() {
            let cut = match bytes.len() > CHUNK {
                true => char_boundary_at_or_before(bytes, CHUNK),
                false => bytes.len(),
            };
            let (text, lossy) = decode(&bytes[..cut]);
            out.push(Output {
                stream: self.stream,
                data: text,
                truncated: false,
                lossy,
                chunk_index: None,
                total_chunks: None,
            });
            bytes = &bytes[cut..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(pieces: &[&[u8]]) -> Vec<Output> {
        let mut f = Framer::new(StreamKind::Stdout, true);
        let mut out = Vec::new();
        for piece in pieces {
            f.push(piece, &mut out);
        }
        f.finish(&mut out);
        out
    }

    #[test]
    fn a_read_of_many_lines_is_one_message() {
        let out = frame(&[b"a\nb\nc\n", b"d"]);
        let data: Vec<&str> = out.iter().map(|o| o.data.as_str()).collect();
        assert_eq!(data, ["a\nb\nc\n", "d"]);
        assert!(out.iter().all(|o| !o.truncated && o.chunk_index.is_none()));
    }

    #[test]
    fn messages_stay_within_a_chunk_and_never_split_a_character() {
        let text = "é".repeat(CHUNK);
        let bytes = text.as_bytes();
        // Uneven reads that cut characters in two.
        let pieces: Vec<&[u8]> = bytes.chunks(7777).collect();
        let out = frame(&pieces);
        assert!(out.iter().all(|o| o.data.len() <= CHUNK && !o.lossy));
        assert_eq!(
            out.iter().map(|o| o.data.as_str()).collect::<String>(),
            text
        );
    }

    #[test]
    fn the_cap_marks_the_last_message_truncated() {
        let mut f = Framer::new(StreamKind::Stderr, true);
        let mut out = Vec::new();
        f.push("ok €".as_bytes().split_at(5).0, &mut out);
        assert!(f.truncate(&mut out));
        assert_eq!(out.len(), 2);
        assert!(out[1].truncated && out[1].lossy);
    }
}
