//! `taskfleet-bench`: thin entry point; the cases live in the library (`core`, later `worker`).

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
    /// The queue engine alone: enqueue (one call each, batched) and drain (claim + complete)
    /// through the library, next to redis-benchmark's SET and EVALSHA on the same server.
    Core(taskfleet_bench::core::CoreArgs),
    // A later `Worker` case drains through real `taskfleet-worker` processes; it reuses
    // `server`, `ceiling` and `report` as they are.
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
