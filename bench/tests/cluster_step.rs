//! The bench's cluster step and ordering runs, end to end on a tiny task count: real clusters
//! (1 and 3 primaries, then 3 primaries with a replica each) and a real redis-server, started
//! by the harness on free ports. Figures are not checked (no test asserts a rate), only that
//! every case ran to the end and measured what it says.

use clap::Parser;
use taskfleet::testing::RedisServer;
use taskfleet_bench::cluster::{self, ClusterCase, DrainMode};
use taskfleet_bench::core::CoreArgs;
use taskfleet_bench::ordering;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    core: CoreArgs,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_step_runs_every_case_on_every_cluster_size() {
    let cli = Cli::parse_from([
        "bench",
        "--tasks",
        "400",
        "--cluster-primaries",
        "1,3",
        // No worker binary in a test build: the library drain, and no wake-up case.
        "--skip-fleet",
        "--cluster-wait-tasks",
        "200",
        "--case-timeout-secs",
        "60",
    ]);
    let r = cluster::run(&cli.core).await.expect("the cluster step");
    assert_eq!(r.drain, DrainMode::Library);
    assert_eq!(r.tasks, 400);
    assert_eq!(r.shards, 16);
    assert_eq!(
        r.runs.iter().map(|run| run.primaries).collect::<Vec<_>>(),
        [1, 3]
    );
    for run in &r.runs {
        for case in [
            ClusterCase::EnqueueMany,
            ClusterCase::Enqueue,
            ClusterCase::Drain,
        ] {
            let s = run.sample(case).expect("every case ran");
            assert_eq!(s.jobs, 400, "{}", s.name);
            assert_eq!(s.primaries.len(), run.primaries, "{}", s.name);
            assert!(s.latency.calls > 0, "{}", s.name);
            let total: f64 = s.cpu_shares().iter().sum();
            assert!(
                (total - 1.0).abs() < 1e-9,
                "{}: {:?}",
                s.name,
                s.cpu_shares()
            );
            // Every primary served some of the 16 shards' commands.
            assert!(
                s.primaries.iter().all(|p| p.commands > 0),
                "{:?}",
                s.primaries
            );
        }
    }
    assert!(r.wake.is_none(), "no worker binary: no wake-up case");
    let w = r.wait.expect("the wait_replicas case");
    assert_eq!((w.primaries, w.replicas), (3, 3));
    assert_eq!((w.without.jobs, w.with.jobs), (200, 200));
    assert!(w.with.name.ends_with("wait_replicas=1"));
}

#[tokio::test]
async fn one_shard_claims_in_exact_order_and_more_shards_claim_every_task() {
    let server = RedisServer::start();
    let timeout = std::time::Duration::from_secs(60);
    let one = ordering::run(&server.url(), "o1", 1, 2_000, 1, timeout)
        .await
        .unwrap();
    assert_eq!(one.error.claims, 2_000);
    assert_eq!(one.error.out_of_order, 0);
    assert_eq!(one.error.band_inversions, 0);
    assert_eq!(one.error.displacement_max, 0);
    let four = ordering::run(&server.url(), "o4", 4, 2_000, 8, timeout)
        .await
        .unwrap();
    assert_eq!(four.error.claims, 2_000);
    assert_eq!(four.claim_batch, 8);
}
