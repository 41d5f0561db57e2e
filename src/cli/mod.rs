//! The command line: clap types, one file per subcommand, and the mapping of
//! every error to its exit code. The configuration is read from the
//! environment here, once (`config::env_snapshot`); below this layer only
//! what describes or runs on this machine reads it: PATH lookups
//! (`process::resolve`), the environment commands inherit
//! (`process::spec`), and the fingerprints of the doctor and `server.info`.

mod completions;
mod doctor;
mod exec;
mod logs;
mod mcp;
mod output;
mod serve;
mod status;
mod stop;
mod stress;
mod target;

use std::io::Write;

use clap::{Parser, Subcommand, ValueEnum};
use thiserror::Error;

use crate::config::ConfigError;
use crate::exit::Exit;
use crate::lifecycle::LifecycleError;
use crate::server::ServerError;

#[derive(Debug, Parser)]
#[command(
    name = "ccx",
    version,
    about = "Command-execution server for AI agents, with a doctor that says why it does not start"
)]
pub struct Cli {
    /// When to colour output: auto (a terminal, and NO_COLOR unset), always, never.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check, step by step, that a server starts and answers; say which step fails and why.
    Doctor(doctor::DoctorArgs),
    /// Run the server: in the background (returns once it is ready), or `--foreground` in this terminal.
    Serve(serve::ServeArgs),
    /// Say whether the background server runs and answers /health (exit 0 only if so).
    Status(ReportArgs),
    /// Stop the background server (SIGTERM, then SIGKILL after the server's own CCX_KILL_GRACE).
    Stop(ReportArgs),
    /// Print the background server's log (`-n N` last lines, `-f` follow).
    Logs(logs::LogsArgs),
    /// Run one command on a server; stream its output; exit with its status.
    Exec(exec::ExecArgs),
    /// Load one or more servers; report success rate and latency percentiles.
    Stress(stress::StressArgs),
    /// Serve the `execute` tool over MCP on stdin/stdout (for Claude Code and other MCP hosts).
    Mcp(mcp::McpArgs),
    /// Print a shell completion script (bash, zsh, fish, powershell) on stdout.
    Completions(completions::CompletionsArgs),
    /// Print the man page ccx(1) on stdout, or write it and a page per subcommand with --dir.
    Man(completions::ManArgs),
}

/// Errors that end a command, each with its exit code.
#[derive(Debug, Error)]
pub enum CliError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Server(#[from] ServerError),
    #[error("{0}")]
    Usage(String),
    /// The server cannot start for a reason found at startup (not in the configuration's syntax).
    #[error("{0}")]
    Startup(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Exec(#[from] crate::exec::ExecError),
    #[error("{0}")]
    Cases(#[from] crate::stress::cases::CasesError),
    #[error("{0}")]
    Lifecycle(#[from] LifecycleError),
}

impl CliError {
    pub fn exit(&self) -> Exit {
        match self {
            CliError::Config(_) | CliError::Usage(_) => Exit::Usage,
            CliError::Server(_) | CliError::Startup(_) => Exit::Failure,
            CliError::Io(_) => Exit::Internal,
            CliError::Exec(e) => e.exit(),
            CliError::Cases(_) => Exit::Usage,
            CliError::Lifecycle(_) => Exit::Failure,
        }
    }
}

/// Parses the command line, runs the subcommand, prints a failure on stderr,
/// and returns the exit code.
pub fn main() -> Exit {
    let cli = Cli::parse();
    match run(cli) {
        Ok(exit) => exit,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: {e}");
            e.exit()
        }
    }
}

pub fn run(cli: Cli) -> Result<Exit, CliError> {
    match cli.command {
        Command::Serve(args) => serve::run(args, cli.color),
        Command::Exec(args) => exec::run(args),
        Command::Stress(args) => stress::run(args, cli.color),
        Command::Doctor(args) => doctor::run(args, cli.color),
        Command::Stop(args) => stop::run(args),
        Command::Status(args) => status::run(args),
        Command::Logs(args) => logs::run(args),
        Command::Mcp(args) => mcp::run(args, cli.color),
        Command::Completions(args) => completions::completions(args),
        Command::Man(args) => completions::man(args),
    }
}

/// What `status` and `stop` take: the server's state directory and the
/// output format.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// State directory of the server [env: CCX_STATE_DIR].
    #[arg(long)]
    pub state_dir: Option<std::path::PathBuf>,
    /// Print one JSON document (schema_version 1) on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `status` and `stop`: one lifecycle call on the state directory, its
/// report printed (JSON or `human`), exit 0 when `ok` says so, 1 otherwise.
fn lifecycle_report<T, F>(
    args: ReportArgs,
    call: impl FnOnce(crate::lifecycle::StateDir) -> F,
    human: fn(&T) -> String,
    ok: fn(&T) -> bool,
) -> Result<Exit, CliError>
where
    T: serde::Serialize,
    F: std::future::Future<Output = Result<T, LifecycleError>>,
{
    let state = state_dir(args.state_dir)?;
    let report = runtime()?.block_on(call(state))?;
    output::print_report(&report, args.json, human)?;
    Ok(if ok(&report) {
        Exit::Success
    } else {
        Exit::Failure
    })
}

/// The state directory of `status`, `stop` and `logs`: `--state-dir`, else
/// CCX_STATE_DIR, XDG_STATE_HOME or HOME. They read nothing else, so a
/// malformed unrelated variable never stops them.
fn state_dir(flag: Option<std::path::PathBuf>) -> Result<crate::lifecycle::StateDir, CliError> {
    let dir = match flag {
        Some(dir) => dir,
        None => crate::config::state_dir_from(&crate::config::env_snapshot())?,
    };
    Ok(crate::lifecycle::StateDir::new(dir))
}

/// What a command that starts a server warns about before anything else:
/// unknown CCX_/WS_ variables (with the nearest known name), the
/// configuration's own warnings, and a public address without a token.
/// Logged by a server in the foreground, printed on stderr by a launcher.
fn startup_warnings(env: &crate::config::Env, config: &crate::config::Config) -> Vec<String> {
    let mut warnings: Vec<String> = crate::config::unknown_vars(env)
        .into_iter()
        .map(|(name, nearest)| match nearest {
            Some(known) => format!("unknown variable {name} ignored: did you mean {known}?"),
            None => format!("unknown variable {name} ignored"),
        })
        .collect();
    warnings.extend(config.warnings.iter().map(ToString::to_string));
    if config.insecure_no_auth && !config.host.is_loopback() && config.token.is_none() {
        warnings.push(format!(
            "INSECURE: listening on {} without a token (--insecure-no-auth): anyone who can \
             reach this address can run shell commands",
            config.host
        ));
    }
    warnings
}

/// Logging of the long-running commands (`serve --foreground`, `mcp`): on
/// stderr, `RUST_LOG` or `info`, colour as decided by `--color`.
fn init_logging(color: ColorChoice) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_writer(|| crate::log_sink::Stderr)
        .with_env_filter(filter)
        .with_ansi(use_color(color, std::io::stderr().is_terminal()))
        .with_target(false)
        // A log nobody reads any more (the launcher's pipe closed) must not
        // turn into a panic: tracing-subscriber reports write errors with
        // `eprintln!`, which panics on a broken stderr.
        .log_internal_errors(false)
        .try_init();
}

/// A multi-threaded tokio runtime for one command.
fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Whether to colour a stream, from `--color`, `NO_COLOR` and whether it is a terminal.
pub fn use_color(choice: ColorChoice, is_terminal: bool) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        }
    }
}
