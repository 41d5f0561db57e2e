//! Which server a URL reaches, from what the server itself says: the
//! `service` and `version` of its `GET /health` (ccx: `"ccx"`, the Python
//! cc_executor: `"cc_executor_mcp"`), and the `version` of its `connected`
//! message. Reports name the server by this, never assuming ccx.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::http;
use crate::protocol::{Connected, Endpoint, Health};

pub use crate::protocol::{CCX_SERVICE, CC_EXECUTOR_SERVICE};

/// What the server says it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerIdentity {
    /// `/health`'s `service` (`None`: no usable `/health`).
    pub service: Option<String>,
    /// `/health`'s `version`, else the `connected` message's.
    pub version: String,
    /// The capabilities announced in `connected`.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// The `/health` document as the server sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Map<String, Value>>,
    /// Why `/health` gave nothing usable, when it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_error: Option<String>,
}

/// The family of a server, as far as a client's expectations go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Ccx,
    CcExecutor,
    Other,
}

impl ServerIdentity {
    /// `ccx 0.1.0`, `cc_executor_mcp 1.0.0`, or `an unidentified server
    /// (version 1.0.0)` when it did not say.
    pub fn name(&self) -> String {
        match &self.service {
            Some(service) => format!("{service} {}", self.version),
            None => format!("an unidentified server (version {})", self.version),
        }
    }

    pub fn kind(&self) -> Kind {
        match self.service.as_deref() {
            Some(CCX_SERVICE) => Kind::Ccx,
            Some(CC_EXECUTOR_SERVICE) => Kind::CcExecutor,
            _ => Kind::Other,
        }
    }
}

/// Asks `GET /health` on the URL's host and port (within `deadline`) and
/// combines it with the session's `connected` message.
pub async fn identify(url: &str, connected: &Connected, deadline: Duration) -> ServerIdentity {
    let mut identity = ServerIdentity {
        service: None,
        version: connected.version.clone(),
        capabilities: connected.capabilities.clone(),
        health: None,
        health_error: None,
    };
    let endpoint = match Endpoint::parse(url) {
        Ok(e) => e.health(),
        Err(e) => {
            identity.health_error = Some(e.to_string());
            return identity;
        }
    };
    match http::get_endpoint(&endpoint, deadline).await {
        Err(e) => identity.health_error = Some(format!("GET /health failed: {e}")),
        Ok(r) if r.status != 200 => {
            identity.health_error = Some(format!("GET /health answered HTTP {}", r.status))
        }
        Ok(r) => match serde_json::from_str::<Value>(&r.body) {
            Ok(Value::Object(document)) => {
                match serde_json::from_value::<Health>(Value::Object(document.clone())) {
                    Ok(health) => {
                        identity.service = health.service;
                        if let Some(version) = health.version {
                            identity.version = version;
                        }
                    }
                    Err(e) => {
                        identity.health_error = Some(format!(
                            "GET /health answered a document ccx cannot read: {e}"
                        ))
                    }
                }
                identity.health = Some(document);
            }
            _ => identity.health_error = Some("GET /health did not answer a JSON object".into()),
        },
    }
    identity
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_say_what_the_server_said() {
        let mut id = ServerIdentity {
            service: Some(CC_EXECUTOR_SERVICE.into()),
            version: "1.0.0".into(),
            capabilities: vec![],
            health: None,
            health_error: None,
        };
        assert_eq!(id.name(), "cc_executor_mcp 1.0.0");
        assert_eq!(id.kind(), Kind::CcExecutor);
        id.service = None;
        assert_eq!(id.name(), "an unidentified server (version 1.0.0)");
    }
}
