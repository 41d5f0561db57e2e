//! The variables ccx reads, each with what it sets; cc_executor's names it
//! reads as aliases, and those it knows but does not support; and which
//! set variables are unknown (with the nearest known name).

use super::Env;

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
pub(super) const CC_EXECUTOR_SHELLS: &[(&str, &[&str])] = &[
    ("zsh", &["/bin/zsh", "/usr/bin/zsh", "/usr/local/bin/zsh"]),
    (
        "bash",
        &["/bin/bash", "/usr/bin/bash", "/usr/local/bin/bash"],
    ),
];

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
