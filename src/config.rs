//! Configuration: command-line overrides + environment → one validated
//! [`Config`]. Flags override environment, environment overrides defaults.
//!
//! Every malformed value is a [`ConfigError`] naming the variable, the value
//! and what was expected. This module never touches the network or starts a
//! process; it reads the environment only through the [`Env`] snapshot it is
//! given, so tests can build any configuration directly.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

/// A snapshot of the environment variables (names and values as UTF-8).
pub type Env = BTreeMap<String, String>;

/// Reads the process environment once. Variables whose name or value is not
/// UTF-8 are kept with a lossy value, so a validator can still name them.
pub fn env_snapshot() -> Env {
    std::env::vars_os()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        })
        .collect()
}

/// Every variable ccx reads, with what it means (used for typo hints and docs).
pub const KNOWN_VARS: &[(&str, &str)] = &[
    ("CCX_HOST", "address the server listens on"),
    ("CCX_PORT", "port the server listens on"),
    ("CCX_TOKEN", "bearer token required for the WebSocket"),
    ("CCX_SHELL", "shell that runs commands"),
    (
        "CCX_ALLOWED_COMMANDS",
        "comma list of programs a command may start with",
    ),
    ("CCX_ALLOWED_ORIGINS", "browser origins allowed to connect"),
    ("CCX_MAX_SESSIONS", "concurrent WebSocket sessions"),
    ("CCX_MAX_OUTPUT", "output bytes per process"),
    ("CCX_DEFAULT_TIMEOUT", "command timeout"),
    ("CCX_KILL_GRACE", "SIGTERM to SIGKILL grace period"),
    ("CCX_STATE_DIR", "pid file and log of the background server"),
    (
        "CCX_COMMAND_ID",
        "set by a ccx server on each command it runs (marks its processes)",
    ),
    (
        "CCX_PASS_ENV",
        "comma list of CCX_* variables commands may see (all are hidden by default)",
    ),
    ("WS_PING_INTERVAL", "WebSocket keep-alive ping interval"),
    ("WS_PING_TIMEOUT", "WebSocket keep-alive timeout"),
    ("WS_MAX_SIZE", "largest WebSocket message accepted"),
];

/// What went wrong building a [`Config`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    #[error("{var}={value:?} is not valid: expected {expected}")]
    Invalid {
        var: String,
        value: String,
        expected: String,
    },
    #[error(
        "refusing to listen on {host} without a token: anyone who can reach this address could run \
         shell commands. Set CCX_TOKEN, bind to 127.0.0.1, or pass --insecure-no-auth if the network \
         is trusted"
    )]
    InsecureBind { host: IpAddr },
    #[error("no state directory: set CCX_STATE_DIR, XDG_STATE_HOME or HOME")]
    NoStateDir,
}

impl ConfigError {
    /// The variable (or flag) at fault, when there is one.
    pub fn variable(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { var, .. } => Some(var),
            ConfigError::InsecureBind { .. } => Some("CCX_HOST"),
            ConfigError::NoStateDir => Some("CCX_STATE_DIR"),
        }
    }
}

/// Values given on the command line; each, when set, wins over the environment.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub state_dir: Option<PathBuf>,
    pub insecure_no_auth: bool,
}

/// The validated configuration of a ccx server and of the clients that talk to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub host: IpAddr,
    pub port: u16,
    pub token: Option<String>,
    pub shell: PathBuf,
    /// `None` allows every program.
    pub allowed_commands: Option<Vec<String>>,
    pub allowed_origins: Vec<String>,
    pub max_sessions: usize,
    pub max_output: u64,
    pub default_timeout: Option<Duration>,
    pub kill_grace: Duration,
    pub state_dir: PathBuf,
    pub ws_ping_interval: Duration,
    pub ws_ping_timeout: Duration,
    pub ws_max_size: usize,
    /// Serve a non-loopback address without a token (explicit opt-in).
    pub insecure_no_auth: bool,
    /// `CCX_*` variables passed through to commands (all others are hidden).
    pub pass_env: Vec<String>,
}

pub const DEFAULT_PORT: u16 = 8003;
pub const MIB: u64 = 1024 * 1024;

impl Default for Config {
    /// The defaults of the design's table (state dir under the temp dir).
    fn default() -> Self {
        Config {
            host: IpAddr::from([127, 0, 0, 1]),
            port: DEFAULT_PORT,
            token: None,
            shell: PathBuf::from("/bin/sh"),
            allowed_commands: None,
            allowed_origins: Vec::new(),
            max_sessions: 256,
            max_output: 64 * MIB,
            default_timeout: None,
            kill_grace: Duration::from_secs(5),
            state_dir: std::env::temp_dir().join("ccx"),
            ws_ping_interval: Duration::from_secs(20),
            ws_ping_timeout: Duration::from_secs(30),
            ws_max_size: 10 * MIB as usize,
            insecure_no_auth: false,
            pass_env: Vec::new(),
        }
    }
}

impl Config {
    /// Builds the configuration from flags and an environment snapshot.
    pub fn load(overrides: &Overrides, env: &Env) -> Result<Config, ConfigError> {
        let d = Config::default();
        let get = |name: &str| env.get(name).map(String::as_str);

        let host = match &overrides.host {
            Some(h) => parse_host(h).map_err(|e| invalid("--host", h, &e))?,
            None => parsed(env, "CCX_HOST", parse_host)?.unwrap_or(d.host),
        };
        let port = match overrides.port {
            Some(p) => p,
            None => parsed(env, "CCX_PORT", parse_port)?.unwrap_or(d.port),
        };
        let token = match get("CCX_TOKEN") {
            Some("") | None => None,
            Some(t) if t.chars().any(|c| c.is_whitespace() || c.is_control()) => {
                return Err(invalid(
                    "CCX_TOKEN",
                    "<hidden>",
                    "a token without spaces or control characters",
                ))
            }
            Some(t) => Some(t.to_string()),
        };
        let shell = match get("CCX_SHELL") {
            Some("") => return Err(invalid("CCX_SHELL", "", "a path to a shell, e.g. /bin/sh")),
            Some(s) => PathBuf::from(s),
            None => d.shell,
        };
        let allowed_commands = parsed(env, "CCX_ALLOWED_COMMANDS", parse_list)?;
        let allowed_origins = parsed(env, "CCX_ALLOWED_ORIGINS", parse_list)?.unwrap_or_default();
        let max_sessions = parsed(env, "CCX_MAX_SESSIONS", parse_count)?.unwrap_or(d.max_sessions);
        let max_output = parsed(env, "CCX_MAX_OUTPUT", parse_size)?.unwrap_or(d.max_output);
        let default_timeout = parsed(env, "CCX_DEFAULT_TIMEOUT", parse_optional_duration)?
            .unwrap_or(d.default_timeout);
        let kill_grace = parsed(env, "CCX_KILL_GRACE", parse_duration)?.unwrap_or(d.kill_grace);
        let ws_ping_interval =
            parsed(env, "WS_PING_INTERVAL", parse_positive_duration)?.unwrap_or(d.ws_ping_interval);
        let ws_ping_timeout =
            parsed(env, "WS_PING_TIMEOUT", parse_positive_duration)?.unwrap_or(d.ws_ping_timeout);
        let ws_max_size = match get("WS_MAX_SIZE") {
            Some(raw) => {
                let n = parse_size(raw).map_err(|e| invalid("WS_MAX_SIZE", raw, &e))?;
                if n < 1024 {
                    return Err(invalid("WS_MAX_SIZE", raw, "at least 1KiB"));
                }
                usize::try_from(n).map_err(|_| invalid("WS_MAX_SIZE", raw, "a smaller size"))?
            }
            None => d.ws_max_size,
        };
        let pass_env = parsed(env, "CCX_PASS_ENV", parse_list)?.unwrap_or_default();
        let state_dir = match &overrides.state_dir {
            Some(p) => p.clone(),
            None => state_dir_from(env)?,
        };

        let config = Config {
            host,
            port,
            token,
            shell,
            allowed_commands,
            allowed_origins,
            max_sessions,
            max_output,
            default_timeout,
            kill_grace,
            state_dir,
            ws_ping_interval,
            ws_ping_timeout,
            ws_max_size,
            insecure_no_auth: overrides.insecure_no_auth,
            pass_env,
        };
        config.check_bind_is_safe()?;
        Ok(config)
    }

    /// A non-loopback bind without a token is refused unless explicitly allowed.
    pub fn check_bind_is_safe(&self) -> Result<(), ConfigError> {
        if !self.host.is_loopback() && self.token.is_none() && !self.insecure_no_auth {
            return Err(ConfigError::InsecureBind { host: self.host });
        }
        Ok(())
    }

    /// `HOST:PORT` as a URL authority (IPv6 in brackets).
    pub fn authority(&self) -> String {
        authority(self.host, self.port)
    }

    /// The WebSocket URL clients use to reach this configuration's server.
    /// An unspecified bind address (0.0.0.0, ::) is reached on loopback.
    pub fn ws_url(&self) -> String {
        let host = match self.host {
            IpAddr::V4(a) if a.is_unspecified() => IpAddr::from([127, 0, 0, 1]),
            IpAddr::V6(a) if a.is_unspecified() => IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
            h => h,
        };
        format!("ws://{}/ws/mcp", authority(host, self.port))
    }
}

/// `HOST:PORT` with IPv6 addresses in brackets.
pub fn authority(host: IpAddr, port: u16) -> String {
    match host {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

/// `CCX_*` and `WS_*` variables ccx does not know, each with the nearest
/// known name when one is close enough to be a typo.
pub fn unknown_vars(env: &Env) -> Vec<(String, Option<&'static str>)> {
    env.keys()
        .filter(|k| k.starts_with("CCX_") || k.starts_with("WS_"))
        .filter(|k| !KNOWN_VARS.iter().any(|(known, _)| known == k))
        .map(|k| {
            let nearest = KNOWN_VARS
                .iter()
                .map(|(known, _)| (strsim::damerau_levenshtein(k, known), *known))
                .filter(|(dist, _)| *dist <= 3)
                .min();
            (k.clone(), nearest.map(|(_, known)| known))
        })
        .collect()
}

/// Parses variable `name` when it is set.
fn parsed<T>(
    env: &Env,
    name: &str,
    parse: fn(&str) -> Result<T, String>,
) -> Result<Option<T>, ConfigError> {
    env.get(name)
        .map(|raw| parse(raw).map_err(|expected| invalid(name, raw, &expected)))
        .transpose()
}

fn invalid(var: &str, value: &str, expected: &str) -> ConfigError {
    ConfigError::Invalid {
        var: var.into(),
        value: value.into(),
        expected: expected.into(),
    }
}

fn state_dir_from(env: &Env) -> Result<PathBuf, ConfigError> {
    let non_empty = |name: &str| env.get(name).filter(|v| !v.is_empty());
    if let Some(dir) = non_empty("CCX_STATE_DIR") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(xdg) = non_empty("XDG_STATE_HOME") {
        return Ok(PathBuf::from(xdg).join("ccx"));
    }
    if let Some(home) = non_empty("HOME") {
        return Ok(PathBuf::from(home).join(".local/state/ccx"));
    }
    Err(ConfigError::NoStateDir)
}

pub fn parse_host(raw: &str) -> Result<IpAddr, String> {
    if raw.eq_ignore_ascii_case("localhost") {
        return Ok(IpAddr::from([127, 0, 0, 1]));
    }
    raw.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .map_err(|_| "an IP address such as 127.0.0.1, 0.0.0.0 or ::1 (or localhost)".into())
}

pub fn parse_port(raw: &str) -> Result<u16, String> {
    raw.trim()
        .parse()
        .map_err(|_| "a port number from 0 to 65535 (0 picks a free port)".into())
}

fn parse_count(raw: &str) -> Result<usize, String> {
    match raw.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err("a whole number of at least 1".into()),
    }
}

fn parse_list(raw: &str) -> Result<Vec<String>, String> {
    let items: Vec<String> = raw
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    if items.is_empty() {
        return Err("a comma-separated list with at least one entry".into());
    }
    Ok(items)
}

const SIZE_FORMATS: &str =
    "a size in bytes, or with a KiB, MiB or GiB suffix (e.g. 1048576, 512KiB, 10MiB)";

/// Sizes: plain bytes, or `KiB`/`MiB`/`GiB` (binary units; `KB`/`MB` are
/// rejected because they are ambiguous).
pub fn parse_size(raw: &str) -> Result<u64, String> {
    let s = raw.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => 1024,
        "mib" => MIB,
        "gib" => 1024 * MIB,
        _ => return Err(SIZE_FORMATS.into()),
    };
    let n: u64 = digits.parse().map_err(|_| SIZE_FORMATS.to_string())?;
    n.checked_mul(factor).ok_or_else(|| SIZE_FORMATS.into())
}

const DURATION_FORMATS: &str =
    "a duration in seconds, or with an ms or s suffix (e.g. 5, 2.5s, 500ms)";

/// Durations: seconds (fractions allowed), or with `s`/`ms` suffixes.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let s = raw.trim();
    let (number, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else {
        (s, 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| DURATION_FORMATS.to_string())?;
    if !value.is_finite() || value < 0.0 || value * scale > 1e9 {
        return Err(DURATION_FORMATS.into());
    }
    Ok(Duration::from_secs_f64(value * scale))
}

fn parse_positive_duration(raw: &str) -> Result<Duration, String> {
    match parse_duration(raw)? {
        d if d.is_zero() => Err(format!("{DURATION_FORMATS}, greater than zero")),
        d => Ok(d),
    }
}

/// `none` or `0` disable the timeout.
fn parse_optional_duration(raw: &str) -> Result<Option<Duration>, String> {
    if raw.trim().eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    parse_duration(raw)
        .map(|d| (!d.is_zero()).then_some(d))
        .map_err(|e| format!("{e}, or none"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        let mut e: Env = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        e.entry("HOME".into()).or_insert("/home/u".into());
        e
    }

    fn load(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::load(&Overrides::default(), &env(pairs))
    }

    #[test]
    fn defaults_match_the_design() {
        let c = load(&[]).unwrap();
        assert_eq!(c.authority(), "127.0.0.1:8003");
        assert_eq!(c.max_output, 64 * MIB);
        assert_eq!(c.kill_grace, Duration::from_secs(5));
        assert_eq!(c.state_dir, PathBuf::from("/home/u/.local/state/ccx"));
        assert_eq!(c.ws_max_size, 10 * 1024 * 1024);
    }

    #[test]
    fn malformed_values_name_variable_value_and_expectation() {
        let e = load(&[("CCX_PORT", "abc")]).unwrap_err().to_string();
        assert!(
            e.contains("CCX_PORT") && e.contains("abc") && e.contains("port number"),
            "{e}"
        );
        let e = load(&[("WS_MAX_SIZE", "10MB")]).unwrap_err().to_string();
        assert!(
            e.contains("WS_MAX_SIZE") && e.contains("10MB") && e.contains("MiB"),
            "{e}"
        );
        let e = load(&[("CCX_KILL_GRACE", "soon")]).unwrap_err().to_string();
        assert!(e.contains("CCX_KILL_GRACE") && e.contains("ms"), "{e}");
    }

    #[test]
    fn flags_win_over_environment() {
        let o = Overrides {
            port: Some(9),
            ..Default::default()
        };
        let c = Config::load(&o, &env(&[("CCX_PORT", "abc")])).unwrap();
        assert_eq!(c.port, 9);
    }

    #[test]
    fn sizes_and_durations_accept_documented_forms() {
        assert_eq!(parse_size("512KiB"), Ok(512 * 1024));
        assert_eq!(parse_size("10MiB"), Ok(10 * MIB));
        assert_eq!(parse_size("123"), Ok(123));
        assert!(parse_size("10MB").is_err());
        assert!(parse_size("-1").is_err());
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2.5s"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("-3").is_err());
        assert_eq!(parse_optional_duration("none"), Ok(None));
    }

    #[test]
    fn public_bind_without_token_is_refused() {
        let e = load(&[("CCX_HOST", "0.0.0.0")]).unwrap_err();
        assert!(matches!(e, ConfigError::InsecureBind { .. }));
        assert!(load(&[("CCX_HOST", "0.0.0.0"), ("CCX_TOKEN", "s3cret")]).is_ok());
        let o = Overrides {
            host: Some("0.0.0.0".into()),
            insecure_no_auth: true,
            ..Default::default()
        };
        assert!(Config::load(&o, &env(&[])).is_ok());
    }

    #[test]
    fn typos_get_the_nearest_known_name() {
        let u = unknown_vars(&env(&[("CCX_PROT", "9000"), ("CCX_WHATEVER_ELSE", "1")]));
        assert_eq!(u[0], ("CCX_PROT".to_string(), Some("CCX_PORT")));
        assert_eq!(u[1], ("CCX_WHATEVER_ELSE".to_string(), None));
    }
}
