//! `ccx serve --foreground`: flags → `Config` → [`server::run`] (bind,
//! readiness line, serve until SIGTERM/SIGINT, end every process group).
//!
//! `ccx serve` (background): validate the configuration here, then hand the
//! detached start to [`lifecycle::start`] and print where the server is.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::{init_logging, output, runtime, startup_warnings, CliError, ColorChoice};
use crate::config::{self, Config, Overrides};
use crate::exit::Exit;
use crate::lifecycle::{self, StartOptions, StateDir};
use crate::process::Supervisor;
use crate::server::{self, secret, Shutdown};

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
    #[arg(long, default_value = "10s", value_parser = config::parse_positive_duration)]
    pub ready_timeout: Duration,
    /// Internal (set by `ccx serve` for the server it starts): leave the
    /// launcher's session, so the server has no controlling terminal.
    #[arg(long, hide = true)]
    pub detached: bool,
    /// Internal (set by `ccx doctor` for the server it starts): stdin is a
    /// pipe from the parent; when it closes (the parent died, even by
    /// SIGKILL) the server shuts down.
    #[arg(long, hide = true)]
    pub lifeline: bool,
    /// Internal (set by the server for itself, see `server::secret`): the
    /// token is on this inherited descriptor, not in the environment.
    #[arg(long, hide = true)]
    pub token_fd: Option<i32>,
    /// Internal (set by a launcher: background `ccx serve`, the doctor):
    /// the launcher's own flags as one JSON value, in place of the flags.
    #[arg(
        long,
        hide = true,
        value_parser = Overrides::decode,
        conflicts_with_all = ["host", "port", "state_dir", "insecure_no_auth"]
    )]
    pub overrides: Option<Overrides>,
}

impl ServeArgs {
    pub fn overrides(&self) -> Overrides {
        self.overrides.clone().unwrap_or_else(|| Overrides {
            host: self.host.clone(),
            port: self.port,
            state_dir: self.state_dir.clone(),
            insecure_no_auth: self.insecure_no_auth,
        })
    }
}

pub fn run(args: ServeArgs, color: ColorChoice) -> Result<Exit, CliError> {
    if args.detached {
        // Fails only when already a session leader, which is then fine too.
        let _ = nix::unistd::setsid();
    }
    let mut env = config::env_snapshot();
    let mut handoff_failed = None;
    if args.foreground {
        if let Some(fd) = args.token_fd {
            let token = secret::take_token(fd).map_err(|e| CliError::Startup(e.to_string()))?;
            env.insert("CCX_TOKEN".into(), token);
        } else if let Some(token) = env.get("CCX_TOKEN").filter(|t| !t.is_empty()) {
            handoff_failed = Some(secret::reexec_without_token(token));
        }
    }
    let config = Config::load(&args.overrides(), &env)?;
    let warnings = startup_warnings(&env, &config);
    if !args.foreground {
        for warning in warnings {
            output::warn(&warning);
        }
        return background(&args, config);
    }
    init_logging(color);
    secret::forbid_same_user_inspection();
    if let Some(e) = handoff_failed {
        tracing::warn!(
            "cannot re-exec without CCX_TOKEN in the environment ({e}): commands of this user \
             can read it in /proc/{}/environ",
            std::process::id()
        );
    }
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    for (field, source) in config.sources.iter().filter(|(_, s)| s.is_alias()) {
        tracing::info!("{field} from {source}");
    }
    // Before any thread exists, so that all inherit its SIGCHLD mask.
    let supervisor = Supervisor::start(config.process_tracking, runtime)?;
    let shutdown = Shutdown::new();
    if args.lifeline {
        shutdown.stop_when_stdin_closes();
    }
    supervisor.block_on(async {
        if args.detached {
            // Started by `ccx serve`: stdout and stderr are the state
            // directory's log, which this process keeps rotated.
            let log = StateDir::new(&config.state_dir).log_file();
            tokio::spawn(lifecycle::log::keep_rotated(log));
        }
        server::run(config, shutdown).await
    })?;
    Ok(Exit::Success)
}

/// Starts `ccx serve --foreground` (this binary, the same flags) detached,
/// and returns once it is ready.
fn background(args: &ServeArgs, config: Config) -> Result<Exit, CliError> {
    let state = StateDir::create(&config.state_dir)?;
    let options = StartOptions::serve(state, &config, &args.overrides(), args.ready_timeout)?;
    let started = runtime()?.block_on(lifecycle::start(options))?;
    if let Some(stale) = &started.removed_stale {
        output::warn(&format!("removed a stale pid file: {}", stale.reason));
    }
    if !started.leftovers_killed.is_empty() {
        output::warn(&format!(
            "killed {} process(es) the dead server left running: {:?}",
            started.leftovers_killed.len(),
            started.leftovers_killed
        ));
    }
    let record = &started.record;
    output::print(&format!(
        "ccx server ready at {}\n  pid     {}\n  health  {}\n  log     {}\n  ready in {} ms; stop it with `ccx stop`, follow its log with `ccx logs -f`\n",
        record.url.as_deref().unwrap_or("?"),
        record.pid,
        record.health.as_deref().unwrap_or("?"),
        started.log.display(),
        started.elapsed.as_millis(),
    ))?;
    Ok(Exit::Success)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn serve_args(argv: &[&str]) -> Result<ServeArgs, clap::Error> {
        let cli = Cli::try_parse_from(["ccx", "serve"].iter().chain(argv))?;
        match cli.command {
            Command::Serve(args) => Ok(args),
            other => panic!("not serve: {other:?}"),
        }
    }

    #[test]
    fn the_server_a_launcher_starts_reads_the_launchers_flags() {
        let flags = serve_args(&["--host", "::1", "--port", "0", "--insecure-no-auth"]).unwrap();
        let launched = flags.overrides().encode().unwrap();
        let child = serve_args(&["--foreground", Overrides::FLAG, &launched]).unwrap();
        assert_eq!(child.overrides(), flags.overrides());
    }

    #[test]
    fn the_launchers_value_and_a_flag_of_its_own_are_refused_together() {
        let e = serve_args(&[Overrides::FLAG, "{}", "--port", "1"]).unwrap_err();
        assert!(e.to_string().contains("--port"), "{e}");
        let e = serve_args(&[Overrides::FLAG, "{\"port\":\"x\"}"]).unwrap_err();
        assert!(e.to_string().contains("overrides"), "{e}");
    }
}
