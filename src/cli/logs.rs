//! `ccx logs [-n N] [-f]`: print the background server's log (its stdout
//! and stderr), optionally only the last N lines, optionally following it.

use std::fs::File;
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::{state_dir, CliError};
use crate::exit::Exit;
use crate::lifecycle::{log, LifecycleError};

/// How often `-f` looks for new lines.
const FOLLOW_POLL: Duration = Duration::from_millis(100);

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
    let start = match args.lines {
        Some(n) => log::tail_offset(&mut file, 0, n)?,
        None => 0,
    };
    file.seek(SeekFrom::Start(start))?;
    let mut out = std::io::stdout().lock();
    let mut pos = start;
    // A reader that went away (`ccx logs | head`) ends the command quietly.
    match copy_new(&mut file, &mut pos, &mut out) {
        Err(e) if e.kind() == ErrorKind::BrokenPipe => return Ok(Exit::Success),
        other => other?,
    }
    if !args.follow {
        return Ok(Exit::Success);
    }
    loop {
        std::thread::sleep(FOLLOW_POLL);
        let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if len < pos {
            // Truncated or replaced: start again from its beginning.
            file = File::open(&path)?;
            pos = 0;
        }
        match copy_new(&mut file, &mut pos, &mut out) {
            Err(e) if e.kind() == ErrorKind::BrokenPipe => return Ok(Exit::Success),
            other => other?,
        }
    }
}

/// Copies what the file holds after `pos` to `out`, and advances `pos`.
fn copy_new(file: &mut File, pos: &mut u64, out: &mut impl Write) -> std::io::Result<()> {
    file.seek(SeekFrom::Start(*pos))?;
    let mut buf = [0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return out.flush();
        }
        out.write_all(&buf[..n])?;
        *pos += n as u64;
    }
}
