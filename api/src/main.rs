//! The `taskfleet-api` binary: everything is in the library ([`taskfleet_api::cli`]).

/// mimalloc instead of glibc's malloc: allocation and freeing took about a fifth of the API's
/// CPU per request under load (perf, README Benchmarks).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    taskfleet_api::cli::main()
}
