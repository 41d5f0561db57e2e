//! Step `config`: every recognised variable parses (ccx's names and
//! cc_executor's aliases), the detail says which name supplied each value,
//! unknown `CCX_*`/`WS_*` names are warned about with the nearest known
//! name, a set but unsupported cc_executor variable (or an alias shadowed by
//! a different `CCX_` value) is a warning that names it, and unsafe
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
        .filter(|(k, _)| {
            k.starts_with("CCX_")
                || k.starts_with("WS_")
                || config::ALIASES.iter().any(|(_, alias)| alias == k)
                || config::UNSUPPORTED.iter().any(|(name, _)| name == k)
        })
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
        detail.push("no CCX_*, WS_* or cc_executor variable set: defaults apply".into());
    } else {
        detail.extend(set.iter().map(|s| format!("set: {s}")));
    }
    detail.extend(
        config
            .sources
            .iter()
            .map(|(field, source)| format!("{field} from {source}")),
    );
    let aliases_used: Vec<String> = config
        .sources
        .values()
        .filter(|s| s.is_alias())
        .map(|s| match s {
            config::Source::Env(name) => name.to_string(),
            other => other.to_string(),
        })
        .collect();
    let unknown = config::unknown_vars(env);
    let aliases_note = if aliases_used.is_empty() {
        String::new()
    } else {
        format!(" (cc_executor's {} honoured)", aliases_used.join(", "))
    };
    let summary_ok = format!(
        "valid: {} variable{} set, server on {}{aliases_note}",
        set.len(),
        if set.len() == 1 { "" } else { "s" },
        config.authority()
    );
    let warnings = config.warnings.clone();
    ctx.token = config.token.clone();
    if config.port != 0 {
        ctx.target = Some(config.ws_url());
    }
    ctx.config = Some(config);
    if unknown.is_empty() && warnings.is_empty() {
        return Outcome::pass(summary_ok).detail(detail);
    }
    let mut hints: Vec<String> = warnings.iter().map(|w| w.message.clone()).collect();
    hints.extend(unknown.iter().map(|(name, nearest)| match nearest {
        Some(known) => format!("{name} is not a ccx variable: did you mean {known}?"),
        None => format!("{name} is not a ccx variable (ignored)"),
    }));
    let fix = match (warnings.first(), unknown.first()) {
        (Some(w), _) => format!(
            "unset {} (or use the ccx setting the warning names); see docs/configuration.md",
            w.variable
        ),
        (None, Some((name, Some(known)))) => format!("rename {name} to {known} (or unset it)"),
        (None, Some((name, None))) => {
            format!("unset {name}; known variables are listed in docs/configuration.md")
        }
        (None, None) => String::new(),
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
