//! The `databot` command line entry point.

fn main() -> std::process::ExitCode {
    databot::cli::main()
}
