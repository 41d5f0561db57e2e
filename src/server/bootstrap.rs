//! The server process from start to exit, behind one call: bind, check
//! CCX_SHELL, print the readiness line, serve until told to stop (signals
//! wired to the given [`Shutdown`]). Its caller holds the
//! `process::Supervisor` that reaps the commands and ends what they leave
//! behind.

use std::io::Write;

use crate::config::Config;
use crate::process::ResolveError;
use crate::protocol::ReadyLine;
use crate::server::{bind, serve, ServerError, Shutdown};

/// Runs the server described by `config` until `shutdown` (or SIGTERM /
/// SIGINT, wired to it here) ends it. Call inside a multi-threaded tokio
/// runtime, once per process, under a `process::Supervisor`.
pub async fn run(mut config: Config, shutdown: Shutdown) -> Result<(), ServerError> {
    if let Err(e) = crate::process::close_on_exec_above_stdio() {
        tracing::warn!("cannot mark inherited descriptors close-on-exec: {e}");
    }
    shutdown.stop_on_signals();
    let listener = bind(&config).await?;
    check_shell(&config)?;
    config.port = listener
        .local_addr()
        .map_err(|source| ServerError::Bind {
            addr: config.authority(),
            source,
        })?
        .port();
    let url = config.ws_url();
    tracing::info!("listening on {url}");
    if let Err(source) = announce_ready(&config, url) {
        // Storage that refuses writes loses the log too: stop and say so.
        // Stdout closed or its reader gone is the launcher's choice.
        let storage = [libc::ENOSPC, libc::EDQUOT, libc::EIO, libc::EFBIG];
        if source.raw_os_error().is_some_and(|e| storage.contains(&e)) {
            return Err(ServerError::Announce { source });
        }
        tracing::warn!("cannot write the readiness line to stdout: {source}");
    }
    serve(listener, config, shutdown.drain, shutdown.now).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Every command runs under CCX_SHELL: a server that cannot start it would
/// only fail later, on every request. Checked after binding, so a launcher
/// sees a server that starts and then dies with this message.
fn check_shell(config: &Config) -> Result<(), ServerError> {
    let shell = config.shell.clone();
    match crate::process::resolve_program(&shell.to_string_lossy(), None) {
        Ok(_) => Ok(()),
        Err(ResolveError::NotExecutable) => Err(ServerError::ShellNotExecutable { shell }),
        Err(_) => Err(ServerError::ShellMissing { shell }),
    }
}

/// The readiness line: one JSON object on stdout, printed once the socket
/// listens. Launchers (`ccx serve`, the doctor, scripts) wait for it: a
/// server that cannot write it (a full disk under its log) must exit and
/// say why, not serve with nobody knowing where.
fn announce_ready(config: &Config, url: String) -> std::io::Result<()> {
    let line = ReadyLine {
        event: ReadyLine::EVENT.into(),
        url,
        health: crate::protocol::Endpoint::new(config.host, config.port).health_url(),
        host: config.host.to_string(),
        port: config.port,
        pid: std::process::id(),
        version: Some(crate::VERSION.into()),
    };
    let mut out = std::io::stdout().lock();
    let written = writeln!(out, "{}", serde_json::to_string(&line).unwrap_or_default())
        .and_then(|()| out.flush());
    crate::log_sink::record(written)
}
