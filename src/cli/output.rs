//! Writing a command's report on stdout (and its warnings on stderr), the same way for every subcommand: a
//! reader that went away (`ccx status | head -1`) is quiet, and the verdict
//! and exit code stand; every other write error (a full disk behind `>`)
//! surfaces as an I/O error (exit 3) instead of being lost.

use std::io::Write;

use serde::Serialize;

use super::CliError;

/// Writes `text` on stdout and flushes it.
pub fn print(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(CliError::Io(e)),
    }
}

/// A warning of ccx itself on stderr (`warning: …`); a closed stderr loses it.
pub fn warn(text: &str) {
    let _ = writeln!(std::io::stderr(), "warning: {text}");
}

/// Writes a report as one pretty JSON document (`--json`) or as its human
/// rendering, each followed by a newline.
pub fn print_report<T: Serialize>(
    report: &T,
    json: bool,
    human: impl FnOnce(&T) -> String,
) -> Result<(), CliError> {
    let mut text = if json {
        serde_json::to_string_pretty(report).map_err(std::io::Error::from)?
    } else {
        human(report)
    };
    text.push('\n');
    print(&text)
}
