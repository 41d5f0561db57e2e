//! The references the bench installs when they are missing: the FastAPI
//! peer's and the MCP SDK peer's venvs (pip, under target/, through the
//! tests' venv helper) and
//! websocketd (Debian's package, with apt-get when running as root). A
//! reference that cannot be had is reported with the reason, and the rows
//! that need it say "skipped"; the rest still run.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::python;

/// The FastAPI peer, ready to start.
pub struct Peer {
    pub python: PathBuf,
    pub script: PathBuf,
}

pub const PEER_PACKAGES: &[&str] = &["fastapi", "uvicorn[standard]"];

pub fn peer(install: bool) -> Result<Peer, String> {
    python_peer("fastapi_peer.py", "bench-peer", PEER_PACKAGES, install)
}

/// A peer script of `bench/peers/` run by the venv `venv` (with `packages`
/// installed on first use, or found installed under `--no-install`).
fn python_peer(script: &str, venv: &str, packages: &[&str], install: bool) -> Result<Peer, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("bench/peers")
        .join(script);
    let venv = if install {
        eprintln!(
            "bench: the venv {venv} for {} (pip install {} on first use)…",
            script.display(),
            packages.join(" ")
        );
        python::venv(venv, packages)?
    } else {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("venvs")
            .join(venv);
        if !dir.join(".ccx-installed").is_file() {
            return Err(format!("no venv at {} (--no-install)", dir.display()));
        }
        python::Venv { dir }
    };
    Ok(Peer {
        python: venv.python(),
        script,
    })
}

/// The official Python MCP SDK's server (`bench/peers/mcp_sdk_peer.py`), in
/// the venv the MCP tests use (`pip install mcp`).
pub fn mcp_sdk_peer(install: bool) -> Result<Peer, String> {
    python_peer("mcp_sdk_peer.py", "mcp", MCP_SDK_PACKAGES, install)
}

/// The same list as tests/mcp.rs, so both share one venv.
const MCP_SDK_PACKAGES: &[&str] = &["mcp"];

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// websocketd on the PATH, installing Debian's package if allowed.
pub fn websocketd(install: bool) -> Result<PathBuf, String> {
    if let Some(path) = on_path("websocketd") {
        return Ok(path);
    }
    if !install {
        return Err("websocketd is not installed (--no-install)".into());
    }
    if !nix::unistd::geteuid().is_root() || on_path("apt-get").is_none() {
        return Err(
            "websocketd is not installed and this is not root with apt-get: install Debian's `websocketd` package".into(),
        );
    }
    eprintln!("bench: installing websocketd (apt-get install websocketd)…");
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .output()
    };
    let install_args = [
        "install",
        "-y",
        "-qq",
        "-o",
        "DPkg::Lock::Timeout=120",
        "websocketd",
    ];
    let mut out = apt(&install_args);
    if !matches!(&out, Ok(o) if o.status.success()) {
        let _ = apt(&["update", "-qq", "-o", "DPkg::Lock::Timeout=120"]);
        out = apt(&install_args);
    }
    match out {
        Ok(o) if o.status.success() => on_path("websocketd")
            .ok_or_else(|| "apt-get installed websocketd, but it is not on the PATH".into()),
        Ok(o) => Err(format!(
            "apt-get install websocketd failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Err(format!("cannot run apt-get: {e}")),
    }
}
