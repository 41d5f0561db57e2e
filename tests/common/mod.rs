//! Test support: start the real `ccx` binary on port 0 with an isolated
//! environment, read its readiness line, keep draining its stderr, and kill
//! it (and wait for it) when dropped. Plus small /proc readers.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ccx::client::{Client, ConnectOptions};

pub mod background;
pub mod cc_executor;
pub mod python;

pub const BIN: &str = env!("CARGO_BIN_EXE_ccx");

/// A `ccx` command with CCX_*/WS_* variables and cc_executor's names
/// removed, so the developer's own settings never leak into a test.
pub fn ccx_command() -> Command {
    ccx_command_via(&[])
}

/// [`ccx_command`] started through `wrapper` (a program and its arguments,
/// which must exec the rest of its command line), e.g. a shell that opens
/// a descriptor first.
pub fn ccx_command_via(wrapper: &[&str]) -> Command {
    let mut cmd = match wrapper {
        [] => isolated(BIN),
        [program, args @ ..] => {
            let mut cmd = isolated(program);
            cmd.args(args).arg(BIN);
            cmd
        }
    };
    cmd.stdin(Stdio::null());
    cmd
}

/// `program` with the environment of [`ccx_command`].
pub fn isolated(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy().into_owned();
        let cc_executor = ccx::config::ALIASES.iter().any(|(_, alias)| *alias == name)
            || ccx::config::UNSUPPORTED.iter().any(|(n, _)| *n == name);
        if name.starts_with("CCX_")
            || name.starts_with("WS_")
            || cc_executor
            || name.ends_with("_PROXY")
            || name.ends_with("_proxy")
        {
            cmd.env_remove(name);
        }
    }
    // Client commands look for the background server of the state
    // directory: the developer's own must never be the one a test finds.
    cmd.env("CCX_STATE_DIR", unused_state_dir());
    cmd.stdin(Stdio::null());
    cmd
}

/// A state directory that does not exist (tests that need one set their own).
fn unused_state_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("ccx-test-unused-state-{}", std::process::id()))
}

/// A running `ccx serve --foreground --port 0`.
pub struct TestServer {
    child: Child,
    pub port: u16,
    pub url: String,
    stderr: Arc<Mutex<String>>,
    _state_dir: tempfile::TempDir,
}

impl TestServer {
    pub fn start() -> TestServer {
        TestServer::start_with(&[], &[])
    }

    /// Starts with extra environment variables and extra `serve` arguments.
    pub fn start_with(env: &[(&str, &str)], args: &[&str]) -> TestServer {
        TestServer::start_via(&[], env, args)
    }

    /// [`TestServer::start_with`] through a wrapper (see [`ccx_command_via`]).
    pub fn start_via(wrapper: &[&str], env: &[(&str, &str)], args: &[&str]) -> TestServer {
        let state_dir = tempfile::tempdir().expect("temp dir");
        let mut cmd = ccx_command_via(wrapper);
        cmd.args(["serve", "--foreground", "--port", "0"])
            .args(args)
            .env("CCX_STATE_DIR", state_dir.path())
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn ccx");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_pipe = child.stderr.take().expect("stderr");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            for _ in lines {}
        });
        let line = match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "ccx did not announce readiness; stderr:\n{}",
                    stderr.lock().unwrap()
                );
            }
        };
        let ready: serde_json::Value = serde_json::from_str(&line).expect("readiness line is JSON");
        assert_eq!(ready["event"], "ready", "{line}");
        let port = ready["port"].as_u64().expect("port") as u16;
        TestServer {
            child,
            port,
            url: format!("ws://127.0.0.1:{port}/ws/mcp"),
            stderr,
            _state_dir: state_dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn options(&self) -> ConnectOptions {
        ConnectOptions::new(&self.url)
    }

    pub async fn client(&self) -> Client {
        Client::connect(&self.options())
            .await
            .expect("connect to test server")
    }

    /// Everything the server wrote on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends a signal to the server process.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid() as i32), signal)
            .expect("signal server");
    }

    /// Waits for the server to exit, up to `deadline`.
    pub fn wait_exit(&mut self, deadline: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for TestServer {
    /// Ends the server the way an operator would (SIGTERM: it ends every
    /// command's group), then SIGKILLs it and every group its descendants
    /// were in, so that a failing test leaks nothing.
    fn drop(&mut self) {
        use nix::sys::signal::{kill, killpg, Signal};
        use nix::unistd::Pid;
        let pid = self.pid();
        let left = descendants(pid);
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        if self.wait_exit(Duration::from_secs(3)).is_none() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        for child in left {
            let _ = killpg(Pid::from_raw(child as i32), Signal::SIGKILL);
            let _ = kill(Pid::from_raw(child as i32), Signal::SIGKILL);
        }
    }
}

/// Polls `condition` every 10 ms until it holds or `deadline` passes.
pub fn eventually(deadline: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if condition() {
            return true;
        }
        if start.elapsed() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Pids of live (non-zombie) processes in process group `pgid`.
pub fn live_members(pgid: u32) -> Vec<u32> {
    all_pids()
        .into_iter()
        .filter(|&pid| stat_field(pid, 4) == Some(pgid.to_string()) && state(pid) != Some('Z'))
        .collect()
}

/// SIGKILLs `pid` and its process group, but only while `pid` still runs a
/// command line `ours` accepts: a pid read from a file may have been
/// reused by another process since.
pub fn kill_group_if(pid: u32, ours: impl Fn(&[String]) -> bool) {
    use nix::sys::signal::{kill, killpg, Signal};
    use nix::unistd::Pid;
    if pid <= 1 || pid > i32::MAX as u32 || !ours(&ccx::lifecycle::state::cmdline(pid)) {
        return;
    }
    let pid = Pid::from_raw(pid as i32);
    let _ = killpg(pid, Signal::SIGKILL);
    let _ = kill(pid, Signal::SIGKILL);
}

/// Pids of processes whose command line contains `needle`.
pub fn pids_with_cmdline(needle: &str) -> Vec<u32> {
    all_pids()
        .into_iter()
        .filter(|&pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    String::from_utf8_lossy(&c)
                        .replace('\0', " ")
                        .contains(needle)
                })
                .unwrap_or(false)
        })
        .filter(|&pid| state(pid) != Some('Z'))
        .collect()
}

/// Children of `pid` (any state, zombies included).
pub fn children_of(pid: u32) -> Vec<(u32, char)> {
    all_pids()
        .into_iter()
        .filter(|&p| ppid(p) == Some(pid))
        .filter_map(|p| Some((p, state(p)?)))
        .collect()
}

/// The one-letter state of a process (R, S, T, Z, …).
pub fn state(pid: u32) -> Option<char> {
    stat_field(pid, 2).and_then(|s| s.chars().next())
}

/// Peak resident set size (VmHWM) of a process, in bytes.
pub fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Field `index` (0-based, the command name being field 1) of /proc/PID/stat.
fn stat_field(pid: u32, index: usize) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let close = stat.rfind(')')?;
    if index < 2 {
        return None;
    }
    stat[close + 1..]
        .split_whitespace()
        .nth(index - 2)
        .map(String::from)
}

fn all_pids() -> Vec<u32> {
    std::fs::read_dir(Path::new("/proc"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The parent pid of a process.
pub fn ppid(pid: u32) -> Option<u32> {
    stat_field(pid, 3)?.parse().ok()
}

/// Live (non-zombie) descendants of `pid`, at any depth.
pub fn descendants(pid: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = all_pids()
        .into_iter()
        .filter(|&p| state(p) != Some('Z'))
        .filter_map(|p| Some((p, ppid(p)?)))
        .collect();
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    found.remove(0);
    found
}

/// Environment variable a test puts on the processes it starts (they pass it
/// on to their children), to find any left behind.
pub const MARKER_VAR: &str = "DOCTOR_CHECKS_RUN";

/// Live processes (pid, command line) whose environment has
/// `MARKER_VAR=marker`, this test process excepted.
pub fn marked_processes(marker: &str) -> Vec<(u32, String)> {
    let needle = format!("{MARKER_VAR}={marker}");
    let me = std::process::id();
    all_pids()
        .into_iter()
        .filter(|&pid| pid != me && state(pid).is_some_and(|s| s != 'Z'))
        .filter(|&pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .map(|env| env.split(|&b| b == 0).any(|kv| kv == needle.as_bytes()))
                .unwrap_or(false)
        })
        .map(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            (pid, String::from_utf8_lossy(&cmdline).replace('\0', " "))
        })
        .collect()
}

/// A raw HTTP/1.1 exchange with `127.0.0.1:port` (JSON body, MCP's Accept
/// header, `Connection: close`, `Host: 127.0.0.1:port` unless `headers`
/// name another): the status, the head in lowercase, the body.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        request.push_str(&format!("Host: 127.0.0.1:{port}\r\n"));
    }
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_lowercase(), body.to_string())
}
