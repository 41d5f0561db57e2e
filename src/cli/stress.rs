//! `ccx stress`: turn flags into a bounded [`Plan`] and targets, run the
//! engine against each target in turn (drawing its progress events as a bar
//! on stderr when that is a terminal), print the report (table or `--json`;
//! `--html FILE` also writes the HTML page), exit 0 when every target
//! met `--min-success`, else 1.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{output, runtime, use_color, CliError, ColorChoice};
use crate::config::{self, Config, Overrides};
use crate::exit::Exit;
use crate::process::{Executor, Supervisor};
use crate::stress::{
    self, cases, render, report, Mode, Plan, Progress, ProgressEvent, Target, Workload,
};

#[derive(Debug, Args)]
pub struct StressArgs {
    /// Server to load (repeatable; the targets run one after another and are
    /// reported side by side, from three on a row each and a total) [default:
    /// CCX_HOST/CCX_PORT when set, else the background server of the state
    /// directory (`ccx serve`), else ws://127.0.0.1:8003/ws/mcp].
    #[arg(long = "url", value_name = "URL")]
    pub urls: Vec<String>,
    /// Also run the same workload with no server: ccx spawns each command
    /// itself with the server's process rules (CCX_SHELL, CCX_MAX_OUTPUT,
    /// CCX_KILL_GRACE), as a baseline column `direct (no server)`. The
    /// default local server stays a target unless --url is given.
    #[arg(long)]
    pub direct: bool,
    /// Concurrent sessions per target (1 to 1024).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub clients: u32,
    /// Requests per client [default: 50, or one pass over --cases; with only
    /// --duration, as many as fit].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: Option<u64>,
    /// Stop starting requests after this long per target (e.g. 10s, 500ms).
    #[arg(long, value_name = "DURATION", value_parser = config::parse_positive_duration)]
    pub duration: Option<Duration>,
    /// Run this shell command line (success: exit status 0) instead of echo.
    #[arg(long, value_name = "CMD", conflicts_with = "cases")]
    pub command: Option<String>,
    /// Run the tests of a cc_executor stress file (see docs/stress.md for the fields read).
    #[arg(long, value_name = "FILE")]
    pub cases: Option<PathBuf>,
    /// persistent: one session per client, reused; oneshot: one connection
    /// per request (no meaning for --direct, which has no connection).
    #[arg(long, value_enum, default_value_t = ModeArg::Persistent)]
    pub mode: ModeArg,
    /// Per-request timeout (a case's own "timeout" wins).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = config::parse_positive_duration)]
    pub timeout: Duration,
    /// Lowest success rate, in percent, for a target to pass (e.g. 99.5).
    #[arg(long, value_name = "PERCENT", default_value = "100", value_parser = parse_percent)]
    pub min_success: f64,
    /// Print the report as one JSON document on stdout.
    #[arg(long)]
    pub json: bool,
    /// Also write the report as one self-contained HTML page (charts of the
    /// latency distribution and of latency over time) to FILE.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    Persistent,
    Oneshot,
}

pub fn run(args: StressArgs, color: ColorChoice) -> Result<Exit, CliError> {
    let config = Config::load(&Overrides::default(), &config::env_snapshot())?;
    let urls = if args.urls.is_empty() {
        let chosen = super::target::choose(&config);
        eprintln!("{}", chosen.note("stress"));
        vec![chosen.url]
    } else {
        args.urls.clone()
    };
    for url in &urls {
        crate::client::check_url(url).map_err(|e| CliError::Usage(format!("--url: {e}")))?;
    }
    let mut targets: Vec<Target> = urls
        .into_iter()
        .map(|url| Target::Server {
            url,
            token: config.token.clone(),
        })
        .collect();
    if args.direct {
        // The allowlist is a server's policy, not a process rule: the
        // direct column runs what a server would be asked to run.
        let rules_only = Config {
            allowed_commands: None,
            ..config.clone()
        };
        targets.push(Target::Direct(Executor::from_config(&rules_only)));
    }
    let (workload, detail) = match (&args.cases, &args.command) {
        (Some(path), _) => (
            Workload::Cases(cases::load(path)?),
            Some(path.display().to_string()),
        ),
        (None, Some(command)) => (Workload::Command(command.clone()), Some(command.clone())),
        (None, None) => (Workload::Echo, None),
    };
    let mode = match args.mode {
        ModeArg::Persistent => Mode::Persistent,
        ModeArg::Oneshot => Mode::Oneshot,
    };
    let plan = Plan::new(
        args.clients,
        args.requests,
        args.duration,
        mode,
        args.timeout,
        workload,
    );
    let settings = plan.settings(detail, args.min_success);
    // Created before the load, so a path that cannot be written fails at
    // once instead of after the whole run.
    let html = match &args.html {
        Some(path) => Some(std::fs::File::create(path).map_err(|e| {
            CliError::Usage(format!("--html {}: cannot create it: {e}", path.display()))
        })?),
        None => None,
    };

    // With --direct this process runs the commands: supervised as the
    // server's are (escaped descendants tracked, re-parented to us and
    // reaped, leftovers ended), from before any thread exists.
    let runner = if args.direct {
        Runner::Supervised(Supervisor::start(config.process_tracking, runtime)?)
    } else {
        Runner::Plain(runtime()?)
    };
    let mut bars = Vec::new();
    let report = runner.block_on(stress::run_all(&targets, &plan, settings, |target| {
        if let Some(previous) = bars.last() {
            ProgressBar::finish_and_clear(previous);
        }
        let bar = progress_bar(&plan, &target.label());
        bars.push(bar.clone());
        Arc::new(Bar(bar))
    }));
    if let Some(last) = bars.last() {
        last.finish_and_clear();
    }
    drop(runner);
    let passed = report.passed;
    if let (Some(path), Some(file)) = (&args.html, html) {
        let mut file = file;
        file.write_all(stress::html::render(&report).as_bytes())
            .and_then(|()| file.flush())
            .map_err(|e| {
                CliError::Io(std::io::Error::new(
                    e.kind(),
                    format!("cannot write the HTML report to {}: {e}", path.display()),
                ))
            })?;
    }
    let text = if args.json {
        let mut json = serde_json::to_string_pretty(&report)
            .map_err(|e| CliError::Io(std::io::Error::other(e)))?;
        json.push('\n');
        json
    } else {
        render::render_human(&report, use_color(color, std::io::stdout().is_terminal()))
    };
    output::print(&text)?;
    let refused = report.targets.iter().any(|t| {
        t.failures
            .iter()
            .any(|f| f.cause == report::Cause::ConnectRefused)
    });
    if refused {
        eprintln!("hint: {}", crate::exec::REFUSED_HINT);
    }
    Ok(if passed { Exit::Success } else { Exit::Failure })
}

/// Where the load runs: under a supervisor when this process runs the
/// commands itself (`--direct`).
enum Runner {
    Plain(tokio::runtime::Runtime),
    Supervised(Supervisor),
}

impl Runner {
    fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        match self {
            Runner::Plain(runtime) => runtime.block_on(future),
            Runner::Supervised(supervisor) => supervisor.block_on(future),
        }
    }
}

/// The engine's progress drawn as an indicatif bar.
struct Bar(ProgressBar);

impl Progress for Bar {
    fn event(&self, event: ProgressEvent) {
        match event {
            ProgressEvent::RequestDone { .. } => self.0.inc(1),
        }
    }
}

/// A bar on stderr when it is a terminal; hidden otherwise.
fn progress_bar(plan: &Plan, label: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = match plan.requests {
        Some(n) => ProgressBar::with_draw_target(
            Some(n.saturating_mul(u64::from(plan.clients))),
            ProgressDrawTarget::stderr(),
        ),
        None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
    };
    let template = if plan.requests.is_some() {
        "{prefix} [{bar:30}] {pos}/{len} elapsed {elapsed}, eta {eta}"
    } else {
        "{prefix} {spinner} {pos} requests, elapsed {elapsed}"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(label.to_string());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

fn parse_percent(raw: &str) -> Result<f64, String> {
    let value: f64 = raw
        .trim()
        .trim_end_matches('%')
        .trim()
        .parse()
        .map_err(|_| format!("expected a percentage from 0 to 100, got {raw:?}"))?;
    if (0.0..=100.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!("expected a percentage from 0 to 100, got {raw:?}"))
    }
}
