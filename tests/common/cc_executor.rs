//! The real cc_executor server (the Python snapshot in
//! `../shared/peers/cc_executor`) for compatibility tests: its `src/` copied
//! to a temporary directory (it writes logs into its own tree), run from
//! the venv `cc_executor` with uvicorn on port 0 in its own process group,
//! its output drained, the real port read from uvicorn's "running on" line,
//! ready once `GET /health` answers. Dropping it ends the whole group.
//!
//! Without the snapshot (a user's clone) [`CcExecutor::start`] returns
//! `None` after saying what is missing; under CI it panics instead.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::python::{cc_executor_or_skip, require_venv, Venv};

/// How long the server may take to print its port and answer /health (it
/// imports FastAPI, pydantic and its hooks; seconds on a loaded machine).
const START_DEADLINE: Duration = Duration::from_secs(90);

/// The venv that runs cc_executor: its requirements plus the two modules its
/// hooks import without listing them.
pub fn cc_executor_venv(snapshot: &Path) -> Venv {
    let requirements = format!("-r {}", snapshot.join("requirements.txt").display());
    require_venv("cc_executor", &[&requirements, "json_repair", "rank_bm25"])
}

/// Copies `from` into `to` recursively, leaving out `__pycache__`.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "__pycache__" {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A running cc_executor.
pub struct CcExecutor {
    child: Child,
    pub port: u16,
    /// `ws://127.0.0.1:PORT/ws/mcp`.
    pub url: String,
    /// The venv it runs in.
    pub venv: Venv,
    /// Its copied tree (the commands it runs start in this directory).
    pub root: PathBuf,
    log: Arc<Mutex<String>>,
    _dir: tempfile::TempDir,
}

impl CcExecutor {
    /// Starts it, or returns `None` (after saying why) when the snapshot is
    /// absent.
    pub fn start(test: &str) -> Option<CcExecutor> {
        CcExecutor::start_with(test, &[])
    }

    /// Starts it with extra environment variables.
    pub fn start_with(test: &str, env: &[(&str, &str)]) -> Option<CcExecutor> {
        let snapshot = cc_executor_or_skip(test)?;
        let venv = cc_executor_venv(&snapshot);
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("cc_executor");
        copy_tree(&snapshot.join("src"), &root.join("src"));
        let src = root.join("src");
        let mut cmd = Command::new(venv.python());
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy().into_owned();
            if name.to_ascii_uppercase().ends_with("_PROXY") {
                cmd.env_remove(name);
            }
        }
        cmd.args([
            "-m",
            "uvicorn",
            "cc_executor.core.main:app",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
        ])
        .current_dir(&src)
        .env("PYTHONPATH", &src)
        .env("NO_COLOR", "1")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
        let mut child = cmd.spawn().expect("start cc_executor with uvicorn");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel::<u16>();
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let (log, tx) = (log.clone(), tx.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    if let Some(port) = running_port(&line) {
                        let _ = tx.send(port);
                    }
                    let mut log = log.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
        let mut server = CcExecutor {
            child,
            port: 0,
            url: String::new(),
            venv,
            root,
            log,
            _dir: dir,
        };
        let started = Instant::now();
        match rx.recv_timeout(START_DEADLINE) {
            Ok(port) => server.port = port,
            Err(_) => panic!(
                "cc_executor printed no `Uvicorn running on` line within {START_DEADLINE:?}; its output:\n{}",
                server.log()
            ),
        }
        server.url = format!("ws://127.0.0.1:{}/ws/mcp", server.port);
        while started.elapsed() < START_DEADLINE {
            if health(server.port).is_some() {
                eprintln!(
                    "{test}: cc_executor ready on port {} after {:?}",
                    server.port,
                    started.elapsed()
                );
                return Some(server);
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("cc_executor exited with {status}:\n{}", server.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "cc_executor's /health did not answer within {START_DEADLINE:?}:\n{}",
            server.log()
        );
    }

    /// One server shared by the tests of a test binary that run at the same
    /// time (it takes seconds to start); it stops when the last of them
    /// drops its handle.
    pub fn shared(test: &str) -> Option<Arc<CcExecutor>> {
        static SHARED: Mutex<Weak<CcExecutor>> = Mutex::new(Weak::new());
        let mut slot = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(server) = slot.upgrade() {
            return Some(server);
        }
        let server = Arc::new(CcExecutor::start(test)?);
        *slot = Arc::downgrade(&server);
        Some(server)
    }

    /// Its pid (the leader of its process group).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything it printed so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for CcExecutor {
    fn drop(&mut self) {
        use nix::sys::signal::{killpg, Signal};
        let pgid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = killpg(pgid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // The group may still hold the commands it started.
        let _ = killpg(pgid, Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// The port of uvicorn's `Uvicorn running on http://127.0.0.1:PORT` line.
fn running_port(line: &str) -> Option<u16> {
    let rest = line.split("Uvicorn running on http://").nth(1)?;
    let authority = rest.split_whitespace().next()?;
    authority.rsplit_once(':')?.1.parse().ok()
}

/// The body of `GET /health` on 127.0.0.1:PORT when it answers 200.
pub fn health(port: u16) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET /health HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200")
        .then(|| body.to_string())
        .or_else(|| head.starts_with("HTTP/1.0 200").then(|| body.to_string()))
}
