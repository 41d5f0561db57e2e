//! Responses written straight from their parts: a request's id kept as
//! the raw JSON it came as ([`RawId`]), results and errors serialized
//! without an intermediate `Value`.

use super::*;

/// A request's id exactly as the client wrote it (the JSON text of a
/// string, a number or null), so that it comes back byte for byte: an
/// integer beyond 2^53 stays an integer, `1e3` stays `1e3`.
#[derive(Debug, Clone)]
pub struct RawId(pub(super) Box<RawValue>);

impl RawId {
    /// The `null` id of an answer to a request whose id cannot be read.
    pub fn null() -> RawId {
        RawId::from_value(&Value::Null)
    }

    pub(super) fn from_value(value: &Value) -> RawId {
        // A Value always serializes to valid JSON.
        RawId(
            RawValue::from_string(value.to_string())
                .unwrap_or_else(|_| RawValue::from_string("null".into()).expect("null is JSON")),
        )
    }

    /// The JSON text of the id.
    pub fn get(&self) -> &str {
        self.0.get()
    }
}

impl PartialEq for RawId {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl Serialize for RawId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

/// A response as the server writes it, with the id as the client sent it.
#[derive(Serialize)]
pub(super) struct RawResponse<'a, R: Serialize> {
    pub(super) jsonrpc: &'static str,
    pub(super) id: &'a RawId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) result: Option<R>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) error: Option<&'a RpcError>,
}

/// The JSON text of a successful response to the request with id `id`.
pub fn response_json(id: &RawId, result: impl Serialize) -> String {
    let response = RawResponse {
        jsonrpc: JSONRPC_VERSION,
        id,
        result: Some(result),
        error: None,
    };
    serde_json::to_string(&response).unwrap_or_else(|e| {
        let error = RpcError::new(
            ErrorCode::Internal,
            format!("cannot encode the result: {e}"),
        );
        error_json(Some(id), &error)
    })
}

/// The JSON text of an error response; the id is `null` when unknown.
pub fn error_json(id: Option<&RawId>, error: &RpcError) -> String {
    let null = RawId::null();
    let response = RawResponse::<()> {
        jsonrpc: JSONRPC_VERSION,
        id: id.unwrap_or(&null),
        result: None,
        error: Some(error),
    };
    // Strings, numbers and raw JSON only: it always serializes.
    serde_json::to_string(&response).unwrap_or_default()
}
