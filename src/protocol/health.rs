//! The `GET /health` document: written by ccx's server, read by the doctor,
//! `status`, the background launcher and server identification. Every field
//! is optional on reading and unknown fields are ignored, so the Python
//! cc_executor's document (no `pid`, other extras) reads with the same type.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The `service` name ccx's `/health` gives.
pub const CCX_SERVICE: &str = "ccx";
/// The `service` name the Python cc_executor's `/health` gives.
pub const CC_EXECUTOR_SERVICE: &str = "cc_executor_mcp";

/// The body of `GET /health`. Fields are in alphabetical order: that is
/// the order ccx has always written them in.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Health {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_sessions: Option<u64>,
    /// `?verbose=1` only: the environment fingerprint ([`super::ServerInfo`]),
    /// `null` when it could not be collected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<Value>,
    /// ccx: why the server's log cannot be written (its last write
    /// failed, e.g. `No space left on device (os error 28)`); absent when
    /// it can.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_sessions: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// `ccx`, `cc_executor_mcp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// `healthy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

impl Health {
    /// The status a healthy server reports.
    pub const HEALTHY: &'static str = "healthy";

    /// Reads a `/health` body; the error says what in it was unreadable.
    pub fn parse(body: &str) -> Result<Health, serde_json::Error> {
        match serde_json::from_str::<Value>(body)? {
            document @ Value::Object(_) => serde_json::from_value(document),
            _ => Err(serde::de::Error::custom(
                "the document is not a JSON object",
            )),
        }
    }

    /// Whether the document is ccx's.
    pub fn is_ccx(&self) -> bool {
        self.service.as_deref() == Some(CCX_SERVICE)
    }
}

/// The body of `GET /healthz`: the minimal liveness answer, as cc_executor
/// gives it (`{"status":"ok"}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Healthz {
    pub status: String,
}

impl Healthz {
    pub fn ok() -> Healthz {
        Healthz {
            status: "ok".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ccx_document_keeps_its_bytes() {
        let h = Health {
            active_sessions: Some(1),
            info: None,
            log_error: None,
            max_sessions: Some(256),
            pid: Some(42),
            service: Some(CCX_SERVICE.into()),
            status: Some(Health::HEALTHY.into()),
            uptime_seconds: Some(1.5),
            version: Some("0.1.0".into()),
        };
        let text = serde_json::to_string(&h).unwrap();
        assert_eq!(
            text,
            r#"{"active_sessions":1,"max_sessions":256,"pid":42,"service":"ccx","status":"healthy","uptime_seconds":1.5,"version":"0.1.0"}"#
        );
        // The same bytes as the map ccx wrote before this type existed.
        let map = serde_json::json!({
            "status": "healthy", "service": "ccx", "version": "0.1.0",
            "active_sessions": 1, "max_sessions": 256, "uptime_seconds": 1.5, "pid": 42,
        });
        assert_eq!(text, map.to_string());
        assert_eq!(Health::parse(&text).unwrap(), h);
        assert!(h.is_ccx());
    }

    #[test]
    fn cc_executor_document_reads_with_unknown_fields() {
        let body = r#"{"status":"healthy","service":"cc_executor_mcp","version":"1.0.0",
            "active_sessions":0,"max_sessions":100,"uptime_seconds":745.75,"hooks":{"enabled":true}}"#;
        let h = Health::parse(body).unwrap();
        assert_eq!(h.service.as_deref(), Some(CC_EXECUTOR_SERVICE));
        assert_eq!(h.max_sessions, Some(100));
        assert_eq!(h.pid, None);
        assert!(!h.is_ccx());
    }

    #[test]
    fn a_wrong_type_is_an_error() {
        let e = Health::parse(r#"{"max_sessions":"many"}"#).unwrap_err();
        assert!(e.to_string().contains("invalid type"), "{e}");
        assert!(Health::parse("[]").is_err());
        assert_eq!(
            serde_json::to_string(&Healthz::ok()).unwrap(),
            r#"{"status":"ok"}"#
        );
    }
}
