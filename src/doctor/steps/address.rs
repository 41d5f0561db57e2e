//! Where a user's server says it listens: the address its command line's
//! flags name (`--port`/`-p`, `--host`, `--bind`/`-b` of uvicorn, gunicorn,
//! hypercorn and most servers), and the one it prints once it listens
//! (uvicorn's "Uvicorn running on", gunicorn's "Listening at:", and the
//! generic "listening on HOST:PORT"). The `spawn` step probes there too, so
//! a server that is healthy on another port than CCX_PORT is found, not
//! timed out.

use std::sync::OnceLock;

use regex::Regex;

use crate::doctor::python::address_from_flags;

/// An address a server announced, and who announced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announced {
    pub host: String,
    pub port: u16,
    /// "its --port flag", or the line it printed.
    pub source: String,
}

impl Announced {
    /// `HOST:PORT` to connect to: a wildcard bind is reached on loopback.
    pub fn authority(&self) -> String {
        let host = match self.host.as_str() {
            "" | "0.0.0.0" | "*" | "localhost" => "127.0.0.1",
            "::" => "::1",
            h => h,
        };
        if host.contains(':') {
            format!("[{host}]:{}", self.port)
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// The address the server command's flags name (the last program on the
/// line that names a port).
pub fn from_flags(server_cmd: &str, default_host: &str) -> Option<Announced> {
    let analysis = crate::doctor::shell::analyze(server_cmd).ok()?;
    analysis.programs.iter().rev().find_map(|p| {
        let (host, port) = address_from_flags(&p.args);
        Some(Announced {
            host: host.unwrap_or_else(|| default_host.to_string()),
            port: port?,
            source: format!("the --port flag of `{}`", p.name),
        })
    })
}

/// The last address the server printed that it runs or listens on.
pub fn from_output(text: &str) -> Option<Announced> {
    static PATTERN: OnceLock<Option<Regex>> = OnceLock::new();
    let pattern = PATTERN
        .get_or_init(|| {
            Regex::new(
                r"(?i)(?:running on|listening (?:at|on)|serving (?:at|on)|started (?:server )?(?:at|on)|bound to|available at)[\s:]*(?:(?:https?|wss?)://)?(\[[0-9a-fA-F:]+\]|[0-9A-Za-z_.-]*|\*):(\d{1,5})\b",
            )
            .ok()
        })
        .as_ref()?;
    text.lines().rev().find_map(|line| {
        let caps = pattern.captures(line)?;
        let port: u16 = caps.get(2)?.as_str().parse().ok()?;
        let host = caps.get(1)?.as_str().trim_matches(['[', ']']).to_string();
        (port != 0).then(|| Announced {
            host,
            port,
            source: format!("it printed `{}`", line.trim()),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_announce_their_address_in_their_own_words() {
        for (line, authority) in [
            (
                "INFO:     Uvicorn running on http://127.0.0.1:8013 (Press CTRL+C to quit)",
                "127.0.0.1:8013",
            ),
            (
                "[2026-01-01 10:00:00 +0000] [42] [INFO] Listening at: http://0.0.0.0:8100 (42)",
                "127.0.0.1:8100",
            ),
            ("server listening on [::1]:9000", "[::1]:9000"),
            (" * Running on http://localhost:5000", "127.0.0.1:5000"),
            (
                "Running on http://[::]:8080 (CTRL + C to quit)",
                "[::1]:8080",
            ),
        ] {
            let found = from_output(line).unwrap_or_else(|| panic!("{line}"));
            assert_eq!(found.authority(), authority, "{line}");
        }
        assert!(from_output("connected to redis at 127.0.0.1:6379").is_none());
    }

    #[test]
    fn flags_name_the_address() {
        let a = from_flags(
            "cd src && python -m uvicorn app:app --port 8013",
            "127.0.0.1",
        )
        .unwrap();
        assert_eq!(a.authority(), "127.0.0.1:8013");
        let a = from_flags("gunicorn -b 0.0.0.0:8100 web:app", "127.0.0.1").unwrap();
        assert_eq!(a.authority(), "127.0.0.1:8100");
        assert!(from_flags("python server.py", "127.0.0.1").is_none());
    }
}
