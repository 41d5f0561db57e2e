//! Step `config`: every recognised variable parses, unknown `CCX_*`/`WS_*`
//! names are warned about with the nearest known name, and unsafe
//! combinations (a non-loopback bind without a token) fail.

use super::{skipped_for_url, Outcome};
use crate::config::{self, Config, ConfigError};
use crate::doctor::Ctx;

pub fn run(ctx: &mut Ctx<'_>) -> Outcome {
    let env = &ctx.opts.env;
    if ctx.opts.url.is_some() {
        ctx.token = env.get("CCX_TOKEN").filter(|t| !t.is_empty()).cloned();
        return skipped_for_url("the running server has its own configuration");
    }
    let set: Vec<String> = env
        .iter()
        .filter(|(k, _)| k.starts_with("CCX_") || k.starts_with("WS_"))
        .map(|(k, v)| match k.as_str() {
            "CCX_TOKEN" => format!("{k}=<hidden, {} characters>", v.chars().count()),
            _ => format!("{k}={v}"),
        })
        .collect();
    let config = match Config::load(&ctx.opts.overrides, env) {
        Ok(c) => c,
        Err(e) => return failure(&e).detail(set),
    };
    let mut detail = vec![format!(
        "server address: {} (clients connect to {})",
        config.authority(),
        config.ws_url()
    )];
    if set.is_empty() {
        detail.push("no CCX_* or WS_* variable set: defaults apply".into());
    } else {
        detail.extend(set.iter().map(|s| format!("set: {s}")));
    }
    let unknown = config::unknown_vars(env);
    let summary_ok = format!(
        "valid: {} variable{} set, server on {}",
        set.len(),
        if set.len() == 1 { "" } else { "s" },
        config.authority()
    );
    ctx.token = config.token.clone();
    if config.port != 0 {
        ctx.target = Some(config.ws_url());
    }
    ctx.config = Some(config);
    if unknown.is_empty() {
        return Outcome::pass(summary_ok).detail(detail);
    }
    let hints: Vec<String> = unknown
        .iter()
        .map(|(name, nearest)| match nearest {
            Some(known) => format!("{name} is not a ccx variable: did you mean {known}?"),
            None => format!("{name} is not a ccx variable (ignored)"),
        })
        .collect();
    let fix = match unknown.first() {
        Some((name, Some(known))) => format!("rename {name} to {known} (or unset it)"),
        Some((name, None)) => format!("unset {name}; known variables are listed in README"),
        None => String::new(),
    };
    Outcome::warn(hints.join("; ")).detail(detail).fix(fix)
}

fn failure(e: &ConfigError) -> Outcome {
    let fix = match e {
        ConfigError::InsecureBind { .. } => {
            "set CCX_TOKEN to a secret (clients then send it as a bearer token), or CCX_HOST=127.0.0.1"
                .to_string()
        }
        ConfigError::Invalid { var, expected, .. } if var.starts_with("--") => {
            format!("pass {var} {expected}")
        }
        ConfigError::Invalid { var, expected, .. } => {
            format!("set {var} to {expected}, or unset it to use the default")
        }
        ConfigError::NoStateDir => "set CCX_STATE_DIR (or HOME)".to_string(),
    };
    let var = e.variable().unwrap_or("the configuration");
    Outcome::fail(e.to_string())
        .detail([format!("variable at fault: {var}")])
        .fix(fix)
}
