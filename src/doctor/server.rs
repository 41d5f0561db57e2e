//! The server the doctor starts: `/bin/sh -c CMD` or `ccx serve
//! --foreground --lifeline`, with stdin from /dev/null (the bundled server:
//! a pipe the doctor never writes to, which closes when the doctor dies, even
//! by SIGKILL, and then the server shuts down), in its own process group, its
//! stdout and stderr read concurrently (tokio tasks) from the first byte to
//! EOF, and stopped with its whole group (SIGTERM, grace, SIGKILL) and
//! waited for. Dropped without [`ServerProcess::stop`], it still kills the
//! group.

use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::timeout;

use crate::doctor::detached::Detached;
use crate::process::Group;
use crate::protocol::ReadyLine;

/// Bytes of each stream kept for reports.
const TAIL_BYTES: usize = 16 * 1024;
/// A readiness line longer than this is not looked for.
const MAX_LINE: usize = 64 * 1024;
/// SIGTERM → SIGKILL grace when stopping the server.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// How often a stopping server's re-parented members are looked for.
const REAP_POLL: Duration = Duration::from_millis(5);

/// Bytes of the start of each stream kept: its first line says what the
/// program is (a usage text, a banner).
const HEAD_BYTES: usize = 4 * 1024;

/// What a stream carried: a byte count, the first bytes and the last bytes.
/// Text taken out of it has its terminal control sequences removed.
#[derive(Debug, Default)]
pub struct Captured {
    pub total: u64,
    head: Vec<u8>,
    tail: Vec<u8>,
}

impl Captured {
    fn push(&mut self, bytes: &[u8]) {
        self.total += bytes.len() as u64;
        let room = HEAD_BYTES.saturating_sub(self.head.len());
        self.head.extend_from_slice(&bytes[..room.min(bytes.len())]);
        self.tail.extend_from_slice(bytes);
        if self.tail.len() > 2 * TAIL_BYTES {
            let cut = self.tail.len() - TAIL_BYTES;
            self.tail.drain(..cut);
        }
    }

    /// The kept tail as text (invalid UTF-8 replaced), for signature matching.
    pub fn text(&self) -> String {
        crate::sanitize::captured(&String::from_utf8_lossy(&self.tail))
    }

    /// The first non-empty line the stream carried.
    pub fn first_line(&self) -> Option<String> {
        let text = crate::sanitize::captured(&String::from_utf8_lossy(&self.head));
        text.lines()
            .find(|l| !l.trim().is_empty())
            .map(tail_of_line)
    }

    /// The last `n` non-empty lines.
    pub fn last_lines(&self, n: usize) -> Vec<String> {
        let text = crate::sanitize::captured(&String::from_utf8_lossy(&self.tail));
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        lines[lines.len().saturating_sub(n)..]
            .iter()
            .map(|l| tail_of_line(l))
            .collect()
    }
}

/// A long line keeps its end: that is where an error message usually is.
fn tail_of_line(line: &str) -> String {
    const KEEP: usize = 300;
    let count = line.chars().count();
    if count <= KEEP {
        return line.to_string();
    }
    let tail: String = line.chars().skip(count - KEEP).collect();
    format!("…{tail}")
}

type Shared = Arc<Mutex<Captured>>;

fn lock(c: &Shared) -> MutexGuard<'_, Captured> {
    c.lock().unwrap_or_else(|p| p.into_inner())
}

/// A started server.
pub struct ServerProcess {
    child: tokio::process::Child,
    pub pid: u32,
    group: Group,
    stdout: Shared,
    stderr: Shared,
    /// The JSON readiness line, once the server printed it.
    pub ready: watch::Receiver<Option<ReadyLine>>,
    readers: Vec<JoinHandle<()>>,
    stopped: bool,
    /// The write end of the bundled server's `--lifeline`: held, never written.
    _lifeline: Option<tokio::process::ChildStdin>,
    /// A user's server command: its descendants, followed after they leave
    /// it (see `crate::doctor::detached`).
    pub detached: Option<Detached>,
}

impl ServerProcess {
    /// Starts `program args…` with the given extra environment; with
    /// `lifeline`, its stdin is a pipe held open for as long as this process
    /// lives (for `ccx serve --foreground --lifeline`).
    pub fn start(
        program: &std::path::Path,
        args: &[String],
        env: &[(String, String)],
        lifeline: bool,
    ) -> std::io::Result<ServerProcess> {
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(if lifeline {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd.spawn()?;
        let pid = child.id().unwrap_or_default();
        let stdout: Shared = Arc::default();
        let stderr: Shared = Arc::default();
        let (ready_tx, ready) = watch::channel(None);
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            readers.push(tokio::spawn(read_stdout(out, stdout.clone(), ready_tx)));
        }
        if let Some(err) = child.stderr.take() {
            readers.push(tokio::spawn(read_stream(err, stderr.clone())));
        }
        let lifeline_pipe = child.stdin.take();
        let detached = (!lifeline).then(|| Detached::follow(pid));
        Ok(ServerProcess {
            child,
            pid,
            group: Group(pid),
            stdout,
            stderr,
            ready,
            readers,
            stopped: false,
            _lifeline: lifeline_pipe,
            detached,
        })
    }

    pub fn stderr(&self) -> MutexGuard<'_, Captured> {
        lock(&self.stderr)
    }

    pub fn stdout(&self) -> MutexGuard<'_, Captured> {
        lock(&self.stdout)
    }

    /// Waits for the leader to exit (no deadline: callers race it).
    pub async fn exited(&mut self) -> std::io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// Gives the readers a moment to reach EOF after the server exited, so
    /// its last words are in the tail.
    pub async fn drain(&mut self) {
        for mut reader in std::mem::take(&mut self.readers) {
            if timeout(Duration::from_millis(500), &mut reader)
                .await
                .is_err()
            {
                self.readers.push(reader);
            }
        }
    }

    /// SIGTERM to the whole group, SIGKILL after a grace period, wait for
    /// the leader and for every member, stop the readers; then end what the
    /// command left behind in other groups and sessions. Returns those, as
    /// `pid N (argv)`.
    pub async fn stop(mut self) -> Vec<String> {
        let stop = crate::process::stop_child(&mut self.child, self.group, STOP_GRACE);
        match self.detached.as_mut() {
            // Members of the group re-parented to the doctor (a launcher
            // `sh` killed before its server) stay in it as zombies until the
            // doctor reaps them: the group would look alive through the
            // whole grace, then the SIGKILL wait.
            Some(detached) => {
                tokio::pin!(stop);
                loop {
                    tokio::select! {
                        _ = &mut stop => break,
                        _ = tokio::time::sleep(REAP_POLL) => detached.scan(),
                    }
                }
            }
            None => {
                stop.await;
            }
        }
        self.drain().await;
        for reader in &self.readers {
            reader.abort();
        }
        self.stopped = true;
        match self.detached.as_mut() {
            Some(detached) => detached.end_all(STOP_GRACE).await,
            None => Vec::new(),
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self.group.signal(Signal::SIGKILL);
            for reader in &self.readers {
                reader.abort();
            }
        }
    }
}

async fn read_stream(mut reader: impl AsyncRead + Unpin, sink: Shared) {
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n) = reader.read(&mut buf).await {
        if n == 0 {
            break;
        }
        lock(&sink).push(&buf[..n]);
    }
}

/// Reads stdout to EOF, publishing the first `{"event":"ready",…}` line.
async fn read_stdout(
    mut reader: impl AsyncRead + Unpin,
    sink: Shared,
    ready: watch::Sender<Option<ReadyLine>>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut line: Vec<u8> = Vec::new();
    let mut found = false;
    while let Ok(n) = reader.read(&mut buf).await {
        if n == 0 {
            break;
        }
        lock(&sink).push(&buf[..n]);
        if found {
            continue;
        }
        for &b in &buf[..n] {
            if b != b'\n' {
                if line.len() < MAX_LINE {
                    line.push(b);
                }
                continue;
            }
            if let Some(v) = ReadyLine::parse(&line) {
                found = true;
                let _ = ready.send(Some(v));
                break;
            }
            line.clear();
        }
    }
}
