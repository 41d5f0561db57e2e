//! Configuration: command-line overrides + environment → one validated
//! [`Config`]. Flags override environment, environment overrides defaults.
//! cc_executor's variable names ([`ALIASES`]) are read when the `CCX_` name
//! is unset, so a deployment that switches keeps its settings; the `CCX_`
//! name wins when both are set. [`Config::sources`] records which name
//! supplied each value, and [`Config::warnings`] says what was set but not
//! used (a cc_executor variable ccx does not support, a shadowed alias).
//!
//! Every malformed value is a [`ConfigError`] naming the variable, the value
//! and what was expected. This module never touches the network or starts a
//! process; it reads the environment only through the [`Env`] snapshot it is
//! given, so tests can build any configuration directly.
//!
//! Split by job: `variables` (the table of every variable ccx reads, the
//! cc_executor aliases and unsupported names), `load` (the environment →
//! `Config` loader), `parse` (one parser per kind of value).

mod load;
mod parse;
#[cfg(test)]
mod tests;
mod variables;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::protocol::Endpoint;

/// A snapshot of the environment variables (names and values as UTF-8).
pub type Env = BTreeMap<String, String>;

/// Reads the process environment once. Variables whose name or value is not
/// UTF-8 are kept with a lossy value, so a validator can still name them.
pub fn env_snapshot() -> Env {
    std::env::vars_os()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        })
        .collect()
}

pub use load::state_dir_from;
pub use parse::*;
pub use variables::*;

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    /// A command-line flag, e.g. `--port`.
    Flag(&'static str),
    /// An environment variable: ccx's name, or cc_executor's (see [`ALIASES`]).
    Env(&'static str),
}

impl Source {
    /// True when a cc_executor name supplied the value.
    pub fn is_alias(&self) -> bool {
        matches!(self, Source::Env(name) if ALIASES.iter().any(|(_, alias)| alias == name))
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::Flag(flag) => f.write_str(flag),
            Source::Env(name) => match ALIASES.iter().find(|(_, alias)| alias == name) {
                Some((ccx, _)) => write!(f, "{name} (cc_executor's name for {ccx})"),
                None => f.write_str(name),
            },
        }
    }
}

/// Something set that ccx does not use as written; never silent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// The variable the warning is about.
    pub variable: String,
    pub message: String,
}

impl std::fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// What went wrong building a [`Config`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    #[error("{var}={value:?} is not valid: expected {expected}")]
    Invalid {
        var: String,
        value: String,
        expected: String,
    },
    #[error(
        "refusing to listen on {host} without a token: anyone who can reach this address could run \
         shell commands. Set CCX_TOKEN, bind to 127.0.0.1, or pass --insecure-no-auth if the network \
         is trusted"
    )]
    InsecureBind { host: IpAddr },
    #[error("no state directory: set CCX_STATE_DIR, XDG_STATE_HOME or HOME")]
    NoStateDir,
}

impl ConfigError {
    /// The variable (or flag) at fault, when there is one.
    pub fn variable(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { var, .. } => Some(var),
            ConfigError::InsecureBind { .. } => Some("CCX_HOST"),
            ConfigError::NoStateDir => Some("CCX_STATE_DIR"),
        }
    }
}

/// Values given on the command line; each, when set, wins over the environment.
///
/// A launcher (`ccx serve` in the background, the doctor) hands its own to
/// the server it starts as one JSON value behind [`Overrides::FLAG`], so a
/// new `serve` flag needs no launcher to write it out again.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub insecure_no_auth: bool,
}

impl Overrides {
    /// `ccx serve`'s hidden flag that carries a launcher's overrides.
    pub const FLAG: &'static str = "--overrides";

    /// The value of [`Overrides::FLAG`]. Fails only for a path that is not
    /// UTF-8, which JSON cannot carry.
    pub fn encode(&self) -> Result<String, String> {
        serde_json::to_string(self)
            .map_err(|e| format!("cannot pass the flags on to the server: {e}"))
    }

    /// The arguments that hand these overrides to `ccx serve`: none when
    /// nothing is overridden, else [`Overrides::FLAG`] and its value.
    pub fn to_args(&self) -> Result<Vec<String>, String> {
        if *self == Overrides::default() {
            return Ok(Vec::new());
        }
        Ok(vec![Overrides::FLAG.to_string(), self.encode()?])
    }

    /// Reads [`Overrides::FLAG`]'s value (clap's value parser).
    pub fn decode(value: &str) -> Result<Overrides, String> {
        serde_json::from_str(value).map_err(|e| format!("not a launcher's overrides: {e}"))
    }
}

/// The validated configuration of a ccx server and of the clients that talk to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub host: IpAddr,
    pub port: u16,
    pub token: Option<String>,
    pub shell: PathBuf,
    /// `None` allows every program.
    pub allowed_commands: Option<Vec<String>>,
    /// With an allowlist, the variables a request's `env` may set: names,
    /// or prefixes ending in `*`.
    pub allowed_env: Vec<String>,
    pub allowed_origins: Vec<String>,
    pub max_sessions: usize,
    pub max_output: u64,
    /// Output bytes an MCP `execute` result keeps: the first and last
    /// halves, with a marker where the middle was left out.
    pub mcp_max_output: u64,
    pub default_timeout: Option<Duration>,
    pub kill_grace: Duration,
    /// On SIGTERM: how long running commands may take to finish before
    /// their groups are ended (0: end them at once, as SIGINT does).
    pub drain_period: Duration,
    pub state_dir: PathBuf,
    pub ws_ping_interval: Duration,
    pub ws_ping_timeout: Duration,
    pub ws_max_size: usize,
    /// Interval of cc_executor's `ping` notification; `None`: none sent.
    pub heartbeat_interval: Option<Duration>,
    /// How long a connection may take to send a request head (the upgrade
    /// request included), and may idle between requests.
    pub handshake_timeout: Duration,
    /// Connections not yet upgraded to WebSocket held at once; past it the
    /// oldest is dropped.
    pub max_pending: usize,
    /// Serve a non-loopback address without a token (explicit opt-in).
    pub insecure_no_auth: bool,
    /// Which name supplied each setting (by field name, e.g. `"port"`);
    /// a setting not listed has its default.
    pub sources: BTreeMap<&'static str, Source>,
    /// Variables that are set but not used as written.
    pub warnings: Vec<ConfigWarning>,
    /// `CCX_*` variables passed through to commands (all others are hidden).
    pub pass_env: Vec<String>,
    /// How escaped descendants of a command are tracked.
    pub process_tracking: TrackingChoice,
}

/// `CCX_PROCESS_TRACKING`: which mechanism ties a command's escaped
/// descendants to it (see docs/processes.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TrackingChoice {
    /// A cgroup v2 subtree where one is writable, else subreaper+marker.
    #[default]
    Auto,
    /// Subreaper+marker only, even where cgroups are writable.
    Marker,
}

pub const DEFAULT_PORT: u16 = 8003;
/// CCX_ALLOWED_ENV's default: locale and terminal settings, none of which
/// names a program, a library or a script to run.
pub const DEFAULT_ALLOWED_ENV: &[&str] = &[
    "LANG",
    "LANGUAGE",
    "LC_*",
    "TZ",
    "TERM",
    "NO_COLOR",
    "FORCE_COLOR",
    "CLICOLOR",
    "COLUMNS",
    "LINES",
];
pub const MIB: u64 = 1024 * 1024;

impl Default for Config {
    /// The defaults of the design's table (state dir under the temp dir).
    fn default() -> Self {
        Config {
            host: IpAddr::from([127, 0, 0, 1]),
            port: DEFAULT_PORT,
            token: None,
            shell: PathBuf::from("/bin/sh"),
            allowed_commands: None,
            allowed_env: DEFAULT_ALLOWED_ENV.iter().map(|s| s.to_string()).collect(),
            allowed_origins: Vec::new(),
            max_sessions: 256,
            max_output: 64 * MIB,
            mcp_max_output: MIB,
            default_timeout: None,
            kill_grace: Duration::from_secs(5),
            drain_period: Duration::ZERO,
            state_dir: std::env::temp_dir().join("ccx"),
            ws_ping_interval: Duration::from_secs(20),
            ws_ping_timeout: Duration::from_secs(30),
            ws_max_size: 10 * MIB as usize,
            heartbeat_interval: Some(Duration::from_secs(30)),
            handshake_timeout: Duration::from_secs(10),
            max_pending: 512,
            insecure_no_auth: false,
            sources: BTreeMap::new(),
            warnings: Vec::new(),
            pass_env: Vec::new(),
            process_tracking: TrackingChoice::Auto,
        }
    }
}

impl Config {
    /// Where setting `field` (e.g. `"allowed_commands"`) came from.
    pub fn source_of(&self, field: &str) -> Source {
        self.sources.get(field).cloned().unwrap_or(Source::Default)
    }

    /// The variable name to quote to a user about `field`: the one that set
    /// it, or ccx's own name when it has its default.
    pub fn variable_of(&self, field: &str, ccx_name: &'static str) -> &'static str {
        match self.source_of(field) {
            Source::Env(name) => name,
            _ => ccx_name,
        }
    }

    /// A non-loopback bind without a token is refused unless explicitly allowed.
    pub fn check_bind_is_safe(&self) -> Result<(), ConfigError> {
        if !self.host.is_loopback() && self.token.is_none() && !self.insecure_no_auth {
            return Err(ConfigError::InsecureBind { host: self.host });
        }
        Ok(())
    }

    /// `HOST:PORT` as a URL authority (IPv6 in brackets).
    pub fn authority(&self) -> String {
        Endpoint::new(self.host, self.port).authority()
    }

    /// Where clients reach this configuration's server: an unspecified
    /// bind address (0.0.0.0, ::) is reached on loopback.
    pub fn endpoint(&self) -> Endpoint {
        Endpoint::reach(self.host, self.port)
    }

    /// The WebSocket URL clients use to reach this configuration's server.
    pub fn ws_url(&self) -> String {
        self.endpoint().ws_url()
    }
}
