//! `taskfleet-bench`: thin entry point; the cases live in the library (`core`, `fleet`).

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "taskfleet-bench",
    about = "Measures taskfleet's jobs/s against redis-benchmark on the same redis-server"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Every case in one run: enqueue (one call each, batched) and drain (claim + complete)
    /// through the library, then (unless --skip-fleet) a real taskfleet-worker draining,
    /// enqueue → start latency, idle CPU and HTTP enqueue through taskfleet-api, next to
    /// redis-benchmark's SET and EVALSHA on the same server.
    Core(taskfleet_bench::core::CoreArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Core(args) => rt.block_on(taskfleet_bench::core::main(args)),
    }
}
