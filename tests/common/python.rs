//! Python virtual environments for tests that drive third-party Python code
//! (cc_executor, the MCP SDK, schema validators): one venv per name under
//! the target directory, created and filled with pip on first use, so a plain
//! `cargo test` works on a fresh machine that reaches PyPI.
//!
//! Creation is serialized with a file lock (test binaries and the tests inside
//! them run concurrently), and a venv counts as ready only once every package
//! it was asked for installed.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A ready virtual environment.
#[derive(Debug, Clone)]
pub struct Venv {
    pub dir: PathBuf,
}

impl Venv {
    /// The venv's interpreter.
    pub fn python(&self) -> PathBuf {
        self.dir.join("bin/python")
    }

    /// A program the venv installed (`uvicorn`, `pip`, …).
    pub fn bin(&self, name: &str) -> PathBuf {
        self.dir.join("bin").join(name)
    }
}

/// The venv `name` with `packages` installed (pip requirement specifiers, or
/// `-r FILE`), creating it if needed. The error says what failed and pip's
/// own words.
pub fn venv(name: &str, packages: &[&str]) -> Result<Venv, String> {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("venvs");
    fs::create_dir_all(&root).map_err(|e| format!("cannot create {}: {e}", root.display()))?;
    let lock = File::create(root.join(format!("{name}.lock")))
        .map_err(|e| format!("cannot create the venv lock: {e}"))?;
    lock.lock()
        .map_err(|e| format!("cannot lock the venv lock: {e}"))?;

    let dir = root.join(name);
    let marker = dir.join(".ccx-installed");
    let wanted = packages.join("\n");
    if fs::read_to_string(&marker).is_ok_and(|got| got == wanted) {
        return Ok(Venv { dir });
    }
    let _ = fs::remove_dir_all(&dir);
    run(Command::new("python3").args(["-m", "venv"]).arg(&dir))
        .map_err(|e| format!("python3 -m venv {}: {e}", dir.display()))?;
    let venv = Venv { dir };
    let mut pip = Command::new(venv.python());
    pip.args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
    ]);
    for package in packages {
        pip.args(package.split_whitespace());
    }
    run(&mut pip).map_err(|e| format!("pip install {}: {e}", packages.join(" ")))?;
    fs::write(&marker, wanted).map_err(|e| format!("cannot write {}: {e}", marker.display()))?;
    Ok(venv)
}

/// Like [`venv`], but a test that cannot get its venv fails with the reason:
/// a test that needs a package never passes without it.
pub fn require_venv(name: &str, packages: &[&str]) -> Venv {
    venv(name, packages).unwrap_or_else(|e| panic!("this test needs a Python venv: {e}"))
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Where the cc_executor snapshot lives (`../shared/peers/cc_executor` beside
/// the repository, or `CCX_CC_EXECUTOR_DIR`), if it is there.
pub fn cc_executor_snapshot() -> Option<PathBuf> {
    let dir = std::env::var_os("CCX_CC_EXECUTOR_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/peers/cc_executor")
        });
    dir.join("src/cc_executor").is_dir().then_some(dir)
}

/// The cc_executor snapshot, or `None` after saying why the test is skipped.
/// Under CI (`CI` set) a missing snapshot fails instead: CI always has it, and
/// a compatibility test must never pass by not running.
pub fn cc_executor_or_skip(test: &str) -> Option<PathBuf> {
    if let Some(dir) = cc_executor_snapshot() {
        return Some(dir);
    }
    let what = "the cc_executor snapshot at ../shared/peers/cc_executor (or CCX_CC_EXECUTOR_DIR)";
    if std::env::var_os("CI").is_some() {
        panic!("{test} needs {what}");
    }
    eprintln!("skipped {test}: it needs {what}");
    None
}
