fn main() -> std::process::ExitCode {
    ccx::cli::main().into()
}
