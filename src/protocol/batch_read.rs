//! Reading a batched `process.output` notification straight from the text
//! of its frame: the members are read into borrowed fields and the base64
//! `data` is decoded into the [`Output`]'s own buffer, with no
//! `serde_json::Value` in between and no copy of the string. Batched output
//! is where a command's bytes go through the client at hundreds of MB/s,
//! and every copy of them shows in its profile.
//!
//! It accepts only what the general reading (`Frame`, then [`Output`] from
//! its `params`) gives the same [`Output`] for: the same members with the
//! same types, nothing unknown, no `error`, base64 `data` without escapes.
//! For anything else it answers `None` and the caller reads the frame the
//! general way, so malformed frames get the errors they always got.

use base64_simd::STANDARD;
use serde::Deserialize;
use serde_json::Value;

use super::{method, Data, Encoding, Output, RpcError, StreamKind};

/// A frame's members as `Frame` has them (same names, types and order, so
/// an array form reads alike), with `params` read as a batch.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Notification<'a> {
    /// Required, and a string, as `Frame` has it; its value is not checked
    /// there either.
    #[serde(rename = "jsonrpc")]
    _jsonrpc: &'a str,
    #[serde(rename = "id")]
    _id: Option<Value>,
    #[serde(borrow)]
    method: Option<&'a str>,
    #[serde(borrow)]
    params: Option<Batch<'a>>,
    #[serde(rename = "result")]
    _result: Option<Value>,
    error: Option<RpcError>,
}

/// `params` of a batched `process.output`, as `WireOutput` reads it, except
/// that `data` is the bytes of the JSON string as they are in the frame:
/// they are read with a byte search for its end (no character checks), and
/// borrowing them fails when the string has escapes. base64 has neither
/// escapes nor control characters, so a `data` that decodes is exactly the
/// string the general reading sees.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Batch<'a> {
    #[serde(rename = "type")]
    stream: StreamKind,
    /// `&[u8]` is read with `deserialize_bytes`: the string's raw bytes.
    data: &'a [u8],
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

impl Output {
    /// The [`Output`] of `text` when it is a plain batched `process.output`
    /// notification; `None` when it is anything else, well-formed or not,
    /// to be read the general way.
    pub fn from_batch_frame(text: &str) -> Option<Output> {
        let frame: Notification = serde_json::from_str(text).ok()?;
        if frame.method != Some(method::PROCESS_OUTPUT) || frame.error.is_some() {
            return None;
        }
        let batch = frame.params?;
        if batch.encoding != Some(Encoding::Base64) {
            return None;
        }
        let bytes = STANDARD.decode_to_vec(batch.data).ok()?;
        Some(Output {
            stream: batch.stream,
            data: Data::Bytes(bytes),
            truncated: batch.truncated,
            lossy: batch.lossy,
            chunk_index: batch.chunk_index,
            total_chunks: batch.total_chunks,
        })
    }
}
