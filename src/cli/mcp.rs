//! `ccx mcp`: serve the MCP tools on stdin/stdout for an MCP host (Claude
//! Code: `claude mcp add ccx -- ccx mcp`). The configuration comes from the
//! environment as for `ccx serve`; logs go to stderr, stdout carries only
//! protocol messages.

use clap::Args;

use super::{init_logging, runtime, startup_warnings, CliError, ColorChoice};
use crate::config::{self, Config, Overrides};
use crate::exit::Exit;
use crate::process::Supervisor;
use crate::server::Shutdown;

#[derive(Debug, Args)]
pub struct McpArgs {}

pub fn run(_args: McpArgs, color: ColorChoice) -> Result<Exit, CliError> {
    let env = config::env_snapshot();
    let config = Config::load(&Overrides::default(), &env)?;
    init_logging(color);
    for warning in startup_warnings(&env, &config) {
        tracing::warn!("{warning}");
    }
    // Before any thread exists, so that all inherit its SIGCHLD mask.
    let supervisor = Supervisor::start(config.process_tracking, runtime)?;
    let served = supervisor.block_on(serve(config));
    // tokio reads stdin in a blocking thread that only EOF ends: after a
    // signal, stdin is still open, and waiting for that thread would keep
    // the process alive.
    supervisor.shutdown_background();
    served
}

async fn serve(config: Config) -> Result<Exit, CliError> {
    // Nothing to drain on stdio: SIGTERM, like SIGINT, stops at once.
    let shutdown = Shutdown::without_drain();
    shutdown.stop_on_signals();
    tracing::info!("serving MCP on stdio");
    match crate::mcp::stdio::serve(config, shutdown.now.clone()).await {
        Ok(()) => tracing::info!("stopped"),
        // A signal before any client initialized the service cancels its start.
        Err(_) if shutdown.now.is_cancelled() => tracing::info!("stopped before a client came"),
        Err(e) => return Err(CliError::Startup(e.to_string())),
    }
    Ok(Exit::Success)
}
