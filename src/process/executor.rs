//! The one way an `execute` request becomes a running command, whoever
//! asks (the WebSocket session, the MCP `execute` tool, `stress --direct`):
//! the server's process rules, taken once from its `Config`; admission
//! (the request's timeout, its strings, the allowlist); then the spawn.
//!
//! The readiness probe's shell check also spawns through here, under the
//! same rules with its own short limits, but is not admitted: it is the
//! server's own command, not a client's.

use std::time::Duration;

use thiserror::Error;
use tokio::sync::mpsc;

use super::admission::{check_strings, AdmissionError, Allowlist};
use super::{spawn, ProcessEvent, Rules, Running, SpawnError, Spec};
use crate::config::Config;
use crate::protocol::ExecuteParams;

/// Why a request did not start a command.
#[derive(Debug, Error)]
pub enum StartError {
    #[error(transparent)]
    Refused(#[from] AdmissionError),
    #[error(transparent)]
    Spawn(#[from] SpawnError),
}

/// The process rules and allowlist of one server (or of `ccx mcp`, or of
/// `stress --direct`), built once.
#[derive(Debug, Clone, PartialEq)]
pub struct Executor {
    rules: Rules,
    allowlist: Option<Allowlist>,
}

impl Executor {
    /// The executor of `config`: its rules, and its allowlist if it has one.
    pub fn from_config(config: &Config) -> Executor {
        Executor {
            rules: Rules::from_config(config),
            allowlist: Allowlist::of(config),
        }
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// The process `params` asks for, if it may run: its timeout, then its
    /// strings, then the allowlist, in that order (a request wrong in two
    /// ways hears of the first).
    pub fn admit(&self, params: &ExecuteParams) -> Result<Spec, AdmissionError> {
        let spec = Spec::from_execute(params, &self.rules)?;
        check_strings(params)?;
        if let Some(allowlist) = &self.allowlist {
            allowlist.check(params)?;
        }
        Ok(spec)
    }

    /// Admits `params`, then starts it.
    pub fn start(
        &self,
        params: &ExecuteParams,
    ) -> Result<(Running, mpsc::Receiver<ProcessEvent>), StartError> {
        let spec = self.admit(params)?;
        Ok(self.spawn(spec)?)
    }

    /// Starts a process [`admit`](Self::admit) returned.
    pub fn spawn(&self, spec: Spec) -> Result<(Running, mpsc::Receiver<ProcessEvent>), SpawnError> {
        spawn(spec)
    }

    /// Starts the server's own `command` (not a client's: no admission)
    /// under these rules, with `limit` as its timeout, kill grace and
    /// output cap in place of the server's.
    pub fn start_own(
        &self,
        command: &str,
        limit: OwnLimits,
    ) -> Result<(Running, mpsc::Receiver<ProcessEvent>), StartError> {
        let rules = Rules {
            kill_grace: limit.kill_grace,
            max_output: limit.max_output,
            ..self.rules.clone()
        };
        let params = ExecuteParams {
            timeout: Some(limit.timeout.as_secs_f64()),
            ..ExecuteParams::command(command)
        };
        let spec = Spec::from_execute(&params, &rules).map_err(AdmissionError::from)?;
        Ok(self.spawn(spec)?)
    }
}

/// The limits of a command the server runs for itself.
#[derive(Debug, Clone, Copy)]
pub struct OwnLimits {
    pub timeout: Duration,
    pub kill_grace: Duration,
    pub max_output: u64,
}
