//! The Docker deployment behaves like the local server: the image built by
//! scripts/docker-image, run with `--network host` on a free loopback port,
//! checked with ccx's own doctor, exec and stress, beside a local server.
//!
//! These tests need a Docker daemon and the image, so `cargo test` skips
//! them (`#[ignore]`); `.ci/run` installs Docker, starts the daemon, builds
//! the image and runs them with `cargo test --test docker -- --ignored`.
//! CCX_DOCKER_IMAGE names the image (default `ccx:local`).

mod common;

use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{ccx_command, eventually, TestServer};
use serde_json::Value;

fn image() -> String {
    std::env::var("CCX_DOCKER_IMAGE").unwrap_or_else(|_| "ccx:local".into())
}

fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run docker")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A detached container of the image, removed (forcibly) when dropped.
struct Container {
    name: String,
    pub url: String,
}

impl Container {
    fn start(env: &[(&str, &str)]) -> Container {
        let port = free_port();
        let name = format!("ccx-test-{}-{port}", std::process::id());
        let port_env = format!("CCX_PORT={port}");
        let mut args = vec![
            "run",
            "--detach",
            "--network",
            "host",
            "--name",
            &name,
            "-e",
            &port_env,
        ];
        let pairs: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        for pair in &pairs {
            args.extend(["-e", pair]);
        }
        let image = image();
        args.push(&image);
        let out = docker(&args);
        assert!(
            out.status.success(),
            "docker run: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let container = Container {
            name,
            url: format!("ws://127.0.0.1:{port}/ws/mcp"),
        };
        let ready = eventually(Duration::from_secs(20), || {
            container.logs().contains("\"event\":\"ready\"")
        });
        assert!(
            ready,
            "the container never printed its readiness line:\n{}",
            container.logs()
        );
        container
    }

    /// stdout and stderr of the container so far.
    fn logs(&self) -> String {
        let out = docker(&["logs", &self.name]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    fn exec(&self, command: &str) -> Output {
        ccx_command()
            .args(["exec", "--url", &self.url, "--", command])
            .output()
            .expect("run ccx exec")
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = docker(&["rm", "--force", &self.name]);
    }
}

#[test]
#[ignore = "needs a Docker daemon and the image (scripts/docker-image); run by .ci/run"]
fn container_passes_the_doctor_and_runs_commands_like_the_local_server() {
    let container = Container::start(&[]);
    let doctor = ccx_command()
        .args(["doctor", "--json", "--url", &container.url])
        .output()
        .unwrap();
    let report: ccx::doctor::Report = serde_json::from_slice(&doctor.stdout).expect("doctor JSON");
    assert_eq!(
        doctor.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&doctor.stdout)
    );
    assert!(report.ok);

    let out = container.exec("echo from the container; echo err >&2; exit 4");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "from the container\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(container.exec("kill -TERM $$").status.code(), Some(143));

    // Local and Docker side by side, as the seed's user compared them.
    let local = TestServer::start();
    let stress = ccx_command()
        .args([
            "stress",
            "--json",
            "--clients",
            "4",
            "--requests",
            "25",
            "--url",
            &local.url,
            "--url",
            &container.url,
        ])
        .output()
        .unwrap();
    assert_eq!(
        stress.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&stress.stdout)
    );
    let report: Value = serde_json::from_slice(&stress.stdout).unwrap();
    let rates: Vec<f64> = report["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["success_percent"].as_f64().unwrap())
        .collect();
    assert_eq!(rates, [100.0, 100.0]);
}

#[test]
#[ignore = "needs a Docker daemon and the image (scripts/docker-image); run by .ci/run"]
fn compare_names_what_differs_in_the_container() {
    let container = Container::start(&[]);
    let local = TestServer::start();
    let out = ccx_command()
        .args(["doctor", "--json", "--compare", &local.url, &container.url])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let fields: Vec<&str> = report["differences"]
        .as_array()
        .expect("differences")
        .iter()
        .filter_map(|d| d["field"].as_str())
        .collect();
    // The image's PATH is /usr/local/bin:/bin and its cwd is /: both must be named.
    assert!(
        fields.contains(&"path") && fields.contains(&"cwd"),
        "{fields:?}"
    );
}

#[test]
#[ignore = "needs a Docker daemon and the image (scripts/docker-image); run by .ci/run"]
fn as_pid_1_it_reaps_orphans_and_stops_cleanly_on_docker_stop() {
    let container = Container::start(&[]);
    // An orphan re-parented to PID 1 (the server) must be reaped, not left a zombie.
    let out = container.exec("setsid sh -c 'sleep 0.2' </dev/null >/dev/null 2>&1 & echo started");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "started\n");
    let no_zombies = || {
        let out = container.exec("cat /proc/[0-9]*/stat");
        let stats = String::from_utf8_lossy(&out.stdout).into_owned();
        !stats.lines().any(|l| {
            l.rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('Z'))
        })
    };
    assert!(
        eventually(Duration::from_secs(5), no_zombies),
        "a zombie is left in the container"
    );

    let begin = Instant::now();
    let stop = docker(&["stop", "--time", "10", &container.name]);
    assert!(stop.status.success());
    let took = begin.elapsed();
    let code = docker(&[
        "inspect",
        "--format",
        "{{.State.ExitCode}}",
        &container.name,
    ]);
    assert_eq!(
        String::from_utf8_lossy(&code.stdout).trim(),
        "0",
        "logs:\n{}",
        container.logs()
    );
    assert!(
        took < Duration::from_secs(3),
        "docker stop took {took:?}: SIGTERM was not handled by PID 1"
    );
    assert!(container.logs().contains("SIGTERM received"));
}
