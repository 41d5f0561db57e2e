//! Exit codes of every ccx command, in one place (documented in README.md).

/// How a ccx command ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything worked (for `doctor`: every check passed, warnings allowed).
    Success,
    /// The command ran and found a failure (a check failed, the server could not start).
    Failure,
    /// Bad usage or configuration: an invalid flag or a malformed variable.
    Usage,
    /// ccx itself could not do its job (e.g. the doctor could not run its checks).
    Internal,
    /// `exec`: the remote command's own exit code (128+N when killed by signal N).
    Remote(u8),
    /// Stopped by signal N (SIGINT, SIGTERM) after cleaning up: 128+N, as a shell reports it.
    Interrupted(u8),
    /// `exec`: the server could not be reached (nothing listening, DNS, TCP or
    /// handshake timeout, not a ccx server).
    Unreachable,
    /// `exec`: the server answered but refused: HTTP 401/403 (token, Origin,
    /// Host), session limit, command not allowed.
    Rejected,
    /// `exec`: the connection was lost before the command's result arrived.
    ConnectionLost,
    /// `exec`: the command ran past its `--timeout` and the server ended it
    /// (124, as GNU `timeout` does).
    TimedOut,
}

impl Exit {
    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::Failure => 1,
            Exit::Usage => 2,
            Exit::Internal => 3,
            Exit::Remote(code) => code,
            Exit::Interrupted(signal) => 128u8.saturating_add(signal),
            Exit::Unreachable => 255,
            Exit::Rejected => 254,
            Exit::ConnectionLost => 253,
            Exit::TimedOut => 124,
        }
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        std::process::ExitCode::from(exit.code())
    }
}
