//! `ccx completions SHELL` and `ccx man`: shell completion scripts
//! (`clap_complete`) and a man page (`clap_mangen`), both generated from the
//! same clap definitions that parse the command line, so they never drift
//! from the flags ccx really takes.

use std::path::PathBuf;

use clap::{Args, CommandFactory, ValueEnum};

use super::{output, Cli, CliError};
use crate::exit::Exit;

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to generate the completion script for.
    #[arg(value_enum)]
    pub shell: CompletionShell,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
    Powershell,
}

impl CompletionShell {
    fn generator(self) -> clap_complete::Shell {
        match self {
            CompletionShell::Bash => clap_complete::Shell::Bash,
            CompletionShell::Zsh => clap_complete::Shell::Zsh,
            CompletionShell::Fish => clap_complete::Shell::Fish,
            CompletionShell::Powershell => clap_complete::Shell::PowerShell,
        }
    }
}

/// Prints the completion script for `args.shell` on stdout.
pub fn completions(args: CompletionsArgs) -> Result<Exit, CliError> {
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell.generator(), &mut command, "ccx", &mut script);
    output::print(&String::from_utf8_lossy(&script))?;
    Ok(Exit::Success)
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write ccx.1 and one page per subcommand (ccx-doctor.1, …) into this
    /// directory instead of printing ccx.1 on stdout.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// Prints the man page `ccx(1)` (roff) on stdout, or writes it and the
/// subcommands' pages (`ccx-doctor(1)`, …), which it refers to, into `--dir`.
pub fn man(args: ManArgs) -> Result<Exit, CliError> {
    // No `help` subcommand in the page: `ccx help` is `--help`, and it
    // would name a ccx-help(1) that no one writes.
    let command = Cli::command().disable_help_subcommand(true);
    match args.dir {
        Some(dir) => {
            if !dir.is_dir() {
                return Err(CliError::Usage(format!(
                    "--dir {}: not a directory (create it first)",
                    dir.display()
                )));
            }
            clap_mangen::generate_to(command, &dir).map_err(|e| {
                CliError::Io(std::io::Error::new(
                    e.kind(),
                    format!("cannot write the man pages into {}: {e}", dir.display()),
                ))
            })?;
        }
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(command).render(&mut page)?;
            output::print(&String::from_utf8_lossy(&page))?;
        }
    }
    Ok(Exit::Success)
}
