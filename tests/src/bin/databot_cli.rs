//! The `databot` command line, built inside the test crate so end-to-end tests and benchmarks
//! can start it as a child process (`CARGO_BIN_EXE_databot_cli`, always as fresh as the
//! library). Same entry point as the real binary.

fn main() -> std::process::ExitCode {
    databot::cli::main()
}
