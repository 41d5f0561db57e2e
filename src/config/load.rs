//! The environment → [`Config`] loader: each setting from its flag, its
//! `CCX_` variable or its cc_executor alias, or its default, recording
//! which name supplied it and what deserves a warning.

use super::*;

impl Config {
    /// Builds the configuration from flags and an environment snapshot.
    pub fn load(overrides: &Overrides, env: &Env) -> Result<Config, ConfigError> {
        let d = Config::default();
        let mut l = Loader {
            env,
            sources: BTreeMap::new(),
            warnings: Vec::new(),
        };

        let host = match &overrides.host {
            Some(h) => {
                l.sources.insert("host", Source::Flag("--host"));
                parse_host(h).map_err(|e| invalid("--host", h, &e))?
            }
            None => l.parsed("host", "CCX_HOST", parse_host)?.unwrap_or(d.host),
        };
        let port = match overrides.port {
            Some(p) => {
                l.sources.insert("port", Source::Flag("--port"));
                p
            }
            None => l.parsed("port", "CCX_PORT", parse_port)?.unwrap_or(d.port),
        };
        let token = match l.raw("token", "CCX_TOKEN") {
            Some((_, "")) | None => token_from_file(&mut l)?,
            Some((var, t)) if t.chars().any(|c| c.is_whitespace() || c.is_control()) => {
                return Err(invalid(
                    var,
                    "<hidden>",
                    "a token without spaces or control characters",
                ))
            }
            Some((_, t)) => Some(t.to_string()),
        };
        let shell = match l.raw("shell", "CCX_SHELL") {
            Some(("CCX_SHELL", "")) => {
                return Err(invalid("CCX_SHELL", "", "a path to a shell, e.g. /bin/sh"))
            }
            Some(("CCX_SHELL", s)) => path_of("CCX_SHELL", s)?,
            Some((alias, value)) => l.cc_executor_shell(alias, value, &d.shell),
            None => d.shell,
        };
        let allowed_commands = match l.raw("allowed_commands", "CCX_ALLOWED_COMMANDS") {
            Some(("ALLOWED_COMMANDS", raw)) if raw.trim().is_empty() => {
                // cc_executor reads an empty list as "no restriction"; so does ccx, loudly.
                l.sources.remove("allowed_commands");
                l.warn(
                    "ALLOWED_COMMANDS",
                    "ALLOWED_COMMANDS is set but empty: every command is allowed (as in \
                     cc_executor); unset it, or list the programs to allow",
                );
                None
            }
            Some((var, raw)) => Some(parse_list(raw).map_err(|e| invalid(var, raw, &e))?),
            None => None,
        };
        let allowed_env = l
            .parsed("allowed_env", "CCX_ALLOWED_ENV", parse_list)?
            .unwrap_or(d.allowed_env);
        let allowed_origins = l
            .parsed("allowed_origins", "CCX_ALLOWED_ORIGINS", parse_list)?
            .unwrap_or_default();
        let max_sessions = l
            .parsed("max_sessions", "CCX_MAX_SESSIONS", parse_count)?
            .unwrap_or(d.max_sessions);
        let max_output = l
            .parsed("max_output", "CCX_MAX_OUTPUT", parse_size)?
            .unwrap_or(d.max_output);
        let mcp_max_output = l
            .parsed("mcp_max_output", "CCX_MCP_MAX_OUTPUT", parse_size)?
            .unwrap_or(d.mcp_max_output);
        let default_timeout = l
            .parsed(
                "default_timeout",
                "CCX_DEFAULT_TIMEOUT",
                parse_optional_duration,
            )?
            .unwrap_or(d.default_timeout);
        let kill_grace = l
            .parsed("kill_grace", "CCX_KILL_GRACE", parse_duration)?
            .unwrap_or(d.kill_grace);
        let drain_period = l
            .parsed("drain_period", "CCX_DRAIN_PERIOD", parse_duration)?
            .unwrap_or(d.drain_period);
        let heartbeat_interval = l
            .parsed(
                "heartbeat_interval",
                "CCX_HEARTBEAT_INTERVAL",
                parse_optional_duration,
            )?
            .unwrap_or(d.heartbeat_interval);
        let ws_ping_interval = l
            .parsed(
                "ws_ping_interval",
                "WS_PING_INTERVAL",
                parse_positive_duration,
            )?
            .unwrap_or(d.ws_ping_interval);
        let ws_ping_timeout = l
            .parsed(
                "ws_ping_timeout",
                "WS_PING_TIMEOUT",
                parse_positive_duration,
            )?
            .unwrap_or(d.ws_ping_timeout);
        let handshake_timeout = l
            .parsed(
                "handshake_timeout",
                "CCX_HANDSHAKE_TIMEOUT",
                parse_positive_duration,
            )?
            .unwrap_or(d.handshake_timeout);
        let max_pending = l
            .parsed("max_pending", "CCX_MAX_PENDING", parse_count)?
            .unwrap_or(d.max_pending);
        let ws_max_size = match l.raw("ws_max_size", "WS_MAX_SIZE") {
            Some((var, raw)) => {
                let n = parse_size(raw).map_err(|e| invalid(var, raw, &e))?;
                if n < 1024 {
                    return Err(invalid(var, raw, "at least 1KiB"));
                }
                usize::try_from(n).map_err(|_| invalid(var, raw, "a smaller size"))?
            }
            None => d.ws_max_size,
        };
        let pass_env = l
            .parsed("pass_env", "CCX_PASS_ENV", parse_list)?
            .unwrap_or_default();
        let process_tracking = l
            .parsed("process_tracking", "CCX_PROCESS_TRACKING", parse_tracking)?
            .unwrap_or(d.process_tracking);
        let state_dir = match &overrides.state_dir {
            Some(p) => {
                l.sources.insert("state_dir", Source::Flag("--state-dir"));
                p.clone()
            }
            None => {
                if env.get("CCX_STATE_DIR").is_some_and(|v| !v.is_empty()) {
                    l.sources.insert("state_dir", Source::Env("CCX_STATE_DIR"));
                }
                state_dir_from(env)?
            }
        };
        for (name, instead) in UNSUPPORTED {
            if let Some(value) = env.get(*name) {
                l.warn(
                    name,
                    &format!(
                        "{name}={value} is a cc_executor setting ccx does not support: {instead}"
                    ),
                );
            }
        }

        let config = Config {
            host,
            port,
            token,
            shell,
            allowed_commands,
            allowed_env,
            allowed_origins,
            max_sessions,
            max_output,
            mcp_max_output,
            default_timeout,
            kill_grace,
            drain_period,
            state_dir,
            ws_ping_interval,
            ws_ping_timeout,
            ws_max_size,
            heartbeat_interval,
            handshake_timeout,
            max_pending,
            insecure_no_auth: overrides.insecure_no_auth,
            sources: l.sources,
            warnings: l.warnings,
            pass_env,
            process_tracking,
        };
        config.check_bind_is_safe()?;
        Ok(config)
    }
}

/// Reads settings from the environment, recording which name supplied each
/// and what deserves a warning.
pub(super) struct Loader<'a> {
    env: &'a Env,
    sources: BTreeMap<&'static str, Source>,
    warnings: Vec<ConfigWarning>,
}

impl<'a> Loader<'a> {
    fn warn(&mut self, variable: &str, message: &str) {
        self.warnings.push(ConfigWarning {
            variable: variable.into(),
            message: message.into(),
        });
    }

    /// The value of `ccx_name`, or of its cc_executor alias when it is unset,
    /// with the name that supplied it. Both set: ccx's wins, and when the
    /// values differ that is a warning.
    fn raw(
        &mut self,
        field: &'static str,
        ccx_name: &'static str,
    ) -> Option<(&'static str, &'a str)> {
        let alias = ALIASES
            .iter()
            .find(|(ccx, _)| *ccx == ccx_name)
            .map(|(_, alias)| *alias);
        let env: &'a Env = self.env;
        let own = env.get(ccx_name).map(String::as_str);
        let aliased = alias.and_then(|a| env.get(a).map(|v| (a, v.as_str())));
        let chosen = match (own, aliased) {
            (Some(value), Some((alias, other))) => {
                if value != other {
                    let shown = |v: &str| {
                        if ccx_name == "CCX_TOKEN" {
                            "<hidden>".to_string()
                        } else {
                            v.to_string()
                        }
                    };
                    self.warn(
                        alias,
                        &format!(
                            "both {ccx_name}={} and cc_executor's {alias}={} are set: {ccx_name} wins",
                            shown(value),
                            shown(other)
                        ),
                    );
                }
                Some((ccx_name, value))
            }
            (Some(value), None) => Some((ccx_name, value)),
            (None, Some((alias, value))) => Some((alias, value)),
            (None, None) => None,
        };
        if let Some((name, _)) = chosen {
            self.sources.insert(field, Source::Env(name));
        }
        chosen
    }

    /// Parses setting `field` when it (or its alias) is set.
    fn parsed<T>(
        &mut self,
        field: &'static str,
        ccx_name: &'static str,
        parse: fn(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        self.raw(field, ccx_name)
            .map(|(var, raw)| parse(raw).map_err(|expected| invalid(var, raw, &expected)))
            .transpose()
    }

    /// `CC_EXECUTOR_SHELL`: `zsh` or `bash` is the first of cc_executor's
    /// paths that exists, else (as cc_executor does) the system shell;
    /// `default` is the system shell. Other values: the system shell, and a
    /// warning.
    fn cc_executor_shell(&mut self, var: &str, value: &str, system: &std::path::Path) -> PathBuf {
        let wanted = value.trim();
        if wanted == "default" {
            return system.to_path_buf();
        }
        let Some((_, paths)) = CC_EXECUTOR_SHELLS.iter().find(|(name, _)| *name == wanted) else {
            self.warn(
                var,
                &format!(
                    "{var}={value} is not one of zsh, bash or default: commands run with {} \
                     (cc_executor falls back to the system shell too); set CCX_SHELL to a path \
                     to choose another",
                    system.display()
                ),
            );
            return system.to_path_buf();
        };
        match paths.iter().find(|p| std::path::Path::new(p).is_file()) {
            Some(found) => PathBuf::from(found),
            None => {
                self.warn(
                    var,
                    &format!(
                        "{var}={value} but {wanted} is not installed at {}: commands run with {} \
                         (as cc_executor falls back)",
                        paths.join(", "),
                        system.display()
                    ),
                );
                system.to_path_buf()
            }
        }
    }
}

/// The token of CCX_TOKEN_FILE (a Docker or Kubernetes secret mounted as a
/// file), when CCX_TOKEN is unset: the file's content without the white
/// space around it.
pub(super) fn token_from_file(l: &mut Loader) -> Result<Option<String>, ConfigError> {
    let Some(path) = l.env.get("CCX_TOKEN_FILE").filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    let expected = "a readable file holding the token (no spaces or control characters in it)";
    let content = std::fs::read_to_string(path_of("CCX_TOKEN_FILE", path)?)
        .map_err(|e| invalid("CCX_TOKEN_FILE", path, &format!("{expected}: {e}")))?;
    let token = content.trim();
    if token.is_empty() || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid("CCX_TOKEN_FILE", path, expected));
    }
    l.sources.insert("token", Source::Env("CCX_TOKEN_FILE"));
    Ok(Some(token.to_string()))
}

pub(super) fn invalid(var: &str, value: &str, expected: &str) -> ConfigError {
    ConfigError::Invalid {
        var: var.into(),
        value: value.into(),
        expected: expected.into(),
    }
}

/// The state directory from CCX_STATE_DIR, XDG_STATE_HOME or HOME, in that
/// order. `status`, `stop` and `logs` need nothing else of the configuration.
pub fn state_dir_from(env: &Env) -> Result<PathBuf, ConfigError> {
    let non_empty = |name: &str| env.get(name).filter(|v| !v.is_empty());
    if let Some(dir) = non_empty("CCX_STATE_DIR") {
        return path_of("CCX_STATE_DIR", dir);
    }
    if let Some(xdg) = non_empty("XDG_STATE_HOME") {
        return Ok(path_of("XDG_STATE_HOME", xdg)?.join("ccx"));
    }
    if let Some(home) = non_empty("HOME") {
        return Ok(path_of("HOME", home)?.join(".local/state/ccx"));
    }
    Err(ConfigError::NoStateDir)
}

/// A path set by `var`. The environment is read as UTF-8 (`env_snapshot`),
/// with U+FFFD for bytes that are not: such a value names another file
/// than the one set, so it is refused rather than used.
fn path_of(var: &str, value: &str) -> Result<PathBuf, ConfigError> {
    if value.contains(char::REPLACEMENT_CHARACTER) {
        return Err(invalid(
            var,
            value,
            "a path of valid UTF-8 (bytes that are not UTF-8 would make ccx use another path)",
        ));
    }
    Ok(PathBuf::from(value))
}
