//! Python start failures explained in the project's own terms: a module of
//! a package run as a script (relative imports with no parent package, a
//! sibling imported as a top-level module), the project's own package not
//! importable (src layout, not installed), and a third-party module
//! missing (declared or not, present in a venv of the project or not).
//! Each finding names the project's files and gives a command to paste; a
//! registry install is suggested only for a name that is no package of the
//! project.

use std::path::{Path, PathBuf};

use super::command::{PythonRun, Target};
use super::project::{LocalPackage, Project};
use crate::doctor::signatures::{distribution_of, Finding, Severity};

/// How deep the project's packages are searched for a module file.
const MAX_DEPTH: usize = 6;

/// What the server printed, and how it was started.
pub struct Failure<'a> {
    pub output: &'a str,
    pub run: &'a PythonRun,
    pub project: &'a Project,
    /// Where the user starts the command (fixes are pasted there).
    pub base: &'a Path,
}

/// What Python says when a module with relative imports runs as a script.
pub(super) const RELATIVE_IMPORT: &str = "attempted relative import with no known parent package";

/// The project-grounded findings for `failure` (empty when its output
/// shows no Python import failure).
pub fn diagnose(failure: &Failure) -> Vec<Finding> {
    let lines: Vec<&str> = failure.output.lines().collect();
    let mut findings = Vec::new();
    if let Some(at) = lines.iter().position(|l| l.contains(RELATIVE_IMPORT)) {
        let file = innermost_file(&lines[..at]);
        findings.push(relative_import(failure, lines[at].trim(), file.as_deref()));
    }
    if let Some((line, module)) = lines.iter().find_map(|l| Some((*l, missing_module(l)?))) {
        let top = module.split('.').next().unwrap_or(&module).to_string();
        let evidence = line.trim().to_string();
        let finding = if let Some(package) = failure.project.package(&top) {
            own_package(failure, package, &evidence)
        } else if let Some(file) = module_in_a_package(failure, &top) {
            Some(sibling_import(failure, &top, &file, &evidence))
        } else {
            Some(third_party(failure, &top, &evidence))
        };
        findings.extend(finding);
    }
    findings
}

/// `No module named 'a.b'` (an import) or `No module named a.b` (`python
/// -m a.b`) → `a.b`.
pub(super) fn missing_module(line: &str) -> Option<String> {
    let rest = line.split("No module named ").nth(1)?;
    let name = match rest.strip_prefix('\'') {
        Some(quoted) => quoted.split('\'').next()?,
        None => rest.split_whitespace().next()?,
    };
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    valid.then(|| name.to_string())
}

/// The file of the last `File "…"` frame before the error.
fn innermost_file(lines: &[&str]) -> Option<PathBuf> {
    lines.iter().rev().find_map(|l| {
        let rest = l.trim_start().strip_prefix("File \"")?;
        let path = rest.split('"').next()?;
        (!path.starts_with('<')).then(|| PathBuf::from(path))
    })
}

/// The package root and dotted name of a module file inside a package
/// (`src/pkg/core/main.py` → (`src`, `pkg.core.main`)); `None` when its
/// directory is no package.
fn dotted_name(file: &Path) -> Option<(PathBuf, String)> {
    let stem = file.file_stem()?.to_str()?.to_string();
    let mut parts = vec![stem];
    let mut dir = file.parent()?;
    while dir.join("__init__.py").is_file() {
        parts.push(dir.file_name()?.to_str()?.to_string());
        dir = dir.parent()?;
    }
    if parts.len() == 1 {
        return None;
    }
    parts.reverse();
    Some((dir.to_path_buf(), parts.join(".")))
}

fn absolute(run: &PythonRun, path: &str) -> PathBuf {
    run.cwd.join(path)
}

/// The interpreter to write in a fix: the one the command used when it
/// named one, else `python`.
fn interpreter(run: &PythonRun) -> String {
    let name = run.program.rsplit('/').next().unwrap_or(&run.program);
    if !super::command::is_python(name) {
        return "python".into();
    }
    // A relative path (`.venv/bin/python`) would break behind a `cd`.
    if run.program.contains('/') && !run.program.starts_with('/') {
        return run.cwd.join(&run.program).display().to_string();
    }
    run.program.clone()
}

/// `cd DIR && ` when a fix must run in DIR rather than where the user
/// starts the command.
fn cd_prefix(f: &Failure, dir: &Path) -> String {
    if dir == f.base {
        String::new()
    } else {
        format!("cd {} && ", shell_words::quote(&relative_to(dir, f.base)))
    }
}

/// An ASGI/WSGI application object defined at the top level of `file`.
fn app_object(file: &Path) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().find_map(|line| {
        let (name, value) = line.split_once('=')?;
        let name = name.trim();
        let frameworks = [
            "FastAPI(",
            "Starlette(",
            "Flask(",
            "Quart(",
            "Sanic(",
            "Litestar(",
        ];
        (!line.starts_with(' ')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.is_empty()
            && frameworks.iter().any(|f| value.trim_start().starts_with(f)))
        .then(|| name.to_string())
    })
}

/// The host and port flags of the original command, to carry over.
fn address_flags(run: &PythonRun) -> String {
    let (host, port) = run.flag_address();
    let mut flags = String::new();
    if let Some(h) = host {
        flags.push_str(&format!(" --host {h}"));
    }
    if let Some(p) = port {
        flags.push_str(&format!(" --port {p}"));
    }
    flags
}

/// What the project's Docker setup does that makes the same code start
/// there, as a sentence (empty without a Dockerfile).
fn docker_sentence(project: &Project, package: Option<&str>) -> String {
    let Some(setup) = project
        .docker
        .iter()
        .find(|s| s.installs_project())
        .or(project.docker.first())
    else {
        return String::new();
    };
    let mut sentence = format!(" {}", project.show(&setup.file));
    match (&setup.command, &setup.workdir) {
        (Some(cmd), Some(dir)) => sentence.push_str(&format!(" runs `{cmd}` from WORKDIR {dir}")),
        (Some(cmd), None) => sentence.push_str(&format!(" runs `{cmd}`")),
        (None, Some(dir)) => sentence.push_str(&format!(" works in {dir}")),
        (None, None) => sentence.push_str(" builds the image"),
    }
    if setup.installs_project() {
        let install = setup
            .installs
            .first()
            .map(String::as_str)
            .unwrap_or("pip install");
        let what = package
            .map(|p| format!("`{p}`"))
            .unwrap_or("the project".into());
        sentence.push_str(&format!(
            " after `{install}`: there {what} is an installed package, importable from any directory, and every module is imported as part of its package; locally it is not installed."
        ));
    } else if let Some(path) = &setup.pythonpath {
        sentence.push_str(&format!(" with PYTHONPATH={path}."));
    } else {
        sentence.push('.');
    }
    sentence
}

fn cause(id: &str, meaning: String, fix: String, evidence: String) -> Finding {
    Finding {
        id: id.into(),
        severity: Severity::Cause,
        meaning,
        fix,
        evidence,
    }
}

/// The command that starts `module`'s app the way a package expects:
/// from its package root, through uvicorn.
fn app_command(f: &Failure, root: &Path, dotted: &str, app: &str) -> String {
    let server = match &f.run.target {
        Target::App { server, .. } => server.clone(),
        _ => "uvicorn".into(),
    };
    format!(
        "{}{} -m {server} {dotted}:{app}{}",
        cd_prefix(f, root),
        interpreter(f.run),
        address_flags(f.run)
    )
}

/// Relative imports in a module that was not imported as part of its
/// package: the script run directly, or a sibling it imported top-level.
fn relative_import(f: &Failure, evidence: &str, failing: Option<&Path>) -> Finding {
    let script = match &f.run.target {
        Target::Script(s) => Some(absolute(f.run, s)),
        _ => None,
    };
    let failing = failing.map(Path::to_path_buf).or_else(|| script.clone());
    let Some(failing) = failing else {
        return cause(
            "script-in-package",
            "a module with relative imports (`from .x import …`) was run outside its package".into(),
            "run it as part of its package, from the package's parent directory: `python -m package.module`".into(),
            evidence.into(),
        );
    };
    let shown = f.project.show(&failing);
    let Some((root, dotted)) = dotted_name(&failing) else {
        return cause(
            "script-in-package",
            format!("{shown} uses relative imports, which work only inside a package, and its directory has no __init__.py"),
            format!("add an __init__.py to {} and run it as a module from its parent directory, or make its imports absolute", f.project.show(failing.parent().unwrap_or(&failing))),
            evidence.into(),
        );
    };
    let package = dotted.split('.').next().unwrap_or(&dotted).to_string();
    let how = match &script {
        Some(s) if *s == failing => format!("{shown} was run as a script, so Python loaded it as the top-level module `__main__`, outside its package `{package}`"),
        Some(s) => format!(
            "{} was run as a script: Python put its directory first on sys.path, so it imported {shown} as a top-level module `{}` instead of `{dotted}`, outside its package `{package}`",
            f.project.show(s),
            dotted.rsplit('.').next().unwrap_or(&dotted)
        ),
        None => format!("{shown} was imported outside its package `{package}` (as a top-level module, not as `{dotted}`)"),
    };
    let meaning = format!(
        "a module of a package run as a script: {how}, and its relative imports then have no parent package.{}",
        docker_sentence(f.project, Some(&package))
    );
    // Running the script itself as a module works only when it imports its
    // siblings relatively; a `from main import app` needs the app started
    // as part of the package instead.
    let fix = match (&script, app_object(&failing)) {
        (Some(s), _) if *s != failing || app_object(s).is_none() => match app_object(&failing) {
            Some(app) => format!(
                "start the app as part of its package: `{}`",
                app_command(f, &root, &dotted, &app)
            ),
            None => match dotted_name(s) {
                Some((script_root, script_dotted)) => format!(
                    "run it as a module of its package: `{}{} -m {script_dotted}{}`",
                    cd_prefix(f, &script_root),
                    interpreter(f.run),
                    rest_args(f.run)
                ),
                None => format!(
                    "run `{dotted}` as part of its package from {}",
                    f.project.show(&root)
                ),
            },
        },
        (_, Some(app)) => format!(
            "start the app as part of its package: `{}`",
            app_command(f, &root, &dotted, &app)
        ),
        _ => format!(
            "run it as a module of its package: `{}{} -m {dotted}{}`",
            cd_prefix(f, &root),
            interpreter(f.run),
            rest_args(f.run)
        ),
    };
    cause(
        "script-in-package",
        meaning,
        fix,
        format!(
            "{evidence} (in {shown}, module `{dotted}` of {})",
            f.project.show(&root)
        ),
    )
}

fn rest_args(run: &PythonRun) -> String {
    if run.rest.is_empty() {
        String::new()
    } else {
        format!(" {}", shell_words::join(&run.rest))
    }
}

/// `No module named 'X'` where X is the project's own package.
fn own_package(f: &Failure, package: &LocalPackage, evidence: &str) -> Option<Finding> {
    let location = f.project.show(&package.path);
    let import_root = f.project.show(&package.import_root);
    let layout = if package.import_root.ends_with("src") {
        "a src layout: it imports only when ./src is on sys.path or the project is installed"
    } else {
        "it imports only when its parent directory is on sys.path or the project is installed"
    };
    let from_here = if f.run.cwd == package.import_root {
        format!(" even though the command runs in {import_root}")
    } else {
        format!(" from {}", f.run.cwd.display())
    };
    let python = interpreter(f.run);
    let meaning = format!(
        "`{}` is this project's own package ({location}), not a third-party one, and it is not importable for {python}{from_here}: {layout}.{}",
        package.name,
        docker_sentence(f.project, Some(&package.name))
    );
    let rel = relative_to(&package.import_root, &f.run.cwd);
    let mut ways = Vec::new();
    if f.project.installable.is_some() {
        ways.push(format!(
            "install the project into this interpreter once: `{}{python} -m pip install -e .`",
            cd_prefix(f, &f.project.root)
        ));
    }
    let argv = format!(
        "{}{}",
        cd_prefix(f, &f.run.cwd),
        shell_words::join(&f.run.argv)
    );
    match &f.run.target {
        Target::App { server, .. } if server == "uvicorn" => ways.push(format!(
            "or tell uvicorn where it is: `{argv} --app-dir {rel}`"
        )),
        _ => {}
    }
    ways.push(format!(
        "or put {import_root} on the path: `{}PYTHONPATH={rel} {}`",
        cd_prefix(f, &f.run.cwd),
        shell_words::join(&f.run.argv)
    ));
    Some(cause(
        "local-package-not-importable",
        meaning,
        ways.join(", "),
        format!("{evidence} (found at {location})"),
    ))
}

/// A path as the command's working directory reaches it.
fn relative_to(path: &Path, from: &Path) -> String {
    match path.strip_prefix(from) {
        Ok(rel) if rel.as_os_str().is_empty() => ".".into(),
        Ok(rel) => rel.display().to_string(),
        Err(_) => path.display().to_string(),
    }
}

/// A module file `name.py` inside one of the project's packages: the
/// target of a top-level import that should have been a package import.
fn module_in_a_package(f: &Failure, name: &str) -> Option<PathBuf> {
    let mut stack: Vec<(PathBuf, usize)> = f
        .project
        .packages
        .iter()
        .filter(|p| p.path.is_dir())
        .map(|p| (p.path.clone(), 0))
        .collect();
    while let Some((dir, depth)) = stack.pop() {
        let candidate = dir.join(format!("{name}.py"));
        if candidate.is_file() {
            return Some(candidate);
        }
        if depth >= MAX_DEPTH {
            continue;
        }
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.join("__init__.py").is_file() {
                stack.push((path, depth + 1));
            }
        }
    }
    None
}

/// `No module named 'main'` where main.py is a module of a package.
fn sibling_import(f: &Failure, name: &str, file: &Path, evidence: &str) -> Finding {
    let (root, dotted) = dotted_name(file).unwrap_or_else(|| (f.project.root.clone(), name.into()));
    let package = dotted.split('.').next().unwrap_or(&dotted).to_string();
    let meaning = format!(
        "`{name}` is no installed module but {} of this project's package `{package}`: it must be imported as `{dotted}`; a `from {name} import …` works only when its directory is first on sys.path (a script run from there), and then its own relative imports fail.{}",
        f.project.show(file),
        docker_sentence(f.project, Some(&package))
    );
    let fix = match app_object(file) {
        Some(app) => format!(
            "start the app as part of its package: `{}`",
            app_command(f, &root, &dotted, &app)
        ),
        None => format!(
            "import it as `{dotted}` and run the server as a module from {}: `{} -m …`",
            f.project.show(&root),
            interpreter(f.run)
        ),
    };
    cause(
        "script-in-package",
        meaning,
        fix,
        format!("{evidence} ({} is module `{dotted}`)", f.project.show(file)),
    )
}

/// A third-party module is missing.
fn third_party(f: &Failure, module: &str, evidence: &str) -> Finding {
    let dist = distribution_of(module);
    let python = interpreter(f.run);
    let declared = f.project.declares(&dist) || f.project.declares(module);
    let venv = f
        .project
        .venvs
        .iter()
        .find(|v| v.has(module, &dist) && f.run.cwd.join(&f.run.program) != v.python);
    let declared_where = if declared {
        let files: Vec<String> = f
            .project
            .requirements
            .iter()
            .map(|p| format!("./{}", p.display()))
            .chain(f.project.installable.iter().map(|p| f.project.show(p)))
            .collect();
        format!("declared by the project ({})", files.join(", "))
    } else {
        "not declared by the project (no requirements file or pyproject.toml lists it)".into()
    };
    let in_venv = match venv {
        Some(v) => format!("; the project's venv {} has it", f.project.show(&v.dir)),
        None if f.project.venvs.is_empty() => "; the project has no venv".into(),
        None => "; no venv of the project has it either".into(),
    };
    let meaning = format!(
        "the third-party module `{module}` (distribution `{dist}`) is not installed for {python}: it is {declared_where}{in_venv}"
    );
    let fix = if let Some(v) = venv {
        let mut argv = f.run.argv.clone();
        let with_venv = if super::command::is_python(argv[0].rsplit('/').next().unwrap_or_default())
        {
            argv[0] = v.python.display().to_string();
            format!("{}{}", cd_prefix(f, &f.run.cwd), shell_words::join(&argv))
        } else {
            format!(
                "{}{} -m {}",
                cd_prefix(f, &f.run.cwd),
                v.python.display(),
                shell_words::join(&argv)
            )
        };
        format!("run the server with that venv's interpreter: `{with_venv}`")
    } else if declared {
        match f.project.requirements.first() {
            Some(req) => format!(
                "install the project's requirements for this interpreter: `{}{python} -m pip install -r {}`",
                cd_prefix(f, &f.project.root),
                req.display()
            ),
            None => format!(
                "install the project with its dependencies: `{}{python} -m pip install -e .`",
                cd_prefix(f, &f.project.root)
            ),
        }
    } else {
        format!("install it for this interpreter (`{python} -m pip install {dist}`) and add it to the project's requirements")
    };
    cause("missing-dependency", meaning, fix, evidence.into())
}
