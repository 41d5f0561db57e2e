//! What a server command line asks Python to run: a script (`python
//! path/x.py`), a module (`python -m pkg.mod`), or an ASGI/WSGI app through
//! a server (`uvicorn pkg.main:app`, `python -m uvicorn …`, gunicorn,
//! hypercorn), with the directory it runs in, the interpreter, the
//! variables it sets and the address its flags name. Read from the parsed
//! command line (`crate::doctor::shell`); nothing is run.

use std::path::{Path, PathBuf};

use crate::doctor::shell::ProgramUse;

/// What the interpreter is asked to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `python path/to/script.py` (the path as written).
    Script(String),
    /// `python -m dotted.module` (not a server such as uvicorn).
    Module(String),
    /// `uvicorn module:attr` and the like.
    App {
        server: String,
        module: String,
        attr: String,
        app_dir: Option<String>,
    },
}

/// A Python server start, read from the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PythonRun {
    /// The program as written (`python3`, `.venv/bin/python`, `uvicorn`).
    pub program: String,
    /// The directory it runs in (absolute).
    pub cwd: PathBuf,
    pub target: Target,
    /// Its arguments after the target (`--port 8013`).
    pub rest: Vec<String>,
    /// Variables the line sets for it.
    pub env: Vec<(String, String)>,
    /// The program and all its arguments, as the shell passes them.
    pub argv: Vec<String>,
}

const SERVERS: &[&str] = &["uvicorn", "gunicorn", "hypercorn"];

impl PythonRun {
    /// The first Python start `programs` makes, with relative directories
    /// taken from `base` (the launcher's working directory).
    pub fn find(programs: &[ProgramUse], base: &Path) -> Option<PythonRun> {
        programs
            .iter()
            .find_map(|p| PythonRun::from_program(p, base))
    }

    fn from_program(p: &ProgramUse, base: &Path) -> Option<PythonRun> {
        let name = p.name.rsplit('/').next().unwrap_or(&p.name);
        let cwd = match &p.cwd {
            Some(dir) => base.join(dir),
            None => base.to_path_buf(),
        };
        let (target, rest) = if is_python(name) {
            python_target(&p.args)?
        } else if SERVERS.contains(&name) {
            app_target(name, &p.args)?
        } else {
            return None;
        };
        Some(PythonRun {
            program: p.name.clone(),
            cwd,
            target,
            rest,
            env: p.env.clone(),
            argv: std::iter::once(p.name.clone())
                .chain(p.args.iter().cloned())
                .collect(),
        })
    }

    /// A command line whose Python start cannot be read (a wrapper script,
    /// a variable as the program): it runs from `base`, as `python`.
    pub fn opaque(server_cmd: &str, base: &Path) -> PythonRun {
        PythonRun {
            program: "python".into(),
            cwd: base.to_path_buf(),
            target: Target::Module(String::new()),
            rest: Vec::new(),
            env: Vec::new(),
            argv: shell_words::split(server_cmd).unwrap_or_else(|_| vec![server_cmd.to_string()]),
        }
    }

    /// The value of a variable the line sets (`PYTHONPATH`).
    pub fn var(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// `--port`/`-p`/`--bind`/`-b` as the server's flags give them: a host
    /// (when named) and a port.
    pub fn flag_address(&self) -> (Option<String>, Option<u16>) {
        address_from_flags(&self.rest)
    }
}

/// `python`, `python3`, `python3.11`, `pypy3`.
pub fn is_python(name: &str) -> bool {
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit() || c == '.');
    ["python", "pypy"]
        .iter()
        .any(|p| name.strip_prefix(p).is_some_and(digits))
}

/// What `python ARGS` runs: interpreter options are skipped.
fn python_target(args: &[String]) -> Option<(Target, Vec<String>)> {
    let mut i = 0;
    while let Some(arg) = args.get(i) {
        match arg.as_str() {
            "-m" => {
                let module = args.get(i + 1)?.clone();
                let rest = args[i + 2..].to_vec();
                let top = module.split('.').next().unwrap_or_default();
                if SERVERS.contains(&top) {
                    return app_target(top, &rest);
                }
                return Some((Target::Module(module), rest));
            }
            "-c" => return None,
            "-W" | "-X" | "--check-hash-based-pycs" => i += 2,
            a if a.starts_with('-') => i += 1,
            script => return Some((Target::Script(script.to_string()), args[i + 1..].to_vec())),
        }
    }
    None
}

/// `uvicorn [options] module:attr [options]` and the like.
fn app_target(server: &str, args: &[String]) -> Option<(Target, Vec<String>)> {
    let spec = args
        .iter()
        .enumerate()
        .find(|(i, a)| {
            !a.starts_with('-')
                && a.contains(':')
                && !a.contains("://")
                && !takes_value(args.get(i.wrapping_sub(1)).map(String::as_str))
        })
        .map(|(_, a)| a.clone())?;
    let (module, attr) = spec.split_once(':')?;
    let app_dir = option_value(args, &["--app-dir", "--chdir"]);
    let rest: Vec<String> = args.iter().filter(|a| **a != spec).cloned().collect();
    Some((
        Target::App {
            server: server.to_string(),
            module: module.to_string(),
            attr: attr.trim_end_matches("()").to_string(),
            app_dir,
        },
        rest,
    ))
}

/// Options of uvicorn/gunicorn/hypercorn that take a separate value.
fn takes_value(option: Option<&str>) -> bool {
    matches!(
        option,
        Some(
            "--host"
                | "--port"
                | "-p"
                | "--bind"
                | "-b"
                | "--app-dir"
                | "--chdir"
                | "--workers"
                | "-w"
                | "--log-level"
                | "--env-file"
                | "-k"
                | "--worker-class"
                | "--root-path"
                | "--uds"
                | "--fd"
        )
    )
}

/// `--name VALUE` or `--name=VALUE`, the last one given.
fn option_value(args: &[String], names: &[&str]) -> Option<String> {
    let mut found = None;
    for (i, arg) in args.iter().enumerate() {
        for name in names {
            if arg == name {
                if let Some(v) = args.get(i + 1) {
                    found = Some(v.clone());
                }
            } else if let Some(v) = arg.strip_prefix(&format!("{name}=")) {
                found = Some(v.to_string());
            }
        }
    }
    found
}

/// The address that flags give a server: `--host H`, `--port P`/`-p P`,
/// `--bind H:P`/`-b H:P` (gunicorn, hypercorn), `-h H`.
pub fn address_from_flags(args: &[String]) -> (Option<String>, Option<u16>) {
    let mut host = option_value(args, &["--host", "-h"]).filter(|h| !h.starts_with('-'));
    let mut port = option_value(args, &["--port", "-p"]).and_then(|p| p.parse().ok());
    if let Some(bind) = option_value(args, &["--bind", "-b"]) {
        if let Some((h, p)) = bind.rsplit_once(':') {
            if let Ok(p) = p.parse() {
                port = Some(p);
                host = Some(h.trim_matches(['[', ']']).to_string()).filter(|h| !h.is_empty());
            }
        }
    }
    (host, port)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(line: &str) -> PythonRun {
        let analysis = crate::doctor::shell::analyze(line).unwrap();
        PythonRun::find(&analysis.programs, Path::new("/proj")).expect(line)
    }

    #[test]
    fn scripts_modules_and_apps_are_told_apart() {
        let r = run("python src/pkg/core/runner.py --port 8013");
        assert_eq!(r.target, Target::Script("src/pkg/core/runner.py".into()));
        assert_eq!(r.flag_address(), (None, Some(8013)));
        let r = run("cd src && PYTHONPATH=. .venv/bin/python -m uvicorn pkg.main:app --host 127.0.0.1 --port=9000");
        assert_eq!(r.cwd, Path::new("/proj/src"));
        assert_eq!(r.var("PYTHONPATH"), Some("."));
        assert!(
            matches!(&r.target, Target::App { module, attr, .. } if module == "pkg.main" && attr == "app")
        );
        assert_eq!(r.flag_address(), (Some("127.0.0.1".into()), Some(9000)));
        let r = run("exec python3 -u -m pkg.main --server");
        assert_eq!(r.target, Target::Module("pkg.main".into()));
        let r =
            run("gunicorn -b 0.0.0.0:8100 -k uvicorn.workers.UvicornWorker 'web.app:create_app()'");
        assert!(
            matches!(&r.target, Target::App { module, attr, .. } if module == "web.app" && attr == "create_app")
        );
        assert_eq!(r.flag_address(), (Some("0.0.0.0".into()), Some(8100)));
    }

    #[test]
    fn other_programs_are_not_python_runs() {
        let analysis = crate::doctor::shell::analyze("node server.js --port 3000").unwrap();
        assert!(PythonRun::find(&analysis.programs, Path::new("/")).is_none());
        assert!(is_python("python3.11") && is_python("python") && !is_python("pythonista"));
    }
}
