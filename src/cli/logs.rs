//! `ccx logs [-n N] [-f]`: print the background server's log (its stdout
//! and stderr), optionally only the last N lines, optionally following it
//! (across rotations).

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
    /// Only the last N lines.
    #[arg(short = 'n', long = "lines", value_name = "N")]
    pub lines: Option<usize>,
    /// Keep printing what the server writes, until Ctrl-C.
    #[arg(short = 'f', long)]
    pub follow: bool,
}

pub fn run(args: LogsArgs) -> Result<Exit, CliError> {
    let path = state_dir(args.state_dir)?.log_file();
    let mut file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(LifecycleError::NoLog { path }.into())
        }
        Err(e) => return Err(e.into()),
    };
    let mut pos = match args.lines {
        Some(n) => log::tail_offset(&mut file, 0, n)?,
        None => 0,
    };
    let mut out = std::io::stdout().lock();
    let copied = if args.follow {
        log::follow(&path, pos, &mut out)
    } else {
        log::copy_new(&mut file, &mut pos, &mut out)
    };
    match copied {
        // A reader that went away (`ccx logs | head`) ends the command quietly.
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(Exit::Success),
        other => Ok(other.map(|()| Exit::Success)?),
    }
}
