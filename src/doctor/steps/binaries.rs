//! Step `binaries`: the server binary, the shell that runs commands, and
//! each `--require NAME` resolve on the PATH the server will see. Shows the
//! resolved paths, and the PATH searched when something is missing.

use std::ffi::OsStr;
use std::path::PathBuf;

use super::{skipped_for_url, Outcome};
use crate::doctor::Ctx;
use crate::process::resolve_program;

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

    let mut check = |role: &str, name: &str| match resolve(name, &path_var) {
        Ok(p) if p.as_os_str() == name => found.push(format!("{role}: {name}")),
        Ok(p) => found.push(format!("{role}: {name} → {}", p.display())),
        Err(why) => missing.push(format!("{role}: {name} {why}")),
    };
    match (&opts.server_cmd, &opts.ccx_exe) {
        (Some(cmd), _) => {
            check("launcher shell", "/bin/sh");
            if let Some(program) = first_program(cmd) {
                check("server command", &program);
            }
        }
        (None, Some(exe)) => check("server", &exe.to_string_lossy()),
        (None, None) => check("server", "ccx"),
    }
    check("CCX_SHELL", &config.shell.to_string_lossy());
    for name in &opts.require {
        check("--require", name);
    }

    let count = found.len();
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
    Outcome::fail(format!("missing: {}", missing.join("; ")))
        .detail(detail)
        .fix("install what is missing, or add its directory to PATH (or fix the path in CCX_SHELL)")
}

/// Resolves a program name (PATH lookup) or a path (must be an executable file).
pub(super) fn resolve(name: &str, path_var: &str) -> Result<PathBuf, String> {
    resolve_program(name, Some(OsStr::new(path_var))).map_err(|e| e.to_string())
}

/// The program a shell command line starts (skipping `VAR=value` prefixes
/// and `exec`), when it is a plain word.
pub(super) fn first_program(cmd: &str) -> Option<String> {
    cmd.split_whitespace()
        .find(|w| !w.contains('=') && *w != "exec")
        .map(|w| w.trim_matches(|c| c == '\'' || c == '"').to_string())
        .filter(|w| {
            !w.is_empty()
                && w.chars()
                    .all(|c| c.is_alphanumeric() || "/._-+".contains(c))
        })
}
