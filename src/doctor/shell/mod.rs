//! Which programs a shell command line runs: `--server-cmd` is a shell
//! command line (`cd /srv/app && . .venv/bin/activate && exec python -m
//! uvicorn …`), not a program name. The line is parsed with brush-parser (a
//! maintained POSIX/bash parser) and walked: shell builtins (`cd`, `export`,
//! `.`, `exec`, …) run no program, `VAR=value` prefixes are assignments,
//! `&&`, `||`, `;`, pipes, subshells, `if`/`while`/`for`/`case` bodies and
//! wrappers (`exec`, `command`, `env`, `nohup`, `nice`, `timeout`, `setsid`,
//! `sh -c '…'`) are followed to the programs that will actually start.
//!
//! A literal `cd DIR` and literal PATH changes (`export PATH=…`, a `PATH=…`
//! prefix, sourcing a venv's `bin/activate`) are tracked, so that a program
//! can be resolved where the shell will look for it. What depends on run
//! time (a `$VAR` as the command name, `eval`, a sourced script other than a
//! venv's) is reported as a note, never guessed.
//!
//! Pure analysis: no file system access, no environment reads. The doctor's
//! `binaries` step resolves what this finds. (The server's allowlist does
//! not use it: `process::admission` finds the one program word sh runs.)

mod words;

use brush_parser::ast;
use thiserror::Error;
use words::{expand_path, join, literal};

/// The command line could not be parsed.
#[derive(Debug, Error)]
#[error("cannot parse the command line as a shell would: {0}")]
pub struct ShellError(String);

/// A program the command line starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramUse {
    /// As written, quotes removed (`python`, `./run.sh`, `/usr/bin/env`).
    pub name: String,
    /// The directory the shell is in when it starts it, after literal `cd`s
    /// (`None`: the launcher's own working directory; relative: from there).
    pub cwd: Option<String>,
    /// PATH as the line changed it before this program starts (`$PATH`
    /// stands for the inherited value); `None` when unchanged.
    pub path: Option<String>,
    /// The wrapper that starts it (`exec`, `env`, `sh -c`, …), if any.
    pub via: Option<String>,
    /// Its arguments, quotes removed where the word is literal (as
    /// written where the shell expands something in it).
    pub args: Vec<String>,
    /// Other variables the line sets to a literal value before it starts
    /// (`PYTHONPATH=src`, `export X=1`, `env X=1`), in order.
    pub env: Vec<(String, String)>,
}

/// What a command line runs, and what it changes on the way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Analysis {
    /// Programs in the order they appear.
    pub programs: Vec<ProgramUse>,
    /// Shell builtins and keywords it uses (`cd`, `export`, …): no program.
    pub builtins: Vec<String>,
    /// Directories it `cd`s into (literal ones), as written, in order, with
    /// the directory they are relative to.
    pub directories: Vec<(Option<String>, String)>,
    /// What cannot be known without running it.
    pub notes: Vec<String>,
}

/// Builtins of POSIX sh (and the common bash ones): commands that are not
/// looked up on PATH.
const BUILTINS: &[&str] = &[
    ".", ":", "[", "alias", "bg", "break", "builtin", "cd", "command", "continue", "declare",
    "echo", "eval", "exec", "exit", "export", "false", "fg", "getopts", "hash", "jobs", "kill",
    "local", "printf", "pwd", "read", "readonly", "return", "set", "shift", "source", "test",
    "times", "trap", "true", "type", "typeset", "ulimit", "umask", "unalias", "unset", "wait",
];

/// Programs that run the command given in their arguments.
const WRAPPERS: &[&str] = &[
    "env", "nohup", "nice", "setsid", "timeout", "stdbuf", "time",
];

/// Shells whose `-c STRING` is itself a command line.
const SHELLS: &[&str] = &["sh", "bash", "dash", "zsh", "ksh"];

/// Whether `name` is a shell builtin (not looked up on PATH).
pub fn is_builtin(name: &str) -> bool {
    BUILTINS.contains(&name)
}

/// The names of the programs `line` starts (builtins excluded).
pub fn program_names(line: &str) -> Result<Vec<String>, ShellError> {
    Ok(analyze(line)?
        .programs
        .into_iter()
        .map(|p| p.name)
        .collect())
}

/// Parses `line` and follows it to the programs it starts.
pub fn analyze(line: &str) -> Result<Analysis, ShellError> {
    let mut analysis = Analysis::default();
    walk_line(line, &mut State::default(), None, &mut analysis, 0)?;
    Ok(analysis)
}

/// The shell's state as far as it matters for finding programs.
#[derive(Debug, Clone, Default)]
struct State {
    cwd: Option<String>,
    path: Option<String>,
    /// Literal assignments other than PATH.
    env: Vec<(String, String)>,
    functions: Vec<String>,
}

/// `sh -c` inside `sh -c` … stops here.
const MAX_DEPTH: usize = 4;

fn walk_line(
    line: &str,
    state: &mut State,
    via: Option<&str>,
    out: &mut Analysis,
    depth: usize,
) -> Result<(), ShellError> {
    let program =
        crate::process::admission::parse_sh(line).map_err(|e| ShellError(e.to_string()))?;
    let mut walker = Walker { out, via, depth };
    for command in &program.complete_commands {
        walker.list(command, state);
    }
    Ok(())
}

struct Walker<'a> {
    out: &'a mut Analysis,
    via: Option<&'a str>,
    depth: usize,
}

impl Walker<'_> {
    fn list(&mut self, list: &ast::CompoundList, state: &mut State) {
        for ast::CompoundListItem(and_or, separator) in &list.0 {
            if matches!(separator, ast::SeparatorOperator::Async) {
                // A background job runs in a subshell: its `cd` stays there.
                let mut copy = state.clone();
                self.and_or(and_or, &mut copy);
            } else {
                self.and_or(and_or, state);
            }
        }
    }

    fn and_or(&mut self, list: &ast::AndOrList, state: &mut State) {
        self.pipeline(&list.first, state);
        for next in &list.additional {
            match next {
                ast::AndOr::And(p) | ast::AndOr::Or(p) => self.pipeline(p, state),
            }
        }
    }

    fn pipeline(&mut self, pipeline: &ast::Pipeline, state: &mut State) {
        if pipeline.seq.len() == 1 {
            self.command(&pipeline.seq[0], state);
            return;
        }
        // Each part of a pipeline runs in its own subshell.
        for command in &pipeline.seq {
            self.command(command, &mut state.clone());
        }
    }

    fn command(&mut self, command: &ast::Command, state: &mut State) {
        match command {
            ast::Command::Simple(simple) => self.simple(simple, state),
            ast::Command::Compound(compound, _) => self.compound(compound, state),
            ast::Command::Function(f) => {
                state.functions.push(f.fname.value.clone());
                self.compound(&f.body.0, &mut state.clone());
            }
            ast::Command::ExtendedTest(_) => self.builtin("[["),
        }
    }

    fn compound(&mut self, compound: &ast::CompoundCommand, state: &mut State) {
        use ast::CompoundCommand as C;
        match compound {
            C::Arithmetic(_) => self.builtin("(("),
            C::ArithmeticForClause(f) => self.list(&f.body.list, state),
            C::BraceGroup(g) => self.list(&g.list, state),
            C::Subshell(s) => self.list(&s.list, &mut state.clone()),
            C::ForClause(f) => self.list(&f.body.list, state),
            C::CaseClause(c) => {
                for item in &c.cases {
                    if let Some(cmd) = &item.cmd {
                        self.list(cmd, state);
                    }
                }
            }
            C::IfClause(i) => {
                self.list(&i.condition, state);
                self.list(&i.then, state);
                for clause in i.elses.iter().flatten() {
                    if let Some(condition) = &clause.condition {
                        self.list(condition, state);
                    }
                    self.list(&clause.body, state);
                }
            }
            C::WhileClause(w) | C::UntilClause(w) => {
                self.list(&w.0, state);
                self.list(&w.1.list, state);
            }
        }
    }

    fn builtin(&mut self, name: &str) {
        if !self.out.builtins.iter().any(|b| b == name) {
            self.out.builtins.push(name.to_string());
        }
    }

    fn note(&mut self, note: String) {
        if !self.out.notes.contains(&note) {
            self.out.notes.push(note);
        }
    }

    fn simple(&mut self, simple: &ast::SimpleCommand, state: &mut State) {
        use ast::CommandPrefixOrSuffixItem as Item;
        let mut assignments: Vec<(String, String)> = Vec::new();
        for item in simple.prefix.iter().flat_map(|p| p.0.iter()) {
            match item {
                Item::AssignmentWord(
                    ast::Assignment {
                        name: ast::AssignmentName::VariableName(name),
                        value: ast::AssignmentValue::Scalar(value),
                        ..
                    },
                    _,
                ) => assignments.push((name.clone(), value.value.clone())),
                Item::ProcessSubstitution(_, sub) => self.list(&sub.list, &mut state.clone()),
                _ => {}
            }
        }
        let mut words: Vec<String> = simple
            .word_or_name
            .iter()
            .map(|w| w.value.clone())
            .collect();
        for item in simple.suffix.iter().flat_map(|s| s.0.iter()) {
            match item {
                Item::Word(w) | Item::AssignmentWord(_, w) => words.push(w.value.clone()),
                Item::ProcessSubstitution(_, sub) => self.list(&sub.list, &mut state.clone()),
                Item::IoRedirect(_) => {}
            }
        }
        if words.is_empty() {
            // `PATH=/x:$PATH` alone: it changes the shell's PATH.
            for (name, value) in &assignments {
                self.assign(state, name, value);
            }
            return;
        }
        let mut scoped = state.clone();
        for (name, value) in &assignments {
            self.assign(&mut scoped, name, value);
        }
        self.run_words(&words, state, &mut scoped, self.via.map(String::from));
    }

    /// A `NAME=value`: PATH is followed; another variable is kept when its
    /// value is literal.
    fn assign(&mut self, state: &mut State, name: &str, raw: &str) {
        if name != "PATH" {
            if let Some(value) = literal(raw) {
                state.env.retain(|(n, _)| n != name);
                state.env.push((name.to_string(), value));
            }
            return;
        }
        match expand_path(raw, state.path.as_deref()) {
            Some(path) => state.path = Some(path),
            None => self.note(format!(
                "PATH is set to `{raw}`, which needs the shell to expand it: programs are looked up on the PATH the server inherits"
            )),
        }
    }

    /// `words` is a command with its arguments; `state` is the shell's
    /// (changed by builtins such as `cd`), `scoped` the one this command
    /// sees (with its `VAR=value` prefixes).
    fn run_words(
        &mut self,
        words: &[String],
        state: &mut State,
        scoped: &mut State,
        via: Option<String>,
    ) {
        let Some(first) = words.first() else {
            return;
        };
        let Some(name) = literal(first) else {
            self.note(format!(
                "`{first}` is expanded by the shell at run time: the program it names cannot be checked beforehand"
            ));
            return;
        };
        let args: Vec<&String> = words[1..].iter().collect();
        if state.functions.contains(&name) {
            return;
        }
        match name.as_str() {
            "cd" => {
                self.builtin("cd");
                match args.first().map(|a| literal(a)) {
                    Some(Some(dir)) if dir != "-" => {
                        self.out.directories.push((state.cwd.clone(), dir.clone()));
                        state.cwd = Some(join(state.cwd.as_deref(), &dir));
                    }
                    None => state.cwd = Some("~".into()),
                    _ => self.note(
                        "`cd` to a directory known only at run time: relative paths after it cannot be checked".into(),
                    ),
                }
            }
            "export" | "readonly" | "declare" | "typeset" | "local" => {
                self.builtin(&name);
                for arg in args {
                    if let Some((var, value)) = arg.split_once('=') {
                        self.assign(state, var, value);
                    }
                }
            }
            "." | "source" => {
                self.builtin(&name);
                match args.first().and_then(|a| literal(a)) {
                    Some(file) if file.ends_with("bin/activate") => {
                        // A venv's activate script puts its bin/ first on PATH.
                        let bin = join(state.cwd.as_deref(), file.trim_end_matches("/activate"));
                        let rest = state.path.clone().unwrap_or_else(|| "$PATH".into());
                        state.path = Some(format!("{bin}:{rest}"));
                    }
                    Some(file) => self.note(format!(
                        "`{name} {file}` runs a script in the shell itself: what it changes (PATH, the directory) is not followed"
                    )),
                    None => {}
                }
            }
            "exec" => {
                self.builtin("exec");
                let mut rest = &words[1..];
                while let Some(opt) = rest.first().filter(|w| w.starts_with('-')) {
                    let takes_value = opt == "-a";
                    rest = &rest[if takes_value { 2.min(rest.len()) } else { 1 }..];
                }
                self.run_words(rest, state, scoped, Some("exec".into()));
            }
            "command" => {
                self.builtin("command");
                let rest: Vec<String> = words[1..]
                    .iter()
                    .skip_while(|w| *w == "-p")
                    .cloned()
                    .collect();
                if words[1..].iter().any(|w| w == "-v" || w == "-V") {
                    return;
                }
                self.run_words(&rest, state, scoped, Some("command".into()));
            }
            "eval" => {
                self.builtin("eval");
                self.note(
                    "`eval` builds a command at run time: what it runs is not checked".into(),
                );
            }
            "time" if words.len() > 1 => self.run_words(&words[1..], state, scoped, via),
            n if is_builtin(n) => self.builtin(n),
            _ => {
                self.out.programs.push(ProgramUse {
                    name: name.clone(),
                    cwd: scoped.cwd.clone(),
                    path: scoped.path.clone(),
                    via: via.clone(),
                    args: args
                        .iter()
                        .map(|a| literal(a).unwrap_or_else(|| a.to_string()))
                        .collect(),
                    env: scoped.env.clone(),
                });
                let base = name.rsplit('/').next().unwrap_or(&name).to_string();
                if WRAPPERS.contains(&base.as_str()) {
                    self.wrapped(&base, &words[1..], state, scoped);
                } else if SHELLS.contains(&base.as_str()) {
                    self.shell_c(&base, &words[1..], scoped);
                }
            }
        }
    }

    /// The command an `env`/`nohup`/`nice`/`timeout`/… runs.
    fn wrapped(&mut self, wrapper: &str, args: &[String], state: &mut State, scoped: &mut State) {
        let mut rest = args;
        let mut scoped = scoped.clone();
        let mut positional_skip = usize::from(wrapper == "timeout");
        while let Some(word) = rest.first() {
            let word_lit = literal(word).unwrap_or_default();
            if word_lit == "--" {
                rest = &rest[1..];
                break;
            }
            if word_lit.starts_with('-') {
                // Options with a separate value.
                let takes_value = matches!(
                    (wrapper, word_lit.as_str()),
                    ("env", "-u" | "-C" | "-S")
                        | ("nice", "-n")
                        | ("timeout", "-s" | "-k" | "--signal" | "--kill-after")
                        | ("stdbuf", "-i" | "-o" | "-e")
                );
                rest = &rest[if takes_value { 2.min(rest.len()) } else { 1 }..];
                continue;
            }
            if wrapper == "env" {
                if let Some((var, value)) = word_lit.split_once('=') {
                    self.assign(&mut scoped, var, value);
                    rest = &rest[1..];
                    continue;
                }
            }
            if positional_skip > 0 {
                positional_skip -= 1;
                rest = &rest[1..];
                continue;
            }
            break;
        }
        self.run_words(rest, state, &mut scoped, Some(wrapper.to_string()));
    }

    /// `sh -c 'LINE'`: LINE is a command line of its own.
    fn shell_c(&mut self, shell: &str, args: &[String], scoped: &State) {
        let Some(i) = args.iter().position(|a| a == "-c") else {
            return;
        };
        let Some(script) = args.get(i + 1).and_then(|s| literal(s)) else {
            return;
        };
        if self.depth >= MAX_DEPTH {
            return;
        }
        let via = format!("{shell} -c");
        let mut inner = scoped.clone();
        if let Err(e) = walk_line(&script, &mut inner, Some(&via), self.out, self.depth + 1) {
            self.note(format!("`{shell} -c` runs a line that does not parse: {e}"));
        }
    }
}

#[cfg(test)]
mod tests;
