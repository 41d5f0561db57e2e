//! The `server.info` exchange: what a client may require, and what the
//! server says about itself (version, limits, capabilities).

use super::*;

/// Parameters of `server.info`: programs to resolve on the server's PATH.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InfoParams {
    #[serde(default)]
    pub require: Vec<String>,
}

/// The server's environment fingerprint (`server.info`, `/health?verbose=1`):
/// what explains why the same command behaves differently on two servers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerInfo {
    pub ccx_version: String,
    pub os: String,
    pub kernel: String,
    pub arch: String,
    pub hostname: String,
    pub pid: u32,
    pub uid: u32,
    pub gid: u32,
    pub cwd: String,
    /// True when the server runs as PID 1 or finds /.dockerenv.
    pub in_container: bool,
    pub shell: String,
    /// Where the shell resolves, `None` when it does not exist.
    pub shell_resolved: Option<String>,
    /// PATH, split into its entries.
    pub path: Vec<String>,
    /// Names (never values) of the server's environment variables, sorted.
    pub env_names: Vec<String>,
    pub rlimits: ResourceLimits,
    pub limits: CcxLimits,
    /// Each requested program → its resolved path (`None`: not found).
    pub binaries: BTreeMap<String, Option<String>>,
    /// How the server ties escaped descendants to their command:
    /// `cgroup-v2` or `subreaper+marker` (absent from older servers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_tracking: Option<String>,
}

/// Soft and hard values of one resource limit; `None` means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limit {
    pub soft: Option<u64>,
    pub hard: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceLimits {
    pub open_files: Limit,
    pub processes: Limit,
}

/// The effective ccx limits of a server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CcxLimits {
    pub max_sessions: usize,
    pub max_output: u64,
    pub ws_max_size: usize,
    pub ws_ping_interval_ms: u64,
    pub ws_ping_timeout_ms: u64,
    pub default_timeout_ms: Option<u64>,
    pub kill_grace_ms: u64,
    pub token_required: bool,
    pub allowed_commands: Option<Vec<String>>,
}
