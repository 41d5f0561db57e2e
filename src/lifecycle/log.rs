//! The background server's log file: opening it for appending (the
//! server's stdout and stderr), reading its tail (for startup failures and
//! `ccx logs -n`), and scanning it for the readiness line.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::LifecycleError;

/// At most this much of a log is shown when a start fails.
const TAIL_BYTES: u64 = 64 * 1024;
/// Bytes read at a time when scanning a log backwards for line starts.
const SCAN_CHUNK: u64 = 64 * 1024;

/// Opens (creating) the log for appending; O_APPEND makes every write of
/// the server land whole at the end, whichever of its streams wrote it.
pub fn open_append(path: &Path) -> Result<File, LifecycleError> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| LifecycleError::io(format!("open log {}", path.display()), source))
}

/// The offset where the last `n` lines of `file` start, never before `from`.
/// Scans backwards, so a large log costs only what is shown.
pub fn tail_offset(file: &mut File, from: u64, n: usize) -> std::io::Result<u64> {
    let len = file.metadata()?.len();
    if n == 0 {
        return Ok(len);
    }
    let mut end = len;
    let mut newlines = 0;
    let mut buf = vec![0u8; SCAN_CHUNK as usize];
    let mut last_byte_seen = false;
    while end > from {
        let start = end.saturating_sub(SCAN_CHUNK).max(from);
        let chunk = &mut buf[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        for (i, byte) in chunk.iter().enumerate().rev() {
            let at = start + i as u64;
            if !last_byte_seen {
                last_byte_seen = true;
                // A final newline ends the last line; it does not start one.
                if *byte == b'\n' && at + 1 == len {
                    continue;
                }
            }
            if *byte == b'\n' {
                newlines += 1;
                if newlines == n {
                    return Ok(at + 1);
                }
            }
        }
        end = start;
    }
    Ok(from)
}

/// The last `n` lines of the log after byte `from` (at most its last
/// 64 KiB), as text.
pub fn tail(path: &Path, from: u64, n: usize) -> std::io::Result<String> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let start = tail_offset(&mut file, from, n)?.max(len.saturating_sub(TAIL_BYTES));
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    file.take(len - start).read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).trim_end().to_string())
}

/// The readiness line `ccx serve --foreground` prints on stdout once it listens.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ReadyLine {
    pub event: String,
    pub url: String,
    pub health: String,
    pub host: String,
    pub port: u16,
    pub pid: u32,
    #[serde(default)]
    pub version: Option<String>,
}

/// Reads what a log gains after a given offset, line by line, looking for
/// the readiness line of one pid.
pub struct ReadyScanner {
    path: PathBuf,
    pos: u64,
    partial: Vec<u8>,
    pid: u32,
}

impl ReadyScanner {
    pub fn new(path: &Path, from: u64, pid: u32) -> ReadyScanner {
        ReadyScanner {
            path: path.to_path_buf(),
            pos: from,
            partial: Vec::new(),
            pid,
        }
    }

    /// Reads the new bytes; returns the readiness line once it has appeared.
    pub fn poll(&mut self) -> std::io::Result<Option<ReadyLine>> {
        let mut file = File::open(&self.path)?;
        file.seek(SeekFrom::Start(self.pos))?;
        let mut fresh = Vec::new();
        let read = file.read_to_end(&mut fresh)?;
        self.pos += read as u64;
        self.partial.extend_from_slice(&fresh);
        while let Some(end) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            if let Some(ready) = parse_ready(&line, self.pid) {
                return Ok(Some(ready));
            }
        }
        Ok(None)
    }
}

fn parse_ready(line: &[u8], pid: u32) -> Option<ReadyLine> {
    let text = std::str::from_utf8(line).ok()?.trim();
    if !text.starts_with('{') {
        return None;
    }
    let ready: ReadyLine = serde_json::from_str(text).ok()?;
    (ready.event == "ready" && ready.pid == pid).then_some(ready)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn scanner_finds_the_ready_line_of_its_pid_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ccx.log");
        let mut log = open_append(&path).unwrap();
        let old = r#"{"event":"ready","url":"ws://127.0.0.1:1/ws/mcp","health":"http://127.0.0.1:1/health","host":"127.0.0.1","port":1,"pid":7}"#;
        writeln!(log, "{old}").unwrap();
        let from = log.metadata().unwrap().len();
        let mut scanner = ReadyScanner::new(&path, from, 8);
        writeln!(log, "2024 INFO listening").unwrap();
        write!(log, "{}", old.replace(":7}", ":8")).unwrap();
        assert_eq!(scanner.poll().unwrap(), None, "half a line is not a line");
        writeln!(log, "}}").unwrap();
        let ready = scanner.poll().unwrap().expect("ready line");
        assert_eq!((ready.pid, ready.port), (8, 1));
    }

    #[test]
    fn tail_returns_the_last_lines_after_an_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ccx.log");
        std::fs::write(&path, "old run\na\nb\nc\n").unwrap();
        assert_eq!(tail(&path, 0, 2).unwrap(), "b\nc");
        assert_eq!(tail(&path, 8, 10).unwrap(), "a\nb\nc");
        assert_eq!(tail(&path, 0, 0).unwrap(), "");
        std::fs::write(&path, "x\nno final newline").unwrap();
        assert_eq!(tail(&path, 0, 1).unwrap(), "no final newline");
    }
}
