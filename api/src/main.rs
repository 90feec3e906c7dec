//! The `taskfleet-api` binary: everything is in the library ([`taskfleet_api::cli`]).

fn main() -> std::process::ExitCode {
    taskfleet_api::cli::main()
}
