//! The `switchyard-bench` binary; everything lives in the library.

fn main() -> std::process::ExitCode {
    switchyard_bench::cli::main()
}
