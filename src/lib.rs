//! ccx: a command-execution server for AI agents (JSON-RPC over WebSocket at
//! `/ws/mcp`), its client, and the tools around it.
//!
//! Layers, each knowing only those listed before it: `protocol` (wire types),
//! `config` (flags + environment → `Config`), `process` (process groups and
//! output pumps), `server` (axum routes and sessions), `client` (the one
//! WebSocket client), `stress` (load engine and report), `cli` (subcommands wiring the above).

pub mod cli;
pub mod client;
pub mod compare;
pub mod config;
pub mod doctor;
pub mod exit;
pub mod lifecycle;
pub mod process;
pub mod protocol;
pub mod server;
pub mod shell;
pub mod signatures;
pub mod stress;

/// The version every component reports.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
