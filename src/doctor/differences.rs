//! Differences between two servers that could explain "works there, fails
//! here", most likely culprits first: what each says it is
//! ([`ServerIdentity`]: `/health`, `connected`), how fast it runs a
//! command, and (where both have one, i.e. both are ccx) their environment
//! fingerprints ([`ServerInfo`]). Pure data in, data out: the doctor
//! fetches all of it and renders the result.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::client::identity::ServerIdentity;
use crate::protocol::{Limit, ServerInfo};

/// One difference, with what it could break.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Difference {
    /// Stable name of the compared property (`binaries.claude`, `path`, `shell` …).
    pub field: String,
    pub a: String,
    pub b: String,
    /// Why this difference could matter.
    pub why: String,
}

/// Variables that differ between any two processes and explain nothing, and
/// ccx's own variables, whose effects are compared as effective settings.
fn is_noise(name: &str) -> bool {
    const NOISE: &[&str] = &[
        "_",
        "PWD",
        "OLDPWD",
        "SHLVL",
        "HOSTNAME",
        "TERM",
        "COLUMNS",
        "LINES",
        "INVOCATION_ID",
        "JOURNAL_STREAM",
    ];
    NOISE.contains(&name) || name.starts_with("CCX_") || name.starts_with("WS_")
}

/// A property of a fingerprint compared as one string: its field name,
/// how to read it, and what a difference could break.
type Property = (&'static str, fn(&ServerInfo) -> String, &'static str);

/// Settings that change what commands see, most likely culprits first.
const SETTINGS: &[Property] = &[
    ("shell", |i| format!("{} → {}", i.shell, shown(&i.shell_resolved)),
        "commands run under a different shell: syntax (bash vs dash), builtins and startup files differ"),
    ("path", |i| i.path.join(":"),
        "programs are looked up in different places: one side may find another version, or none"),
    ("ccx_version", |i| i.ccx_version.clone(),
        "different server versions may behave differently"),
    ("limits.token_required", |i| i.limits.token_required.to_string(),
        "one side needs CCX_TOKEN: clients without it get 401"),
    ("limits.allowed_commands", |i| format!("{:?}", i.limits.allowed_commands),
        "one side refuses some commands (-32001, command not allowed)"),
    ("limits.max_output", |i| i.limits.max_output.to_string(),
        "long outputs are truncated sooner on one side"),
    ("limits.ws_max_size", |i| i.limits.ws_max_size.to_string(),
        "large requests (long prompts) are refused with 1009 on one side"),
    ("limits.default_timeout_ms", |i| format!("{:?}", i.limits.default_timeout_ms),
        "commands without a timeout are cut off on one side"),
    ("limits.kill_grace_ms", |i| i.limits.kill_grace_ms.to_string(),
        "cancelled commands get a different grace period"),
    ("limits.max_sessions", |i| i.limits.max_sessions.to_string(),
        "one side accepts fewer concurrent clients (-32003, session limit)"),
    ("limits.ws_ping_interval_ms", |i| i.limits.ws_ping_interval_ms.to_string(),
        "keep-alive differs: idle or slow clients are dropped at different times"),
    ("limits.ws_ping_timeout_ms", |i| i.limits.ws_ping_timeout_ms.to_string(),
        "keep-alive differs: idle or slow clients are dropped at different times"),
    ("rlimits.open_files", |i| limit(i.rlimits.open_files),
        "fewer file descriptors: busy servers fail with 'too many open files'"),
    ("rlimits.processes", |i| limit(i.rlimits.processes),
        "fewer processes allowed: forks fail under load"),
    ("uid", |i| i.uid.to_string(),
        "a different user: file permissions, HOME and credentials (e.g. claude's login) differ"),
    ("cwd", |i| i.cwd.clone(), "relative paths in commands point elsewhere"),
];

/// The platform, compared last: rarely the culprit when the rest agrees.
const PLATFORM: &[Property] = &[
    (
        "arch",
        |i| i.arch.clone(),
        "another CPU architecture: binaries built for one do not run on the other",
    ),
    ("os", |i| i.os.clone(), "another operating system"),
    (
        "in_container",
        |i| i.in_container.to_string(),
        "one side runs in a container: its filesystem, users and PATH are the image's",
    ),
];

fn shown(p: &Option<String>) -> String {
    p.clone().unwrap_or_else(|| "not found".into())
}

/// Every difference that could matter, ordered by how likely it is to be
/// the culprit: missing programs, shell, PATH, versions, limits, identity,
/// environment, platform.
pub fn differences(a: &ServerInfo, b: &ServerInfo) -> Vec<Difference> {
    let mut out = Vec::new();
    let mut push = |field: &str, va: String, vb: String, why: &str| {
        if va != vb {
            out.push(Difference {
                field: field.into(),
                a: va,
                b: vb,
                why: why.into(),
            });
        }
    };

    let names: BTreeSet<&String> = a.binaries.keys().chain(b.binaries.keys()).collect();
    for name in names {
        let (pa, pb) = (
            a.binaries.get(name).cloned().flatten(),
            b.binaries.get(name).cloned().flatten(),
        );
        if pa.is_none() != pb.is_none() {
            push(
                &format!("binaries.{name}"),
                shown(&pa),
                shown(&pb),
                "a required program is missing on one side: commands that use it fail there",
            );
        }
    }
    for name in a.binaries.keys().filter(|n| b.binaries.contains_key(*n)) {
        let (pa, pb) = (a.binaries[name].clone(), b.binaries[name].clone());
        if pa.is_some() && pb.is_some() {
            push(
                &format!("binaries.{name}"),
                shown(&pa),
                shown(&pb),
                "the same name resolves to different programs (another version, or a venv vs the system)",
            );
        }
    }
    for (field, value, why) in SETTINGS {
        push(field, value(a), value(b), why);
    }
    let only = |x: &ServerInfo, y: &ServerInfo| -> Vec<String> {
        x.env_names
            .iter()
            .filter(|n| !is_noise(n) && !y.env_names.contains(n))
            .cloned()
            .collect()
    };
    let (only_a, only_b) = (only(a, b), only(b, a));
    if !only_a.is_empty() || !only_b.is_empty() {
        push(
            "env_names",
            format!("only here: {}", list(&only_a)),
            format!("only here: {}", list(&only_b)),
            "variables set on one side only (API keys, VIRTUAL_ENV, proxies …) change what commands do",
        );
    }
    for (field, value, why) in PLATFORM {
        push(field, value(a), value(b), why);
    }
    out
}

/// Differences in what the two servers say they are: program and version,
/// capabilities, the fields of `/health` and their limits.
pub fn identity_differences(a: &ServerIdentity, b: &ServerIdentity) -> Vec<Difference> {
    let mut out = Vec::new();
    let mut push = |field: &str, va: String, vb: String, why: &str| {
        if va != vb {
            out.push(Difference {
                field: field.into(),
                a: va,
                b: vb,
                why: why.into(),
            });
        }
    };
    push(
        "server",
        a.name(),
        b.name(),
        if a.service == b.service {
            "another version of the same server: behaviour may differ"
        } else {
            "different server programs: extras (server.info, duration_ms), speed and details of the protocol differ; a client written against one may misread the other"
        },
    );
    push(
        "capabilities",
        a.capabilities.join(", "),
        b.capabilities.join(", "),
        "the servers announce different capabilities in `connected`",
    );
    if let (Some(ha), Some(hb)) = (&a.health, &b.health) {
        let only = |x: &serde_json::Map<String, serde_json::Value>,
                    y: &serde_json::Map<String, serde_json::Value>| {
            x.keys()
                .filter(|k| !y.contains_key(*k))
                .cloned()
                .collect::<Vec<_>>()
        };
        let (only_a, only_b) = (only(ha, hb), only(hb, ha));
        if !only_a.is_empty() || !only_b.is_empty() {
            push(
                "health.fields",
                format!("only here: {}", list(&only_a)),
                format!("only here: {}", list(&only_b)),
                "status tools and probes that read /health find different fields",
            );
        }
        if let (Some(ma), Some(mb)) = (ha.get("max_sessions"), hb.get("max_sessions")) {
            push(
                "health.max_sessions",
                ma.to_string(),
                mb.to_string(),
                "one side accepts fewer concurrent clients",
            );
        }
    }
    out
}

/// A difference in how long `echo` took, when one side is slow (over
/// `slow`) and at least ten times slower than the other.
pub fn speed_difference(a: Duration, b: Duration, slow: Duration) -> Option<Difference> {
    let (fast, slowest) = if a <= b { (a, b) } else { (b, a) };
    if slowest <= slow || slowest < fast * 10 {
        return None;
    }
    let shown = |d: Duration| format!("{} ms", d.as_millis());
    Some(Difference {
        field: "echo_round_trip".into(),
        a: shown(a),
        b: shown(b),
        why: "commands start much slower on one side: clients with short timeouts give up there"
            .into(),
    })
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "(none)".into()
    } else {
        names.join(", ")
    }
}

fn limit(l: Limit) -> String {
    let v = |x: Option<u64>| x.map_or("unlimited".to_string(), |n| n.to_string());
    format!("soft {} / hard {}", v(l.soft), v(l.hard))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn info() -> ServerInfo {
        crate::server::info::collect(&Config::default(), &["sh".to_string()])
    }

    #[test]
    fn identical_fingerprints_have_no_differences() {
        let a = info();
        assert_eq!(differences(&a, &a.clone()), vec![]);
    }

    #[test]
    fn pid_and_hostname_are_not_differences() {
        let a = info();
        let b = ServerInfo {
            pid: a.pid + 1,
            hostname: "elsewhere".into(),
            ..a.clone()
        };
        assert_eq!(differences(&a, &b), vec![]);
    }

    #[test]
    fn missing_binary_comes_first_then_shell_and_path() {
        let a = info();
        let mut b = a.clone();
        b.binaries.insert("sh".into(), None);
        b.shell = "/bin/bash".into();
        b.path = vec!["/opt/bin".into()];
        b.env_names.push("CCX_SHELL".into());
        let fields: Vec<String> = differences(&a, &b).into_iter().map(|d| d.field).collect();
        assert_eq!(fields, ["binaries.sh", "shell", "path"]);
    }
}
