//! `ccx serve --foreground`: validate the configuration, bind, announce
//! readiness, serve until SIGTERM/SIGINT, end every process group, exit 0.
//! SIGTERM drains first (CCX_DRAIN_PERIOD); SIGINT, or a second signal,
//! stops at once.
//!
//! `ccx serve` (background): validate the configuration here, then hand the
//! detached start to `lifecycle` and print where the server is.

use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

use super::{runtime, use_color, CliError, ColorChoice};
use crate::config::{self, Config, Overrides};
use crate::exit::Exit;
use crate::lifecycle::{self, StartOptions, StateDir};
use crate::process::{reaper, ResolveError};
use crate::server;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Run in this terminal (logs on stderr, readiness line on stdout).
    #[arg(long)]
    pub foreground: bool,
    /// Address to listen on [env: CCX_HOST; default 127.0.0.1].
    #[arg(long)]
    pub host: Option<String>,
    /// Port to listen on; 0 picks a free one [env: CCX_PORT; default 8003].
    #[arg(long)]
    pub port: Option<u16>,
    /// Where the background server keeps its pid file and log [env: CCX_STATE_DIR].
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Allow a non-loopback address without CCX_TOKEN (anyone who reaches it can run commands).
    #[arg(long)]
    pub insecure_no_auth: bool,
    /// Background only: how long to wait for the server to be ready before stopping it (e.g. 10s, 500ms).
    #[arg(long, default_value = "10s", value_parser = parse_ready_timeout)]
    pub ready_timeout: Duration,
    /// Internal (set by `ccx serve` for the server it starts): leave the
    /// launcher's session, so the server has no controlling terminal.
    #[arg(long, hide = true)]
    pub detached: bool,
    /// Internal (set by `ccx doctor` for the server it starts): stdin is a
    /// pipe from the parent; when it closes (the parent died, even by
    /// SIGKILL) the server shuts down as on SIGTERM.
    #[arg(long, hide = true)]
    pub lifeline: bool,
}

fn parse_ready_timeout(raw: &str) -> Result<Duration, String> {
    config::parse_duration(raw)
}

impl ServeArgs {
    pub fn overrides(&self) -> Overrides {
        Overrides {
            host: self.host.clone(),
            port: self.port,
            state_dir: self.state_dir.clone(),
            insecure_no_auth: self.insecure_no_auth,
        }
    }
}

pub fn run(args: ServeArgs, color: ColorChoice) -> Result<Exit, CliError> {
    if args.detached {
        // Fails only when already a session leader, which is then fine too.
        let _ = nix::unistd::setsid();
    }
    let env = config::env_snapshot();
    let config = Config::load(&args.overrides(), &env)?;
    if !args.foreground {
        return background(&args, config, &env);
    }
    init_logging(color);
    for (name, nearest) in config::unknown_vars(&env) {
        match nearest {
            Some(known) => tracing::warn!("unknown variable {name} ignored: did you mean {known}?"),
            None => tracing::warn!("unknown variable {name} ignored"),
        }
    }
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    for (field, source) in config.sources.iter().filter(|(_, s)| s.is_alias()) {
        tracing::info!("{field} from {source}");
    }
    if config.insecure_no_auth && !config.host.is_loopback() && config.token.is_none() {
        tracing::warn!(
            "INSECURE: listening on {} without a token (--insecure-no-auth): anyone who can reach this address can run shell commands",
            config.host
        );
    }
    runtime()?.block_on(foreground(config, args.detached, args.lifeline))
}

async fn foreground(mut config: Config, detached: bool, lifeline: bool) -> Result<Exit, CliError> {
    crate::process::supervise_children();
    if detached {
        // Started by `ccx serve`: stdout and stderr are the state
        // directory's log, which this process keeps rotated.
        let log = StateDir::new(&config.state_dir).log_file();
        tokio::spawn(crate::lifecycle::log::keep_rotated(log));
    }
    let listener = server::bind(&config).await?;
    check_shell(&config)?;
    config.port = listener.local_addr()?.port();
    let url = config.ws_url();
    tracing::info!("listening on {url}");
    announce_ready(&config, &url);

    let (drain, shutdown) = (CancellationToken::new(), CancellationToken::new());
    tokio::spawn(stop_on_signal(drain.clone(), shutdown.clone()));
    if lifeline {
        stop_when_stdin_closes(shutdown.clone());
    }
    let served = server::serve(listener, config, drain, shutdown).await;
    reaper::kill_leftovers();
    served?;
    tracing::info!("stopped");
    Ok(Exit::Success)
}

/// Every command runs under CCX_SHELL: a server that cannot start it would
/// only fail later, on every request. Checked after binding, so a launcher
/// sees a server that starts and then dies with this message.
fn check_shell(config: &Config) -> Result<(), CliError> {
    let shell = &config.shell;
    match crate::process::resolve_program(&shell.to_string_lossy(), None) {
        Ok(_) => Ok(()),
        Err(ResolveError::NotExecutable) => Err(CliError::Startup(format!(
            "CCX_SHELL {shell:?} is not an executable file"
        ))),
        Err(_) => Err(CliError::Startup(format!(
            "CCX_SHELL {shell:?} does not exist (or is not on PATH)"
        ))),
    }
}

/// The readiness line: one JSON object on stdout, printed once the socket
/// listens. Launchers wait for it (see README, "Readiness line").
fn announce_ready(config: &Config, url: &str) {
    let authority = crate::config::authority(config.host, config.port);
    let line = crate::protocol::ReadyLine {
        event: crate::protocol::ReadyLine::EVENT.into(),
        url: url.to_string(),
        health: format!("http://{authority}/health"),
        host: config.host.to_string(),
        port: config.port,
        pid: std::process::id(),
        version: Some(crate::VERSION.into()),
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", serde_json::to_string(&line).unwrap_or_default());
    let _ = out.flush();
}

/// SIGTERM (what `docker stop`, Kubernetes and `ccx stop` send) drains:
/// the server finishes what runs, up to CCX_DRAIN_PERIOD. SIGINT (Ctrl-C in
/// a terminal) and any second signal stop at once.
async fn stop_on_signal(drain: CancellationToken, shutdown: CancellationToken) {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install SIGTERM/SIGINT handlers");
        return;
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    if name == "SIGTERM" {
        tracing::info!("{name} received: shutting down");
        drain.cancel();
    } else {
        tracing::info!("{name} received: shutting down now");
        shutdown.cancel();
        return;
    }
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
        _ = shutdown.cancelled() => return,
    };
    tracing::info!("second signal ({name}) received: ending the drain now");
    shutdown.cancel();
}

/// The lifeline: a plain thread (a blocking read cannot be cancelled, so it
/// must not hold up the runtime's shutdown) that waits for EOF on stdin.
fn stop_when_stdin_closes(shutdown: CancellationToken) {
    std::thread::spawn(move || {
        use std::io::Read;
        let mut buf = [0u8; 256];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
        if !shutdown.is_cancelled() {
            tracing::warn!(
                "the process that started this server is gone (--lifeline closed): shutting down"
            );
            shutdown.cancel();
        }
    });
}

fn init_logging(color: ColorChoice) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_ansi(use_color(color, std::io::stderr().is_terminal()))
        .with_target(false)
        // A log nobody reads any more (the launcher's pipe closed) must not
        // turn into a panic: tracing-subscriber reports write errors with
        // `eprintln!`, which panics on a broken stderr.
        .log_internal_errors(false)
        .try_init();
}

/// Starts `ccx serve --foreground` (this binary, the same flags) detached,
/// and returns once it is ready.
fn background(args: &ServeArgs, config: Config, env: &config::Env) -> Result<Exit, CliError> {
    let mut err = std::io::stderr();
    for (name, nearest) in config::unknown_vars(env) {
        let _ = match nearest {
            Some(known) => writeln!(
                err,
                "warning: unknown variable {name} ignored: did you mean {known}?"
            ),
            None => writeln!(err, "warning: unknown variable {name} ignored"),
        };
    }
    for warning in &config.warnings {
        let _ = writeln!(err, "warning: {warning}");
    }
    let state = StateDir::create(&config.state_dir)?;
    let exe = std::env::current_exe()?;
    let mut child_args: Vec<OsString> = ["serve", "--foreground", "--detached", "--color", "never"]
        .iter()
        .map(OsString::from)
        .collect();
    child_args.push("--state-dir".into());
    child_args.push(state.dir.clone().into());
    if let Some(host) = &args.host {
        child_args.extend(["--host".into(), host.into()]);
    }
    if let Some(port) = args.port {
        child_args.extend(["--port".into(), port.to_string().into()]);
    }
    if args.insecure_no_auth {
        child_args.push("--insecure-no-auth".into());
    }
    let started = runtime()?.block_on(lifecycle::start(StartOptions {
        state,
        exe,
        args: child_args,
        ready_timeout: args.ready_timeout,
        kill_grace: config.kill_grace,
        drain_period: config.drain_period,
    }))?;
    if let Some(stale) = &started.removed_stale {
        let _ = writeln!(err, "warning: removed a stale pid file: {}", stale.reason);
    }
    let record = &started.record;
    let url = record.url.as_deref().unwrap_or("?");
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "ccx server ready at {url}\n  pid     {}\n  health  {}\n  log     {}\n  ready in {} ms; stop it with `ccx stop`, follow its log with `ccx logs -f`",
        record.pid,
        record.health.as_deref().unwrap_or("?"),
        started.log.display(),
        started.elapsed.as_millis(),
    );
    Ok(Exit::Success)
}
