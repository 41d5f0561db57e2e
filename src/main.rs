//! The `ccx` binary: everything lives in the library; this maps its result to the exit code.

fn main() -> std::process::ExitCode {
    if let Some(code) = ccx::process::launcher::run_if_invoked() {
        return code;
    }
    ccx::cli::main().into()
}
