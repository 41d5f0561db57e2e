//! Runs the fingerprint probe (`crate::doctor::fingerprint`) where
//! `--compare` needs it: through `execute` on an open session (any server
//! of the dialect, ccx or cc_executor), or locally with `/bin/sh -c` in the
//! doctor's cwd and environment (the ones the local server command gets)
//! when the local server did not start. Output is bounded, and so is the
//! time: the server kills the probe after [`PROBE_TIMEOUT`], the doctor
//! stops waiting a little later.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;

use super::fingerprint::{self, Environment, Source};
use super::human_duration;
use crate::client::{Client, ClientError, Event};
use crate::protocol::{ErrorCode, ExecuteParams, StreamKind};

/// What the probe may run for on the server (its `timeout`).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(30);
/// Most bytes of output read from one probe; the rest is dropped.
const MAX_OUTPUT: usize = 1024 * 1024;
/// Most packages found on disk that are checked by default.
const MAX_FOUND: usize = 20;

/// What to check: programs (`--require`) and modules (`--require-module`,
/// and the project's own packages found on disk).
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub programs: Vec<String>,
    pub modules: Vec<String>,
}

fn nonce() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The probe through `execute` on `client`'s session; `wait` is the
/// doctor's network deadline, added to the probe's own time.
pub async fn on_server(
    client: &mut Client,
    request: &Request,
    wait: Duration,
) -> Result<Environment, String> {
    let nonce = nonce();
    let params = ExecuteParams {
        command: fingerprint::script(&nonce, &request.programs, &request.modules),
        timeout: Some(PROBE_TIMEOUT.as_secs_f64()),
        cwd: None,
        env: None,
        framing: None,
    };
    let deadline = wait + PROBE_TIMEOUT;
    let stdout = match tokio::time::timeout(deadline, collect(client, &params)).await {
        Err(_) => {
            return Err(format!(
                "the fingerprint probe did not finish within {}",
                human_duration(deadline)
            ))
        }
        Ok(Err(ClientError::Rpc(e))) if e.code == ErrorCode::CommandNotAllowed.code() => {
            return Err(format!(
                "the server refused the fingerprint probe (a shell command line): {}",
                e.message
            ))
        }
        Ok(Err(e)) => return Err(format!("the fingerprint probe failed: {e}")),
        Ok(Ok(stdout)) => stdout,
    };
    let mut env = fingerprint::parse(&stdout, &nonce).ok_or_else(|| {
        format!(
            "the fingerprint probe printed no report (its shell may not be POSIX); it printed: {}",
            excerpt(&stdout)
        )
    })?;
    env.source = Some(Source::Execute);
    Ok(env)
}

/// Runs the probe and gathers its stdout, at most [`MAX_OUTPUT`] bytes.
async fn collect(client: &mut Client, params: &ExecuteParams) -> Result<String, ClientError> {
    client.execute(&client.prefer_batches(params)).await?;
    // Bytes until the end: a batch may cut a character in two.
    let mut stdout = Vec::new();
    loop {
        match client.next_event().await? {
            Event::Output(o) if o.stream == StreamKind::Stdout && stdout.len() < MAX_OUTPUT => {
                stdout.extend_from_slice(o.data.as_bytes())
            }
            Event::Completed(_) => return Ok(String::from_utf8_lossy(&stdout).into_owned()),
            _ => {}
        }
    }
}

/// Where the local server command runs its server: the directory, PATH
/// and variables its own line sets before the last program it starts (a
/// literal `cd`, a PATH change, a sourced venv `activate`, `PYTHONPATH=src`),
/// as the `binaries` step reads it; `None` for what it leaves as the
/// doctor's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Place {
    pub cwd: Option<String>,
    pub path: Option<String>,
    pub env: Vec<(String, String)>,
}

impl Place {
    /// The place of `cmd`'s server, `inherited_path` standing for `$PATH`.
    pub fn of_command(cmd: &str, inherited_path: &str) -> Place {
        let Some(server) = crate::doctor::shell::analyze(cmd)
            .ok()
            .and_then(|a| a.programs.last().cloned())
        else {
            return Place::default();
        };
        Place {
            cwd: server.cwd,
            path: server.path.map(|p| p.replace("$PATH", inherited_path)),
            env: server.env,
        }
    }
}

/// The probe run here with `/bin/sh -c`, in the doctor's cwd and
/// environment (those the local server command gets) changed as `place`
/// says, killed with its group after [`PROBE_TIMEOUT`].
pub async fn local(request: &Request, place: &Place) -> Result<Environment, String> {
    let nonce = nonce();
    let mut command = tokio::process::Command::new("/bin/sh");
    if let Some(dir) = &place.cwd {
        command.current_dir(dir);
    }
    if let Some(path) = &place.path {
        command.env("PATH", path);
    }
    command.envs(place.env.iter().map(|(k, v)| (k, v)));
    let mut child = command
        .arg("-c")
        .arg(fingerprint::script(
            &nonce,
            &request.programs,
            &request.modules,
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| match &place.cwd {
            Some(dir) => format!("cannot run the fingerprint probe with /bin/sh in {dir}: {e}"),
            None => format!("cannot run the fingerprint probe with /bin/sh: {e}"),
        })?;
    let group = crate::process::Group(child.id().unwrap_or_default());
    let mut out = child.stdout.take();
    let read = async {
        let mut bytes = Vec::new();
        if let Some(out) = out.as_mut() {
            let _ = out.take(MAX_OUTPUT as u64).read_to_end(&mut bytes).await;
        }
        bytes
    };
    let bytes = tokio::time::timeout(PROBE_TIMEOUT, read).await;
    crate::process::stop_child(&mut child, group, Duration::from_millis(500)).await;
    let bytes = bytes.map_err(|_| {
        format!(
            "the local fingerprint probe did not finish within {}",
            human_duration(PROBE_TIMEOUT)
        )
    })?;
    let stdout = String::from_utf8_lossy(&bytes);
    let mut env = fingerprint::parse(&stdout, &nonce).ok_or_else(|| {
        format!(
            "the local fingerprint probe printed no report: {}",
            excerpt(&stdout)
        )
    })?;
    env.source = Some(Source::Local);
    Ok(env)
}

/// The project's own packages on disk: directories holding `__init__.py`
/// in `dir` and `dir/src` (a src layout), e.g. `cc_executor`.
pub fn project_packages(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for base in [dir.to_path_buf(), dir.join("src")] {
        let Ok(entries) = std::fs::read_dir(&base) else {
            continue;
        };
        let mut names: Vec<String> = entries
            .flatten()
            .filter(|e| e.path().join("__init__.py").is_file())
            .filter_map(|e| e.file_name().to_str().map(String::from))
            .filter(|n| {
                fingerprint::is_module_name(n) && !["tests", "test", "docs"].contains(&n.as_str())
            })
            .collect();
        names.sort();
        for name in names {
            if !found.contains(&name) && found.len() < MAX_FOUND {
                found.push(name);
            }
        }
    }
    found
}

/// The first few hundred characters of what a probe printed, for an error.
fn excerpt(text: &str) -> String {
    let text = text.trim();
    if text.is_empty() {
        return "nothing".into();
    }
    let short: String = text.chars().take(300).collect();
    if short.len() < text.len() {
        format!("{short}…")
    } else {
        short
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_packages_are_found_in_the_dir_and_its_src() {
        let dir = tempfile::tempdir().unwrap();
        for pkg in ["src/cc_executor", "flatpkg", "tests", "src/not-a-name"] {
            std::fs::create_dir_all(dir.path().join(pkg)).unwrap();
            std::fs::write(dir.path().join(pkg).join("__init__.py"), "").unwrap();
        }
        std::fs::create_dir_all(dir.path().join("plain_dir")).unwrap();
        assert_eq!(project_packages(dir.path()), ["flatpkg", "cc_executor"]);
    }

    #[tokio::test]
    async fn the_local_probe_reads_this_environment() {
        let request = Request {
            programs: vec!["sh".into()],
            modules: vec!["json".into()],
        };
        let env = local(&request, &Place::default()).await.unwrap();
        assert_eq!(env.source, Some(Source::Local));
        assert!(env.binaries["sh"].is_some());
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(env.cwd, cwd.display().to_string());

        let dir = tempfile::tempdir().unwrap();
        let cmd = format!(
            "cd {} && . venv/bin/activate && PROBE_ONLY_HERE=1 exec python -m app",
            dir.path().display()
        );
        let place = Place::of_command(&cmd, "/usr/bin:/bin");
        assert_eq!(
            place.cwd.as_deref(),
            Some(&*dir.path().display().to_string())
        );
        let env = local(&request, &place).await.unwrap();
        assert_eq!(env.cwd, dir.path().display().to_string());
        assert_eq!(env.path[1..], ["/usr/bin", "/bin"], "{:?}", env.path);
        assert!(env.path[0].ends_with("venv/bin"), "{:?}", env.path);
        assert!(env.env_names.contains(&"PROBE_ONLY_HERE".to_string()));
    }
}
