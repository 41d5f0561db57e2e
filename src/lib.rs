//! ccx: a command-execution server for AI agents (JSON-RPC over WebSocket at
//! `/ws/mcp`, cc_executor's dialect; MCP on stdio and at `/mcp`), its client,
//! and the tools around it.
//!
//! Layers, each knowing only those listed before it:
//!
//! | module | owns |
//! | --- | --- |
//! | `exit` | every exit code of the CLI |
//! | `protocol` | wire types: requests, notifications, error codes; the readiness line, the health body, the endpoint (a server's URLs) |
//! | `log_sink` | the log's writer (stderr), remembering a write that failed |
//! | `config` | flags + environment → a validated `Config`, cc_executor aliases |
//! | `sanitize` | text made safe to show: terminal control sequences removed from captured output, markup escaped for HTML and XML |
//! | `process` | the `Executor` every front end runs commands through (rules, admission, spawn), the `Supervisor` every entry point that runs commands holds (SIGCHLD, reaping, leftovers), process groups and their termination, clone3 into a cgroup, output framing, tracking of escaped descendants |
//! | `guards` | who may open a session over HTTP: token, Origin, Host; the mark a request leaves on its connection once it passed them |
//! | `mcp` | the `execute` tool over MCP (stdio, Streamable HTTP) |
//! | `server` | the server process (`run`: bind, readiness line, signals), axum routes (`/ws/mcp`, `/ws`, `/mcp`, health and probes), sessions, drain |
//! | `client` | the one WebSocket client (doctor, exec, stress, tests) and the diagnostic MCP client (doctor) |
//! | `exec` | one command on a server, streamed to local stdout/stderr, its result as an `Exit` |
//! | `lifecycle` | the background server: state dir, pid file, log, start, stop |
//! | `doctor` | ordered checks → `Report` → renderers; signatures; `--compare`; what a `--server-cmd` shell line runs |
//! | `stress` | load engine and report |
//! | `cli` | clap types and one file per subcommand wiring the above |

pub mod cli;
pub mod client;
pub mod config;
pub mod doctor;
pub mod exec;
pub mod exit;
pub mod guards;
pub mod lifecycle;
pub mod log_sink;
pub mod mcp;
pub mod process;
pub mod protocol;
pub mod sanitize;
pub mod server;
pub mod stress;

/// The version every component reports.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
