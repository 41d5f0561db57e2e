//! `ccx mcp`: serve the MCP tools on stdin/stdout for an MCP host (Claude
//! Code: `claude mcp add ccx -- ccx mcp`). The configuration comes from the
//! environment as for `ccx serve`; logs go to stderr, stdout carries only
//! protocol messages.

use std::io::IsTerminal;

use clap::Args;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

use super::{runtime, use_color, CliError, ColorChoice};
use crate::config::{self, Config, Overrides};
use crate::exit::Exit;
use crate::process::reaper;

#[derive(Debug, Args)]
pub struct McpArgs {}

pub fn run(_args: McpArgs, color: ColorChoice) -> Result<Exit, CliError> {
    let env = config::env_snapshot();
    let config = Config::load(&Overrides::default(), &env)?;
    init_logging(color);
    for (name, nearest) in config::unknown_vars(&env) {
        match nearest {
            Some(known) => tracing::warn!("unknown variable {name} ignored: did you mean {known}?"),
            None => tracing::warn!("unknown variable {name} ignored"),
        }
    }
    runtime()?.block_on(serve(config))
}

async fn serve(config: Config) -> Result<Exit, CliError> {
    crate::process::supervise_children();
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    tracing::info!("serving MCP on stdio");
    let served = crate::mcp::stdio::serve(config, shutdown).await;
    reaper::kill_leftovers();
    served.map_err(|e| CliError::Startup(e.to_string()))?;
    tracing::info!("stdin closed: stopped");
    Ok(Exit::Success)
}

fn init_logging(color: ColorChoice) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_ansi(use_color(color, std::io::stderr().is_terminal()))
        .with_target(false)
        .try_init();
}

async fn stop_on_signal(shutdown: CancellationToken) {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install SIGTERM/SIGINT handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    shutdown.cancel();
}
