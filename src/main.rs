//! `wemaster`: thin entry point. Everything lives in the library so tests drive the same code.

fn main() -> std::process::ExitCode {
    wemaster::cli::main()
}
