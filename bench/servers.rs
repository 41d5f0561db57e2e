//! The servers under measurement (ccx, the FastAPI peer, the MCP SDK peer,
//! websocketd): each started in a process group of its own on a loopback
//! port the OS chose, its stderr in a log file, and stopped as that whole
//! group when its guard is dropped (at the end of a scenario, on an error and
//! on Ctrl-C).

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::error::BenchError;
use crate::load::{McpSession, Target};

const READY_DEADLINE: Duration = Duration::from_secs(30);

/// A running server.
pub struct Server {
    pub name: &'static str,
    pub port: u16,
    /// The path clients connect to (`/ws/mcp`, or `/` for websocketd).
    path: &'static str,
    child: Child,
    log: PathBuf,
}

impl Server {
    pub fn target(&self) -> Target {
        Target {
            name: self.name,
            url: format!("ws://127.0.0.1:{}{}", self.port, self.path),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory now (VmRSS), in bytes.
    pub fn rss(&self) -> Result<u64, BenchError> {
        proc_status_kib(self.pid(), "VmRSS:").map(|k| k * 1024)
    }

    /// Peak resident memory since start (VmHWM), in bytes.
    pub fn peak_rss(&self) -> Result<u64, BenchError> {
        proc_status_kib(self.pid(), "VmHWM:").map(|k| k * 1024)
    }

    /// Fails (with the end of its log) when the server has exited.
    pub fn check_alive(&mut self) -> Result<(), BenchError> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(BenchError::wire(
                self.name,
                format!("the server exited ({status}); {}", log_tail(&self.log)),
            )),
            Err(e) => Err(BenchError::io(format!("waiting for {}", self.name), e)),
        }
    }

    fn stop(&mut self) {
        let pgid = Pid::from_raw(self.child.id() as i32);
        let _ = killpg(pgid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                break;
            }
            thread::sleep(Duration::from_millis(10));
        }
        // Whatever is left of the group (a server that did not stop in time,
        // a command it started in its own group is the server's to end).
        let _ = killpg(pgid, Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn proc_status_kib(pid: u32, field: &str) -> Result<u64, BenchError> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).map_err(|e| BenchError::io(&path, e))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| BenchError::wire("bench", format!("no {field} in {path}")))
}

fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(10)..].join("\n");
    format!("the end of {}:\n{tail}", log.display())
}

/// Spawn `cmd` in its own group with stderr into `log` and wait for its JSON
/// readiness line on stdout (`{"port": N, ...}`).
fn spawn_with_ready_line(
    name: &'static str,
    path: &'static str,
    mut cmd: Command,
    log: PathBuf,
) -> Result<Server, BenchError> {
    let log_file = File::create(&log).map_err(|e| BenchError::io(log.display().to_string(), e))?;
    let mut child = cmd
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file)
        .spawn()
        .map_err(|e| BenchError::Start {
            what: name.into(),
            reason: e.to_string(),
        })?;
    let stdout = child.stdout.take();
    let (tx, rx) = mpsc::channel();
    // Reads the readiness line, then drains stdout so the server never
    // blocks on a full pipe; ends when the server does.
    thread::spawn(move || {
        let Some(stdout) = stdout else { return };
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let _ = tx.send(reader.read_line(&mut line).map(|_| line));
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
    });
    let mut server = Server {
        name,
        port: 0,
        path,
        child,
        log,
    };
    let line = match rx.recv_timeout(READY_DEADLINE) {
        Ok(Ok(line)) if !line.is_empty() => line,
        Ok(_) => {
            let _ = server.check_alive();
            return Err(BenchError::Start {
                what: name.into(),
                reason: format!("it printed no readiness line; {}", log_tail(&server.log)),
            });
        }
        Err(_) => {
            return Err(BenchError::Start {
                what: name.into(),
                reason: format!("no readiness line within 30 s; {}", log_tail(&server.log)),
            })
        }
    };
    let ready: serde_json::Value =
        serde_json::from_str(line.trim()).map_err(|e| BenchError::Start {
            what: name.into(),
            reason: format!("its readiness line is not JSON ({e}): {line}"),
        })?;
    server.port = ready["port"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
        .ok_or_else(|| BenchError::Start {
            what: name.into(),
            reason: format!("no port in its readiness line: {line}"),
        })?;
    Ok(server)
}

/// `ccx serve --foreground --port 0` with limits raised for the bench
/// (1,000 sessions, 100 MB outputs); everything else is ccx's default.
pub fn start_ccx(bin: &Path, logs: &Path, label: &str) -> Result<Server, BenchError> {
    let mut cmd = Command::new(bin);
    cmd.args([
        "serve",
        "--foreground",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
    ])
    .env("CCX_MAX_SESSIONS", "2000")
    .env("CCX_MAX_OUTPUT", "1GiB")
    .env("CCX_SHELL", "/bin/sh");
    for var in [
        "CCX_TOKEN",
        "CCX_ALLOWED_COMMANDS",
        "ALLOWED_COMMANDS",
        "CCX_DEFAULT_TIMEOUT",
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
    spawn_with_ready_line("ccx", "/ws/mcp", cmd, logs.join(format!("ccx-{label}.log")))
}

/// The FastAPI peer (`bench/peers/fastapi_peer.py`) under the venv's Python.
pub async fn start_peer(
    python: &Path,
    script: &Path,
    logs: &Path,
    label: &str,
) -> Result<Server, BenchError> {
    let mut cmd = Command::new(python);
    cmd.arg(script);
    let server = spawn_with_ready_line(
        "FastAPI peer",
        "/ws/mcp",
        cmd,
        logs.join(format!("peer-{label}.log")),
    )?;
    // Its socket listens before uvicorn serves: one full session proves it.
    McpSession::open(&server.target()).await?.close().await?;
    Ok(server)
}

/// The MCP SDK peer (`bench/peers/mcp_sdk_peer.py`): it prints its
/// readiness line once uvicorn serves `/mcp`.
pub fn start_mcp_sdk_peer(python: &Path, script: &Path, logs: &Path) -> Result<Server, BenchError> {
    let mut cmd = Command::new(python);
    cmd.arg(script);
    spawn_with_ready_line("MCP SDK peer", "/mcp", cmd, logs.join("mcp-sdk-peer.log"))
}

/// `websocketd --port=PORT sh -c 'read -r l; echo x'`: one shell per
/// connection. websocketd cannot listen on a port the OS picks, so the bench
/// asks the OS for a free one and passes it.
pub fn start_websocketd(bin: &Path, logs: &Path) -> Result<Server, BenchError> {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| BenchError::io("finding a free port for websocketd", e))?
        .port();
    let log = logs.join("websocketd.log");
    let log_file = File::create(&log).map_err(|e| BenchError::io(log.display().to_string(), e))?;
    let child = Command::new(bin)
        .arg(format!("--port={port}"))
        .args(["--address=127.0.0.1", "--loglevel=error"])
        .args(["/bin/sh", "-c", "read -r l; echo x"])
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .map_err(|e| BenchError::Start {
            what: "websocketd".into(),
            reason: e.to_string(),
        })?;
    let mut server = Server {
        name: "websocketd",
        port,
        path: "/",
        child,
        log,
    };
    let deadline = Instant::now() + READY_DEADLINE;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        server.check_alive()?;
        if Instant::now() > deadline {
            return Err(BenchError::Start {
                what: "websocketd".into(),
                reason: format!("port {port} not listening after 30 s"),
            });
        }
        thread::sleep(Duration::from_millis(20));
    }
    Ok(server)
}
