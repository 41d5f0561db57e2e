//! The Docker deployment behaves like the local server: the image built by
//! scripts/docker-image, run with `--network host` on a free loopback port
//! and with the Kubernetes manifest's security context (user 65532,
//! read-only root with a tmpfs /tmp, no capabilities, no new privileges),
//! checked with ccx's own doctor, exec and stress, beside a local server;
//! its probes and its drain on SIGTERM as a kubelet would see them; and its
//! size.
//!
//! These tests need a Docker daemon and the image, so `cargo test` skips
//! them (`#[ignore]`); `.ci/run` installs Docker, starts the daemon, builds
//! the image and runs them with `cargo test --test docker -- --ignored`.
//! CCX_DOCKER_IMAGE names the image (default `ccx:local`).

mod common;

use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use ccx::client::{http, Client, ClientError, ConnectOptions, Event};
use ccx::protocol::{CompletionStatus, ExecuteParams, StreamKind};
use ccx::server::probes::Readiness;
use common::{ccx_command, eventually, TestServer};
use serde_json::Value;

/// The largest image we ship (`docker image inspect`'s Size, bytes).
const MAX_IMAGE_BYTES: u64 = 15_000_000;

/// `docker run` flags for deploy/kubernetes/deployment.yaml's securityContext
/// (runAsUser/runAsGroup 65532, readOnlyRootFilesystem with an emptyDir on
/// /tmp, capabilities drop ALL, allowPrivilegeEscalation false).
const SECURITY_CONTEXT: [&str; 9] = [
    "--user",
    "65532:65532",
    "--read-only",
    "--tmpfs",
    "/tmp:rw,size=64m",
    "--cap-drop",
    "ALL",
    "--security-opt",
    "no-new-privileges",
];

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
    port: u16,
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
        args.extend(SECURITY_CONTEXT);
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
            port,
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

    /// `docker inspect` of one field, e.g. `{{.State.ExitCode}}`.
    fn inspect(&self, format: &str) -> String {
        let out = docker(&["inspect", "--format", format, &self.name]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let authority = format!("127.0.0.1:{}", self.port);
        let response = http::get(&authority, path, Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        (response.status, response.body)
    }

    async fn readiness(&self) -> (u16, Readiness) {
        let (status, body) = self.get("/readyz").await;
        (status, serde_json::from_str(&body).expect("/readyz JSON"))
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

#[test]
#[ignore = "needs a Docker daemon and the image (scripts/docker-image); run by .ci/run"]
fn the_image_is_at_most_15_mb() {
    let out = docker(&["image", "inspect", "--format", "{{.Size}}", &image()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let size: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    eprintln!("image {}: {size} bytes", image());
    assert!(
        size <= MAX_IMAGE_BYTES,
        "the image is {size} bytes, more than {MAX_IMAGE_BYTES}"
    );
    // Run as the manifest runs it: not root.
    let user = docker(&["image", "inspect", "--format", "{{.Config.User}}", &image()]);
    assert_eq!(String::from_utf8_lossy(&user.stdout).trim(), "65532:65532");
}

#[test]
#[ignore = "needs a Docker daemon and the image (scripts/docker-image); run by .ci/run"]
fn bound_like_in_the_pod_it_needs_the_token_and_the_doctor_passes_with_it() {
    // As deployment.yaml sets it: 0.0.0.0 and a token. A Service URL is
    // just another ws:// URL to the doctor.
    let token = "k8s-test-token-3f9a";
    let container = Container::start(&[("CCX_HOST", "0.0.0.0"), ("CCX_TOKEN", token)]);
    let doctor = ccx_command()
        .args(["doctor", "--json", "--url", &container.url])
        .env("CCX_TOKEN", token)
        .output()
        .unwrap();
    assert_eq!(
        doctor.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&doctor.stdout)
    );
    let report: ccx::doctor::Report = serde_json::from_slice(&doctor.stdout).unwrap();
    assert!(report.ok);
    let without = ccx_command()
        .args(["doctor", "--json", "--url", &container.url])
        .output()
        .unwrap();
    assert_eq!(without.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&without.stdout).contains("401"));

    // And without a token the pod refuses to start, saying why.
    let port = free_port();
    let out = docker(&[
        "run",
        "--rm",
        "--network",
        "host",
        "-e",
        &format!("CCX_PORT={port}"),
        "-e",
        "CCX_HOST=0.0.0.0",
        "-e",
        "CCX_TOKEN=",
        &image(),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("CCX_TOKEN"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a Docker daemon and the image (scripts/docker-image); run by .ci/run"]
async fn in_the_container_probes_tell_ready_from_alive_and_sigterm_drains() {
    let container = Container::start(&[("CCX_MAX_SESSIONS", "2"), ("CCX_DRAIN_PERIOD", "10s")]);
    assert_eq!(container.get("/livez").await.0, 200);
    let (status, ready) = container.readiness().await;
    assert_eq!(status, 200, "{ready:?}");
    assert!(ready.shell_ok);

    let options = ConnectOptions::new(&container.url);
    let mut busy = Client::connect(&options).await.unwrap();
    let second = Client::connect(&options).await.unwrap();
    let (status, ready) = container.readiness().await;
    assert_eq!((status, ready.sessions), (503, 2), "{ready:?}");
    assert_eq!(container.get("/livez").await.0, 200);
    second.close().await;
    let freed = Instant::now();
    while container.readiness().await.0 != 200 {
        assert!(
            freed.elapsed() < Duration::from_secs(5),
            "/readyz stayed 503"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    busy.execute(&ExecuteParams {
        command: "sleep 2; echo done".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let begin = Instant::now();
    let kill = docker(&["kill", "--signal", "TERM", &container.name]);
    assert!(kill.status.success());
    let (status, ready) = container.readiness().await;
    assert_eq!(status, 503, "{ready:?}");
    assert!(ready.draining);
    match Client::connect(&options).await {
        Err(ClientError::Http { status: 503, .. }) => {}
        Err(e) => panic!("expected HTTP 503 while draining, got {e}"),
        Ok(_) => panic!("a new session was accepted while draining"),
    }
    let mut stdout = String::new();
    let done = loop {
        match tokio::time::timeout(Duration::from_secs(10), busy.next_event()).await {
            Ok(Ok(Event::Output(o))) if o.stream == StreamKind::Stdout => {
                stdout.push_str(&o.data.to_text())
            }
            Ok(Ok(Event::Completed(done))) => break done,
            Ok(Ok(_)) => {}
            other => panic!("no completion: {other:?}"),
        }
    };
    assert_eq!(stdout, "done\n");
    assert_eq!(done.status, CompletionStatus::Completed);
    assert!(
        eventually(Duration::from_secs(10), || container
            .inspect("{{.State.Running}}")
            == "false"),
        "still running; logs:\n{}",
        container.logs()
    );
    let took = begin.elapsed();
    assert_eq!(
        container.inspect("{{.State.ExitCode}}"),
        "0",
        "{}",
        container.logs()
    );
    assert!(took < Duration::from_secs(10), "exit after {took:?}");
    eprintln!("container drained and exited 0 {took:?} after SIGTERM (command of 2 s)");
}
