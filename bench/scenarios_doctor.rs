//! P12: time to diagnosis. `ccx doctor --server-cmd` starting the real
//! cc_executor (a copy of the snapshot, in its venv) against that server's
//! own time to accept connections, measured in turns in the same run; and
//! how long after a crashing server exits the doctor has reported it.
//!
//! The doctor's figure is its wall time (process start to exit) less the
//! time the server itself took to answer the handshake and the echo (the
//! doctor's own step durations): what is left is the doctor's wait for
//! readiness, its own work, and stopping the server. cc_executor's hooks
//! use Redis on localhost:6379 (a port they fix); when none answers there
//! and `redis-server` is installed, the bench starts one for the row and
//! stops it by its process group.

use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::error::BenchError;
use crate::python;
use crate::report::{Figure, Goal, Row, Spec};
use crate::scenarios::{blocking, reference, settle};

const START_DEADLINE: Duration = Duration::from_secs(90);
/// How often the server's own readiness is probed (the goal asks 1–5 ms).
const ACCEPT_POLL: Duration = Duration::from_millis(2);
/// The crashing server's life before it exits.
const CRASH_AFTER: &str = "0.3";

pub async fn p12(bin: PathBuf, logs: PathBuf, rounds: usize, install: bool) -> Vec<Row> {
    let ready_spec = Spec::new(
        "P12",
        "`doctor --server-cmd` on cc_executor, time to diagnosis",
        Goal::RatioAtMost(1.2),
        "≤ 1.2 × its own time to accept",
    );
    let crash_spec = Spec::new(
        "P12",
        "a server that crashes: exit to the doctor's report, p50",
        Goal::AtMost(50.0),
        "≤ 50 ms",
    );
    eprintln!("bench: P12 …");
    let mut rows = Vec::new();
    let spec = ready_spec.clone();
    let b = bin.clone();
    let ready = blocking(move || ready_row(&spec, &b, &logs, rounds, install)).await;
    rows.extend(settle(&[&ready_spec], ready));
    let crash = blocking(move || crash_latencies(&bin, rounds * 5)).await;
    let crash = crash.map(|mut ms| {
        ms.sort_by(f64::total_cmp);
        let median = ms[ms.len() / 2];
        let list: Vec<String> = ms.iter().map(|m| format!("{m:.0}")).collect();
        vec![Row::measured(
            &crash_spec,
            Figure::ms((median * 1e6) as u64),
            None,
            format!(
                "a server that exits {CRASH_AFTER} s after it starts, {} runs: {} ms",
                ms.len(),
                list.join(", ")
            ),
        )]
    });
    rows.extend(settle(&[&crash_spec], crash));
    rows
}

/// The ratio row: the rounds measured in turns, or a skipped row when
/// cc_executor or its venv is missing.
fn ready_row(
    spec: &Spec,
    bin: &Path,
    logs: &Path,
    rounds: usize,
    install: bool,
) -> Result<Vec<Row>, BenchError> {
    let Some(snapshot) = python::cc_executor_snapshot() else {
        return Ok(vec![Row::skipped(
            spec,
            "no cc_executor snapshot (../shared/peers/cc_executor or CCX_CC_EXECUTOR_DIR)",
        )]);
    };
    let venv = if install {
        let requirements = format!("-r {}", snapshot.join("requirements.txt").display());
        python::venv("cc_executor", &[&requirements, "json_repair", "rank_bm25"])
    } else {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("venvs/cc_executor");
        if dir.join(".ccx-installed").is_file() {
            Ok(python::Venv { dir })
        } else {
            Err(format!("no venv at {} (--no-install)", dir.display()))
        }
    };
    let venv = match venv {
        Ok(v) => v,
        Err(e) => {
            return Ok(vec![Row::skipped(
                spec,
                format!("no cc_executor venv: {e}"),
            )])
        }
    };
    let redis = Redis::ensure(logs)?;
    let dir = tempfile::tempdir().map_err(|e| BenchError::io("a temporary directory", e))?;
    let src = dir.path().join("cc_executor/src");
    copy_tree(&snapshot.join("src"), &src)?;
    let command = format!(
        "PYTHONPATH=. NO_COLOR=1 exec {} -m uvicorn cc_executor.core.main:app --host 127.0.0.1 --port $CCX_PORT",
        venv.python().display()
    );
    let (mut own, mut doctor, mut totals, mut served) = (vec![], vec![], vec![], vec![]);
    // One unrecorded start of each first: it warms the page cache (and
    // writes .pyc files where Python may), which later starts share alike.
    for round in 0..=rounds {
        let accept = own_accept_time(&command, &src, logs)?;
        let run = doctor_time(bin, &command, &src)?;
        if round > 0 {
            own.push(accept.as_secs_f64());
            doctor.push((run.total - run.server_side).as_secs_f64());
            totals.push(run.total.as_secs_f64());
            served.push(run.server_side.as_secs_f64());
        }
    }
    let redis_note = redis.describe();
    drop(redis);
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let secs = |s: f64| Figure::ms((s * 1e9) as u64);
    let ratios: Vec<String> = doctor
        .iter()
        .zip(&own)
        .map(|(d, o)| format!("{:.2}", d / o))
        .collect();
    let note = format!(
        "medians of {} runs in turns (ratios run by run: {}); doctor wall time {}, of which the server answering the handshake and the echo {} (not counted); its own accept time polled every {} ms; {redis_note}",
        own.len(),
        ratios.join(", "),
        secs(med(&mut totals)),
        secs(med(&mut served)),
        ACCEPT_POLL.as_millis()
    );
    Ok(vec![Row::measured(
        spec,
        secs(med(&mut doctor)),
        reference("cc_executor accepting", secs(med(&mut own))),
        note,
    )])
}

/// A free loopback port for the next start (the doctor checks it is free).
fn free_port() -> Result<u16, BenchError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| BenchError::io("finding a free port", e))
}

/// A process group the bench started, ended as that group when dropped.
struct GroupGuard(Child);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        let pgid = Pid::from_raw(self.0.id() as i32);
        let _ = killpg(pgid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && matches!(self.0.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = killpg(pgid, Signal::SIGKILL);
        let _ = self.0.wait();
    }
}

/// From starting the server command to its port accepting a connection.
fn own_accept_time(command: &str, dir: &Path, logs: &Path) -> Result<Duration, BenchError> {
    let port = free_port()?;
    let log = logs.join("p12-cc_executor.log");
    let log =
        std::fs::File::create(&log).map_err(|e| BenchError::io(log.display().to_string(), e))?;
    let started = Instant::now();
    let child = Command::new("/bin/sh")
        .args(["-c", command])
        .current_dir(dir)
        .env("CCX_PORT", port.to_string())
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| BenchError::io("starting cc_executor", e))?;
    let mut guard = GroupGuard(child);
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(started.elapsed());
        }
        if let Ok(Some(status)) = guard.0.try_wait() {
            return Err(BenchError::wire(
                "cc_executor",
                format!("exited ({status}) before it accepted (see p12-cc_executor.log)"),
            ));
        }
        if started.elapsed() > START_DEADLINE {
            return Err(BenchError::wire("cc_executor", "not accepting after 90 s"));
        }
        std::thread::sleep(ACCEPT_POLL);
    }
}

struct DoctorRun {
    total: Duration,
    /// The handshake and echo steps: the server's own answering time.
    server_side: Duration,
}

fn doctor_command(bin: &Path, server_cmd: &str, port: u16) -> Command {
    let mut cmd = Command::new(bin);
    cmd.args([
        "doctor",
        "--json",
        "--timeout",
        "60s",
        "--server-cmd",
        server_cmd,
    ])
    .env("CCX_PORT", port.to_string())
    .env("CCX_HOST", "127.0.0.1")
    .stdin(Stdio::null())
    .stderr(Stdio::null());
    for var in ["CCX_TOKEN", "CCX_ALLOWED_COMMANDS", "RUST_LOG"] {
        cmd.env_remove(var);
    }
    cmd
}

fn doctor_time(bin: &Path, server_cmd: &str, dir: &Path) -> Result<DoctorRun, BenchError> {
    let mut cmd = doctor_command(bin, server_cmd, free_port()?);
    cmd.current_dir(dir);
    let started = Instant::now();
    let out = cmd
        .output()
        .map_err(|e| BenchError::io("running ccx doctor", e))?;
    let total = started.elapsed();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| {
        BenchError::wire("ccx doctor", format!("its --json report is not JSON: {e}"))
    })?;
    if report["ok"] != serde_json::json!(true) {
        return Err(BenchError::wire(
            "ccx doctor",
            format!(
                "the diagnosis of cc_executor did not pass: {}",
                report["error"]
            ),
        ));
    }
    let step_ms = |id: &str| {
        report["steps"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["id"] == id))
            .and_then(|s| s["duration_ms"].as_u64())
            .unwrap_or(0)
    };
    let server_side = Duration::from_millis(step_ms("handshake") + step_ms("echo"));
    Ok(DoctorRun { total, server_side })
}

/// For each run: milliseconds from the server's exit (it writes the time
/// just before) to the doctor's exit with its report.
fn crash_latencies(bin: &Path, runs: usize) -> Result<Vec<f64>, BenchError> {
    let dir = tempfile::tempdir().map_err(|e| BenchError::io("a temporary directory", e))?;
    let stamp = dir.path().join("exited");
    let server_cmd = format!(
        "sleep {CRASH_AFTER}; date +%s%N > '{}'; exit 3",
        stamp.display()
    );
    let mut out = Vec::new();
    for _ in 0..runs {
        let _ = std::fs::remove_file(&stamp);
        let report = doctor_command(bin, &server_cmd, free_port()?)
            .output()
            .map_err(|e| BenchError::io("running ccx doctor", e))?;
        let reported = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|e| BenchError::wire("bench", format!("the clock: {e}")))?;
        let text = String::from_utf8_lossy(&report.stdout);
        if report.status.code() != Some(1) || !text.contains("exit status 3") {
            return Err(BenchError::wire(
                "ccx doctor",
                format!("a crashing server was not reported as such: {text}"),
            ));
        }
        let exited: u128 = std::fs::read_to_string(&stamp)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| BenchError::wire("bench", "the crashing server left no exit time"))?;
        out.push(reported.as_nanos().saturating_sub(exited) as f64 / 1e6);
    }
    Ok(out)
}

fn copy_tree(from: &Path, to: &Path) -> Result<(), BenchError> {
    let io = |what: &Path, e| BenchError::io(what.display().to_string(), e);
    std::fs::create_dir_all(to).map_err(|e| io(to, e))?;
    for entry in std::fs::read_dir(from).map_err(|e| io(from, e))? {
        let entry = entry.map_err(|e| io(from, e))?;
        if entry.file_name() == "__pycache__" {
            continue;
        }
        let target = to.join(entry.file_name());
        if entry
            .file_type()
            .map_err(|e| io(&entry.path(), e))?
            .is_dir()
        {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target).map_err(|e| io(&target, e))?;
        }
    }
    Ok(())
}

/// Redis on localhost:6379 for cc_executor's hooks: one already there, or
/// one the bench starts (and ends by its group), or none.
enum Redis {
    There,
    Started(#[allow(dead_code)] GroupGuard),
    /// Why there is none.
    Absent(&'static str),
}

impl Redis {
    fn describe(&self) -> String {
        match self {
            Redis::There => "Redis already on localhost:6379".into(),
            Redis::Started(_) => "Redis started by the bench on localhost:6379".into(),
            Redis::Absent(why) => {
                format!("no Redis ({why}): the echo waits on its hooks' retries")
            }
        }
    }

    fn answers() -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = TcpStream::connect("127.0.0.1:6379") else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let mut buf = [0u8; 16];
        s.write_all(b"PING\r\n").is_ok()
            && s.read(&mut buf)
                .is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
    }

    fn ensure(logs: &Path) -> Result<Redis, BenchError> {
        if Redis::answers() {
            return Ok(Redis::There);
        }
        let log = logs.join("p12-redis.log");
        let log = std::fs::File::create(&log)
            .map_err(|e| BenchError::io(log.display().to_string(), e))?;
        let child = Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                "6379",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(Stdio::null())
            .spawn();
        let Ok(child) = child else {
            return Ok(Redis::Absent("redis-server is not installed"));
        };
        let mut guard = GroupGuard(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !Redis::answers() {
            if !matches!(guard.0.try_wait(), Ok(None)) {
                return Ok(Redis::Absent(
                    "redis-server exited: something else holds port 6379 (see p12-redis.log)",
                ));
            }
            if Instant::now() > deadline {
                return Err(BenchError::Start {
                    what: "redis-server".into(),
                    reason: "not answering PING on 127.0.0.1:6379 after 10 s".into(),
                });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(Redis::Started(guard))
    }
}
