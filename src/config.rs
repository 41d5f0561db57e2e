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

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

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

/// Every variable ccx reads, with what it means (used for typo hints and docs).
pub const KNOWN_VARS: &[(&str, &str)] = &[
    ("CCX_HOST", "address the server listens on"),
    ("CCX_PORT", "port the server listens on"),
    ("CCX_TOKEN", "bearer token required for the WebSocket"),
    (
        "CCX_TOKEN_FILE",
        "file holding the bearer token (a mounted secret), when CCX_TOKEN is unset",
    ),
    ("CCX_SHELL", "shell that runs commands"),
    (
        "CCX_ALLOWED_COMMANDS",
        "comma list of programs a command may start with",
    ),
    (
        "CCX_ALLOWED_ENV",
        "with an allowlist: comma list of variables a request's env may set (NAME or PREFIX*)",
    ),
    ("CCX_ALLOWED_ORIGINS", "browser origins allowed to connect"),
    ("CCX_MAX_SESSIONS", "concurrent WebSocket sessions"),
    ("CCX_MAX_OUTPUT", "output bytes per process"),
    (
        "CCX_MCP_MAX_OUTPUT",
        "output bytes an /mcp or stdio MCP result keeps (head and tail)",
    ),
    ("CCX_DEFAULT_TIMEOUT", "command timeout"),
    ("CCX_KILL_GRACE", "SIGTERM to SIGKILL grace period"),
    (
        "CCX_HEARTBEAT_INTERVAL",
        "seconds between `ping` notifications (0: none)",
    ),
    (
        "CCX_DRAIN_PERIOD",
        "on SIGTERM, how long running commands may take to finish",
    ),
    ("CCX_STATE_DIR", "pid file and log of the background server"),
    (
        "CCX_COMMAND_ID",
        "set by a ccx server on each command it runs (marks its processes)",
    ),
    (
        "CCX_PASS_ENV",
        "comma list of CCX_* variables commands may see (all are hidden by default)",
    ),
    ("WS_PING_INTERVAL", "WebSocket keep-alive ping interval"),
    ("WS_PING_TIMEOUT", "WebSocket keep-alive timeout"),
    ("WS_MAX_SIZE", "largest WebSocket message accepted"),
    (
        "CCX_HANDSHAKE_TIMEOUT",
        "deadline for a connection's request head (and its upgrade)",
    ),
    (
        "CCX_MAX_PENDING",
        "connections still in HTTP (not yet upgraded) at once",
    ),
    (
        "CCX_PROCESS_TRACKING",
        "how escaped descendants are tracked: auto (cgroup v2 where writable) or marker",
    ),
];

/// cc_executor's names for ccx's variables: `(ccx name, cc_executor name)`.
/// The cc_executor name is read when the ccx name is unset.
/// `CC_EXECUTOR_SHELL` takes cc_executor's values (`zsh`, `bash`, `default`),
/// resolved to a shell path as cc_executor resolves them.
pub const ALIASES: &[(&str, &str)] = &[
    ("CCX_PORT", "DEFAULT_PORT"),
    ("CCX_ALLOWED_COMMANDS", "ALLOWED_COMMANDS"),
    ("CCX_MAX_SESSIONS", "MAX_SESSIONS"),
    ("CCX_SHELL", "CC_EXECUTOR_SHELL"),
    ("CCX_DEFAULT_TIMEOUT", "DEFAULT_EXECUTION_TIMEOUT"),
    ("CCX_HEARTBEAT_INTERVAL", "WEBSOCKET_HEARTBEAT_INTERVAL"),
];

/// Variables cc_executor's server reads that ccx does not support, each with
/// what ccx does instead. Set, each is a warning — never silently ignored.
pub const UNSUPPORTED: &[(&str, &str)] = &[
    (
        "SESSION_TIMEOUT",
        "ccx does not expire sessions by age; a dead client is detected by WebSocket ping \
         (WS_PING_INTERVAL, WS_PING_TIMEOUT)",
    ),
    (
        "MAX_BUFFER_SIZE",
        "ccx has no line-length limit: a long line is streamed in 64 KiB chunks; output per \
         process is capped by CCX_MAX_OUTPUT",
    ),
    (
        "STREAM_TIMEOUT",
        "ccx has no read timeout: bound a command with the execute `timeout` or \
         CCX_DEFAULT_TIMEOUT",
    ),
    (
        "ENABLE_STREAM_TIMEOUT",
        "ccx has no read timeout: bound a command with the execute `timeout` or \
         CCX_DEFAULT_TIMEOUT",
    ),
    (
        "PROCESS_CLEANUP_TIMEOUT",
        "ccx waits CCX_KILL_GRACE between SIGTERM and SIGKILL",
    ),
    (
        "LOG_LEVEL",
        "ccx logs to stderr at the level RUST_LOG sets (e.g. RUST_LOG=debug; default info)",
    ),
    ("DEBUG", "set RUST_LOG=debug for ccx's debug log"),
    ("TEST_MODE", "ccx has no test mode; it is ignored"),
    (
        "HEALTH_CHECK_INTERVAL",
        "ccx answers /health on demand; it is ignored (cc_executor does not use it either)",
    ),
    (
        "DISABLE_VENV_WRAPPING",
        "ccx never wraps commands in a virtualenv: commands run as given",
    ),
    (
        "REDIS_URL",
        "ccx uses no Redis (no hooks, no timeout estimation)",
    ),
    (
        "REDIS_HOST",
        "ccx uses no Redis (no hooks, no timeout estimation)",
    ),
    (
        "REDIS_PORT",
        "ccx uses no Redis (no hooks, no timeout estimation)",
    ),
    (
        "REDIS_TIMEOUT",
        "ccx uses no Redis (no hooks, no timeout estimation)",
    ),
];

/// Where cc_executor looks for the shell `CC_EXECUTOR_SHELL` names.
const CC_EXECUTOR_SHELLS: &[(&str, &[&str])] = &[
    ("zsh", &["/bin/zsh", "/usr/bin/zsh", "/usr/local/bin/zsh"]),
    (
        "bash",
        &["/bin/bash", "/usr/bin/bash", "/usr/local/bin/bash"],
    ),
];

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
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub state_dir: Option<PathBuf>,
    pub insecure_no_auth: bool,
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
    /// Builds the configuration from flags and an environment snapshot.
    pub fn load(overrides: &Overrides, env: &Env) -> Result<Config, ConfigError> {
        let d = Config::default();
        let mut l = Loader {
            env,
            sources: BTreeMap::new(),
            warnings: Vec::new(),
        };

        let host = match &overrides.host {
            Some(h) => {
                l.sources.insert("host", Source::Flag("--host"));
                parse_host(h).map_err(|e| invalid("--host", h, &e))?
            }
            None => l.parsed("host", "CCX_HOST", parse_host)?.unwrap_or(d.host),
        };
        let port = match overrides.port {
            Some(p) => {
                l.sources.insert("port", Source::Flag("--port"));
                p
            }
            None => l.parsed("port", "CCX_PORT", parse_port)?.unwrap_or(d.port),
        };
        let token = match l.raw("token", "CCX_TOKEN") {
            Some((_, "")) | None => token_from_file(&mut l)?,
            Some((var, t)) if t.chars().any(|c| c.is_whitespace() || c.is_control()) => {
                return Err(invalid(
                    var,
                    "<hidden>",
                    "a token without spaces or control characters",
                ))
            }
            Some((_, t)) => Some(t.to_string()),
        };
        let shell = match l.raw("shell", "CCX_SHELL") {
            Some(("CCX_SHELL", "")) => {
                return Err(invalid("CCX_SHELL", "", "a path to a shell, e.g. /bin/sh"))
            }
            Some(("CCX_SHELL", s)) => PathBuf::from(s),
            Some((alias, value)) => l.cc_executor_shell(alias, value, &d.shell),
            None => d.shell,
        };
        let allowed_commands = match l.raw("allowed_commands", "CCX_ALLOWED_COMMANDS") {
            Some(("ALLOWED_COMMANDS", raw)) if raw.trim().is_empty() => {
                // cc_executor reads an empty list as "no restriction"; so does ccx, loudly.
                l.sources.remove("allowed_commands");
                l.warn(
                    "ALLOWED_COMMANDS",
                    "ALLOWED_COMMANDS is set but empty: every command is allowed (as in \
                     cc_executor); unset it, or list the programs to allow",
                );
                None
            }
            Some((var, raw)) => Some(parse_list(raw).map_err(|e| invalid(var, raw, &e))?),
            None => None,
        };
        let allowed_env = l
            .parsed("allowed_env", "CCX_ALLOWED_ENV", parse_list)?
            .unwrap_or(d.allowed_env);
        let allowed_origins = l
            .parsed("allowed_origins", "CCX_ALLOWED_ORIGINS", parse_list)?
            .unwrap_or_default();
        let max_sessions = l
            .parsed("max_sessions", "CCX_MAX_SESSIONS", parse_count)?
            .unwrap_or(d.max_sessions);
        let max_output = l
            .parsed("max_output", "CCX_MAX_OUTPUT", parse_size)?
            .unwrap_or(d.max_output);
        let mcp_max_output = l
            .parsed("mcp_max_output", "CCX_MCP_MAX_OUTPUT", parse_size)?
            .unwrap_or(d.mcp_max_output);
        let default_timeout = l
            .parsed(
                "default_timeout",
                "CCX_DEFAULT_TIMEOUT",
                parse_optional_duration,
            )?
            .unwrap_or(d.default_timeout);
        let kill_grace = l
            .parsed("kill_grace", "CCX_KILL_GRACE", parse_duration)?
            .unwrap_or(d.kill_grace);
        let drain_period = l
            .parsed("drain_period", "CCX_DRAIN_PERIOD", parse_duration)?
            .unwrap_or(d.drain_period);
        let heartbeat_interval = l
            .parsed(
                "heartbeat_interval",
                "CCX_HEARTBEAT_INTERVAL",
                parse_optional_duration,
            )?
            .unwrap_or(d.heartbeat_interval);
        let ws_ping_interval = l
            .parsed(
                "ws_ping_interval",
                "WS_PING_INTERVAL",
                parse_positive_duration,
            )?
            .unwrap_or(d.ws_ping_interval);
        let ws_ping_timeout = l
            .parsed(
                "ws_ping_timeout",
                "WS_PING_TIMEOUT",
                parse_positive_duration,
            )?
            .unwrap_or(d.ws_ping_timeout);
        let handshake_timeout = l
            .parsed(
                "handshake_timeout",
                "CCX_HANDSHAKE_TIMEOUT",
                parse_positive_duration,
            )?
            .unwrap_or(d.handshake_timeout);
        let max_pending = l
            .parsed("max_pending", "CCX_MAX_PENDING", parse_count)?
            .unwrap_or(d.max_pending);
        let ws_max_size = match l.raw("ws_max_size", "WS_MAX_SIZE") {
            Some((var, raw)) => {
                let n = parse_size(raw).map_err(|e| invalid(var, raw, &e))?;
                if n < 1024 {
                    return Err(invalid(var, raw, "at least 1KiB"));
                }
                usize::try_from(n).map_err(|_| invalid(var, raw, "a smaller size"))?
            }
            None => d.ws_max_size,
        };
        let pass_env = l
            .parsed("pass_env", "CCX_PASS_ENV", parse_list)?
            .unwrap_or_default();
        let process_tracking = l
            .parsed("process_tracking", "CCX_PROCESS_TRACKING", parse_tracking)?
            .unwrap_or(d.process_tracking);
        let state_dir = match &overrides.state_dir {
            Some(p) => {
                l.sources.insert("state_dir", Source::Flag("--state-dir"));
                p.clone()
            }
            None => {
                if env.get("CCX_STATE_DIR").is_some_and(|v| !v.is_empty()) {
                    l.sources.insert("state_dir", Source::Env("CCX_STATE_DIR"));
                }
                state_dir_from(env)?
            }
        };
        for (name, instead) in UNSUPPORTED {
            if let Some(value) = env.get(*name) {
                l.warn(
                    name,
                    &format!(
                        "{name}={value} is a cc_executor setting ccx does not support: {instead}"
                    ),
                );
            }
        }

        let config = Config {
            host,
            port,
            token,
            shell,
            allowed_commands,
            allowed_env,
            allowed_origins,
            max_sessions,
            max_output,
            mcp_max_output,
            default_timeout,
            kill_grace,
            drain_period,
            state_dir,
            ws_ping_interval,
            ws_ping_timeout,
            ws_max_size,
            heartbeat_interval,
            handshake_timeout,
            max_pending,
            insecure_no_auth: overrides.insecure_no_auth,
            sources: l.sources,
            warnings: l.warnings,
            pass_env,
            process_tracking,
        };
        config.check_bind_is_safe()?;
        Ok(config)
    }

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

/// `CCX_*` and `WS_*` variables ccx does not know, each with the nearest
/// known name when one is close enough to be a typo.
pub fn unknown_vars(env: &Env) -> Vec<(String, Option<&'static str>)> {
    env.keys()
        .filter(|k| k.starts_with("CCX_") || k.starts_with("WS_"))
        .filter(|k| !KNOWN_VARS.iter().any(|(known, _)| known == k))
        .map(|k| {
            let nearest = KNOWN_VARS
                .iter()
                .map(|(known, _)| (strsim::damerau_levenshtein(k, known), *known))
                .filter(|(dist, _)| *dist <= 3)
                .min();
            (k.clone(), nearest.map(|(_, known)| known))
        })
        .collect()
}

/// Reads settings from the environment, recording which name supplied each
/// and what deserves a warning.
struct Loader<'a> {
    env: &'a Env,
    sources: BTreeMap<&'static str, Source>,
    warnings: Vec<ConfigWarning>,
}

impl<'a> Loader<'a> {
    fn warn(&mut self, variable: &str, message: &str) {
        self.warnings.push(ConfigWarning {
            variable: variable.into(),
            message: message.into(),
        });
    }

    /// The value of `ccx_name`, or of its cc_executor alias when it is unset,
    /// with the name that supplied it. Both set: ccx's wins, and when the
    /// values differ that is a warning.
    fn raw(
        &mut self,
        field: &'static str,
        ccx_name: &'static str,
    ) -> Option<(&'static str, &'a str)> {
        let alias = ALIASES
            .iter()
            .find(|(ccx, _)| *ccx == ccx_name)
            .map(|(_, alias)| *alias);
        let env: &'a Env = self.env;
        let own = env.get(ccx_name).map(String::as_str);
        let aliased = alias.and_then(|a| env.get(a).map(|v| (a, v.as_str())));
        let chosen = match (own, aliased) {
            (Some(value), Some((alias, other))) => {
                if value != other {
                    let shown = |v: &str| {
                        if ccx_name == "CCX_TOKEN" {
                            "<hidden>".to_string()
                        } else {
                            v.to_string()
                        }
                    };
                    self.warn(
                        alias,
                        &format!(
                            "both {ccx_name}={} and cc_executor's {alias}={} are set: {ccx_name} wins",
                            shown(value),
                            shown(other)
                        ),
                    );
                }
                Some((ccx_name, value))
            }
            (Some(value), None) => Some((ccx_name, value)),
            (None, Some((alias, value))) => Some((alias, value)),
            (None, None) => None,
        };
        if let Some((name, _)) = chosen {
            self.sources.insert(field, Source::Env(name));
        }
        chosen
    }

    /// Parses setting `field` when it (or its alias) is set.
    fn parsed<T>(
        &mut self,
        field: &'static str,
        ccx_name: &'static str,
        parse: fn(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        self.raw(field, ccx_name)
            .map(|(var, raw)| parse(raw).map_err(|expected| invalid(var, raw, &expected)))
            .transpose()
    }

    /// `CC_EXECUTOR_SHELL`: `zsh` or `bash` is the first of cc_executor's
    /// paths that exists, else (as cc_executor does) the system shell;
    /// `default` is the system shell. Other values: the system shell, and a
    /// warning.
    fn cc_executor_shell(&mut self, var: &str, value: &str, system: &std::path::Path) -> PathBuf {
        let wanted = value.trim();
        if wanted == "default" {
            return system.to_path_buf();
        }
        let Some((_, paths)) = CC_EXECUTOR_SHELLS.iter().find(|(name, _)| *name == wanted) else {
            self.warn(
                var,
                &format!(
                    "{var}={value} is not one of zsh, bash or default: commands run with {} \
                     (cc_executor falls back to the system shell too); set CCX_SHELL to a path \
                     to choose another",
                    system.display()
                ),
            );
            return system.to_path_buf();
        };
        match paths.iter().find(|p| std::path::Path::new(p).is_file()) {
            Some(found) => PathBuf::from(found),
            None => {
                self.warn(
                    var,
                    &format!(
                        "{var}={value} but {wanted} is not installed at {}: commands run with {} \
                         (as cc_executor falls back)",
                        paths.join(", "),
                        system.display()
                    ),
                );
                system.to_path_buf()
            }
        }
    }
}

/// The token of CCX_TOKEN_FILE (a Docker or Kubernetes secret mounted as a
/// file), when CCX_TOKEN is unset: the file's content without the white
/// space around it.
fn token_from_file(l: &mut Loader) -> Result<Option<String>, ConfigError> {
    let Some(path) = l.env.get("CCX_TOKEN_FILE").filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    let expected = "a readable file holding the token (no spaces or control characters in it)";
    let content = std::fs::read_to_string(path)
        .map_err(|e| invalid("CCX_TOKEN_FILE", path, &format!("{expected}: {e}")))?;
    let token = content.trim();
    if token.is_empty() || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid("CCX_TOKEN_FILE", path, expected));
    }
    l.sources.insert("token", Source::Env("CCX_TOKEN_FILE"));
    Ok(Some(token.to_string()))
}

fn invalid(var: &str, value: &str, expected: &str) -> ConfigError {
    ConfigError::Invalid {
        var: var.into(),
        value: value.into(),
        expected: expected.into(),
    }
}

/// The state directory from CCX_STATE_DIR, XDG_STATE_HOME or HOME, in that
/// order. `status`, `stop` and `logs` need nothing else of the configuration.
pub fn state_dir_from(env: &Env) -> Result<PathBuf, ConfigError> {
    let non_empty = |name: &str| env.get(name).filter(|v| !v.is_empty());
    if let Some(dir) = non_empty("CCX_STATE_DIR") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(xdg) = non_empty("XDG_STATE_HOME") {
        return Ok(PathBuf::from(xdg).join("ccx"));
    }
    if let Some(home) = non_empty("HOME") {
        return Ok(PathBuf::from(home).join(".local/state/ccx"));
    }
    Err(ConfigError::NoStateDir)
}

pub fn parse_host(raw: &str) -> Result<IpAddr, String> {
    if raw.eq_ignore_ascii_case("localhost") {
        return Ok(IpAddr::from([127, 0, 0, 1]));
    }
    raw.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .map_err(|_| "an IP address such as 127.0.0.1, 0.0.0.0 or ::1 (or localhost)".into())
}

pub fn parse_port(raw: &str) -> Result<u16, String> {
    raw.trim()
        .parse()
        .map_err(|_| "a port number from 0 to 65535 (0 picks a free port)".into())
}

fn parse_tracking(raw: &str) -> Result<TrackingChoice, String> {
    match raw.trim() {
        "auto" => Ok(TrackingChoice::Auto),
        "marker" => Ok(TrackingChoice::Marker),
        _ => Err("auto or marker".into()),
    }
}

fn parse_count(raw: &str) -> Result<usize, String> {
    match raw.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err("a whole number of at least 1".into()),
    }
}

fn parse_list(raw: &str) -> Result<Vec<String>, String> {
    let items: Vec<String> = raw
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    if items.is_empty() {
        return Err("a comma-separated list with at least one entry".into());
    }
    Ok(items)
}

const SIZE_FORMATS: &str =
    "a size in bytes, or with a KiB, MiB or GiB suffix (e.g. 1048576, 512KiB, 10MiB)";

/// Sizes: plain bytes, or `KiB`/`MiB`/`GiB` (binary units; `KB`/`MB` are
/// rejected because they are ambiguous).
pub fn parse_size(raw: &str) -> Result<u64, String> {
    let s = raw.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => 1024,
        "mib" => MIB,
        "gib" => 1024 * MIB,
        _ => return Err(SIZE_FORMATS.into()),
    };
    let n: u64 = digits.parse().map_err(|_| SIZE_FORMATS.to_string())?;
    n.checked_mul(factor).ok_or_else(|| SIZE_FORMATS.into())
}

const DURATION_FORMATS: &str =
    "a duration in seconds, or with ms, s, m or h suffixes (e.g. 5, 2.5s, 500ms, 10m, 1h30m)";

/// Durations: seconds (fractions allowed), or one or more numbers each
/// with a unit (`ms`, `s`, `m`, `h`), added up: `500ms`, `2.5s`, `10m`,
/// `1h30m`. Minutes and hours matter: an agent's task runs for minutes.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let s = raw.trim();
    if let Ok(seconds) = s.parse::<f64>() {
        return seconds_within_range(seconds);
    }
    let mut total = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| DURATION_FORMATS.to_string())?;
        let (number, tail) = rest.split_at(digits);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let scale = match unit {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(DURATION_FORMATS.into()),
        };
        let value: f64 = number.parse().map_err(|_| DURATION_FORMATS.to_string())?;
        total += value * scale;
        rest = next;
    }
    if s.is_empty() {
        return Err(DURATION_FORMATS.into());
    }
    seconds_within_range(total)
}

fn seconds_within_range(seconds: f64) -> Result<Duration, String> {
    if !seconds.is_finite() || !(0.0..=1e9).contains(&seconds) {
        return Err(DURATION_FORMATS.into());
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// A duration greater than zero: every flag and variable that waits for
/// something (deadlines, timeouts, grace periods) takes this.
pub fn parse_positive_duration(raw: &str) -> Result<Duration, String> {
    match parse_duration(raw)? {
        d if d.is_zero() => Err(format!("{DURATION_FORMATS}, greater than zero")),
        d => Ok(d),
    }
}

/// `none` or `0` disable the timeout.
fn parse_optional_duration(raw: &str) -> Result<Option<Duration>, String> {
    if raw.trim().eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    parse_duration(raw)
        .map(|d| (!d.is_zero()).then_some(d))
        .map_err(|e| format!("{e}, or none"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        let mut e: Env = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        e.entry("HOME".into()).or_insert("/home/u".into());
        e
    }

    fn load(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::load(&Overrides::default(), &env(pairs))
    }

    #[test]
    fn defaults_match_the_design() {
        let c = load(&[]).unwrap();
        assert_eq!(c.authority(), "127.0.0.1:8003");
        assert_eq!(c.max_output, 64 * MIB);
        assert_eq!(c.kill_grace, Duration::from_secs(5));
        assert_eq!(c.drain_period, Duration::ZERO);
        assert_eq!(c.state_dir, PathBuf::from("/home/u/.local/state/ccx"));
        assert_eq!(c.ws_max_size, 10 * 1024 * 1024);
    }

    #[test]
    fn malformed_values_name_variable_value_and_expectation() {
        let e = load(&[("CCX_PORT", "abc")]).unwrap_err().to_string();
        assert!(
            e.contains("CCX_PORT") && e.contains("abc") && e.contains("port number"),
            "{e}"
        );
        let e = load(&[("WS_MAX_SIZE", "10MB")]).unwrap_err().to_string();
        assert!(
            e.contains("WS_MAX_SIZE") && e.contains("10MB") && e.contains("MiB"),
            "{e}"
        );
        let e = load(&[("CCX_KILL_GRACE", "soon")]).unwrap_err().to_string();
        assert!(e.contains("CCX_KILL_GRACE") && e.contains("ms"), "{e}");
        let e = load(&[("CCX_DRAIN_PERIOD", "1 min")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("CCX_DRAIN_PERIOD") && e.contains("1 min"), "{e}");
        let c = load(&[("CCX_DRAIN_PERIOD", "25s")]).unwrap();
        assert_eq!(c.drain_period, Duration::from_secs(25));
        let c = load(&[("CCX_DEFAULT_TIMEOUT", "10m"), ("CCX_DRAIN_PERIOD", "1m")]).unwrap();
        assert_eq!(c.default_timeout, Some(Duration::from_secs(600)));
        assert_eq!(c.drain_period, Duration::from_secs(60));
    }

    #[test]
    fn flags_win_over_environment() {
        let o = Overrides {
            port: Some(9),
            ..Default::default()
        };
        let c = Config::load(&o, &env(&[("CCX_PORT", "abc")])).unwrap();
        assert_eq!(c.port, 9);
    }

    #[test]
    fn sizes_and_durations_accept_documented_forms() {
        assert_eq!(parse_size("512KiB"), Ok(512 * 1024));
        assert_eq!(parse_size("10MiB"), Ok(10 * MIB));
        assert_eq!(parse_size("123"), Ok(123));
        assert!(parse_size("10MB").is_err());
        assert!(parse_size("-1").is_err());
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2.5s"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("-3").is_err());
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        for bad in ["", "m", "5x", "5 m", "1h-3m", "inf", "NaN", "5min", "1e12"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(parse_optional_duration("none"), Ok(None));
    }

    #[test]
    fn public_bind_without_token_is_refused() {
        let e = load(&[("CCX_HOST", "0.0.0.0")]).unwrap_err();
        assert!(matches!(e, ConfigError::InsecureBind { .. }));
        assert!(load(&[("CCX_HOST", "0.0.0.0"), ("CCX_TOKEN", "s3cret")]).is_ok());
        let o = Overrides {
            host: Some("0.0.0.0".into()),
            insecure_no_auth: true,
            ..Default::default()
        };
        assert!(Config::load(&o, &env(&[])).is_ok());
    }

    #[test]
    fn typos_get_the_nearest_known_name() {
        let u = unknown_vars(&env(&[("CCX_PROT", "9000"), ("CCX_WHATEVER_ELSE", "1")]));
        assert_eq!(u[0], ("CCX_PROT".to_string(), Some("CCX_PORT")));
        assert_eq!(u[1], ("CCX_WHATEVER_ELSE".to_string(), None));
    }

    #[test]
    fn cc_executor_names_are_read_when_the_ccx_name_is_unset() {
        let c = load(&[
            ("DEFAULT_PORT", "9100"),
            ("ALLOWED_COMMANDS", "echo, ls"),
            ("MAX_SESSIONS", "7"),
            ("DEFAULT_EXECUTION_TIMEOUT", "600"),
            ("WEBSOCKET_HEARTBEAT_INTERVAL", "5"),
            ("CC_EXECUTOR_SHELL", "default"),
        ])
        .unwrap();
        assert_eq!(c.port, 9100);
        assert_eq!(c.allowed_commands, Some(vec!["echo".into(), "ls".into()]));
        assert_eq!(c.max_sessions, 7);
        assert_eq!(c.default_timeout, Some(Duration::from_secs(600)));
        assert_eq!(c.heartbeat_interval, Some(Duration::from_secs(5)));
        assert_eq!(c.shell, PathBuf::from("/bin/sh"));
        assert_eq!(c.source_of("port"), Source::Env("DEFAULT_PORT"));
        assert!(c.source_of("port").is_alias());
        assert_eq!(c.source_of("max_output"), Source::Default);
        assert_eq!(
            c.source_of("allowed_commands").to_string(),
            "ALLOWED_COMMANDS (cc_executor's name for CCX_ALLOWED_COMMANDS)"
        );
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn the_ccx_name_wins_and_a_different_alias_is_a_warning() {
        let c = load(&[("CCX_PORT", "9000"), ("DEFAULT_PORT", "9100")]).unwrap();
        assert_eq!(c.port, 9000);
        assert_eq!(c.source_of("port"), Source::Env("CCX_PORT"));
        assert_eq!(c.warnings.len(), 1);
        assert!(
            c.warnings[0].message.contains("CCX_PORT wins"),
            "{:?}",
            c.warnings
        );
        let c = load(&[("CCX_PORT", "9000"), ("DEFAULT_PORT", "9000")]).unwrap();
        assert!(c.warnings.is_empty());
        let c = Config::load(
            &Overrides {
                port: Some(1),
                ..Default::default()
            },
            &env(&[("DEFAULT_PORT", "9100")]),
        )
        .unwrap();
        assert_eq!((c.port, c.source_of("port")), (1, Source::Flag("--port")));
    }

    #[test]
    fn a_malformed_alias_names_the_alias() {
        let e = load(&[("DEFAULT_PORT", "http")]).unwrap_err().to_string();
        assert!(e.contains("DEFAULT_PORT") && e.contains("http"), "{e}");
        let e = load(&[("MAX_SESSIONS", "0")]).unwrap_err().to_string();
        assert!(e.contains("MAX_SESSIONS"), "{e}");
    }

    #[test]
    fn unsupported_cc_executor_variables_are_warnings_that_name_them() {
        let c = load(&[("SESSION_TIMEOUT", "3600"), ("LOG_LEVEL", "DEBUG")]).unwrap();
        let named: Vec<&str> = c.warnings.iter().map(|w| w.variable.as_str()).collect();
        assert_eq!(named, ["SESSION_TIMEOUT", "LOG_LEVEL"]);
        assert!(
            c.warnings[1].message.contains("RUST_LOG"),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn cc_executor_shell_values_resolve_like_cc_executor() {
        let c = load(&[("CC_EXECUTOR_SHELL", "fish")]).unwrap();
        assert_eq!(c.shell, PathBuf::from("/bin/sh"));
        assert_eq!(c.warnings[0].variable, "CC_EXECUTOR_SHELL");
        let c = load(&[("CC_EXECUTOR_SHELL", "bash")]).unwrap();
        let bash = ["/bin/bash", "/usr/bin/bash", "/usr/local/bin/bash"]
            .into_iter()
            .find(|p| std::path::Path::new(p).is_file());
        match bash {
            Some(path) => assert_eq!(c.shell, PathBuf::from(path)),
            None => assert_eq!(c.warnings.len(), 1),
        }
        let c = load(&[("CC_EXECUTOR_SHELL", "bash"), ("CCX_SHELL", "/bin/dash")]).unwrap();
        assert_eq!(c.shell, PathBuf::from("/bin/dash"));
    }

    #[test]
    fn an_empty_allowed_commands_alias_allows_everything_loudly() {
        let c = load(&[("ALLOWED_COMMANDS", "")]).unwrap();
        assert_eq!(c.allowed_commands, None);
        assert_eq!(c.warnings[0].variable, "ALLOWED_COMMANDS");
        assert!(load(&[("CCX_ALLOWED_COMMANDS", "")]).is_err());
    }

    #[test]
    fn a_token_file_is_read_when_ccx_token_is_unset() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "s3cret\n").unwrap();
        let path = file.to_str().unwrap();
        let c = load(&[("CCX_TOKEN_FILE", path)]).unwrap();
        assert_eq!(c.token.as_deref(), Some("s3cret"));
        assert_eq!(c.source_of("token").to_string(), "CCX_TOKEN_FILE");
        let c = load(&[("CCX_TOKEN_FILE", path), ("CCX_TOKEN", "env")]).unwrap();
        assert_eq!(c.token.as_deref(), Some("env"));
        let missing = dir.path().join("none");
        let e = load(&[("CCX_TOKEN_FILE", missing.to_str().unwrap())]).unwrap_err();
        assert!(e.to_string().contains("CCX_TOKEN_FILE"), "{e}");
        std::fs::write(&file, "two words").unwrap();
        assert!(load(&[("CCX_TOKEN_FILE", path)]).is_err());
    }
}
