//! Where and when a stress run happened, as its report states it: the ccx
//! version, the date, and the machine the load came from (cores, OS,
//! kernel), so that two reports pasted side by side can be told apart.

use serde::{Deserialize, Serialize};

/// The run's context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    pub ccx_version: String,
    /// When the run started, RFC 3339 in UTC (`2026-12-06T20:15:00Z`).
    pub started_at: String,
    pub machine: Machine,
}

/// The machine ccx ran on (the load generator; a `--url` target may be
/// elsewhere).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// `linux`, `macos`, …
    pub os: String,
    pub arch: String,
    /// The kernel's release (`uname -r`); empty when unknown.
    pub kernel: String,
    /// CPUs this process may use.
    pub cores: usize,
}

impl RunInfo {
    /// This process, now.
    pub fn now() -> RunInfo {
        let started: chrono::DateTime<chrono::Utc> = std::time::SystemTime::now().into();
        RunInfo {
            ccx_version: crate::VERSION.into(),
            started_at: started.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            machine: Machine {
                os: std::env::consts::OS.into(),
                arch: std::env::consts::ARCH.into(),
                kernel: nix::sys::utsname::uname()
                    .map(|u| u.release().to_string_lossy().into_owned())
                    .unwrap_or_default(),
                cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            },
        }
    }
}
