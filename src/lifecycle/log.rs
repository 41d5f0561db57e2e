//! The background server's log file: opening it for appending (the
//! server's stdout and stderr), rotating it by size, reading its tail (for
//! startup failures and `ccx logs -n`), and scanning it for the readiness line.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::LifecycleError;

/// At most this much of a log is shown when a start fails.
const TAIL_BYTES: u64 = 64 * 1024;
/// Bytes read at a time when scanning a log backwards for line starts.
const SCAN_CHUNK: u64 = 64 * 1024;

/// A log over this size is rotated, and this many rotated files are kept
/// (`ccx.log.1` the newest): cc_executor's LOG_ROTATION_SIZE and
/// LOG_RETENTION_COUNT.
pub const ROTATE_AT_BYTES: u64 = 10 * 1024 * 1024;
pub const ROTATED_KEPT: usize = 5;
/// How often the background server looks at its log's size.
pub const ROTATE_CHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// Why `path` cannot take another line, when the filesystem that holds it
/// is full (less than one block free for this user); `None` when it has
/// room or cannot be asked.
// statvfs's block counts are u64 here, narrower on some targets.
#[allow(clippy::useless_conversion)]
pub fn no_room(path: &Path) -> Option<String> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty())?;
    let fs = nix::sys::statvfs::statvfs(dir).ok()?;
    // Root may use the blocks reserved for it; others may not.
    let blocks = if nix::unistd::geteuid().is_root() {
        fs.blocks_free()
    } else {
        fs.blocks_available()
    };
    let free = u64::from(blocks).saturating_mul(u64::from(fs.fragment_size()));
    (free < u64::from(fs.fragment_size()).max(1)).then(|| {
        format!(
            "{} (the filesystem of {} has {free} bytes free)",
            std::io::Error::from_raw_os_error(nix::libc::ENOSPC),
            dir.display()
        )
    })
}

/// `ccx.log.N`: the Nth newest rotated log.
pub fn rotated(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// When `path` has grown past `limit` bytes: shifts `path.1`… to `path.2`…
/// (dropping the one past `keep`), renames `path` to `path.1`, and returns
/// a fresh `path` opened for appending. Whoever still writes to the old file
/// writes into `path.1`, so nothing is lost between the rename and the moment
/// the caller switches its descriptors to the new file.
pub fn rotate_if_over(path: &Path, limit: u64, keep: usize) -> std::io::Result<Option<File>> {
    if std::fs::metadata(path)?.len() <= limit {
        return Ok(None);
    }
    for n in (1..keep).rev() {
        match std::fs::rename(rotated(path, n), rotated(path, n + 1)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    std::fs::rename(path, rotated(path, 1))?;
    open_append(path)
        .map(Some)
        .map_err(|e| std::io::Error::other(e.to_string()))
}

/// Keeps the log of the running (background) server rotated: its stdout
/// and stderr move to the fresh file after each rotation. Runs until the
/// process exits; a failure is logged and retried on the next check.
pub async fn keep_rotated(path: PathBuf) {
    use std::os::fd::AsRawFd;
    loop {
        tokio::time::sleep(ROTATE_CHECK).await;
        let rotated = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || {
                rotate_if_over(&path, ROTATE_AT_BYTES, ROTATED_KEPT)
            })
            .await
        };
        match rotated {
            Ok(Ok(Some(fresh))) => {
                for fd in [1, 2] {
                    if let Err(e) = nix::unistd::dup2(fresh.as_raw_fd(), fd) {
                        tracing::warn!("cannot switch descriptor {fd} to the rotated log: {e}");
                    }
                }
                tracing::info!(
                    "log rotated: the previous {} is {}",
                    path.display(),
                    rotated_path_display(&path)
                );
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => tracing::warn!("cannot rotate {}: {e}", path.display()),
            Err(e) => tracing::warn!("log rotation task failed: {e}"),
        }
    }
}

fn rotated_path_display(path: &Path) -> String {
    rotated(path, 1).display().to_string()
}

/// Opens (creating) the log for appending; O_APPEND makes every write of
/// the server land whole at the end, whichever of its streams wrote it.
/// Never through a symbolic link (a `ccx.log` planted to point at a file of
/// the user's is refused, not written), and only its owner may read it.
pub fn open_append(path: &Path) -> Result<File, LifecycleError> {
    use std::os::unix::fs::PermissionsExt;
    let fail = |source: std::io::Error| {
        let what = if source.raw_os_error() == Some(libc::ELOOP) {
            format!(
                "open log {}: it is a symbolic link, and ccx never writes through one \
                 (remove it)",
                path.display()
            )
        } else {
            format!("open log {}", path.display())
        };
        LifecycleError::io(what, source)
    };
    let file = super::state::private_file()
        .create(true)
        .append(true)
        .open(path)
        .map_err(fail)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(fail)?;
    Ok(file)
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
    Ok(crate::sanitize::captured(&String::from_utf8_lossy(&bytes))
        .trim_end()
        .to_string())
}

/// How long `follow` waits for a change notification before it looks at
/// the file anyway: only a safety net for file systems that send none.
const FOLLOW_SAFETY_NET: std::time::Duration = std::time::Duration::from_secs(1);

/// Copies what `path` holds after `pos` to `out`, then keeps copying what is
/// appended, woken by file-system notifications on the log's directory (no
/// polling). A rotated log is read to its end, then the new one from its
/// start; a truncated one from its start. Returns once `running` says the
/// writer is gone (after copying what it wrote last), or on an error (a
/// closed `out` is `BrokenPipe`).
pub fn follow(
    path: &Path,
    mut pos: u64,
    out: &mut impl std::io::Write,
    mut running: impl FnMut() -> bool,
) -> std::io::Result<()> {
    use notify::Watcher;
    use std::os::unix::fs::MetadataExt;
    let (tx, changes) = std::sync::mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |event| {
        let _ = tx.send(event);
    })
    .map_err(std::io::Error::other)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    watcher
        .watch(dir, notify::RecursiveMode::NonRecursive)
        .map_err(std::io::Error::other)?;
    let mut file = File::open(path)?;
    let mut inode = file.metadata()?.ino();
    loop {
        let alive = running();
        copy_new(&mut file, &mut pos, out)?;
        if !alive {
            return Ok(());
        }
        match std::fs::metadata(path) {
            Ok(meta) if meta.ino() != inode => {
                // Rotated: what the server wrote before it switched files
                // is at the end of the old one.
                copy_new(&mut file, &mut pos, out)?;
                file = File::open(path)?;
                inode = file.metadata()?.ino();
                pos = 0;
                continue;
            }
            Ok(meta) if meta.len() < pos => pos = 0,
            _ => {}
        }
        let _ = changes.recv_timeout(FOLLOW_SAFETY_NET);
        while changes.try_recv().is_ok() {}
    }
}

/// Copies what `file` holds after `pos` to `out`, and advances `pos`.
pub fn copy_new(
    file: &mut File,
    pos: &mut u64,
    out: &mut impl std::io::Write,
) -> std::io::Result<()> {
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

pub use crate::protocol::ReadyLine;

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
    ReadyLine::parse(text.as_bytes()).filter(|ready| ready.pid == pid)
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
    fn rotation_shifts_the_old_logs_and_keeps_at_most_n() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ccx.log");
        std::fs::write(&path, "small").unwrap();
        assert!(
            rotate_if_over(&path, 10, 2).unwrap().is_none(),
            "under the limit"
        );
        for round in 1..=3 {
            std::fs::write(&path, format!("round {round}, over the limit")).unwrap();
            let mut fresh = rotate_if_over(&path, 10, 2).unwrap().expect("rotated");
            writeln!(fresh, "new").unwrap();
        }
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
        let one = std::fs::read_to_string(rotated(&path, 1)).unwrap();
        let two = std::fs::read_to_string(rotated(&path, 2)).unwrap();
        assert_eq!(
            (one.as_str(), two.as_str()),
            ("round 3, over the limit", "round 2, over the limit")
        );
        assert!(!rotated(&path, 3).exists(), "only 2 are kept");
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
