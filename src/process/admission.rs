//! Which `execute` requests may become a process, checked the same way by
//! the WebSocket server and the MCP `execute` tool: strings the kernel can
//! carry (no NUL, environment names without `=`, each under
//! MAX_ARG_STRLEN), and the allowlist (CCX_ALLOWED_COMMANDS, or
//! cc_executor's ALLOWED_COMMANDS).

use crate::protocol::{ErrorCode, ExecuteParams, RpcError};

/// Strings that cannot reach a process: NUL bytes anywhere, `=` or an empty
/// name in the environment.
pub fn check_strings(params: &ExecuteParams) -> Result<(), RpcError> {
    let invalid =
        |what: String| RpcError::new(ErrorCode::InvalidParams, format!("invalid params: {what}"));
    if params.command.contains('\0') {
        return Err(invalid("command contains a NUL byte".into()));
    }
    if params.command.trim().is_empty() {
        return Err(invalid("command is empty".into()));
    }
    if params.command.len() >= MAX_ARG_STRLEN {
        return Err(invalid(format!(
            "command is {} bytes; the kernel's limit for one argument is {} bytes \
             (MAX_ARG_STRLEN, 128 KiB with its NUL)",
            params.command.len(),
            MAX_ARG_STRLEN - 1
        )));
    }
    for (name, value) in params.env.iter().flatten() {
        if name.is_empty() || name.contains(['=', '\0']) {
            return Err(invalid(format!(
                "env name {name:?} must be non-empty, without '=' or NUL"
            )));
        }
        if value.contains('\0') {
            return Err(invalid(format!("env value of {name} contains a NUL byte")));
        }
        if name.len() + 1 + value.len() >= MAX_ARG_STRLEN {
            return Err(invalid(format!(
                "env {name}=… is {} bytes; the kernel's limit for one variable is {} bytes \
                 (MAX_ARG_STRLEN, 128 KiB with its NUL)",
                name.len() + 1 + value.len(),
                MAX_ARG_STRLEN - 1
            )));
        }
    }
    Ok(())
}

/// Linux's limit on one argument or environment string, NUL included
/// (32 pages of 4 KiB); beyond it execve fails with E2BIG.
const MAX_ARG_STRLEN: usize = 128 * 1024;

/// With an allowlist (CCX_ALLOWED_COMMANDS, or cc_executor's
/// ALLOWED_COMMANDS, named by `var`), a command's first word must be one of
/// the allowed names exactly, as cc_executor matches it (`ls` allows `ls -l`,
/// not `/tmp/x/ls`; list a full path to allow it by path), and, stricter
/// than cc_executor, the command may not chain, substitute or redirect
/// (which could start another program).
pub fn check_allowed(command: &str, allowed: Option<&[String]>, var: &str) -> Result<(), RpcError> {
    let Some(allowed) = allowed else {
        return Ok(());
    };
    let program = command.split_whitespace().next().unwrap_or("");
    let not_allowed = |why: String| {
        RpcError::new(
            ErrorCode::CommandNotAllowed,
            format!(
                "Command '{program}' is not allowed: {why}; allowed programs ({var}): {}",
                allowed.join(", ")
            ),
        )
    };
    if let Some((c, why)) = unquoted_metacharacter(command) {
        return Err(not_allowed(format!("it contains {c:?}, {why}")));
    }
    if allowed.iter().any(|a| a == program) {
        Ok(())
    } else {
        Err(not_allowed("it is not in the list".into()))
    }
}

/// The first character that would make the shell run something else, or
/// expand something the client did not write, with why: a separator, pipe,
/// redirection or subshell outside quotes; a command substitution outside
/// single quotes; and, outside single quotes, any `$` expansion (`$HOME`,
/// `${PATH}`, `$((…))`, `$$`) — it would hand the server's environment to the
/// command's output. A `$` escaped (`\$`), last, or before a blank or a
/// closing double quote is a literal dollar and passes.
fn unquoted_metacharacter(command: &str) -> Option<(char, &'static str)> {
    const STARTS: &str = "which could start another program";
    const EXPANDS: &str = "which expands a variable or parameter of the server's environment";
    let mut chars = command.chars().peekable();
    let (mut single, mut double) = (false, false);
    while let Some(c) = chars.next() {
        match c {
            '\\' if !single => {
                chars.next();
            }
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '`' if !single => return Some((c, STARTS)),
            '$' if !single && chars.peek() == Some(&'(') => return Some((c, STARTS)),
            '$' if !single => match chars.peek() {
                None | Some(' ' | '\t' | '"') => {}
                Some(_) => return Some((c, EXPANDS)),
            },
            ';' | '&' | '|' | '<' | '>' | '(' | ')' | '\n' if !single && !double => {
                return Some((c, STARTS))
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlist_takes_one_program_without_chaining() {
        let allowed = vec!["ls".to_string(), "claude".to_string()];
        let check = |c: &str| check_allowed(c, Some(&allowed), "ALLOWED_COMMANDS");
        assert!(check("ls -la /tmp").is_ok());
        assert!(check("claude -p 'hi there'").is_ok());
        assert!(check("claude -p 'what is f(x); a|b'").is_ok());
        assert!(check("claude -p \"f(x) > 1\"").is_ok());
        for bad in [
            "echo hi",
            "/usr/bin/ls",
            "/tmp/evil/ls",
            "FOO=1 ls",
            "ls; rm -rf /",
            "ls && echo",
            "ls $(id)",
            "ls > f",
            "ls \"`id`\"",
            "ls \"$(id)\"",
        ] {
            let e = check(bad).unwrap_err();
            assert_eq!(e.code, -32001, "{bad}");
            assert!(e.message.contains("ALLOWED_COMMANDS"), "{}", e.message);
        }
        let by_path = vec!["/usr/bin/ls".to_string()];
        assert!(check_allowed("/usr/bin/ls -l", Some(&by_path), "X").is_ok());
        assert!(check_allowed("anything at all; really", None, "X").is_ok());
    }

    #[test]
    fn allowlist_refuses_expansions_outside_single_quotes() {
        let allowed = vec!["echo".to_string()];
        let check = |c: &str| check_allowed(c, Some(&allowed), "CCX_ALLOWED_COMMANDS");
        for bad in [
            "echo ${PATH}",
            "echo $HOME",
            "echo \"$HOME\"",
            "echo \"x${CCX_TOKEN}x\"",
            "echo $((1+1))",
            "echo $$",
            "echo $1",
            "echo $'\\x41'",
        ] {
            let e = check(bad).unwrap_err();
            assert_eq!(e.code, -32001, "{bad}");
            assert!(
                e.message.contains("expands") || e.message.contains("start"),
                "{bad}: {}",
                e.message
            );
        }
        for fine in [
            "echo '$HOME'",
            "echo \\$HOME",
            "echo costs 5 $",
            "echo \"5 $\"",
            "echo $ sign",
        ] {
            assert!(check(fine).is_ok(), "{fine}");
        }
    }

    #[test]
    fn too_large_for_the_kernel_is_invalid_params_naming_the_limit() {
        let mut params = ExecuteParams::command(format!("echo {}", "x".repeat(MAX_ARG_STRLEN)));
        let e = check_strings(&params).unwrap_err();
        assert_eq!(e.code, -32602);
        assert!(e.message.contains("MAX_ARG_STRLEN"), "{}", e.message);
        params.command = "echo".into();
        params.env = Some([("BIG".to_string(), "x".repeat(MAX_ARG_STRLEN))].into());
        let e = check_strings(&params).unwrap_err();
        assert!(e.message.contains("BIG"), "{}", e.message);
    }
}
