//! `ccx exec -- CMD…`: flags → the library's [`crate::exec::run`], which
//! streams the remote command and says how to exit.

use std::time::Duration;

use clap::Args;

use super::CliError;
use crate::client::{ConnectOptions, KeepAlive};
use crate::config::{self, Config, Overrides};
use crate::exec::{command_line, DEFAULT_KEEPALIVE};
use crate::exit::Exit;
use crate::protocol::ExecuteParams;

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Server WebSocket URL [default: CCX_HOST/CCX_PORT when set, else the
    /// background server of the state directory (`ccx serve`), else
    /// ws://127.0.0.1:8003/ws/mcp; the choice is said on stderr].
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// How long the command may run (e.g. 30, 2.5s, 500ms); the server then ends
    /// its process group and ccx exits 124.
    #[arg(long, value_name = "DURATION", value_parser = config::parse_positive_duration)]
    pub timeout: Option<Duration>,
    /// Give up (exit 253) when nothing at all comes from the server for this
    /// long, pinging it meanwhile; `off` waits forever [default: 60s].
    #[arg(long, value_name = "DURATION|off", value_parser = parse_keepalive)]
    pub keepalive: Option<Keep>,
    /// Working directory of the command, on the server.
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<String>,
    /// Set an environment variable for the command (repeatable).
    #[arg(long = "env", value_name = "K=V", value_parser = parse_env_pair)]
    pub env: Vec<(String, String)>,
    /// Print the event stream as JSON lines on stdout instead of the output.
    #[arg(long)]
    pub json: bool,
    /// The command. Several words are quoted for /bin/sh and joined; a single
    /// word is a shell command line as it is (so `'a | b'` runs a pipeline).
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub command: Vec<String>,
}

/// `--keepalive`: a silence limit, or none.
#[derive(Debug, Clone, Copy)]
pub struct Keep(Option<KeepAlive>);

pub fn run(args: ExecArgs) -> Result<Exit, CliError> {
    let config = Config::load(&Overrides::default(), &config::env_snapshot())?;
    let url = match args.url {
        Some(url) => url,
        None => {
            let chosen = super::target::choose(&config);
            eprintln!("{}", chosen.note("exec"));
            chosen.url
        }
    };
    let mut options = ConnectOptions::new(url).token(config.token.clone());
    options.keepalive = match args.keepalive {
        Some(Keep(keepalive)) => keepalive,
        None => Some(KeepAlive::within(DEFAULT_KEEPALIVE)),
    };
    let params = ExecuteParams {
        command: command_line(&args.command),
        timeout: args.timeout.map(|d| d.as_secs_f64()),
        cwd: args.cwd,
        env: (!args.env.is_empty()).then(|| args.env.into_iter().collect()),
        framing: None,
    };
    // One task reading one socket: a second worker thread would only add
    // cross-thread wake-ups, a fifth of the client's CPU when output
    // streams at hundreds of MB/s.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(runtime.block_on(crate::exec::run(options, params, args.json))?)
}

fn parse_keepalive(raw: &str) -> Result<Keep, String> {
    match raw {
        "off" => Ok(Keep(None)),
        _ => config::parse_positive_duration(raw).map(|d| Keep(Some(KeepAlive::within(d)))),
    }
}

fn parse_env_pair(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.to_string())),
        _ => Err(format!("expected NAME=VALUE, got {raw:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_pairs_need_a_name() {
        assert_eq!(parse_env_pair("A=b=c").unwrap(), ("A".into(), "b=c".into()));
        assert!(parse_env_pair("=x").is_err());
        assert!(parse_env_pair("novalue").is_err());
    }

    #[test]
    fn keepalive_is_a_positive_duration_or_off() {
        assert!(parse_keepalive("off").unwrap().0.is_none());
        let three = parse_keepalive("3s").unwrap().0.unwrap();
        assert_eq!(
            (three.silence, three.every),
            (Duration::from_secs(3), Duration::from_secs(1))
        );
        assert!(parse_keepalive("0").is_err());
        assert!(parse_keepalive("soon").is_err());
    }
}
