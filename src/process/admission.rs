//! Which `execute` requests may become a process, checked the same way by
//! every front end (through `Executor`): strings the kernel can carry (no
//! NUL, environment names without `=`, each under MAX_ARG_STRLEN), and the
//! allowlist (CCX_ALLOWED_COMMANDS, or cc_executor's ALLOWED_COMMANDS).
//!
//! It speaks no protocol: a refusal is an [`AdmissionError`], which the
//! WebSocket server and the MCP tool each put in their own words.

use brush_parser::ast;
use thiserror::Error;

use super::spec::SpecError;
use crate::config::Config;
use crate::protocol::ExecuteParams;

/// Why a request may not become a process.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum AdmissionError {
    /// Its timeout is not a positive, finite number of seconds.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// It cannot reach a process as written (a NUL byte, an empty command,
    /// a string over the kernel's limit).
    #[error("{0}")]
    Invalid(String),
    /// The allowlist does not admit it; the message names the list.
    #[error("{0}")]
    NotAllowed(String),
}

/// Strings that cannot reach a process: NUL bytes anywhere, `=` or an empty
/// name in the environment.
pub fn check_strings(params: &ExecuteParams) -> Result<(), AdmissionError> {
    let invalid = AdmissionError::Invalid;
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
/// ALLOWED_COMMANDS), a command's program must be one of the allowed names
/// exactly, as cc_executor matches it (`ls` allows `ls -l`, not
/// `/tmp/x/ls`; list a full path to allow it by path), and, stricter than
/// cc_executor: the command may not chain, substitute, redirect or expand
/// (which could start another program or print the server's environment),
/// and its `env` may only name variables of CCX_ALLOWED_ENV (a variable
/// such as `BASH_ENV`, `LD_PRELOAD` or `PATH` chooses what code runs).
///
/// The program is the word sh would run, found with sh's rules (see
/// [`program_word`]), never by splitting on what Unicode calls white space.
pub fn check_allowed(params: &ExecuteParams, config: &Config) -> Result<(), AdmissionError> {
    match Allowlist::of(config) {
        Some(allowlist) => allowlist.check(params),
        None => Ok(()),
    }
}

/// A server's allowlist: the programs (CCX_ALLOWED_COMMANDS or its alias),
/// the variables a request may set (CCX_ALLOWED_ENV), and the name of the
/// variable the programs came from, for messages.
#[derive(Debug, Clone, PartialEq)]
pub struct Allowlist {
    programs: Vec<String>,
    env: Vec<String>,
    variable: &'static str,
}

impl Allowlist {
    /// The allowlist of `config`; `None` when every program is allowed.
    pub fn of(config: &Config) -> Option<Allowlist> {
        Some(Allowlist {
            programs: config.allowed_commands.clone()?,
            env: config.allowed_env.clone(),
            variable: config.variable_of("allowed_commands", "CCX_ALLOWED_COMMANDS"),
        })
    }

    /// Whether the list admits `params` (see [`check_allowed`]).
    pub fn check(&self, params: &ExecuteParams) -> Result<(), AdmissionError> {
        let (allowed, var) = (&self.programs, self.variable);
        let command = &params.command;
        let shown = command.split([' ', '\t']).next().unwrap_or("");
        let not_allowed = |program: &str, why: String| {
            AdmissionError::NotAllowed(format!(
                "Command '{}' is not allowed: {why}; allowed programs ({var}): {}",
                program.escape_debug(),
                allowed.join(", ")
            ))
        };
        if let Some((c, why)) = unquoted_metacharacter(command) {
            return Err(not_allowed(shown, format!("it contains {c:?}, {why}")));
        }
        let program = program_word(command).map_err(|why| not_allowed(shown, why))?;
        if !allowed.contains(&program) {
            return Err(not_allowed(&program, "it is not in the list".into()));
        }
        check_env(params, &self.env, var)
    }
}

/// With an allowlist, each variable a request sets must match an entry of
/// CCX_ALLOWED_ENV (a name, or a prefix ending in `*`), and a locale
/// variable may not name a file (a `/` in its value makes glibc load that
/// file as a locale).
fn check_env(
    params: &ExecuteParams,
    allowed_env: &[String],
    var: &str,
) -> Result<(), AdmissionError> {
    for (name, value) in params.env.iter().flatten() {
        let listed = allowed_env.iter().any(|a| match a.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => a == name,
        });
        let why = if !listed {
            format!(
                "with an allowlist ({var}) a request may only set the variables of \
                 CCX_ALLOWED_ENV ({}): a variable such as {name} can choose what code runs",
                allowed_env.join(", ")
            )
        } else if is_locale(name) && value.contains('/') {
            "a locale name contains no '/' (with one, the value is a file to load)".to_string()
        } else {
            continue;
        };
        return Err(AdmissionError::NotAllowed(format!(
            "env variable {name} is not allowed: {why}"
        )));
    }
    Ok(())
}

fn is_locale(name: &str) -> bool {
    name == "LANG" || name == "LANGUAGE" || name.starts_with("LC_")
}

/// How `sh -c` reads a line: brush-parser in sh mode.
fn sh_options() -> brush_parser::ParserOptions {
    brush_parser::ParserOptions {
        posix_mode: false,
        sh_mode: true,
        ..Default::default()
    }
}

/// `line` parsed as `sh -c` reads it: the one parse the allowlist and the
/// doctor's shell analysis share.
pub fn parse_sh(line: &str) -> Result<ast::Program, brush_parser::ParseError> {
    brush_parser::Parser::new(
        std::io::BufReader::new(line.as_bytes()),
        &sh_options(),
        &brush_parser::SourceInfo::default(),
    )
    .parse_program()
}

/// The program `command` runs, as sh finds it: the first word of its only
/// simple command, split by the shell parser (only space and tab separate
/// words; `\v`, `\r`, U+00A0… are part of a word), quotes and escapes
/// removed. `Err` says why no single literal program can be named: more
/// than one command, a `VAR=value` or redirection before the program, a
/// glob, tilde or `$` expansion in it, or a tilde expansion in any word.
pub fn program_word(command: &str) -> Result<String, String> {
    let program =
        parse_sh(command).map_err(|e| format!("it does not parse as a shell command ({e})"))?;
    let simple = match program.complete_commands.as_slice() {
        [ast::CompoundList(items)] => match items.as_slice() {
            [ast::CompoundListItem(list, ast::SeparatorOperator::Sequence)]
                if list.additional.is_empty() && !list.first.bang && list.first.timed.is_none() =>
            {
                match list.first.seq.as_slice() {
                    [ast::Command::Simple(simple)] => Some(simple),
                    _ => None,
                }
            }
            _ => None,
        },
        _ => None,
    };
    let Some(simple) = simple else {
        return Err("it is not one simple command".into());
    };
    if simple.prefix.is_some() {
        return Err("it sets a variable or redirects before the program".into());
    }
    let Some(first) = &simple.word_or_name else {
        return Err("it names no program".into());
    };
    let mut words = vec![first];
    for item in simple.suffix.iter().flat_map(|s| s.0.iter()) {
        match item {
            ast::CommandPrefixOrSuffixItem::Word(w)
            | ast::CommandPrefixOrSuffixItem::AssignmentWord(_, w) => words.push(w),
            _ => return Err("it redirects or substitutes".into()),
        }
    }
    if let Some(word) = words.iter().find(|w| has_tilde_expansion(&w.value)) {
        return Err(format!(
            "its word {:?} has a tilde expansion, which expands to a home directory of the \
             server's environment",
            word.value
        ));
    }
    unquoted(&first.value, &sh_options())
}

/// Whether sh (or bash) would expand a `~` in `word`: unquoted, at the
/// start of the word or after an unquoted `=` or `:` (as in assignments).
fn has_tilde_expansion(word: &str) -> bool {
    let (mut single, mut double, mut escaped) = (false, false, false);
    let mut previous = None;
    for c in word.chars() {
        let quoted = single || double || escaped;
        match c {
            _ if escaped => escaped = false,
            '\\' if !single => escaped = true,
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '~' if !quoted && matches!(previous, None | Some('=' | ':')) => return true,
            _ => {}
        }
        previous = if quoted { Some('\0') } else { Some(c) };
    }
    false
}

/// A word with its quotes and escapes removed, as sh would run it; `Err`
/// when the shell would expand anything in it.
fn unquoted(word: &str, options: &brush_parser::ParserOptions) -> Result<String, String> {
    use brush_parser::word::WordPiece as P;
    let expands =
        |what: &str| format!("its program word {word:?} has {what}, which the shell expands");
    let pieces = brush_parser::word::parse(word, options).map_err(|e| format!("{e}"))?;
    let mut out = String::new();
    for piece in pieces {
        match piece.piece {
            P::Text(t) if t.contains(['*', '?', '[']) => return Err(expands("a glob")),
            P::Text(t) | P::SingleQuotedText(t) => out.push_str(&t),
            P::EscapeSequence(e) => out.push_str(&e[1..]),
            P::DoubleQuotedSequence(inner) => {
                for piece in inner {
                    match piece.piece {
                        P::Text(t) => out.push_str(&t),
                        P::EscapeSequence(e) => out.push_str(&e[1..]),
                        _ => return Err(expands("an expansion")),
                    }
                }
            }
            P::TildePrefix(_) => return Err(expands("a tilde")),
            _ => return Err(expands("an expansion")),
        }
    }
    Ok(out)
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

    fn allowing(programs: &[&str]) -> Config {
        Config {
            allowed_commands: Some(programs.iter().map(|p| p.to_string()).collect()),
            ..Config::default()
        }
    }

    fn check(config: &Config, command: &str) -> Result<(), AdmissionError> {
        check_allowed(&ExecuteParams::command(command), config)
    }

    /// The allowlist's message, panicking unless `result` is its refusal.
    fn not_allowed(result: Result<(), AdmissionError>, what: &str) -> String {
        match result {
            Err(AdmissionError::NotAllowed(message)) => message,
            other => panic!("{what:?}: expected the allowlist's refusal, got {other:?}"),
        }
    }

    #[test]
    fn allowlist_takes_one_program_without_chaining() {
        let c = allowing(&["ls", "claude"]);
        assert!(check(&c, "ls -la /tmp").is_ok());
        assert!(check(&c, "'l's -la").is_ok(), "quotes removed, as sh does");
        assert!(check(&c, "claude -p 'hi there'").is_ok());
        assert!(check(&c, "claude -p 'what is f(x); a|b'").is_ok());
        assert!(check(&c, "claude -p \"f(x) > 1\"").is_ok());
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
            "! ls",
            "l* -l",
        ] {
            let e = not_allowed(check(&c, bad), bad);
            assert!(e.contains("CCX_ALLOWED_COMMANDS"), "{e}");
        }
        let by_path = allowing(&["/usr/bin/ls"]);
        assert!(check(&by_path, "/usr/bin/ls -l").is_ok());
        assert!(check(&Config::default(), "anything at all; really").is_ok());
    }

    #[test]
    fn only_space_and_tab_end_the_program_word() {
        let c = allowing(&["mkdir"]);
        assert!(check(&c, "mkdir\tx").is_ok());
        for sep in [
            '\u{b}', '\u{c}', '\r', '\u{a0}', '\u{2028}', '\u{3000}', '\u{85}',
        ] {
            let command = format!("mkdir{sep}/../../../../bin/sh -c id");
            not_allowed(check(&c, &command), &command);
            assert_eq!(
                program_word(&command).unwrap(),
                format!("mkdir{sep}/../../../../bin/sh")
            );
        }
    }

    #[test]
    fn allowlist_refuses_expansions_outside_single_quotes() {
        let c = allowing(&["echo"]);
        for bad in [
            "echo ${PATH}",
            "echo $HOME",
            "echo \"$HOME\"",
            "echo \"x${CCX_TOKEN}x\"",
            "echo $((1+1))",
            "echo $$",
            "echo $1",
            "echo $'\\x41'",
            "echo ~",
            "echo ~root/x",
            "echo a=~",
            "echo PATH=/x:~/bin",
            "~/bin/echo",
        ] {
            let e = not_allowed(check(&c, bad), bad);
            assert!(
                e.contains("expands") || e.contains("start") || e.contains("tilde"),
                "{bad}: {e}"
            );
        }
        for fine in [
            "echo '$HOME'",
            "echo \\$HOME",
            "echo costs 5 $",
            "echo \"5 $\"",
            "echo $ sign",
            "echo '~'",
            "echo \\~",
            "echo \"~\"",
            "echo a~b",
        ] {
            assert!(check(&c, fine).is_ok(), "{fine}");
        }
    }

    #[test]
    fn with_an_allowlist_env_names_only_allowed_variables() {
        let c = allowing(&["echo"]);
        let with_env = |name: &str, value: &str| {
            let mut params = ExecuteParams::command("echo x");
            params.env = Some([(name.to_string(), value.to_string())].into());
            check_allowed(&params, &c)
        };
        for fine in ["LANG", "LC_ALL", "LC_CTYPE", "TZ", "TERM", "NO_COLOR"] {
            assert!(with_env(fine, "C.UTF-8").is_ok(), "{fine}");
        }
        for bad in [
            "BASH_FUNC_echo%%",
            "BASH_ENV",
            "ENV",
            "PATH",
            "LD_PRELOAD",
            "PYTHONSTARTUP",
            "GIT_CONFIG_COUNT",
            "PERL5OPT",
            "LANGX",
        ] {
            let e = not_allowed(with_env(bad, "x"), bad);
            assert!(e.contains(bad), "{e}");
        }
        assert!(with_env("LC_ALL", "/tmp/evil").is_err());
        let mut params = ExecuteParams::command("anything");
        params.env = Some([("BASH_ENV".to_string(), "x".to_string())].into());
        assert!(check_allowed(&params, &Config::default()).is_ok());
    }

    #[test]
    fn too_large_for_the_kernel_is_invalid_params_naming_the_limit() {
        let mut params = ExecuteParams::command(format!("echo {}", "x".repeat(MAX_ARG_STRLEN)));
        let Err(AdmissionError::Invalid(e)) = check_strings(&params) else {
            panic!("a command over MAX_ARG_STRLEN was not invalid");
        };
        assert!(e.contains("MAX_ARG_STRLEN"), "{e}");
        params.command = "echo".into();
        params.env = Some([("BIG".to_string(), "x".repeat(MAX_ARG_STRLEN))].into());
        let e = check_strings(&params).unwrap_err();
        assert!(e.to_string().contains("BIG"), "{e}");
    }
}
