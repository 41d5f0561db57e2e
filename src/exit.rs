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
    /// `exec`: local stdout was closed (its reader went away); the remote
    /// command was cancelled. 141 = 128 + SIGPIPE, as a shell reports it.
    StdoutClosed,
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
            Exit::StdoutClosed => 141,
        }
    }
}

impl Exit {
    /// The exit a report's `exit_code` stands for (the doctor's JSON carries
    /// the number): 128 + N is Interrupted(N); a code no other variant
    /// has is Remote.
    pub fn from_code(code: u8) -> Exit {
        const NAMED: [Exit; 9] = [
            Exit::Success,
            Exit::Failure,
            Exit::Usage,
            Exit::Internal,
            Exit::Unreachable,
            Exit::Rejected,
            Exit::ConnectionLost,
            Exit::TimedOut,
            Exit::StdoutClosed,
        ];
        match NAMED.into_iter().find(|e| e.code() == code) {
            Some(exit) => exit,
            None if code > 128 => Exit::Interrupted(code - 128),
            None => Exit::Remote(code),
        }
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        std::process::ExitCode::from(exit.code())
    }
}

#[cfg(test)]
mod tests {
    use super::Exit;

    #[test]
    fn every_code_reads_back_as_an_exit_with_that_code() {
        for code in 0..=255u8 {
            assert_eq!(Exit::from_code(code).code(), code);
        }
        assert_eq!(Exit::from_code(1), Exit::Failure);
        assert_eq!(Exit::from_code(130), Exit::Interrupted(2));
    }

    /// README.md's one exit-code table: (code column, meaning) rows.
    fn readme_rows() -> Vec<(String, String)> {
        let readme = include_str!("../README.md");
        let table = readme
            .split("\n## Exit codes\n")
            .nth(1)
            .expect("README.md has a section `## Exit codes`");
        table
            .lines()
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .skip(2)
            .map(|row| {
                let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
                (cells[0].to_string(), cells[1].to_string())
            })
            .collect()
    }

    /// One example of every variant (the match makes a new variant fail to
    /// compile here until it is given a README row).
    fn examples() -> Vec<(Exit, &'static str)> {
        let all = [
            Exit::Success,
            Exit::Failure,
            Exit::Usage,
            Exit::Internal,
            Exit::Remote(7),
            Exit::Interrupted(2),
            Exit::Interrupted(15),
            Exit::Unreachable,
            Exit::Rejected,
            Exit::ConnectionLost,
            Exit::TimedOut,
            Exit::StdoutClosed,
        ];
        all.into_iter()
            .map(|e| {
                let row = match e {
                    Exit::Success => "0",
                    Exit::Failure => "1",
                    Exit::Usage => "2",
                    Exit::Internal => "3",
                    Exit::Remote(_) => "other",
                    Exit::Interrupted(_) => "128+N",
                    Exit::Unreachable => "255",
                    Exit::Rejected => "254",
                    Exit::ConnectionLost => "253",
                    Exit::TimedOut => "124",
                    Exit::StdoutClosed => "141",
                };
                (e, row)
            })
            .collect()
    }

    #[test]
    fn every_exit_code_has_its_row_in_the_readme_and_every_row_a_code() {
        let rows = readme_rows();
        let listed: Vec<&str> = rows.iter().map(|(c, _)| c.as_str()).collect();
        for (exit, row) in examples() {
            assert!(
                listed.contains(&row),
                "{exit:?} has no README row {row:?}: {listed:?}"
            );
            match row.parse::<u8>() {
                Ok(code) => assert_eq!(exit.code(), code, "{exit:?}"),
                Err(_) if row == "128+N" => {
                    let Exit::Interrupted(n) = exit else {
                        unreachable!()
                    };
                    assert_eq!(exit.code(), 128 + n);
                }
                Err(_) => {}
            }
        }
        let produced: Vec<&str> = examples().into_iter().map(|(_, row)| row).collect();
        for (code, meaning) in &rows {
            assert!(
                produced.contains(&code.as_str()),
                "README lists exit code {code} ({meaning}) that no Exit produces"
            );
        }
    }

    #[test]
    fn interrupted_by_sigint_and_sigterm_are_130_and_143() {
        assert_eq!(Exit::Interrupted(2).code(), 130);
        assert_eq!(Exit::Interrupted(15).code(), 143);
    }
}
