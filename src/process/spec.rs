//! The execute → [`Spec`] rule, written once for the server (`execute`)
//! and `stress --direct`: which shell, the timeout (the request's, else
//! CCX_DEFAULT_TIMEOUT; it must be a positive, finite number of seconds),
//! the kill grace, the output cap, and the environment a command gets.
//!
//! The environment: the server's own, minus every `CCX_*` variable (the
//! token above all: a command, even a prompt-injected one, must not read
//! the credential that guards the server), except the names listed in
//! CCX_PASS_ENV; plus the request's `env`; plus the command's marker
//! (`CCX_COMMAND_ID`, see `tracking`).

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use thiserror::Error;

use crate::config::Config;
use crate::protocol::ExecuteParams;

/// What to run and under which limits.
#[derive(Debug, Clone)]
pub struct Spec {
    pub shell: PathBuf,
    pub command: String,
    pub cwd: Option<PathBuf>,
    /// Set on top of the inherited environment.
    pub env: BTreeMap<String, String>,
    /// Inherited variables the command must not see.
    pub hidden_env: Arc<[String]>,
    pub timeout: Option<Duration>,
    pub kill_grace: Duration,
    pub max_output: u64,
    /// Output in batches (many lines per message) instead of one per line.
    pub batched: bool,
}

/// An execute request that cannot become a [`Spec`].
#[derive(Debug, Clone, PartialEq, Error)]
pub enum SpecError {
    #[error("timeout must be a number of seconds (e.g. 10 or \"10\") greater than zero, got {0}")]
    BadTimeout(f64),
}

/// The process rules of a server, taken once from its `Config` and its
/// environment (CCX_SHELL, CCX_MAX_OUTPUT, CCX_KILL_GRACE,
/// CCX_DEFAULT_TIMEOUT, CCX_PASS_ENV).
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    pub shell: PathBuf,
    pub max_output: u64,
    pub kill_grace: Duration,
    pub default_timeout: Option<Duration>,
    /// Names of the server's environment variables hidden from commands.
    pub hidden_env: Arc<[String]>,
}

impl Rules {
    /// The rules of `config`, hiding the `CCX_*` variables of this
    /// process's environment that CCX_PASS_ENV does not name.
    pub fn from_config(config: &Config) -> Rules {
        let names = inherited_environment()
            .iter()
            .filter(|(k, _)| k.as_encoded_bytes().starts_with(b"CCX_"))
            .map(|(k, _)| k.to_string_lossy().into_owned());
        Rules {
            shell: config.shell.clone(),
            max_output: config.max_output,
            kill_grace: config.kill_grace,
            default_timeout: config.default_timeout,
            hidden_env: hidden_names(names, &config.pass_env).into(),
        }
    }
}

/// The variables among `names` that commands must not see: every `CCX_*`
/// name not listed in `pass`.
pub fn hidden_names(names: impl IntoIterator<Item = String>, pass: &[String]) -> Vec<String> {
    let mut hidden: Vec<String> = names
        .into_iter()
        .filter(|n| n.starts_with("CCX_") && !pass.iter().any(|p| p == n))
        .collect();
    hidden.sort();
    hidden.dedup();
    hidden
}

/// This process's environment, read once (the server never changes it):
/// the names it hides and every command's environment come from this one
/// copy. Copying it for every command (`std::env::vars_os`, two
/// allocations per variable, then a map) took 4 % of the server's CPU.
fn inherited_environment() -> &'static [(OsString, OsString)] {
    static INHERITED: OnceLock<Vec<(OsString, OsString)>> = OnceLock::new();
    INHERITED.get_or_init(|| std::env::vars_os().collect())
}

/// The timeout of a request: its own when given, else the default (a
/// `timeout` of 0 counts as not given, as cc_executor reads it).
pub fn execute_timeout(
    requested: Option<f64>,
    default: Option<Duration>,
) -> Result<Option<Duration>, SpecError> {
    match requested {
        None | Some(0.0) => Ok(default),
        Some(t) if t.is_finite() && t > 0.0 && t <= 1e9 => Ok(Some(Duration::from_secs_f64(t))),
        Some(t) => Err(SpecError::BadTimeout(t)),
    }
}

impl Spec {
    /// The command's whole environment: this process's own (as it was at
    /// the first command: the server never changes it), minus the hidden
    /// names, plus the request's variables, plus the marker; each name once.
    /// Borrowed, and in a plain list (no map to sort: exec takes any order):
    /// no variable is copied until exec's strings are built.
    pub fn environment<'a>(&'a self, marker: (&'a str, &'a str)) -> Vec<(&'a OsStr, &'a OsStr)> {
        let replaced = |name: &OsStr| {
            name == marker.0
                || self.hidden_env.iter().any(|h| name == h.as_str())
                || name.to_str().is_some_and(|n| self.env.contains_key(n))
        };
        let inherited = inherited_environment();
        let mut env = Vec::with_capacity(inherited.len() + self.env.len() + 1);
        env.extend(
            inherited
                .iter()
                .filter(|(k, _)| !replaced(k))
                .map(|(k, v)| (k.as_os_str(), v.as_os_str())),
        );
        env.extend(self.env.iter().map(|(k, v)| (OsStr::new(k), OsStr::new(v))));
        env.push((OsStr::new(marker.0), OsStr::new(marker.1)));
        env
    }

    /// The process an `execute` request asks for, under `rules`.
    pub fn from_execute(params: &ExecuteParams, rules: &Rules) -> Result<Spec, SpecError> {
        Ok(Spec {
            shell: rules.shell.clone(),
            command: params.command.clone(),
            cwd: params.cwd.clone().map(Into::into),
            env: params.env.clone().unwrap_or_default(),
            hidden_env: rules.hidden_env.clone(),
            timeout: execute_timeout(params.timeout, rules.default_timeout)?,
            kill_grace: rules.kill_grace,
            max_output: rules.max_output,
            batched: params.framing == Some(crate::protocol::Framing::Batched),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_must_be_positive_and_finite() {
        let default = Some(Duration::from_secs(7));
        assert_eq!(execute_timeout(None, default), Ok(default));
        assert_eq!(
            execute_timeout(Some(0.5), default),
            Ok(Some(Duration::from_millis(500)))
        );
        assert_eq!(
            execute_timeout(Some(0.0), default),
            Ok(default),
            "0: not given"
        );
        for bad in [-1.0, f64::NAN, f64::INFINITY, 2e9] {
            assert!(execute_timeout(Some(bad), default).is_err(), "{bad}");
        }
    }

    #[test]
    fn ccx_variables_are_hidden_unless_passed() {
        let names = ["CCX_TOKEN", "CCX_PORT", "PATH", "HOME", "CCX_PROJECT"].map(String::from);
        let hidden = hidden_names(names, &["CCX_PROJECT".to_string()]);
        assert_eq!(hidden, ["CCX_PORT", "CCX_TOKEN"]);
    }

    #[test]
    fn a_command_sees_each_variable_once_the_request_winning() {
        let inherited = inherited_environment();
        let [(first, _), (second, _), ..] = inherited else {
            panic!("the test process has fewer than two variables");
        };
        let (first, second) = (first.to_str().unwrap(), second.to_str().unwrap());
        let spec = Spec {
            shell: "/bin/sh".into(),
            command: "true".into(),
            cwd: None,
            env: [(first.to_string(), "from the request".to_string())].into(),
            hidden_env: vec![second.to_string()].into(),
            timeout: None,
            kill_grace: Duration::from_secs(1),
            max_output: 1,
            batched: false,
        };
        let env = spec.environment(("CCX_MARK", "m1"));
        let value = |name: &str| -> Vec<&OsStr> {
            env.iter()
                .filter(|(k, _)| *k == name)
                .map(|(_, v)| *v)
                .collect()
        };
        assert_eq!(value(first), [OsStr::new("from the request")]);
        assert!(value(second).is_empty(), "a hidden variable was passed");
        assert_eq!(value("CCX_MARK"), [OsStr::new("m1")]);
        assert_eq!(
            env.len(),
            inherited.len(),
            "one replaced, one hidden, one added"
        );
    }
}
