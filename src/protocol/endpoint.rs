//! Where a server is reached: one type that parses a server URL
//! (`ws://host:port/ws/mcp`, `wss://`, `http://host:port/health`, IPv6 in
//! brackets) or is built from an address and a port, and gives back the
//! WebSocket URL, the health URL, the authority (`host:port`), the host and
//! the port. Nothing else in ccx cuts a URL apart or glues one together.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The WebSocket path of the JSON-RPC protocol.
pub const WS_PATH: &str = "/ws/mcp";
/// The path of the health document ([`super::Health`]).
pub const HEALTH_PATH: &str = "/health";

/// The URL schemes a server is reached with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Ws,
    Wss,
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Ws => "ws",
            Scheme::Wss => "wss",
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    /// Whether the connection is wrapped in TLS.
    pub fn secure(self) -> bool {
        matches!(self, Scheme::Wss | Scheme::Https)
    }

    fn default_port(self) -> u16 {
        if self.secure() {
            443
        } else {
            80
        }
    }
}

/// A URL ccx cannot use, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad server URL `{url}`: {reason}")]
pub struct EndpointError {
    pub url: String,
    pub reason: String,
}

/// A server's address and one path on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    scheme: Scheme,
    /// Without brackets for IPv6.
    host: String,
    port: u16,
    /// Starts with `/`; keeps a query string (`?token=…`).
    path: String,
}

impl Endpoint {
    /// The WebSocket endpoint of a server listening on `host:port`.
    pub fn new(host: IpAddr, port: u16) -> Endpoint {
        Endpoint {
            scheme: Scheme::Ws,
            host: host.to_string(),
            port,
            path: WS_PATH.to_string(),
        }
    }

    /// Where a client reaches a server bound to `host:port`: an unspecified
    /// bind address (0.0.0.0, ::) is reached on loopback of its family.
    pub fn reach(host: IpAddr, port: u16) -> Endpoint {
        let host = match host {
            IpAddr::V4(a) if a.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(a) if a.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            h => h,
        };
        Endpoint::new(host, port)
    }

    /// Parses `SCHEME://HOST[:PORT][/PATH]` with scheme ws, wss, http or
    /// https; a missing port is the scheme's default, a missing path `/`.
    pub fn parse(url: &str) -> Result<Endpoint, EndpointError> {
        let bad = |reason: &str| EndpointError {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("no scheme (expected ws://, wss://, http:// or https://)"))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "ws" => Scheme::Ws,
            "wss" => Scheme::Wss,
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            _ => return Err(bad("the scheme is not ws, wss, http or https")),
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        if authority.contains('@') {
            return Err(bad(
                "credentials in the URL are not supported (use CCX_TOKEN)",
            ));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("an IPv6 address without its closing `]`"))?;
            host.parse::<Ipv6Addr>()
                .map_err(|_| bad("the address in brackets is not an IPv6 address"))?;
            let port = match after {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| bad("unexpected text after `]`"))?,
                ),
            };
            (host, port)
        } else {
            if authority.matches(':').count() > 1 {
                return Err(bad(
                    "an IPv6 address must be written in brackets, e.g. [::1]",
                ));
            }
            match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            None => scheme.default_port(),
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|_| p.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| bad("the port is not a number from 0 to 65535"))?,
        };
        let path = match path {
            "" => "/".to_string(),
            p if p.starts_with('/') => p.to_string(),
            p => format!("/{p}"),
        };
        Ok(Endpoint {
            scheme,
            host: host.to_string(),
            port,
            path,
        })
    }

    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The host, without brackets for IPv6 (`::1`).
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The path (and query) this endpoint names, e.g. `/ws/mcp`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// `HOST:PORT`, IPv6 in brackets: what a TCP connect and a `Host`
    /// header take.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The URL itself.
    pub fn url(&self) -> String {
        format!(
            "{}://{}{}",
            self.scheme.as_str(),
            self.authority(),
            self.path
        )
    }

    /// The same server's WebSocket URL (`ws://HOST:PORT/ws/mcp`; `wss` for
    /// a TLS endpoint).
    pub fn ws_url(&self) -> String {
        let scheme = if self.scheme.secure() { "wss" } else { "ws" };
        format!("{scheme}://{}{WS_PATH}", self.authority())
    }

    /// The same server's health URL (`http://HOST:PORT/health`; `https` for
    /// a TLS endpoint).
    pub fn health_url(&self) -> String {
        let scheme = if self.scheme.secure() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}{HEALTH_PATH}", self.authority())
    }

    /// The same server's health document ([`HEALTH_PATH`]), over plain HTTP.
    pub fn health(&self) -> Endpoint {
        let scheme = if self.scheme.secure() {
            Scheme::Https
        } else {
            Scheme::Http
        };
        Endpoint {
            scheme,
            ..self.with_path(HEALTH_PATH)
        }
    }

    /// The same server at another path.
    pub fn with_path(&self, path: &str) -> Endpoint {
        Endpoint {
            path: path.to_string(),
            ..self.clone()
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url())
    }
}

impl std::str::FromStr for Endpoint {
    type Err = EndpointError;

    fn from_str(s: &str) -> Result<Endpoint, EndpointError> {
        Endpoint::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_from_an_address() {
        let e = Endpoint::new(IpAddr::from([127, 0, 0, 1]), 8003);
        assert_eq!(e.url(), "ws://127.0.0.1:8003/ws/mcp");
        assert_eq!(e.ws_url(), "ws://127.0.0.1:8003/ws/mcp");
        assert_eq!(e.health_url(), "http://127.0.0.1:8003/health");
        assert_eq!(e.authority(), "127.0.0.1:8003");
        let v6 = Endpoint::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 9);
        assert_eq!(v6.authority(), "[::1]:9");
        assert_eq!(v6.host(), "::1");
        assert_eq!(v6.health_url(), "http://[::1]:9/health");
    }

    #[test]
    fn unspecified_binds_are_reached_on_loopback() {
        let v4 = Endpoint::reach(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 1);
        assert_eq!(v4.ws_url(), "ws://127.0.0.1:1/ws/mcp");
        let v6 = Endpoint::reach(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 2);
        assert_eq!(v6.ws_url(), "ws://[::1]:2/ws/mcp");
        let other = Endpoint::reach(IpAddr::from([10, 0, 0, 1]), 3);
        assert_eq!(other.authority(), "10.0.0.1:3");
    }

    #[test]
    fn parses_ws_wss_http_and_ipv6() {
        let e = Endpoint::parse("ws://[::1]:8003/ws/mcp?token=x").unwrap();
        assert_eq!(
            (e.host(), e.port(), e.path()),
            ("::1", 8003, "/ws/mcp?token=x")
        );
        assert_eq!(e.authority(), "[::1]:8003");
        assert_eq!(e.url(), "ws://[::1]:8003/ws/mcp?token=x");
        assert_eq!(e.health_url(), "http://[::1]:8003/health");

        let h = Endpoint::parse("http://127.0.0.1:41234/health").unwrap();
        assert_eq!(h.scheme(), Scheme::Http);
        assert_eq!(h.ws_url(), "ws://127.0.0.1:41234/ws/mcp");
        assert_eq!(h.path(), "/health");
        let w = Endpoint::parse("ws://[::1]:9/ws/mcp?token=x")
            .unwrap()
            .health();
        assert_eq!(w.url(), "http://[::1]:9/health");
        assert_eq!(w.url(), w.health_url());

        let s = Endpoint::parse("WSS://box.example").unwrap();
        assert_eq!((s.host(), s.port(), s.path()), ("box.example", 443, "/"));
        assert_eq!(s.health_url(), "https://box.example:443/health");

        let q = Endpoint::parse("ws://box:80?token=x").unwrap();
        assert_eq!((q.authority().as_str(), q.path()), ("box:80", "/?token=x"));
        assert_eq!(
            Endpoint::parse("http://h:1")
                .unwrap()
                .with_path("/mcp")
                .url(),
            "http://h:1/mcp"
        );
    }

    #[test]
    fn bad_urls_name_the_url_and_the_reason() {
        for (url, reason) in [
            ("127.0.0.1:8003", "no scheme"),
            ("ftp://h:1/", "not ws, wss"),
            ("ws:///ws/mcp", "no host"),
            ("ws://:8003/ws/mcp", "no host"),
            ("ws://h:99999/", "port"),
            ("ws://h:x/", "port"),
            ("ws://h:+80/", "port"),
            ("ws://h:/", "port"),
            ("ws://::1:8003/", "brackets"),
            ("ws://[::1/", "closing"),
            ("ws://[nope]:1/", "not an IPv6"),
            ("ws://[::1]x/", "after `]`"),
            ("ws://u:p@h:1/", "credentials"),
        ] {
            let e = Endpoint::parse(url).unwrap_err();
            let text = e.to_string();
            assert!(text.contains(url), "{text}");
            assert!(text.contains(reason), "{url}: {text}");
        }
    }
}
