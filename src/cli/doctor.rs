//! `ccx doctor`: clap arguments, wiring of the environment into the
//! doctor's options, Ctrl-C/SIGTERM handling (the doctor cleans up, then
//! exits 128+N), and printing the report (human, JSON, JUnit XML or GitHub
//! workflow commands, each a renderer of the same report) quietly
//! tolerating a closed stdout.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::Duration;

use clap::{Args, ValueEnum};
use tokio::signal::unix::{signal, SignalKind};

use super::{runtime, use_color, CliError, ColorChoice};
use crate::config::{self, Overrides};
use crate::doctor::{self, compare, render, render_github, render_junit, Options, Report};
use crate::exit::Exit;
use crate::protocol::{Endpoint, Scheme};

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print one JSON document on stdout (always, whatever the exit status);
    /// the same as --format json.
    #[arg(long)]
    pub json: bool,
    /// How to print the report: human (text), json, junit (JUnit XML, a
    /// test case per step), github (GitHub Actions annotations; the job
    /// summary goes to $GITHUB_STEP_SUMMARY when set).
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<Format>,
    /// Show the details of every step, not only of failing ones.
    #[arg(short, long)]
    pub verbose: bool,
    /// Treat warnings as failures (exit 1).
    #[arg(long)]
    pub strict: bool,
    /// Check a running server instead of starting one (e.g. ws://127.0.0.1:8003/ws/mcp;
    /// with --mcp: http://127.0.0.1:8003/mcp); CCX_TOKEN is sent when set.
    #[arg(long, value_parser = parse_url_or_mcp, conflicts_with = "server_cmd")]
    pub url: Option<String>,
    /// Start your own server with `/bin/sh -c CMD` instead of `ccx serve --foreground`
    /// (it gets CCX_HOST and CCX_PORT; ready when the port accepts connections).
    #[arg(long, value_name = "CMD")]
    pub server_cmd: Option<String>,
    /// Compare two servers: run handshake and echo against both, fingerprint
    /// what a command sees on each (a probe run through `execute`: Python,
    /// modules, distributions, PATH, variable names …; server.info on ccx)
    /// and list the differences, most likely culprits first. One URL: compare
    /// the local server the doctor starts (side A) with it (side B).
    /// Differences do not fail; a side failing its checks does (exit 1).
    #[arg(long, value_name = "URL", num_args = 1..=2, value_parser = parse_url, conflicts_with = "url")]
    pub compare: Vec<String>,
    /// The command the last step runs, instead of `echo NONCE`; it must exit 0
    /// (e.g. 'git --version' for a server whose allowlist has no echo).
    /// Default: echo, or under an allowlist without echo (CCX_ALLOWED_COMMANDS)
    /// its first program with --version.
    #[arg(long, value_name = "CMD")]
    pub probe_cmd: Option<String>,
    /// A program the server needs on its PATH (repeatable).
    #[arg(long, value_name = "NAME")]
    pub require: Vec<String>,
    /// With --compare: a Python module that must import on both sides
    /// (repeatable; the packages found in the cwd and ./src are checked too).
    #[arg(long, value_name = "NAME", requires = "compare", value_parser = parse_module)]
    pub require_module: Vec<String>,
    /// Address the server should listen on [env: CCX_HOST].
    #[arg(long)]
    pub host: Option<String>,
    /// Port the server should listen on [env: CCX_PORT].
    #[arg(long)]
    pub port: Option<u16>,
    /// How long the started server may take to become ready (e.g. 10s, 500ms)
    /// [default: 10s; with --mcp, the --timeout].
    #[arg(long, value_parser = config::parse_positive_duration)]
    pub spawn_timeout: Option<Duration>,
    /// Deadline of each network exchange: handshake, echo (e.g. 5s).
    #[arg(long, value_parser = config::parse_positive_duration, default_value = "5s")]
    pub timeout: Duration,
    /// Check an MCP server instead: initialize, tools/list, a tools/call of `execute` —
    /// over stdio (`ccx mcp`, or --server-cmd) or Streamable HTTP (--url http://…/mcp).
    #[arg(long, conflicts_with = "compare")]
    pub mcp: bool,
}

/// The renderings of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Human,
    Json,
    Junit,
    Github,
}

impl DoctorArgs {
    /// The format asked for: `--format`, `--json` as `--format json`.
    fn format(&self) -> Result<Format, CliError> {
        match (self.json, self.format) {
            (false, format) => Ok(format.unwrap_or(Format::Human)),
            (true, None | Some(Format::Json)) => Ok(Format::Json),
            (true, Some(other)) => Err(CliError::Usage(format!(
                "--json is --format json: it cannot go with --format {}",
                format_name(other)
            ))),
        }
    }
}

fn parse_module(raw: &str) -> Result<String, String> {
    match crate::doctor::fingerprint::is_module_name(raw) {
        true => Ok(raw.to_string()),
        false => {
            Err("expected a Python module name such as cc_executor or cc_executor.core.main".into())
        }
    }
}

fn format_name(format: Format) -> &'static str {
    match format {
        Format::Human => "human",
        Format::Json => "json",
        Format::Junit => "junit",
        Format::Github => "github",
    }
}

fn parse_url(raw: &str) -> Result<String, String> {
    let endpoint = Endpoint::parse(raw).map_err(|e| e.to_string())?;
    match endpoint.scheme() {
        Scheme::Ws | Scheme::Wss => Ok(raw.to_string()),
        _ => Err("expected a WebSocket URL such as ws://127.0.0.1:8003/ws/mcp".into()),
    }
}

/// `--url`: a WebSocket URL, or (with --mcp) an MCP endpoint.
fn parse_url_or_mcp(raw: &str) -> Result<String, String> {
    let endpoint = Endpoint::parse(raw).map_err(|e| e.to_string())?;
    if endpoint.scheme() == Scheme::Http {
        return Ok(raw.to_string());
    }
    parse_url(raw).map_err(|e| format!("{e} (or, with --mcp, http://127.0.0.1:8003/mcp)"))
}

/// `--spawn-timeout` when not given (the WebSocket checks).
const SPAWN_TIMEOUT: Duration = Duration::from_secs(10);

/// The doctor's options from its flags and the process environment.
fn options(args: &DoctorArgs) -> Options {
    Options {
        env: config::env_snapshot(),
        overrides: Overrides {
            host: args.host.clone(),
            port: args.port,
            state_dir: None,
            insecure_no_auth: false,
        },
        url: args.url.clone(),
        server_cmd: args.server_cmd.clone(),
        require: args.require.clone(),
        ccx_exe: std::env::current_exe().ok(),
        spawn_timeout: args.spawn_timeout.unwrap_or(SPAWN_TIMEOUT),
        timeout: args.timeout,
        strict: args.strict,
        probe_cmd: args.probe_cmd.clone(),
    }
}

pub fn run(mut args: DoctorArgs, color: ColorChoice) -> Result<Exit, CliError> {
    let format = args.format()?;
    if !args.compare.is_empty() {
        return match format {
            Format::Human | Format::Json => run_compare(args, format, color),
            other => Err(CliError::Usage(format!(
                "--format {} is not available with --compare (human or json)",
                format_name(other)
            ))),
        };
    }
    if let Some(chosen) = background_server(&args) {
        eprintln!(
            "{}; --port, --server-cmd or --url choose another",
            chosen.note("doctor")
        );
        args.url = Some(chosen.url);
    }
    let target = args.url.clone().unwrap_or_default();
    let mcp = match args.mcp {
        true => {
            // An MCP server is ready when it answers `initialize`: one
            // exchange, bounded by --timeout unless told otherwise.
            let mut opts = options(&args);
            opts.spawn_timeout = args.spawn_timeout.unwrap_or(args.timeout);
            Some(doctor::mcp::options(&opts).map_err(CliError::Usage)?)
        }
        false if target.starts_with("http://") => {
            return Err(CliError::Usage(
                "an http:// URL is an MCP endpoint: add --mcp".into(),
            ))
        }
        false => None,
    };
    let report = match (runtime(), mcp) {
        (Ok(rt), Some(mcp)) => rt.block_on(doctor::mcp::run(&mcp, interrupted())),
        (Ok(rt), None) => rt.block_on(doctor::run(&options(&args), interrupted())),
        (Err(e), _) => {
            Report::internal_error(target, format!("cannot start the async runtime: {e}"))
        }
    };
    let text = match format {
        Format::Human => render::human(&report, style(&args, color)),
        Format::Json => render::json(&report),
        Format::Junit => render_junit::junit(&report),
        Format::Github => {
            if let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|p| !p.is_empty()) {
                append_summary(Path::new(&path), &render_github::summary(&report));
            }
            render_github::commands(&report)
        }
    };
    super::output::print(&text)?;
    Ok(Exit::from_code(report.exit_code))
}

/// Appends the job summary to `$GITHUB_STEP_SUMMARY`. A summary that cannot
/// be written is a warning: the checks' verdict and exit code stand.
fn append_summary(path: &Path, summary: &str) {
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut file| file.write_all(summary.as_bytes()));
    if let Err(e) = written {
        super::output::warn(&format!(
            "cannot append the job summary to GITHUB_STEP_SUMMARY ({}): {e}",
            path.display()
        ));
    }
}

/// The background server of the state directory, when the doctor is told
/// nothing about which server to check (no --url, --server-cmd, --host,
/// --port, CCX_HOST or CCX_PORT): checking it beats starting a second one.
fn background_server(args: &DoctorArgs) -> Option<super::target::Chosen> {
    if args.mcp
        || args.url.is_some()
        || args.server_cmd.is_some()
        || args.host.is_some()
        || args.port.is_some()
    {
        return None;
    }
    let config = config::Config::load(&Overrides::default(), &config::env_snapshot()).ok()?;
    Some(super::target::choose(&config)).filter(|chosen| chosen.background)
}

/// `--compare URL [URL]`.
fn run_compare(args: DoctorArgs, format: Format, color: ColorChoice) -> Result<Exit, CliError> {
    let rt = runtime()?;
    let report = rt.block_on(compare::run(
        &options(&args),
        &args.compare,
        &args.require_module,
        interrupted(),
    ));
    let text = if format == Format::Json {
        render::compare_json(&report)
    } else {
        render::compare_human(&report, style(&args, color))
    };
    super::output::print(&text)?;
    Ok(Exit::from_code(report.exit_code))
}

/// How the human report is drawn: colour for a terminal (or as --color
/// says), every detail with -v.
fn style(args: &DoctorArgs, color: ColorChoice) -> render::Style {
    render::Style {
        color: use_color(color, std::io::stdout().is_terminal()),
        verbose: args.verbose,
    }
}

/// Resolves with the signal number on the first SIGINT or SIGTERM; never
/// resolves when the handlers cannot be installed.
async fn interrupted() -> i32 {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => nix::libc::SIGTERM,
        _ = int.recv() => nix::libc::SIGINT,
    }
}
