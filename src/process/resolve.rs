//! PATH lookups, written once: where a program name resolves (a name with
//! a slash is taken as a path), and whether it is an executable file.
//! Used by the server (`server.info`, the CCX_SHELL check at start) and by
//! the doctor (`binaries`, `spawn`).

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Why a program does not resolve.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ResolveError {
    #[error("does not exist ({0})")]
    Missing(String),
    #[error("is not an executable file")]
    NotExecutable,
    #[error("is not on PATH")]
    NotOnPath,
}

/// Resolves `program`: a path (with a slash) must be an executable file; a
/// bare name is searched on `path_var` (this process's PATH when `None`).
pub fn resolve_program(program: &str, path_var: Option<&OsStr>) -> Result<PathBuf, ResolveError> {
    if program.contains('/') {
        let path = Path::new(program);
        return match std::fs::metadata(path) {
            Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => Ok(path.to_path_buf()),
            Ok(_) => Err(ResolveError::NotExecutable),
            Err(e) => Err(ResolveError::Missing(e.to_string())),
        };
    }
    if program.is_empty() {
        return Err(ResolveError::NotOnPath);
    }
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let path_var = match path_var {
        Some(p) => p.to_os_string(),
        None => std::env::var_os("PATH").unwrap_or_default(),
    };
    which::which_in(program, Some(path_var), cwd).map_err(|_| ResolveError::NotOnPath)
}

/// [`resolve_program`] on this process's PATH, canonicalized (so that
/// symlinked shells compare equal), as text; `None` when it does not resolve.
pub fn resolve_canonical(program: &str) -> Option<String> {
    let found = resolve_program(program, None).ok()?;
    Some(found.canonicalize().unwrap_or(found).display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths_resolve_or_say_why_not() {
        assert!(resolve_program("sh", None).is_ok());
        assert_eq!(
            resolve_program("/bin/sh", None).unwrap(),
            Path::new("/bin/sh")
        );
        assert_eq!(
            resolve_program("no-such-program-ccx", None),
            Err(ResolveError::NotOnPath)
        );
        assert_eq!(
            resolve_program("/etc/passwd", None),
            Err(ResolveError::NotExecutable)
        );
        assert!(matches!(
            resolve_program("/no/such/file", None),
            Err(ResolveError::Missing(_))
        ));
        assert_eq!(
            resolve_program("sh", Some(OsStr::new("/nonexistent"))),
            Err(ResolveError::NotOnPath)
        );
    }
}
