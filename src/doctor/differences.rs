//! Differences between two servers that could explain "works there, fails
//! here": the [`Difference`] type, what each server says it is
//! ([`ServerIdentity`]: `/health`, `connected`), how fast it runs a
//! command, and, where both are ccx, their settings ([`ServerInfo`]). What
//! a command sees on each side is compared in
//! `crate::doctor::environment_differences`. Pure data in, data out: the
//! doctor fetches all of it and renders the result.

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
pub(super) fn is_noise(name: &str) -> bool {
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

/// A ccx setting compared as one string: its field name, how to read it
/// from `server.info`, and what a difference could break.
type Setting = (&'static str, fn(&ServerInfo) -> String, &'static str);

/// ccx's own settings, known only from `server.info` (both sides ccx).
const SETTINGS: &[Setting] = &[
    (
        "ccx_version",
        |i| i.ccx_version.clone(),
        "different server versions may behave differently",
    ),
    (
        "limits.token_required",
        |i| i.limits.token_required.to_string(),
        "one side needs CCX_TOKEN: clients without it get 401",
    ),
    (
        "limits.allowed_commands",
        |i| format!("{:?}", i.limits.allowed_commands),
        "one side refuses some commands (-32001, command not allowed)",
    ),
    (
        "limits.max_output",
        |i| i.limits.max_output.to_string(),
        "long outputs are truncated sooner on one side",
    ),
    (
        "limits.ws_max_size",
        |i| i.limits.ws_max_size.to_string(),
        "large requests (long prompts) are refused with 1009 on one side",
    ),
    (
        "limits.default_timeout_ms",
        |i| format!("{:?}", i.limits.default_timeout_ms),
        "commands without a timeout are cut off on one side",
    ),
    (
        "limits.kill_grace_ms",
        |i| i.limits.kill_grace_ms.to_string(),
        "cancelled commands get a different grace period",
    ),
    (
        "limits.max_sessions",
        |i| i.limits.max_sessions.to_string(),
        "one side accepts fewer concurrent clients (-32003, session limit)",
    ),
    (
        "limits.ws_ping_interval_ms",
        |i| i.limits.ws_ping_interval_ms.to_string(),
        "keep-alive differs: idle or slow clients are dropped at different times",
    ),
    (
        "limits.ws_ping_timeout_ms",
        |i| i.limits.ws_ping_timeout_ms.to_string(),
        "keep-alive differs: idle or slow clients are dropped at different times",
    ),
    (
        "rlimits.processes",
        |i| limit(i.rlimits.processes),
        "fewer processes allowed: forks fail under load",
    ),
];

/// The differences of two ccx servers' own settings.
pub(super) fn settings_differences(a: &ServerInfo, b: &ServerInfo) -> Vec<Difference> {
    SETTINGS
        .iter()
        .filter(|(_, value, _)| value(a) != value(b))
        .map(|(field, value, why)| Difference {
            field: (*field).into(),
            a: value(a),
            b: value(b),
            why: (*why).into(),
        })
        .collect()
}

/// Differences in what the two servers say they are: program and version,
/// capabilities, the fields of `/health` and their limits.
pub fn identity_differences(a: &ServerIdentity, b: &ServerIdentity) -> Vec<Difference> {
    let mut out = Vec::new();
    let mut push = |field: &str, va: String, vb: String, why: &str| {
        push_if_different(&mut out, field, va, vb, why)
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

pub(super) fn list(names: &[String]) -> String {
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

/// Adds a difference for `field` when the two sides' values differ.
pub(crate) fn push_if_different(
    out: &mut Vec<Difference>,
    field: &str,
    a: String,
    b: String,
    why: &str,
) {
    if a != b {
        out.push(Difference {
            field: field.into(),
            a,
            b,
            why: why.into(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn ccx_settings_differ_only_where_they_differ() {
        let a = crate::server::info::collect(&Config::default(), &[]);
        let mut b = a.clone();
        assert_eq!(settings_differences(&a, &b), vec![]);
        b.limits.token_required = true;
        b.pid += 1;
        let d = settings_differences(&a, &b);
        assert_eq!(d.len(), 1);
        assert_eq!(
            (d[0].field.as_str(), d[0].a.as_str(), d[0].b.as_str()),
            ("limits.token_required", "false", "true")
        );
    }
}
