//! The readiness line a server prints on stdout once it listens, which
//! launchers (`ccx serve`, the doctor, scripts) wait for.

use super::*;

/// The readiness line: the one JSON object `ccx serve --foreground` prints
/// on stdout once it listens. The server writes it; the background launcher
/// and the doctor read it with this same type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadyLine {
    /// Always `"ready"`.
    pub event: String,
    pub url: String,
    pub health: String,
    pub host: String,
    pub port: u16,
    pub pid: u32,
    #[serde(default)]
    pub version: Option<String>,
}

impl ReadyLine {
    pub const EVENT: &'static str = "ready";

    /// The readiness line in `text`, if it is one.
    pub fn parse(text: &[u8]) -> Option<ReadyLine> {
        let line: ReadyLine = serde_json::from_slice(text).ok()?;
        (line.event == Self::EVENT).then_some(line)
    }
}
