//! Keeping the token out of reach of the commands the server runs.
//!
//! Commands run as the server's user, and `/proc/<pid>/environ` shows the
//! environment a process was exec'd with, whatever it did since. So a
//! server given `CCX_TOKEN` in its environment re-execs itself at once
//! without it, handing the token over on an inherited memfd (named by the
//! hidden `--token-fd` flag: the command line shows a descriptor number,
//! never the token); the new image reads it and closes the descriptor. Its
//! pid does not change, so launchers and pid files are unaffected.
//!
//! A server not running as root also clears its dumpable flag: its
//! `/proc/<pid>/environ`, `mem`, `fd/` and ptrace are then closed to
//! processes of the same user. (Root's commands can still read the
//! server's memory: docs/security.md says why production runs as another
//! user.)

use std::io::{Seek, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;

/// The flag that carries the descriptor into the re-exec'd server.
pub const TOKEN_FD_FLAG: &str = "--token-fd";

/// Re-execs this process with the same arguments plus `--token-fd N` and
/// its environment minus `CCX_TOKEN`, the token in memfd N. Returns only
/// when that failed (the server then runs with the token in its
/// environment, and the caller says so).
pub fn reexec_without_token(token: &str) -> std::io::Error {
    let fd = match token_memfd(token) {
        Ok(fd) => fd,
        Err(e) => return e,
    };
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| "ccx".into());
    let error = std::process::Command::new("/proc/self/exe")
        .arg0(arg0)
        .args(args)
        .arg(TOKEN_FD_FLAG)
        .arg(fd.as_raw_fd().to_string())
        .env_remove("CCX_TOKEN")
        .exec();
    drop(fd);
    error
}

/// A memfd holding `token`, inherited across exec, read from its start.
fn token_memfd(token: &str) -> std::io::Result<OwnedFd> {
    use rustix::fs::{memfd_create, MemfdFlags};
    let fd = memfd_create("ccx-token", MemfdFlags::empty())?;
    let mut file = std::fs::File::from(fd);
    file.write_all(token.as_bytes())?;
    file.rewind()?;
    Ok(file.into())
}

/// The token handed over on descriptor `fd` (see [`reexec_without_token`]);
/// the descriptor is closed, so no command can open it.
pub fn take_token(fd: RawFd) -> std::io::Result<String> {
    let path = format!("/proc/self/fd/{fd}");
    let read = std::fs::read_to_string(&path);
    let closed = nix::unistd::close(fd);
    let token = read.map_err(|e| {
        std::io::Error::new(e.kind(), format!("cannot read the token from {path}: {e}"))
    })?;
    closed?;
    Ok(token)
}

/// Not root: no process of the same user may read this one's memory,
/// environment or descriptors (`PR_SET_DUMPABLE` 0). Root is exempt from
/// that check anyway, and a non-dumpable root process would hide nothing
/// while breaking tools that read its /proc.
pub fn forbid_same_user_inspection() {
    if nix::unistd::geteuid().is_root() {
        return;
    }
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        tracing::warn!(
            "cannot clear the dumpable flag ({e}): processes of this user can read the server's memory"
        );
    }
}
