//! What can stop a measurement, each naming its cause.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum BenchError {
    #[error("cannot start {what}: {reason}")]
    Start { what: String, reason: String },
    #[error("{server}: {reason}")]
    Wire { server: String, reason: String },
    #[error("spawn floor: {0}")]
    Floor(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("interrupted (Ctrl-C): servers and process groups stopped")]
    Interrupted,
}

impl BenchError {
    pub fn wire(server: &str, reason: impl Into<String>) -> Self {
        BenchError::Wire {
            server: server.to_string(),
            reason: reason.into(),
        }
    }

    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        BenchError::Io {
            what: what.into(),
            source,
        }
    }
}
