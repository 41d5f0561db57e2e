//! Where ccx's log lines go: stderr, remembering the last write that
//! failed (a full disk, an unwritable file), so that the server can say its
//! log cannot be written instead of losing lines in silence.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a failed write is reported. Not until the next write that
/// succeeds: on a full disk, short lines still fit in the last block of
/// the file while longer ones are cut, so success and failure alternate.
pub const REPORTED_FOR: Duration = Duration::from_secs(60);

/// The error of the last write that failed, and when.
static LAST_ERROR: Mutex<Option<(String, Instant)>> = Mutex::new(None);
/// Writes that failed since the process started.
static FAILURES: AtomicU64 = AtomicU64::new(0);

/// The log's writer: stderr, its failures recorded.
pub struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        record(io::stderr().write(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        record(io::stderr().flush())
    }
}

/// Notes how a write to the log (or to the stream beside it, the readiness
/// line on stdout) went, and passes the result on.
pub fn record<T>(result: io::Result<T>) -> io::Result<T> {
    if let Err(e) = &result {
        FAILURES.fetch_add(1, Ordering::Relaxed);
        *LAST_ERROR.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((e.to_string(), Instant::now()));
    }
    result
}

/// Why the log cannot be written, when a write failed in the last
/// [`REPORTED_FOR`]: the error, how many writes failed, and when the last
/// one did.
pub fn error() -> Option<String> {
    let last = LAST_ERROR.lock().unwrap_or_else(|e| e.into_inner());
    let (error, when) = last.as_ref()?;
    let ago = when.elapsed();
    (ago < REPORTED_FOR).then(|| {
        format!(
            "{error} ({} write(s) failed since the start, the last {} s ago: log lines were lost)",
            failures(),
            ago.as_secs()
        )
    })
}

/// How many writes to the log failed since the start.
pub fn failures() -> u64 {
    FAILURES.load(Ordering::Relaxed)
}
