//! Step `port`: the configured host:port can be bound. If not, says who
//! holds it (pid and command line, from /proc/net/tcp{,6} and the
//! `socket:[inode]` links under /proc/*/fd) and whether that is a healthy
//! ccx, in which case `--url` is the way to check it.

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::time::Duration;

use super::{skipped_for_url, Outcome};
use crate::client::http;
use crate::config::authority;
use crate::doctor::Ctx;

/// Deadline of the `/health` probe of whoever holds the port.
const HEALTH_DEADLINE: Duration = Duration::from_millis(300);

pub async fn run(ctx: &mut Ctx<'_>) -> Outcome {
    if ctx.opts.url.is_some() {
        return skipped_for_url("the running server already holds its port");
    }
    let Some(config) = &ctx.config else {
        return Outcome::skip("no valid configuration to check against");
    };
    if ctx.opts.server_cmd.is_some() && config.port == 0 {
        return Outcome::fail(
            "port 0 with --server-cmd: the doctor cannot know where your server listens",
        )
        .fix("set CCX_PORT to the port your server listens on");
    }
    if config.port == 0 {
        return Outcome::pass("port 0: the server picks a free port, nothing to check");
    }
    let addr = authority(config.host, config.port);
    let error = match TcpListener::bind(SocketAddr::new(config.host, config.port)) {
        Ok(listener) => {
            drop(listener);
            return Outcome::pass(format!("{addr} is free"));
        }
        Err(e) => e,
    };
    if error.kind() != std::io::ErrorKind::AddrInUse {
        let fix = match error.raw_os_error() {
            Some(13) => "ports below 1024 need privileges: choose CCX_PORT above 1023",
            Some(99) => "this address is not on any interface of this host: use 127.0.0.1 or one of `ip addr`",
            _ => "choose another CCX_HOST/CCX_PORT",
        };
        return Outcome::fail(format!("cannot bind {addr}: {error}")).fix(fix);
    }

    let holders = holders(config.port);
    let who = match holders.first() {
        Some(h) => format!("pid {} ({})", h.pid, h.cmdline),
        None => {
            "a process this user cannot see (another user's, or another network namespace)".into()
        }
    };
    let mut detail: Vec<String> = holders
        .iter()
        .map(|h| format!("listening: pid {} — {}", h.pid, h.cmdline))
        .collect();
    let probe_host = match config.host {
        IpAddr::V4(a) if a.is_unspecified() => IpAddr::from([127, 0, 0, 1]),
        IpAddr::V6(a) if a.is_unspecified() => IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
        h => h,
    };
    let probe = authority(probe_host, config.port);
    let url = format!("ws://{probe}/ws/mcp");
    match http::get(&probe, "/health", HEALTH_DEADLINE).await {
        Ok(r) if r.status == 200 && is_ccx(&r.body) => {
            detail.push(format!("GET http://{probe}/health → 200 {}", r.body.trim()));
            return Outcome::fail(format!(
                "{addr} is in use by a healthy ccx already serving there: {who}"
            ))
            .detail(detail)
            .fix(format!(
                "check that server instead: `ccx doctor --url {url}`; or stop it (`ccx stop` if `ccx serve` started it, else kill {}), or set CCX_PORT to another port",
                holders.first().map(|h| h.pid.to_string()).unwrap_or_else(|| "it".into())
            ));
        }
        Ok(r) => detail.push(format!(
            "GET http://{probe}/health → HTTP {}: not a ccx",
            r.status
        )),
        Err(e) => detail.push(format!("GET http://{probe}/health failed: {e}: not a ccx")),
    }
    Outcome::fail(format!("{addr} is already in use by {who}"))
        .detail(detail)
        .fix("stop that program, or set CCX_PORT to a free port (CCX_PORT=0 picks one)")
}

fn is_ccx(body: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(body)
        .map(|v| v["service"] == "ccx")
        .unwrap_or(false)
}

/// A process holding a listening socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    pub cmdline: String,
}

/// Processes with a socket listening on `port` (any address).
pub fn holders(port: u16) -> Vec<Holder> {
    let inodes: Vec<u64> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|table| listening_inodes(&table, port))
        .collect();
    if inodes.is_empty() {
        return Vec::new();
    }
    let targets: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path())
                .map(|l| targets.iter().any(|t| l.as_os_str() == t.as_str()))
                .unwrap_or(false)
        });
        if holds {
            found.push(Holder {
                pid,
                cmdline: cmdline(pid),
            });
        }
    }
    found
}

/// Inodes of LISTEN sockets on `port` in one /proc/net/tcp table.
fn listening_inodes(table: &str, port: u16) -> Vec<u64> {
    let port_hex = format!("{port:04X}");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local = fields.get(1)?;
            let state = fields.get(3)?;
            let inode = fields.get(9)?.parse::<u64>().ok()?;
            let (_, p) = local.rsplit_once(':')?;
            (p == port_hex && *state == "0A" && inode != 0).then_some(inode)
        })
        .collect()
}

fn cmdline(pid: u32) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let text = String::from_utf8_lossy(&raw)
        .split('\0')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let text: String = text.chars().take(200).collect();
    if text.is_empty() {
        "command line not readable".into()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_inodes_match_port_and_listen_state_only() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:1F43 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0 100 0 0 10 0\n\
   1: 0100007F:1F43 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0 100 0 0 10 0\n\
   2: 0100007F:1F44 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4444 1 0 100 0 0 10 0\n";
        assert_eq!(listening_inodes(table, 8003), vec![4242]);
    }

    #[test]
    fn holders_finds_this_process_listening() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let found = holders(port);
        assert!(
            found.iter().any(|h| h.pid == std::process::id()),
            "{found:?}"
        );
    }
}
