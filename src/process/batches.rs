//! Batched framing of one output stream, for clients that ask for it (ccx's
//! own): a `process.output` carries the stream's bytes exactly as they were
//! read (base64 on the wire), many lines at once, up to [`CHUNK`] bytes.
//! Lines, and characters, may span messages; concatenating `data` rebuilds
//! the stream byte for byte, so nothing is ever held back, replaced or
//! flushed later. cc_executor clients never ask for it and get `lines`.

use crate::protocol::{Data, Output, StreamKind};

use super::lines::{LineFramer, CHUNK};

/// How a stream's bytes become messages (see `protocol::Framing`).
#[derive(Debug)]
pub enum Framer {
    Lines(LineFramer),
    Batches(StreamKind),
}

impl Framer {
    pub fn new(stream: StreamKind, batched: bool) -> Framer {
        match batched {
            true => Framer::Batches(stream),
            false => Framer::Lines(LineFramer::new(stream)),
        }
    }

    /// True when bytes are held back (what an idle flush would send).
    pub fn has_partial(&self) -> bool {
        match self {
            Framer::Lines(f) => f.has_partial(),
            Framer::Batches(_) => false,
        }
    }

    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<Output>) {
        match self {
            Framer::Lines(f) => f.push(bytes, out),
            Framer::Batches(stream) => {
                out.extend(bytes.chunks(CHUNK).map(|piece| batch(*stream, piece)))
            }
        }
    }

    pub fn flush_partial(&mut self, out: &mut Vec<Output>) {
        if let Framer::Lines(f) = self {
            f.flush_partial(out)
        }
    }

    pub fn finish(&mut self, out: &mut Vec<Output>) {
        if let Framer::Lines(f) = self {
            f.finish(out)
        }
    }

    /// The output cap was reached after what `out` holds (this read's
    /// messages); see [`LineFramer::truncate`]. Batches hold nothing, so
    /// the last message of this read says it. Returns whether a message
    /// says so.
    pub fn truncate(&mut self, out: &mut Vec<Output>) -> bool {
        match self {
            Framer::Lines(f) => f.truncate(out),
            Framer::Batches(stream) => match out.last_mut() {
                Some(last) if last.stream == *stream => {
                    last.truncated = true;
                    true
                }
                _ => false,
            },
        }
    }

    /// A message with no data that says the cap was reached, for when no
    /// message of this stream could say it.
    pub fn truncation_marker(&self) -> Output {
        let (stream, data) = match self {
            Framer::Lines(f) => (f.stream(), Data::Text(String::new())),
            Framer::Batches(stream) => (*stream, Data::Bytes(Vec::new())),
        };
        Output {
            stream,
            data,
            truncated: true,
            lossy: false,
            chunk_index: None,
            total_chunks: None,
        }
    }
}

fn batch(stream: StreamKind, bytes: &[u8]) -> Output {
    Output {
        stream,
        data: Data::Bytes(bytes.to_vec()),
        truncated: false,
        lossy: false,
        chunk_index: None,
        total_chunks: None,
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
        let data: Vec<&[u8]> = out.iter().map(|o| o.data.as_bytes()).collect();
        assert_eq!(data, [&b"a\nb\nc\n"[..], b"d"]);
        assert!(out.iter().all(|o| !o.truncated && o.chunk_index.is_none()));
    }

    #[test]
    fn messages_stay_within_a_chunk_and_carry_any_bytes_exactly() {
        let mut bytes = "é".repeat(CHUNK).into_bytes();
        bytes.extend_from_slice(b"\xff\xfe not UTF-8 \xe2\x82");
        // Uneven reads that cut characters in two.
        let pieces: Vec<&[u8]> = bytes.chunks(7777).collect();
        let out = frame(&pieces);
        assert!(out.iter().all(|o| o.data.len() <= CHUNK && !o.lossy));
        assert!(out.iter().all(|o| matches!(o.data, Data::Bytes(_))));
        let joined: Vec<u8> = out
            .iter()
            .flat_map(|o| o.data.as_bytes().to_vec())
            .collect();
        assert_eq!(joined, bytes);
        assert_eq!(frame(&[&vec![b'y'; CHUNK + 1]]).len(), 2);
    }

    #[test]
    fn the_cap_marks_the_last_message_truncated() {
        let mut f = Framer::new(StreamKind::Stderr, true);
        let mut out = Vec::new();
        f.push(b"ok \xe2\x82", &mut out);
        assert!(f.truncate(&mut out));
        assert_eq!(out.len(), 1);
        assert!(out[0].truncated && !out[0].lossy);
        let mut nothing = Vec::new();
        assert!(!f.truncate(&mut nothing));
        let marker = f.truncation_marker();
        assert!(marker.truncated && marker.data == Data::Bytes(Vec::new()));
    }
}
