//! Reading one incoming text frame as a JSON-RPC request: the checks of
//! the envelope, in the order JSON-RPC's error codes imply, and the id kept
//! exactly as written (even a number no machine type holds, such as
//! `1e400`, which serde_json refuses to parse).

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::{ErrorCode, RawId, RpcError, JSONRPC_VERSION};

/// A request the server understood well enough to dispatch.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// `None` for a notification-style request (no `id` member).
    pub id: Option<RawId>,
    pub method: String,
    pub params: Value,
}

/// Why a text frame is not a usable request: the error to answer with and
/// the id to answer to (when one could be read).
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub id: Option<RawId>,
    pub error: RpcError,
}

/// The id member of `text` as written. `value` is its parsed form, used when
/// the text cannot be read again as one object with one `id` (a duplicate
/// member: JSON parsers keep the last, and so does `value`).
fn raw_id(text: &str, value: &Value) -> RawId {
    #[derive(Deserialize)]
    struct IdOnly<'a> {
        #[serde(borrow)]
        id: Option<&'a RawValue>,
    }
    match serde_json::from_str::<IdOnly>(text) {
        Ok(IdOnly { id: Some(raw) }) => RawId(raw.to_owned()),
        _ => RawId::from_value(value),
    }
}

/// Whether serde_json refused a number the JSON grammar allows because no
/// f64 or i64 holds it (`1e400`). serde_json reports it only by its message.
fn is_out_of_range(error: &serde_json::Error) -> bool {
    error.to_string().starts_with("number out of range")
}

/// An object read member by member because one of them holds a number out
/// of range: the members that parse, the id as written, and what is wrong
/// with the params if they hold such a number.
struct Lenient {
    members: serde_json::Map<String, Value>,
    id: Option<RawId>,
    params_problem: Option<String>,
}

/// Reads `text`, which serde_json refused only for a number out of range,
/// member by member: such a number is a fine id (echoed as written), makes
/// the params invalid, and is ignored in a member nobody reads. Any other
/// fault (a lone surrogate, nesting past the limit) is still a parse error.
fn lenient_object(text: &str) -> Result<Lenient, Rejection> {
    let reject = |code, msg: String| Rejection {
        id: None,
        error: RpcError::new(code, msg),
    };
    // A map keeps the last of a duplicated name, as every JSON parser does.
    let raw: std::collections::BTreeMap<String, &RawValue> =
        serde_json::from_str(text).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => reject(
                ErrorCode::InvalidRequest,
                "invalid request: the message is not an object; send one JSON-RPC object".into(),
            ),
            _ => reject(
                ErrorCode::ParseError,
                format!("parse error: not valid JSON: {e}"),
            ),
        })?;
    let mut lenient = Lenient {
        members: serde_json::Map::new(),
        id: None,
        params_problem: None,
    };
    let mut envelope_problem: Option<(String, String)> = None;
    for (name, member) in raw {
        match serde_json::from_str::<Value>(member.get()) {
            Ok(value) => {
                if name == "id" && (value.is_string() || value.is_number() || value.is_null()) {
                    lenient.id = Some(RawId(member.to_owned()));
                }
                lenient.members.insert(name, value);
            }
            Err(e) if !is_out_of_range(&e) => {
                return Err(reject(
                    ErrorCode::ParseError,
                    format!("parse error: not valid JSON: {e}"),
                ))
            }
            Err(e) => match name.as_str() {
                "id" if member
                    .get()
                    .starts_with(|c: char| c == '-' || c.is_ascii_digit()) =>
                {
                    lenient.id = Some(RawId(member.to_owned()));
                }
                "id" | "jsonrpc" | "method" => {
                    // Answered once every member is known to be valid JSON
                    // (any other fault makes the whole a parse error).
                    envelope_problem.get_or_insert((
                        name.clone(),
                        format!(
                            "invalid request: {name:?} holds a number out of range: {}",
                            member.get()
                        ),
                    ));
                }
                "params" => lenient.params_problem = Some(e.to_string()),
                _ => {}
            },
        }
    }
    if let Some((name, message)) = envelope_problem {
        // A readable id is kept, unless the id itself is the problem.
        let id = if name == "id" { None } else { lenient.id };
        return Err(Rejection {
            id,
            error: RpcError::new(ErrorCode::InvalidRequest, message),
        });
    }
    Ok(lenient)
}

/// The answer to an `id` that JSON-RPC does not allow (not a string, a
/// number or null); `None` for an allowed one.
fn refuse_id(id: &Value) -> Option<Rejection> {
    (!(id.is_string() || id.is_number() || id.is_null())).then(|| Rejection {
        id: None,
        error: RpcError::new(
            ErrorCode::InvalidRequest,
            format!("invalid request: \"id\" must be a string, a number or null, got {id}"),
        ),
    })
}

/// Classifies one incoming text frame: a request to dispatch, or the JSON-RPC
/// error that answers it. Method names are not checked here.
pub fn parse_request(text: &str) -> Result<Request, Rejection> {
    let reject = |id: Option<RawId>, code, msg: String| Rejection {
        id,
        error: RpcError::new(code, msg),
    };
    let (mut obj, id, params_problem) = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(mut obj)) => {
            let id = obj.remove("id");
            if let Some(refused) = id.as_ref().and_then(refuse_id) {
                return Err(refused);
            }
            (obj, id.map(|value| raw_id(text, &value)), None)
        }
        Ok(value) => {
            let kind = match value {
                Value::Array(_) => "an array (batch requests are not supported)",
                _ => "not an object",
            };
            return Err(reject(
                None,
                ErrorCode::InvalidRequest,
                format!("invalid request: the message is {kind}; send one JSON-RPC object"),
            ));
        }
        Err(e) if is_out_of_range(&e) => {
            let mut lenient = lenient_object(text)?;
            if let Some(refused) = lenient.members.remove("id").as_ref().and_then(refuse_id) {
                return Err(refused);
            }
            (lenient.members, lenient.id, lenient.params_problem)
        }
        Err(e) => {
            let what = if text.trim().is_empty() {
                "empty message".to_string()
            } else {
                format!("not valid JSON: {e}")
            };
            return Err(reject(
                None,
                ErrorCode::ParseError,
                format!("parse error: {what}"),
            ));
        }
    };
    let version_problem = match obj.get("jsonrpc") {
        Some(Value::String(v)) if v == JSONRPC_VERSION => None,
        Some(other) => Some(format!(
            "invalid request: \"jsonrpc\" must be \"2.0\", got {other}"
        )),
        None => Some("invalid request: missing \"jsonrpc\": \"2.0\"".to_string()),
    };
    if let Some(message) = version_problem {
        return Err(reject(id, ErrorCode::InvalidRequest, message));
    }
    let method = match obj.remove("method") {
        Some(Value::String(m)) => m,
        other => {
            let message = match other {
                Some(other) => format!("invalid request: \"method\" must be a string, got {other}"),
                None => "invalid request: missing \"method\"".to_string(),
            };
            return Err(reject(id, ErrorCode::InvalidRequest, message));
        }
    };
    if let Some(problem) = params_problem {
        return Err(reject(
            id,
            ErrorCode::InvalidParams,
            format!("invalid params: {problem}"),
        ));
    }
    let params = obj.remove("params").unwrap_or(Value::Null);
    Ok(Request { id, method, params })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{error_json, response_json};

    #[test]
    fn classifies_bad_frames_with_the_right_code() {
        let cases = [
            ("", -32700),
            ("not json", -32700),
            ("[1,2]", -32600),
            ("42", -32600),
            (r#"{"method":"execute","id":1}"#, -32600),
            (r#"{"jsonrpc":"1.0","method":"execute","id":1}"#, -32600),
            (r#"{"jsonrpc":"2.0","id":1}"#, -32600),
            (r#"{"jsonrpc":"2.0","method":5,"id":1}"#, -32600),
            (r#"{"jsonrpc":"2.0","method":"x","id":{}}"#, -32600),
        ];
        for (text, code) in cases {
            let err = parse_request(text).expect_err(text);
            assert_eq!(err.error.code, code, "{text}: {}", err.error.message);
        }
    }

    #[test]
    fn ids_come_back_exactly_as_sent() {
        for id in [
            "100000000000000000000000000000",
            "-9223372036854775809",
            "1e3",
            "-0",
            "0.10",
            "\"\\u00fc\"",
            "null",
            "1e400",
            "-1E+400",
            "1e-400",
        ] {
            let text = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"x"}}"#);
            let request = parse_request(&text).unwrap();
            let raw = request.id.unwrap();
            assert_eq!(raw.get(), id);
            let reply = response_json(&raw, "ok");
            assert!(reply.contains(&format!("\"id\":{id},")), "{reply}");
            let error = error_json(Some(&raw), &RpcError::new(ErrorCode::Internal, "x"));
            assert!(error.contains(&format!("\"id\":{id},")), "{error}");
        }
        // A duplicate id member: the last one, as the parsed value has it.
        let request = parse_request(r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"x"}"#).unwrap();
        assert_eq!(request.id.unwrap().get(), "2");
        assert_eq!(
            parse_request(r#"{"jsonrpc":"2.0","method":"x"}"#)
                .unwrap()
                .id,
            None
        );
    }

    #[test]
    fn numbers_out_of_range_are_told_apart_from_other_faults() {
        // serde_json names this fault only in its message: pin the wording.
        let err = serde_json::from_str::<Value>("1e400").unwrap_err();
        assert!(is_out_of_range(&err), "{err}");
        let err =
            parse_request(r#"{"jsonrpc":"2.0","id":1e400,"method":"x","params":{"a":1e400}}"#)
                .unwrap_err();
        assert_eq!((err.error.code, err.id.unwrap().get()), (-32602, "1e400"));
        for text in [
            r#"{"jsonrpc":"2.0","id":1e400,"method":"x","extra":"\ud800"}"#,
            r#"{"jsonrpc":"2.0","id":1e400,"method":"x","params":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}"#,
        ] {
            assert_eq!(
                parse_request(text).unwrap_err().error.code,
                -32700,
                "{text}"
            );
        }
        let err = parse_request(r#"{"method":1e400,"jsonrpc":"2.0","id":7}"#).unwrap_err();
        assert_eq!((err.error.code, err.id.unwrap().get()), (-32600, "7"));
        let err = parse_request(r#"{"jsonrpc":1E310,"id":[],"method":"x"}"#).unwrap_err();
        assert_eq!((err.error.code, err.id), (-32600, None));
        for text in [
            r#"[1e400]"#,
            r#"{"jsonrpc":"2.0","id":[1e400],"method":"x"}"#,
        ] {
            assert_eq!(
                parse_request(text).unwrap_err().error.code,
                -32600,
                "{text}"
            );
        }
    }

    #[test]
    fn keeps_the_id_when_rejecting_a_readable_request() {
        let err = parse_request(r#"{"jsonrpc":"2.0","id":"a"}"#).unwrap_err();
        assert_eq!(err.id.map(|id| id.get().to_string()), Some("\"a\"".into()));
    }
}
