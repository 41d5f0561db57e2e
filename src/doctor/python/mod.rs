//! Python servers that fail to start, diagnosed from the project on disk:
//! what the command line asks Python to run (`command`), the project it
//! runs in (`project`: layout, packages, declared dependencies, venvs) and
//! its Docker setup (`dockerfile`), and the findings that explain an import
//! failure in those terms (`diagnosis`). The doctor's `spawn` step calls
//! [`diagnose`] with what a failed server printed.

mod command;
mod diagnosis;
mod dockerfile;
mod project;

use std::path::Path;

pub use command::{address_from_flags, PythonRun};

use crate::doctor::signatures::Finding;

/// Project-grounded findings for a server command that printed `output`
/// and ran from `base` (the launcher's working directory); empty when the
/// command starts no Python program or the output shows no import failure.
pub fn diagnose(server_cmd: &str, base: &Path, output: &str) -> Vec<Finding> {
    if !shows_import_failure(output) {
        return Vec::new();
    }
    // A line the doctor cannot read as a Python start (a wrapper script
    // that runs Python) is still read against the project it runs in: an
    // import failure of the project's own package is never advice to
    // install that name from a registry.
    let read = crate::doctor::shell::analyze(server_cmd)
        .ok()
        .and_then(|analysis| PythonRun::find(&analysis.programs, base));
    let opaque = read.is_none();
    let run = read.unwrap_or_else(|| PythonRun::opaque(server_cmd, base));
    let project = project::Project::discover(&run.cwd);
    let mut findings = diagnosis::diagnose(&diagnosis::Failure {
        output,
        run: &run,
        project: &project,
        base,
    });
    if opaque {
        // Which interpreter ran is unknown here: the generic reading,
        // which names the one the command resolves to, says more.
        findings.retain(|f| f.id != "missing-dependency");
    }
    findings
}

/// Whether `output` has what the diagnosis reads (a relative import
/// without a package, a missing module): without it the project on disk is
/// not looked at, so a server that fails for another reason is reported at
/// once.
fn shows_import_failure(output: &str) -> bool {
    output
        .lines()
        .any(|l| l.contains(diagnosis::RELATIVE_IMPORT) || diagnosis::missing_module(l).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_import_failure_sends_the_doctor_to_the_project_on_disk() {
        assert!(shows_import_failure(
            "Traceback (most recent call last):\nModuleNotFoundError: No module named 'fastapi'\n"
        ));
        assert!(shows_import_failure(
            "ImportError: attempted relative import with no known parent package"
        ));
        assert!(!shows_import_failure(
            "OSError: [Errno 98] Address already in use\n"
        ));
        assert!(!shows_import_failure(""));
    }
}
