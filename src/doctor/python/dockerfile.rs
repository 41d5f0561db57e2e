//! A project's Docker setup, read from its `Dockerfile`s (the root, and one
//! level down such as `deployment/` or `docker/`) and compose files: the
//! directory the container works in, what it runs, how it installs Python
//! packages, and its PYTHONPATH. This is "the side that works": the doctor
//! compares a local start with it.

use std::path::{Path, PathBuf};

/// What one Dockerfile does, as far as a Python start depends on it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DockerSetup {
    pub file: PathBuf,
    /// The last `WORKDIR`.
    pub workdir: Option<String>,
    /// The last `CMD` (with a preceding `ENTRYPOINT`), as a command line;
    /// a compose `command:` for this file replaces it.
    pub command: Option<String>,
    /// `RUN` lines that install Python packages.
    pub installs: Vec<String>,
    /// `ENV PYTHONPATH=…`.
    pub pythonpath: Option<String>,
}

impl DockerSetup {
    /// Whether the image installs the project itself (`pip install -e .`,
    /// `pip install .`, with pip or uv), so that its packages import from
    /// any directory.
    pub fn installs_project(&self) -> bool {
        self.installs.iter().any(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            words.windows(2).any(|w| w[0] == "install")
                && words.iter().any(|w| {
                    matches!(*w, "." | "./" | "-e." | "-e./") || Some(*w) == self.workdir.as_deref()
                })
        })
    }
}

/// The Docker setups of the project at `root`.
pub fn find(root: &Path) -> Vec<DockerSetup> {
    let mut dirs = vec![root.to_path_buf()];
    if let Ok(entries) = std::fs::read_dir(root) {
        let mut subdirs: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir() && !is_hidden_or_venv(p))
            .collect();
        subdirs.sort();
        dirs.extend(subdirs);
    }
    let mut setups = Vec::new();
    let mut compose_commands = Vec::new();
    for dir in &dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        files.sort();
        for file in files {
            let name = file
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            if name == "Dockerfile"
                || name.starts_with("Dockerfile.")
                || name.ends_with(".Dockerfile")
            {
                if let Ok(text) = std::fs::read_to_string(&file) {
                    setups.push(parse(&file, &text));
                }
            } else if matches!(
                name.as_str(),
                "docker-compose.yml" | "docker-compose.yaml" | "compose.yml" | "compose.yaml"
            ) {
                if let Ok(text) = std::fs::read_to_string(&file) {
                    compose_commands.extend(compose_command(dir, &text));
                }
            }
        }
    }
    for (dockerfile, command) in compose_commands {
        if let Some(setup) = setups.iter_mut().find(|s| s.file == dockerfile) {
            setup.command = Some(command);
        }
    }
    setups
}

fn is_hidden_or_venv(dir: &Path) -> bool {
    dir.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.') || n == "node_modules" || n == "target")
        || dir.join("pyvenv.cfg").exists()
}

/// Reads one Dockerfile (continuation lines joined).
pub fn parse(file: &Path, text: &str) -> DockerSetup {
    let mut setup = DockerSetup {
        file: file.to_path_buf(),
        ..DockerSetup::default()
    };
    let mut entrypoint: Option<String> = None;
    for instruction in instructions(text) {
        let (keyword, rest) = instruction
            .split_once(char::is_whitespace)
            .unwrap_or((instruction.as_str(), ""));
        let rest = rest.trim();
        match keyword.to_ascii_uppercase().as_str() {
            "WORKDIR" => setup.workdir = Some(rest.to_string()),
            "CMD" => setup.command = Some(command_line(rest)),
            "ENTRYPOINT" => entrypoint = Some(command_line(rest)),
            "RUN" if rest.contains("pip install") || rest.contains("pip3 install") => {
                setup.installs.push(rest.to_string())
            }
            "ENV" => {
                if let Some(value) = env_value(rest, "PYTHONPATH") {
                    setup.pythonpath = Some(value);
                }
            }
            _ => {}
        }
    }
    if let Some(entry) = entrypoint {
        setup.command = Some(match setup.command.take() {
            Some(cmd) => format!("{entry} {cmd}"),
            None => entry,
        });
    }
    setup
}

/// Instructions with `\` continuations joined and comments dropped.
fn instructions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') && current.is_empty() {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                if !current.trim().is_empty() {
                    out.push(current.trim().to_string());
                }
                current.clear();
            }
        }
    }
    if !current.trim().is_empty() {
        out.push(current.trim().to_string());
    }
    out
}

/// `["python", "-m", "x"]` (exec form) or a shell form, as one line.
fn command_line(raw: &str) -> String {
    match serde_json::from_str::<Vec<String>>(raw) {
        Ok(words) => shell_words::join(words),
        Err(_) => raw.to_string(),
    }
}

/// `NAME=value` or `NAME value` in an `ENV` instruction.
fn env_value(rest: &str, name: &str) -> Option<String> {
    if let Some(value) = rest.strip_prefix(&format!("{name} ")) {
        return Some(value.trim().trim_matches('"').to_string());
    }
    shell_words::split(rest)
        .ok()?
        .into_iter()
        .find_map(|w| w.strip_prefix(&format!("{name}=")).map(String::from))
}

/// `(Dockerfile, command)` pairs of a compose file: a service's
/// `dockerfile:` (relative to its `context:`) and its `command:`. A plain
/// line reading, enough for the usual layout of one service per block.
fn compose_command(dir: &Path, text: &str) -> Vec<(PathBuf, String)> {
    let mut pairs = Vec::new();
    let (mut context, mut dockerfile, mut command) = (None, None, None);
    let mut flush = |context: &mut Option<String>,
                     dockerfile: &mut Option<String>,
                     command: &mut Option<String>| {
        if let (Some(file), Some(cmd)) = (dockerfile.take(), command.take()) {
            let base = dir.join(context.take().unwrap_or_else(|| ".".into()));
            pairs.push((normalize_path(&base.join(file)), cmd));
        }
        *context = None;
    };
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim();
        if indent == 2 && trimmed.ends_with(':') && !trimmed.starts_with('#') {
            flush(&mut context, &mut dockerfile, &mut command);
        }
        let value = |key: &str| {
            trimmed
                .strip_prefix(key)
                .map(|v| v.trim().trim_matches('"').trim_matches('\'').to_string())
        };
        if let Some(v) = value("context:") {
            context = Some(v);
        } else if let Some(v) = value("dockerfile:") {
            dockerfile = Some(v);
        } else if let Some(v) = value("command:").filter(|v| !v.is_empty()) {
            command = Some(command_line(&v));
        }
    }
    flush(&mut context, &mut dockerfile, &mut command);
    pairs
}

/// `a/b/../c` → `a/c`, without touching the file system.
fn normalize_path(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dockerfile_gives_its_workdir_command_and_installs() {
        let setup = parse(
            Path::new("Dockerfile"),
            "FROM python:3.11-slim\nWORKDIR /app\nCOPY . .\n# install\nRUN uv pip install --system \\\n    -e .\nENV PYTHONPATH=/app/src\nCMD [\"python\", \"-m\", \"uvicorn\", \"shop.main:app\"]\n",
        );
        assert_eq!(setup.workdir.as_deref(), Some("/app"));
        assert_eq!(
            setup.command.as_deref(),
            Some("python -m uvicorn shop.main:app")
        );
        assert_eq!(setup.pythonpath.as_deref(), Some("/app/src"));
        assert!(setup.installs_project(), "{:?}", setup.installs);
    }

    #[test]
    fn requirements_only_is_not_installing_the_project() {
        let setup = parse(
            Path::new("Dockerfile"),
            "WORKDIR /srv\nRUN pip install -r requirements.txt\nCMD python app.py\n",
        );
        assert!(!setup.installs_project());
        assert_eq!(setup.command.as_deref(), Some("python app.py"));
    }
}
