//! `process.output`: one message of a command's output, and how its `data`
//! travels. Line framing (cc_executor's) carries text as a JSON string;
//! batched framing (ccx's own clients) carries the stream's bytes exactly,
//! as base64 with `"encoding":"base64"`: a JSON string of text whose lines
//! are two bytes long is half `\n` escapes, which the reader must decode
//! one by one, while base64 costs the same whatever the bytes are and
//! needs no UTF-8 rule at all.
//!
//! The server writes this message for every line of every command, so it
//! is built by hand ([`Output::notification_json`]) instead of through
//! serde's generic path; the serde impls give the same JSON.

use base64_simd::STANDARD;
use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize};

/// Which stream a chunk of output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamKind {
    Stdout,
    Stderr,
}

impl StreamKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StreamKind::Stdout => "stdout",
            StreamKind::Stderr => "stderr",
        }
    }
}

/// What a `process.output` carries: text (line framing; valid UTF-8, never
/// split inside a character) or the stream's bytes as they were read
/// (batched framing; on the wire as base64).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    Text(String),
    Bytes(Vec<u8>),
}

impl Data {
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Data::Text(text) => text.as_bytes(),
            Data::Bytes(bytes) => bytes,
        }
    }

    /// The text, for line framing; `None` for bytes.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Data::Text(text) => Some(text),
            Data::Bytes(_) => None,
        }
    }

    /// The text; bytes that are not UTF-8 replaced by U+FFFD.
    pub fn to_text(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Data::Text(text) => std::borrow::Cow::Borrowed(text),
            Data::Bytes(bytes) => String::from_utf8_lossy(bytes),
        }
    }

    /// Bytes of the command's output (not of the encoded form).
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    pub fn is_empty(&self) -> bool {
        self.as_bytes().is_empty()
    }
}

impl From<&str> for Data {
    fn from(text: &str) -> Data {
        Data::Text(text.to_owned())
    }
}

impl From<String> for Data {
    fn from(text: String) -> Data {
        Data::Text(text)
    }
}

/// How `data` is encoded; absent: a JSON string of the text itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    Base64,
}

/// `process.output`: one line of one stream (cc_executor's framing), valid
/// UTF-8 never split inside a character, or a batch of a stream's bytes. A
/// line longer than 64 KiB comes as chunks numbered by `chunk_index` of
/// `total_chunks`; `truncated` is true on every chunk but a line's last,
/// and when the per-process output cap was reached (later output is
/// dropped). `lossy` says invalid bytes were replaced by U+FFFD (text only).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "WireOutput")]
pub struct Output {
    pub stream: StreamKind,
    pub data: Data,
    pub truncated: bool,
    pub lossy: bool,
    pub chunk_index: Option<u32>,
    pub total_chunks: Option<u32>,
}

/// `process.output` as it is on the wire.
#[derive(Deserialize)]
struct WireOutput {
    #[serde(rename = "type")]
    stream: StreamKind,
    data: String,
    #[serde(default)]
    encoding: Option<Encoding>,
    #[serde(default)]
    truncated: bool,
    #[serde(default)]
    lossy: bool,
    #[serde(default)]
    chunk_index: Option<u32>,
    #[serde(default)]
    total_chunks: Option<u32>,
}

impl TryFrom<WireOutput> for Output {
    type Error = String;

    fn try_from(wire: WireOutput) -> Result<Output, String> {
        let data = match wire.encoding {
            None => Data::Text(wire.data),
            Some(Encoding::Base64) => Data::Bytes(
                STANDARD
                    .decode_to_vec(wire.data.as_bytes())
                    .map_err(|_| "`data` is not valid base64".to_string())?,
            ),
        };
        Ok(Output {
            stream: wire.stream,
            data,
            truncated: wire.truncated,
            lossy: wire.lossy,
            chunk_index: wire.chunk_index,
            total_chunks: wire.total_chunks,
        })
    }
}

impl Serialize for Output {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let fields = 4
            + usize::from(matches!(self.data, Data::Bytes(_)))
            + usize::from(self.chunk_index.is_some())
            + usize::from(self.total_chunks.is_some());
        let mut s = serializer.serialize_struct("Output", fields)?;
        s.serialize_field("type", &self.stream)?;
        match &self.data {
            Data::Text(text) => s.serialize_field("data", text)?,
            Data::Bytes(bytes) => {
                s.serialize_field("data", &STANDARD.encode_to_string(bytes))?;
                s.serialize_field("encoding", &Encoding::Base64)?;
            }
        }
        s.serialize_field("truncated", &self.truncated)?;
        s.serialize_field("lossy", &self.lossy)?;
        if let Some(index) = self.chunk_index {
            s.serialize_field("chunk_index", &index)?;
        }
        if let Some(total) = self.total_chunks {
            s.serialize_field("total_chunks", &total)?;
        }
        s.end()
    }
}

impl Output {
    /// The whole `process.output` notification frame, field for field what
    /// serde would write for it.
    ///
    /// Its capacity is its exact length: the socket takes the frame's
    /// buffer as it is only when nothing is spare (otherwise it allocates
    /// a shared header for it, one more allocation per line).
    pub fn notification_json(&self) -> String {
        let payload = match &self.data {
            Data::Text(text) => escaped_len(text),
            Data::Bytes(bytes) => STANDARD.encoded_length(bytes.len()) + ENCODING_FIELD.len(),
        };
        let digits = |n: Option<u32>, name: &str| {
            n.map_or(0, |n| {
                name.len() + 4 + n.checked_ilog10().unwrap_or(0) as usize + 1
            })
        };
        let len = FRAME_START.len()
            + self.stream.as_str().len()
            + DATA_START.len()
            + payload
            + TRUNCATED.len()
            + bool_json(self.truncated).len()
            + LOSSY.len()
            + bool_json(self.lossy).len()
            + digits(self.chunk_index, "chunk_index")
            + digits(self.total_chunks, "total_chunks")
            + FRAME_END.len();
        let mut frame = String::with_capacity(len);
        frame.push_str(FRAME_START);
        frame.push_str(self.stream.as_str());
        frame.push_str(DATA_START);
        match &self.data {
            Data::Text(text) => escape_into(text, &mut frame),
            Data::Bytes(bytes) => {
                STANDARD.encode_append(bytes, &mut frame);
                frame.push_str(ENCODING_FIELD);
            }
        }
        frame.push_str(TRUNCATED);
        frame.push_str(bool_json(self.truncated));
        frame.push_str(LOSSY);
        frame.push_str(bool_json(self.lossy));
        let mut number = |name: &str, n: Option<u32>| {
            if let Some(n) = n {
                frame.push_str(",\"");
                frame.push_str(name);
                frame.push_str("\":");
                frame.push_str(&n.to_string());
            }
        };
        number("chunk_index", self.chunk_index);
        number("total_chunks", self.total_chunks);
        frame.push_str(FRAME_END);
        debug_assert_eq!(frame.len(), len, "{frame}");
        frame
    }
}

const FRAME_START: &str = concat!(
    "{\"jsonrpc\":\"2.0\",\"method\":\"process.output\",",
    "\"params\":{\"type\":\""
);
const DATA_START: &str = "\",\"data\":\"";
const ENCODING_FIELD: &str = "\",\"encoding\":\"base64";
const TRUNCATED: &str = "\",\"truncated\":";
const LOSSY: &str = ",\"lossy\":";
const FRAME_END: &str = "}}";

/// Length of `text` escaped by [`escape_into`].
fn escaped_len(text: &str) -> usize {
    let bytes = text.as_bytes();
    let mut len = bytes.len();
    let mut i = 0;
    while i < bytes.len() {
        if let Some(next) = past_clean_word(bytes, i) {
            i = next;
            continue;
        }
        len += match bytes[i] {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 1,
            0..0x20 => 5,
            _ => 0,
        };
        i += 1;
    }
    len
}

/// `i + 8` when the eight bytes at `i` all exist and none needs escaping.
fn past_clean_word(bytes: &[u8], i: usize) -> Option<usize> {
    let word = bytes.get(i..i + 8)?;
    (!needs_escape(word_at(word))).then_some(i + 8)
}

fn word_at(word: &[u8]) -> u64 {
    u64::from_le_bytes([
        word[0], word[1], word[2], word[3], word[4], word[5], word[6], word[7],
    ])
}

fn bool_json(b: bool) -> &'static str {
    match b {
        true => "true",
        false => "false",
    }
}

/// Appends `text` as the inside of a JSON string, escaped as serde_json
/// escapes it (`"`, `\`, and control characters; nothing else). Runs
/// without such characters are found eight bytes at a time and copied
/// whole: lines of output are mostly such runs.
fn escape_into(text: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = text.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if let Some(next) = past_clean_word(bytes, i) {
            i = next;
            continue;
        }
        let b = bytes[i];
        if b >= 0x20 && b != b'"' && b != b'\\' {
            i += 1;
            continue;
        }
        // Escaped characters are ASCII, so `i` is a character boundary.
        out.push_str(&text[start..i]);
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x08 => out.push_str("\\b"),
            0x0c => out.push_str("\\f"),
            _ => {
                out.push_str("\\u00");
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0xf)]));
            }
        }
        i += 1;
        start = i;
    }
    out.push_str(&text[start..]);
}

/// Whether any of the eight bytes of `word` is below 0x20, `"` or `\`
/// (exact: the classic "has a zero byte" and "has a byte less than n" tests).
fn needs_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH != 0;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGH != 0;
    below_space
        || has_zero(word ^ (ONES * u64::from(b'"')))
        || has_zero(word ^ (ONES * u64::from(b'\\')))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{method, Frame, JSONRPC_VERSION};

    /// The notification as serde writes it, fields in declaration order.
    fn serde_frame(o: &Output) -> String {
        #[derive(Serialize)]
        struct Notification<'a> {
            jsonrpc: &'static str,
            method: &'static str,
            params: &'a Output,
        }
        serde_json::to_string(&Notification {
            jsonrpc: JSONRPC_VERSION,
            method: method::PROCESS_OUTPUT,
            params: o,
        })
        .unwrap()
    }

    fn output(data: Data, chunk: Option<(u32, u32)>) -> Output {
        Output {
            stream: StreamKind::Stderr,
            data,
            truncated: true,
            lossy: false,
            chunk_index: chunk.map(|c| c.0),
            total_chunks: chunk.map(|c| c.1),
        }
    }

    #[test]
    fn the_hand_built_frame_is_what_serde_writes() {
        let every_control: String = (0u8..0x20).map(char::from).collect();
        let mut texts = vec![
            String::new(),
            "plain line\n".into(),
            format!("a \"q\" \\ é € 😀 \u{7f}{every_control}end"),
        ];
        // Each character that needs escaping at each offset of a word.
        for special in ['"', '\\', '\n', '\u{1f}', '\u{0}'] {
            for at in 0..20 {
                let mut text = "é-abcdefghijklmnopq€".to_string();
                text.insert(
                    text.char_indices().nth(at % 18).map_or(0, |(i, _)| i),
                    special,
                );
                texts.push(text);
            }
        }
        for text in texts {
            for chunk in [None, Some((0, 1)), Some((9, 10)), Some((1234, u32::MAX))] {
                let o = output(Data::Text(text.clone()), chunk);
                let frame = o.notification_json();
                assert_eq!(frame, serde_frame(&o));
                assert_eq!(frame.len(), frame.capacity(), "{frame}");
            }
        }
        let o = output(Data::Bytes(b"\xff\x00yes\n".to_vec()), None);
        let serde = serde_frame(&o);
        assert_eq!(o.notification_json(), serde);
        assert!(
            serde.contains(r#""data":"/wB5ZXMK","encoding":"base64""#),
            "{serde}"
        );
    }

    #[test]
    fn base64_data_reads_back_as_the_exact_bytes() {
        let bytes: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let o = output(Data::Bytes(bytes.clone()), None);
        let frame: Frame = serde_json::from_str(&o.notification_json()).unwrap();
        let back: Output = serde_json::from_value(frame.params.unwrap()).unwrap();
        assert_eq!(back.data, Data::Bytes(bytes));
        let text: Output =
            serde_json::from_str(r#"{"type":"stdout","data":"x\n","truncated":false}"#).unwrap();
        assert_eq!(text.data.as_text(), Some("x\n"));
    }

    #[test]
    fn bad_base64_is_an_error_that_says_so() {
        let err = serde_json::from_str::<Output>(
            r#"{"type":"stdout","data":"not base64!","encoding":"base64"}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("not valid base64"), "{err}");
        let err =
            serde_json::from_str::<Output>(r#"{"type":"stdout","data":"eA==","encoding":"rot13"}"#)
                .unwrap_err();
        assert!(err.to_string().contains("rot13"), "{err}");
    }
}
