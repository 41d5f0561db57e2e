//! The environment fingerprint a server reports about itself (`server.info`
//! and `GET /health?verbose=1`): OS, identity, PATH, variable names, limits,
//! and where requested programs resolve.

use std::collections::BTreeMap;
use std::path::Path;

use nix::sys::resource::{getrlimit, Resource};

use crate::config::Config;
use crate::process::resolve::resolve_canonical;
use crate::process::tracking;
use crate::protocol::{CcxLimits, Limit, ResourceLimits, ServerInfo};

/// Most names one `server.info` may ask to resolve: each is a PATH search
/// (a stat per PATH entry), so an unbounded list would let one request keep
/// a blocking thread busy for seconds.
pub const MAX_REQUIRE: usize = 256;
/// Longest name accepted in `require` (PATH_MAX).
pub const MAX_NAME: usize = 4096;

/// Refuses a `require` list over the bounds, naming them.
pub fn check_require(require: &[String]) -> Result<(), String> {
    if require.len() > MAX_REQUIRE {
        return Err(format!(
            "require lists {} names; server.info resolves at most {MAX_REQUIRE} per request",
            require.len()
        ));
    }
    if let Some(long) = require.iter().find(|n| n.len() > MAX_NAME) {
        return Err(format!(
            "a name in require is {} bytes; at most {MAX_NAME} (PATH_MAX)",
            long.len()
        ));
    }
    Ok(())
}

/// [`collect`] on tokio's blocking pool: PATH lookups, /proc and file reads
/// must not hold an async worker (that stalls /health and every session).
pub async fn collect_off_runtime(
    state: std::sync::Arc<crate::server::AppState>,
    require: Vec<String>,
) -> Result<ServerInfo, String> {
    tokio::task::spawn_blocking(move || collect(&state.config, &require))
        .await
        .map_err(|e| format!("collecting server info failed: {e}"))
}

/// Collects the fingerprint; `require` names programs to resolve on PATH.
pub fn collect(config: &Config, require: &[String]) -> ServerInfo {
    let uname = nix::sys::utsname::uname().ok();
    let text = |f: fn(&nix::sys::utsname::UtsName) -> &std::ffi::OsStr| {
        uname
            .as_ref()
            .map(|u| f(u).to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    let mut env_names: Vec<String> = std::env::vars_os()
        .map(|(k, _)| k.to_string_lossy().into_owned())
        .collect();
    env_names.sort();
    let ms = |d: std::time::Duration| d.as_millis() as u64;
    ServerInfo {
        ccx_version: crate::VERSION.into(),
        os: std::env::consts::OS.into(),
        kernel: text(|u| u.release()),
        arch: std::env::consts::ARCH.into(),
        hostname: text(|u| u.nodename()),
        pid: std::process::id(),
        uid: nix::unistd::getuid().as_raw(),
        gid: nix::unistd::getgid().as_raw(),
        cwd: std::env::current_dir()
            .map(|d| d.display().to_string())
            .unwrap_or_default(),
        in_container: std::process::id() == 1 || Path::new("/.dockerenv").exists(),
        shell: config.shell.display().to_string(),
        shell_resolved: resolve_canonical(&config.shell.to_string_lossy()),
        path: std::env::split_paths(&path_var)
            .map(|p| p.display().to_string())
            .collect(),
        env_names,
        rlimits: ResourceLimits {
            open_files: limit(Resource::RLIMIT_NOFILE),
            processes: limit(Resource::RLIMIT_NPROC),
        },
        limits: CcxLimits {
            max_sessions: config.max_sessions,
            max_output: config.max_output,
            ws_max_size: config.ws_max_size,
            ws_ping_interval_ms: ms(config.ws_ping_interval),
            ws_ping_timeout_ms: ms(config.ws_ping_timeout),
            default_timeout_ms: config.default_timeout.map(ms),
            kill_grace_ms: ms(config.kill_grace),
            token_required: config.token.is_some(),
            allowed_commands: config.allowed_commands.clone(),
        },
        binaries: require
            .iter()
            .map(|name| (name.clone(), resolve_canonical(name)))
            .collect::<BTreeMap<_, _>>(),
        process_tracking: Some(tracking::mode().as_str().into()),
    }
}

fn limit(resource: Resource) -> Limit {
    let value = |v: u64| (v != nix::sys::resource::RLIM_INFINITY).then_some(v);
    match getrlimit(resource) {
        Ok((soft, hard)) => Limit {
            soft: value(soft),
            hard: value(hard),
        },
        Err(_) => Limit {
            soft: None,
            hard: None,
        },
    }
}
