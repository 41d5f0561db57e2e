//! Step `port`: the configured host:port can be bound. If not, says who
//! holds it (pid and command line, from /proc/net/tcp{,6} and the
//! `socket:[inode]` links under /proc/*/fd) and whether that is a healthy
//! ccx, in which case `--url` is the way to check it.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use super::{skipped_for_url, Outcome};
use crate::client::http;
use crate::doctor::Ctx;
use crate::process::procfs;
use crate::protocol::Health;

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
    let addr = config.authority();
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
    let probe = config.endpoint();
    let (url, health_url) = (probe.ws_url(), probe.health_url());
    match http::get_endpoint(&probe.health(), HEALTH_DEADLINE).await {
        Ok(r) if r.status == 200 && Health::parse(&r.body).is_ok_and(|h| h.is_ccx()) => {
            detail.push(format!("GET {health_url} → 200 {}", r.body.trim()));
            return Outcome::fail(format!(
                "{addr} is in use by a healthy ccx already serving there: {who}"
            ))
            .detail(detail)
            .fix(format!(
                "check that server instead: `ccx doctor --url {url}`; or stop it (`ccx stop` if `ccx serve` started it, else kill {}), or set CCX_PORT to another port",
                holders.first().map(|h| h.pid.to_string()).unwrap_or_else(|| "it".into())
            ));
        }
        Ok(r) => detail.push(format!("GET {health_url} → HTTP {}: not a ccx", r.status)),
        Err(e) => detail.push(format!("GET {health_url} failed: {e}: not a ccx")),
    }
    Outcome::fail(format!("{addr} is already in use by {who}"))
        .detail(detail)
        .fix("stop that program, or set CCX_PORT to a free port (CCX_PORT=0 picks one)")
}

/// A process holding a listening socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    pub cmdline: String,
}

/// Processes with a socket listening on `port` (any address).
pub fn holders(port: u16) -> Vec<Holder> {
    procfs::socket_holders(port)
        .into_iter()
        .map(|pid| Holder {
            pid,
            cmdline: cmdline(pid),
        })
        .collect()
}

fn cmdline(pid: u32) -> String {
    let text: String = procfs::cmdline(pid).join(" ").chars().take(200).collect();
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
