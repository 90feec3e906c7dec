//! taskfleet's benchmark (DESIGN §11): jobs/s and latency percentiles of the queue engine,
//! each compared with `redis-benchmark` run in the same invocation on the same redis-server
//! (the machine's ceiling), never with a hard-coded time.
//!
//! # Layout
//! - [`core`]: the `core` subcommand: enqueue and drain cases through the library.
//! - [`fleet`]: the real worker and API binaries: worker drain, enqueue → start latency,
//!   idle CPU, and the HTTP runs of [`http`].
//! - [`http`]: HTTP enqueue through one `taskfleet-api`, N keep-alive connections.
//! - [`server`]: the redis-server the run starts, and what it tells (INFO memory, CPU).
//! - [`ceiling`]: `redis-benchmark` of `SET` and of `EVALSHA` of `return 1` (50 clients, and
//!   1 client for the one-call-at-a-time case).
//! - [`floor`]: `redis-benchmark` of the same tasks' writes alone (a hash and a queue entry,
//!   a pop and a completion): the least Redis spends on the work here, beside the ceiling.
//! - [`cluster`]: the `cluster` step: the same cases on a Redis Cluster of 1, 2 and 3
//!   primaries, wake-ups and idle CPU on it, and the cost of `wait_replicas=1`.
//! - [`ordering`]: how far claims across shards stray from the global (band, time) order.
//! - [`sample`]: one measured case: jobs, wall time, per-call latencies, CPU spent.
//! - [`machine`]: the machine the figures come from (cores, CPU model, load, date).
//! - [`report`]: what a run measured, the rows and goals built from it once, and the two
//!   renderers of those rows: text for the terminal, Markdown for the README.

pub mod ceiling;
pub mod cluster;
pub mod core;
pub mod fleet;
pub mod floor;
pub mod http;
pub mod machine;
pub mod ordering;
pub mod report;
pub mod sample;
pub mod server;
