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
    let Ok(analysis) = crate::shell::analyze(server_cmd) else {
        return Vec::new();
    };
    let Some(run) = PythonRun::find(&analysis.programs, base) else {
        return Vec::new();
    };
    let project = project::Project::discover(&run.cwd);
    diagnosis::diagnose(&diagnosis::Failure {
        output,
        run: &run,
        project: &project,
        base,
    })
}
