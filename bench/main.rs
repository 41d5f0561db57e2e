//! `cargo bench --bench goals`: the side-by-side performance harness. It runs every goal row (P1, P2, P3, P5 to P12) against
//! ccx and the references measured in the same run (the raw spawn floor, a
//! minimal FastAPI peer, the MCP SDK's server, websocketd, the real
//! cc_executor), prints one table with the machine it ran on, and writes the
//! same table as JSON. `--quick` is the short CI run: it fails only on
//! harness errors, never on a missed goal.
//!
//! This file owns the command line, the runtime, Ctrl-C and the exit status;
//! the scenarios are in `scenarios`, the parts they use in the other modules.

mod error;
mod floor;
mod hostload;
mod load;
mod machine;
mod mcp_load;
#[allow(dead_code)]
#[path = "../tests/common/python.rs"]
mod python;
mod report;
mod scenarios;
mod scenarios_doctor;
mod scenarios_mcp;
mod servers;
mod setup;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use error::BenchError;

/// Side-by-side performance goals of ccx (issue 11).
#[derive(Debug, Parser)]
#[command(name = "goals")]
pub struct Args {
    /// The short CI run (under two minutes): smaller counts, one round;
    /// still prints every row, never fails on a missed goal.
    #[arg(long)]
    pub quick: bool,
    /// The ccx binary to measure [default: the one this bench was built with].
    #[arg(long)]
    pub server: Option<PathBuf>,
    /// Where to write the JSON report [default: target/tmp/bench/goals.json].
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Run only these rows (comma list of ids, e.g. P1,P7).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Do not install missing references (websocketd with apt-get, the
    /// FastAPI peer's venv with pip); rows that need them are skipped.
    #[arg(long)]
    pub no_install: bool,
    /// Exit 1 when a goal is missed (the default exits 0: machines are noisy).
    #[arg(long)]
    pub strict: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    pub bench: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the tokio runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let strict = args.strict;
    // Every server and process group lives in a guard owned by the bench
    // future: on Ctrl-C the future is dropped and the guards end them.
    let outcome = runtime.block_on(async {
        tokio::select! {
            r = scenarios::run(args) => r,
            _ = tokio::signal::ctrl_c() => Err(BenchError::Interrupted),
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(5));
    match outcome {
        Ok(report) => {
            if report.has_errors() {
                eprintln!("error: some rows could not be measured (see above)");
                ExitCode::from(1)
            } else if strict && report.has_misses() {
                eprintln!("--strict: a goal was missed");
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
