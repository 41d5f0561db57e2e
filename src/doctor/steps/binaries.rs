//! Step `binaries`: the server binary, the shell that runs commands, and
//! each `--require NAME` resolve on the PATH the server will see. Shows the
//! resolved paths, and the PATH searched when something is missing.
//!
//! With `--url`, the `--require` names are resolved by the running server
//! itself (`server.info`, on a session of its own).
//!
//! A `--server-cmd` is a shell command line: `crate::doctor::shell` says which
//! programs it starts (not `cd`, `export` or `VAR=value`), in which
//! directory and with which PATH; each is resolved there, and each literal
//! `cd` target must exist.

use std::ffi::OsStr;
use std::path::PathBuf;

use super::{skipped_for_url, Outcome};
use crate::client::{Client, ClientError, ConnectOptions};
use crate::doctor::shell;
use crate::doctor::Ctx;
use crate::process::resolve_program;
use crate::protocol::ErrorCode;

/// `--require` against a running server (`--url`): its own PATH says.
pub async fn remote(ctx: &mut Ctx<'_>) -> Outcome {
    let opts = ctx.opts;
    let Some(url) = &opts.url else {
        return Outcome::skip("no running server named");
    };
    let names = opts.require.join(", ");
    let mut options = ConnectOptions::new(url).token(ctx.token());
    options.connect_timeout = opts.timeout;
    options.request_timeout = opts.timeout;
    let mut client = match Client::connect(&options).await {
        Ok(client) => client,
        Err(e) => {
            return Outcome::skip(format!(
                "cannot ask the server where --require {names} are ({e}): the handshake step below says why"
            ))
        }
    };
    let info = tokio::time::timeout(opts.timeout, client.info(&opts.require)).await;
    client.close().await;
    let info = match info {
        Ok(Ok(info)) => info,
        Ok(Err(ClientError::Rpc(e))) if e.code == ErrorCode::MethodNotFound.code() => {
            return Outcome::warn(format!(
                "--require {names} not checked: the server does not answer server.info (an older ccx, or cc_executor)"
            ))
            .fix(format!(
                "check on the server's machine or container: `command -v {}`",
                opts.require.join(" ")
            ))
        }
        Ok(Err(e)) => {
            return Outcome::warn(format!("--require {names} not checked: server.info failed: {e}"))
        }
        Err(_) => {
            return Outcome::warn(format!(
                "--require {names} not checked: server.info did not answer within {:?}",
                opts.timeout
            ))
        }
    };
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for name in &opts.require {
        match info.binaries.get(name) {
            Some(Some(path)) => found.push(format!("--require: {name} → {path} (on the server)")),
            _ => missing.push(name.clone()),
        }
    }
    let mut detail = found;
    detail.push(format!("the server's PATH: {}", info.path.join(":")));
    if missing.is_empty() {
        return Outcome::pass(format!("on the server's PATH: {names}")).detail(detail);
    }
    Outcome::fail(format!(
        "not on the running server's PATH: {}",
        missing.join(", ")
    ))
    .detail(detail)
    .fix("install them where the server runs (its image or host), or add their directory to the PATH the server is started with")
}

pub fn run(ctx: &mut Ctx<'_>) -> Outcome {
    let opts = ctx.opts;
    if opts.url.is_some() {
        let also = if opts.require.is_empty() {
            ""
        } else {
            " (--require applies only to a server the doctor starts)"
        };
        return skipped_for_url(&format!("the running server was installed elsewhere{also}"));
    }
    let Some(config) = &ctx.config else {
        return Outcome::skip("no valid configuration to check against");
    };
    let path_var = opts.env.get("PATH").cloned().unwrap_or_default();
    let mut found = Vec::new();
    let mut missing = Vec::new();

    let mut notes = Vec::new();
    match (&opts.server_cmd, &opts.ccx_exe) {
        (Some(cmd), _) => {
            check(
                &mut found,
                &mut missing,
                "launcher shell",
                "/bin/sh",
                &path_var,
            );
            let analysis = match shell::analyze(cmd) {
                Ok(a) => a,
                Err(e) => {
                    return Outcome::fail(format!("--server-cmd is not a valid shell command line: {e}"))
                        .detail([format!("--server-cmd: {cmd}")])
                        .fix("fix the quoting or syntax of --server-cmd (it runs as `/bin/sh -c CMD`); try it in a terminal with `sh -c '…'`")
                }
            };
            for (base, dir) in &analysis.directories {
                let full = in_dir(base.as_deref(), dir);
                if !full.is_dir() {
                    missing.push(format!("`cd {dir}`: {} is not a directory", full.display()));
                }
            }
            for program in &analysis.programs {
                let role = match &program.via {
                    Some(via) => format!("server command (via {via})"),
                    None => "server command".to_string(),
                };
                let path = effective_path(program.path.as_deref(), &path_var);
                match resolve_in(&program.name, &path, program.cwd.as_deref()) {
                    Ok(p) if p.as_os_str() == program.name.as_str() => {
                        found.push(format!("{role}: {}", program.name))
                    }
                    Ok(p) => found.push(format!("{role}: {} → {}", program.name, p.display())),
                    Err(why) => {
                        let place = program
                            .cwd
                            .as_ref()
                            .map(|d| format!(" (after `cd {d}`)"))
                            .unwrap_or_default();
                        missing.push(format!("{role}: {} {why}{place}", program.name));
                    }
                }
                if program.path.is_some() {
                    found.push(format!("  PATH for {}: {path}", program.name));
                }
            }
            if !analysis.builtins.is_empty() {
                notes.push(format!(
                    "shell builtins (no program to find): {}",
                    analysis.builtins.join(", ")
                ));
            }
            notes.extend(analysis.notes.iter().map(|n| format!("not checked: {n}")));
        }
        (None, Some(exe)) => check(
            &mut found,
            &mut missing,
            "server",
            &exe.to_string_lossy(),
            &path_var,
        ),
        (None, None) => check(&mut found, &mut missing, "server", "ccx", &path_var),
    }
    check(
        &mut found,
        &mut missing,
        "CCX_SHELL",
        &config.shell.to_string_lossy(),
        &path_var,
    );
    for name in &opts.require {
        check(&mut found, &mut missing, "--require", name, &path_var);
    }

    let count = found.iter().filter(|l| !l.starts_with("  ")).count();
    found.extend(notes);
    if missing.is_empty() {
        return Outcome::pass(format!("{count} found")).detail(found);
    }
    let mut detail = found;
    detail.push(format!(
        "PATH searched: {}",
        if path_var.is_empty() {
            "(PATH is empty or unset)".to_string()
        } else {
            path_var.split(':').collect::<Vec<_>>().join(" ")
        }
    ));
    let fix = if missing.iter().any(|m| m.starts_with("`cd ")) {
        "the command line changes into a directory that does not exist: fix the `cd` in --server-cmd (relative paths start from the doctor's working directory), or create the directory; install any program that is missing"
    } else {
        "install what is missing, or add its directory to PATH (or fix the path in CCX_SHELL)"
    };
    Outcome::fail(format!("missing: {}", missing.join("; ")))
        .detail(detail)
        .fix(fix)
}

/// Resolves `name` on `path_var` into a `found` or a `missing` line.
fn check(
    found: &mut Vec<String>,
    missing: &mut Vec<String>,
    role: &str,
    name: &str,
    path_var: &str,
) {
    match resolve(name, path_var) {
        Ok(p) if p.as_os_str() == name => found.push(format!("{role}: {name}")),
        Ok(p) => found.push(format!("{role}: {name} → {}", p.display())),
        Err(why) => missing.push(format!("{role}: {name} {why}")),
    }
}

/// Resolves a program name (PATH lookup) or a path (must be an executable file).
pub(super) fn resolve(name: &str, path_var: &str) -> Result<PathBuf, String> {
    resolve_program(name, Some(OsStr::new(path_var))).map_err(|e| e.to_string())
}

/// `dir` relative to `base` (both as the shell sees them; `None` is the
/// doctor's own working directory, where the launcher starts).
fn in_dir(base: Option<&str>, dir: &str) -> PathBuf {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let expand = |p: &str| -> PathBuf {
        match (p.strip_prefix('~'), &home) {
            (Some(rest), Some(h)) => h.join(rest.trim_start_matches('/')),
            _ => PathBuf::from(p),
        }
    };
    let dir = expand(dir);
    if dir.is_absolute() {
        return dir;
    }
    match base {
        Some(b) => expand(b).join(dir),
        None => dir,
    }
}

/// PATH as the command line set it (`$PATH` is the inherited one).
fn effective_path(changed: Option<&str>, inherited: &str) -> String {
    match changed {
        Some(p) => p.replace("$PATH", inherited),
        None => inherited.to_string(),
    }
}

/// Resolves a program as the shell would from directory `cwd` with `path`.
fn resolve_in(name: &str, path: &str, cwd: Option<&str>) -> Result<PathBuf, String> {
    if name.contains('/') {
        let full = in_dir(cwd, name);
        return resolve(&full.to_string_lossy(), path);
    }
    let entries: Vec<String> = path
        .split(':')
        .map(|e| {
            in_dir(cwd, if e.is_empty() { "." } else { e })
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    resolve(name, &entries.join(":"))
}

/// The program that becomes the server (the last one the command line
/// starts, e.g. `python` in `cd app && exec python -m uvicorn …`),
/// resolved where the shell will look for it.
pub(super) fn server_program(cmd: &str, path_var: &str) -> Option<String> {
    let analysis = shell::analyze(cmd).ok()?;
    let program = analysis.programs.last()?;
    let path = effective_path(program.path.as_deref(), path_var);
    resolve_in(&program.name, &path, program.cwd.as_deref())
        .ok()
        .map(|p| p.display().to_string())
}
