//! `ccx logs [-n N] [-f]`: print the background server's log (its stdout
//! and stderr), optionally only the last N lines, optionally following it
//! (across rotations) for as long as the server runs.

use std::fs::File;
use std::io::ErrorKind;
use std::path::PathBuf;

use clap::Args;

use super::{state_dir, CliError};
use crate::exit::Exit;
use crate::lifecycle::{log, LifecycleError};

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// State directory of the server [env: CCX_STATE_DIR].
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Only the last N lines [default: all, or 10 with -f].
    #[arg(short = 'n', long = "lines", value_name = "N")]
    pub lines: Option<usize>,
    /// Then keep printing what the server writes, until it stops (or Ctrl-C).
    #[arg(short = 'f', long)]
    pub follow: bool,
}

/// Lines `logs -f` starts with when `-n` is not given, as `tail -f` does.
const FOLLOW_LINES: usize = 10;

pub fn run(args: LogsArgs) -> Result<Exit, CliError> {
    let state = state_dir(args.state_dir)?;
    let path = state.log_file();
    let mut file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(LifecycleError::NoLog { path }.into())
        }
        Err(e) => return Err(e.into()),
    };
    let lines = match (args.lines, args.follow) {
        (Some(n), _) => Some(n),
        (None, true) => Some(FOLLOW_LINES),
        (None, false) => None,
    };
    let mut pos = match lines {
        Some(n) => log::tail_offset(&mut file, 0, n)?,
        None => 0,
    };
    let mut out = std::io::stdout().lock();
    let copied = if args.follow {
        let server = running_server(&state);
        if server.is_none() {
            eprintln!(
                "ccx logs: no server is running for {}: printed the log's end, not following",
                state.dir.display()
            );
        }
        log::follow(&path, pos, &mut out, || {
            server.is_some() && running_server(&state) == server
        })
    } else {
        log::copy_new(&mut file, &mut pos, &mut out)
    };
    match copied {
        // A reader that went away (`ccx logs | head`) ends the command quietly.
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(Exit::Success),
        other => Ok(other.map(|()| Exit::Success)?),
    }
}

/// The pid of the state directory's server, while it runs.
fn running_server(state: &crate::lifecycle::StateDir) -> Option<u32> {
    match state.probe() {
        Ok(crate::lifecycle::Probe::Ours(record)) => Some(record.pid),
        _ => None,
    }
}
