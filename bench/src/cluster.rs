//! The `cluster` step of `taskfleet-bench core` (issue 10): the same queue on a Redis
//! Cluster of 1, 2 and 3 primaries (no replicas) on this machine, one type of 16 shards, next to
//! the single-server figures of the same run.
//!
//! For each cluster size, on a fresh cluster the harness forms ([`RedisCluster`]):
//! 1. enqueue_many, `--batch` a call, `--batch-in-flight` calls at a time (as the
//!    single-server batched case);
//! 2. enqueue one task a call, `--in-flight` calls at a time (as the single-server case);
//! 3. drain: by default one `taskfleet-worker` process (concurrency `--worker-concurrency`)
//!    draining no-op tasks, compared with the single server's worker drain of the same run.
//!    That is the fair comparison: a worker is what drains a queue in production, and it
//!    claims as the cluster client does (two shards' heads read in one fan-out, the wake-ups
//!    of the shard that has work). `--cluster-drain library` drains with 4 library consumers
//!    instead (claim + complete in one call each), compared with the single server's drain
//!    with 4 consumers (what the bench's own test uses: no binaries needed).
//!
//! Each case reads every primary's `INFO cpu` (used_cpu_sys + used_cpu_user) and `INFO stats`
//! (total_commands_processed) before and after: Redis CPU µs per job on each primary and
//! summed, and each primary's share of the CPU and of the commands (even: 1/N each).
//!
//! Then, on the largest cluster, the wake-up latency (enqueue → processor start with idle
//! workers) and an idle worker's CPU, as the single-server case measures them; and on a
//! cluster of 3 primaries with a replica each, the cost of `wait_replicas = 1`: enqueue one
//! task a call with `--in-flight` calls in flight, without and with it.
//!
//! Every cluster is started on free loopback ports (never 6379) by the harness, under its
//! watchdog, and its nodes are killed when its step ends; every wait is bounded.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use taskfleet::testing::{Admin, RedisCluster};
use taskfleet::{Broker, Deployment, RedisClock};

use crate::core::{self, CoreArgs, EnqueueCase};
use crate::fleet::{self, StartLatency};
use crate::sample::Latency;
use crate::server::info_value;

/// Shards of the bench's type on a cluster: the cluster's default.
pub const SHARDS: u16 = taskfleet::config::DEFAULT_CLUSTER_SHARDS;
/// Forming a cluster (nodes started, slots assigned, every node `cluster_state:ok`): about
/// 2 s here; a slower machine gets much longer before the run gives up.
const FORM_TIMEOUT: Duration = Duration::from_secs(120);
/// Connecting to a node, and INFO on it (which can wait behind many clients' commands).
const NODE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a worker drain on a cluster reads the counts: a status read fans out 9 commands
/// per shard, so it is read less often than on a single server (10 ms) to keep it from
/// weighing on the figures.
const CLUSTER_POLL: Duration = Duration::from_millis(50);

/// How the cluster step drains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DrainMode {
    /// One taskfleet-worker process, compared with the single server's worker drain.
    Worker,
    /// 4 library consumers, compared with the single server's drain with 4 consumers.
    Library,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ClusterArgs {
    /// Leave out the cluster step.
    #[arg(long)]
    pub skip_cluster: bool,
    /// Primaries of each cluster the step forms, in order (no replicas).
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    pub cluster_primaries: Vec<usize>,
    /// Tasks per cluster case (default: --tasks).
    #[arg(long)]
    pub cluster_tasks: Option<usize>,
    /// How the cluster step drains (see the module's documentation).
    #[arg(long, value_enum, default_value_t = DrainMode::Worker)]
    pub cluster_drain: DrainMode,
    /// Leave out the wake-up latency and idle CPU on the cluster.
    #[arg(long)]
    pub skip_cluster_latency: bool,
    /// Leave out the cost of wait_replicas=1 (on a 3-primary, 3-replica cluster).
    #[arg(long)]
    pub skip_cluster_wait: bool,
    /// Tasks of each wait_replicas run (default: half of --cluster-tasks).
    #[arg(long)]
    pub cluster_wait_tasks: Option<usize>,
    /// Leave out the ordering error across shards.
    #[arg(long)]
    pub skip_ordering: bool,
    /// Tasks of each ordering run (mixed bands, drained by one consumer).
    #[arg(long, default_value_t = 100_000)]
    pub ordering_tasks: usize,
    /// Shard counts of the ordering runs, in order.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    pub ordering_shards: Vec<u16>,
    /// Tasks per claim of the ordering runs' one consumer.
    #[arg(long, default_value_t = 1)]
    pub ordering_claim_batch: usize,
}

/// Which cluster case a sample is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterCase {
    EnqueueMany,
    Enqueue,
    Drain,
}

/// What one primary did during a case.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PrimaryLoad {
    pub port: u16,
    /// CPU seconds (user + system).
    pub cpu: f64,
    /// Commands processed (a script call is one).
    pub commands: u64,
}

/// One cluster case.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterSample {
    pub case: ClusterCase,
    pub name: String,
    pub jobs: usize,
    pub elapsed: Duration,
    /// Per call; empty for a worker drain.
    pub latency: Latency,
    /// Every primary, in port order.
    pub primaries: Vec<PrimaryLoad>,
}

/// Each share as a multiple of an even share (1/N), and the largest distance from 1.
pub fn max_deviation(shares: &[f64]) -> f64 {
    let n = shares.len() as f64;
    shares
        .iter()
        .map(|s| (s * n - 1.0).abs())
        .fold(0.0, f64::max)
}

fn shares(values: &[f64]) -> Vec<f64> {
    let total: f64 = values.iter().sum();
    values.iter().map(|v| v / total.max(1e-12)).collect()
}

impl ClusterSample {
    pub fn jobs_per_sec(&self) -> f64 {
        self.jobs as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Redis CPU µs per job, all primaries together.
    pub fn redis_us_per_job(&self) -> f64 {
        self.primaries.iter().map(|p| p.cpu).sum::<f64>() * 1e6 / self.jobs.max(1) as f64
    }

    /// Each primary's CPU µs per job (of all the case's jobs).
    pub fn us_per_job_each(&self) -> Vec<f64> {
        self.primaries
            .iter()
            .map(|p| p.cpu * 1e6 / self.jobs.max(1) as f64)
            .collect()
    }

    /// Each primary's share of the Redis CPU.
    pub fn cpu_shares(&self) -> Vec<f64> {
        shares(&self.primaries.iter().map(|p| p.cpu).collect::<Vec<_>>())
    }

    /// Each primary's share of the commands.
    pub fn command_shares(&self) -> Vec<f64> {
        shares(
            &self
                .primaries
                .iter()
                .map(|p| p.commands as f64)
                .collect::<Vec<_>>(),
        )
    }
}

/// The cases on one cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterRun {
    pub primaries: usize,
    pub samples: Vec<ClusterSample>,
}

impl ClusterRun {
    pub fn sample(&self, case: ClusterCase) -> Option<&ClusterSample> {
        self.samples.iter().find(|s| s.case == case)
    }
}

/// Wake-ups and idle CPU on a cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterWake {
    pub primaries: usize,
    pub latency: StartLatency,
    pub idle_cpu: f64,
}

/// Enqueue one task a call without and with `wait_replicas = 1`.
#[derive(Debug, Clone, PartialEq)]
pub struct WaitCost {
    pub primaries: usize,
    pub replicas: usize,
    pub wait_timeout_ms: u64,
    pub without: ClusterSample,
    pub with: ClusterSample,
}

/// What the cluster step measured.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterReport {
    pub shards: u16,
    pub tasks: usize,
    pub drain: DrainMode,
    pub runs: Vec<ClusterRun>,
    pub wake: Option<ClusterWake>,
    pub wait: Option<WaitCost>,
}

/// A cluster of this run, killed (off the runtime's threads) when the step is done with it.
struct Cluster {
    nodes: Arc<RedisCluster>,
    primaries: Vec<(u16, Admin)>,
}

impl Cluster {
    async fn start(primaries: usize, replicas: usize) -> Result<Cluster> {
        let formed = tokio::time::timeout(
            FORM_TIMEOUT,
            tokio::task::spawn_blocking(move || {
                let c = RedisCluster::start(primaries, replicas);
                let ports = c.primaries();
                (c, ports)
            }),
        )
        .await
        .map_err(|_| anyhow!("a cluster of {primaries} primaries not formed in {FORM_TIMEOUT:?}"))?
        .map_err(|e| anyhow!("forming a cluster of {primaries} primaries: {e}"))?;
        let (nodes, ports) = formed;
        let nodes = Arc::new(nodes);
        anyhow::ensure!(
            ports.len() == primaries,
            "the cluster has {} primaries, not {primaries}",
            ports.len()
        );
        let mut admins = Vec::new();
        for port in ports {
            let admin = Admin::connect(&format!("redis://127.0.0.1:{port}"), NODE_TIMEOUT)
                .await
                .with_context(|| format!("connecting to the primary on {port}"))?;
            admins.push((port, admin));
        }
        Ok(Cluster {
            nodes,
            primaries: admins,
        })
    }

    fn deployment(&self) -> Deployment {
        self.nodes.deployment()
    }

    /// Every primary's CPU seconds and commands processed so far.
    async fn read(&self) -> Result<Vec<PrimaryLoad>> {
        let mut out = Vec::with_capacity(self.primaries.len());
        for (port, admin) in &self.primaries {
            let cpu = admin.info("cpu", NODE_TIMEOUT).await?;
            let stats = admin.info("stats", NODE_TIMEOUT).await?;
            let field = |text: &str, f: &str| {
                info_value(text, f).with_context(|| format!("INFO on {port} has no {f}"))
            };
            out.push(PrimaryLoad {
                port: *port,
                cpu: field(&cpu, "used_cpu_user")?.parse::<f64>()?
                    + field(&cpu, "used_cpu_sys")?.parse::<f64>()?,
                commands: field(&stats, "total_commands_processed")?.parse()?,
            });
        }
        Ok(out)
    }

    /// Kills every node and waits for them.
    async fn stop(self) {
        let Cluster { nodes, primaries } = self;
        drop(primaries);
        let _ = tokio::task::spawn_blocking(move || drop(nodes)).await;
    }
}

/// What happened on the primaries between two reads.
fn delta(before: &[PrimaryLoad], after: &[PrimaryLoad]) -> Vec<PrimaryLoad> {
    before
        .iter()
        .zip(after)
        .map(|(b, a)| PrimaryLoad {
            port: a.port,
            cpu: (a.cpu - b.cpu).max(0.0),
            commands: a.commands.saturating_sub(b.commands),
        })
        .collect()
}

/// Runs the cluster step (the caller checks `--skip-cluster`).
pub async fn run(args: &CoreArgs) -> Result<ClusterReport> {
    let c = &args.cluster;
    let tasks = c.cluster_tasks.unwrap_or(args.tasks).max(1);
    let timeout = Duration::from_secs(args.case_timeout_secs);
    let worker_bin = if args.fleet.skip_fleet {
        None
    } else {
        Some(fleet::sibling(&args.fleet.worker_bin, "taskfleet-worker")?)
    };
    let drain = match (c.cluster_drain, &worker_bin) {
        (DrainMode::Worker, Some(_)) => DrainMode::Worker,
        _ => DrainMode::Library,
    };
    let largest = c.cluster_primaries.iter().copied().max().unwrap_or(0);
    let mut runs = Vec::new();
    let mut wake = None;
    for &primaries in &c.cluster_primaries {
        eprintln!("cluster of {primaries} primaries, {SHARDS} shards…");
        let cluster = Cluster::start(primaries, 0).await?;
        let r = cluster_cases(&cluster, args, tasks, drain, worker_bin.as_deref()).await;
        let r = match r {
            Ok(samples) if primaries == largest && !c.skip_cluster_latency => match &worker_bin {
                Some(bin) => {
                    eprintln!(
                        "  idle CPU and enqueue → start latency: {} idle workers, {}/s for {} s…",
                        args.fleet.latency_workers,
                        args.fleet.latency_rate,
                        args.fleet.latency_secs
                    );
                    fleet::latency_case(bin, &cluster.deployment(), "cL", &args.fleet, timeout)
                        .await
                        .map(|(idle_cpu, latency)| {
                            wake = Some(ClusterWake {
                                primaries,
                                latency,
                                idle_cpu,
                            });
                            samples
                        })
                }
                None => Ok(samples),
            },
            other => other,
        };
        cluster.stop().await;
        runs.push(ClusterRun {
            primaries,
            samples: r?,
        });
    }
    let wait = if c.skip_cluster_wait {
        None
    } else {
        let n = c.cluster_wait_tasks.unwrap_or(tasks / 2).max(1);
        eprintln!("cluster of 3 primaries and 3 replicas: wait_replicas=1, {n} tasks…");
        let cluster = Cluster::start(3, 1).await?;
        let r = wait_cost(&cluster, args, n).await;
        cluster.stop().await;
        Some(r?)
    };
    Ok(ClusterReport {
        shards: SHARDS,
        tasks,
        drain,
        runs,
        wake,
        wait,
    })
}

/// A broker builder on `redis` under `prefix` for the bench queue (16 shards on a cluster).
fn builder(redis: &Deployment, prefix: &str, worker_id: &str) -> taskfleet::BrokerBuilder {
    core::builder_on(redis, prefix, worker_id)
}

/// Runs one enqueue case on `b` and reads the primaries around it.
async fn enqueue_case(
    cluster: &Cluster,
    b: &Broker,
    clock: &Arc<RedisClock>,
    case: &EnqueueCase,
    which: ClusterCase,
) -> Result<ClusterSample> {
    let before = cluster.read().await?;
    let started = Instant::now();
    let calls = core::enqueue(b, clock, case).await?;
    let elapsed = started.elapsed();
    let after = cluster.read().await?;
    Ok(ClusterSample {
        case: which,
        name: case.name(),
        jobs: case.tasks,
        elapsed,
        latency: Latency::of(calls),
        primaries: delta(&before, &after),
    })
}

async fn cluster_cases(
    cluster: &Cluster,
    args: &CoreArgs,
    tasks: usize,
    drain: DrainMode,
    worker_bin: Option<&std::path::Path>,
) -> Result<Vec<ClusterSample>> {
    let redis = cluster.deployment();
    let timeout = Duration::from_secs(args.case_timeout_secs);
    let case = |prefix: &str, per_call: usize, in_flight: usize| EnqueueCase {
        url: String::new(),
        prefix: prefix.to_string(),
        tasks,
        per_call,
        in_flight,
        accounts: args.accounts,
        timeout,
    };
    let (pa, pb) = ("cA", "cB");
    let a = builder(&redis, pa, "bench-enqueue").build()?;
    let b = builder(&redis, pb, "bench-enqueue").build()?;
    // The deployment checked and the shard counts recorded, as every process does at start.
    a.check_deployment().await?;
    b.check_deployment().await?;
    // A status read fans out to every shard: each broker has its connections to every
    // primary before its case is timed (a short case would otherwise time their setup).
    a.status().await?;
    b.status().await?;
    let clock = RedisClock::new(&a).await?;
    let mut samples = Vec::new();

    eprintln!(
        "  enqueue_many, {} per call, {} in flight…",
        args.batch, args.batch_in_flight
    );
    let c = case(pb, args.batch, args.batch_in_flight);
    samples.push(enqueue_case(cluster, &b, &clock, &c, ClusterCase::EnqueueMany).await?);

    eprintln!("  enqueue, 1 per call, {} in flight…", args.in_flight);
    let c = case(pa, 1, args.in_flight);
    samples.push(enqueue_case(cluster, &a, &clock, &c, ClusterCase::Enqueue).await?);

    match (drain, worker_bin) {
        (DrainMode::Worker, Some(bin)) => {
            let prefix = "cW";
            let w = fleet::broker(&redis, prefix)?;
            w.check_deployment().await?;
            w.status().await?;
            fleet::fill_noop(&w, tasks, args.accounts).await?;
            eprintln!(
                "  worker drain, 1 process, concurrency {}…",
                args.fleet.worker_concurrency
            );
            let before = cluster.read().await?;
            let d = fleet::worker_drain(&fleet::WorkerDrain {
                bin,
                redis: &redis,
                prefix,
                broker: &w,
                tasks,
                concurrency: args.fleet.worker_concurrency,
                poll: CLUSTER_POLL,
                timeout,
            })
            .await?;
            let after = cluster.read().await?;
            samples.push(ClusterSample {
                case: ClusterCase::Drain,
                name: format!(
                    "worker drain, 1 process, concurrency {}, no-op tasks",
                    args.fleet.worker_concurrency
                ),
                jobs: tasks,
                elapsed: d.elapsed,
                latency: Latency::default(),
                primaries: delta(&before, &after),
            });
        }
        _ => {
            eprintln!("  drain, 4 consumers…");
            let before = cluster.read().await?;
            let started = Instant::now();
            let (jobs, calls) =
                core::drain(&redis, pb, 4, args.claim_batch, &clock, timeout).await?;
            let elapsed = started.elapsed();
            let after = cluster.read().await?;
            anyhow::ensure!(jobs == tasks, "cluster drain completed {jobs} of {tasks}");
            core::check_drained(&b, tasks).await?;
            samples.push(ClusterSample {
                case: ClusterCase::Drain,
                name: format!(
                    "drain, 4 consumers, claim {} + complete in 1 call",
                    args.claim_batch
                ),
                jobs,
                elapsed,
                latency: Latency::of(calls),
                primaries: delta(&before, &after),
            });
        }
    }
    Ok(samples)
}

/// Enqueue one task a call, `--in-flight` at a time, without and then with a replica's
/// acknowledgement (`WAIT 1`) before each answer.
async fn wait_cost(cluster: &Cluster, args: &CoreArgs, tasks: usize) -> Result<WaitCost> {
    let redis = cluster.deployment();
    let timeout = Duration::from_secs(args.case_timeout_secs);
    let wait_timeout_ms = taskfleet::Settings::default().redis.wait_timeout_ms;
    let without = builder(&redis, "cN", "bench-enqueue").build()?;
    let with = builder(&redis, "cY", "bench-enqueue")
        .wait_replicas(1, Duration::from_millis(wait_timeout_ms))
        .build()?;
    without.check_deployment().await?;
    with.check_deployment().await?;
    without.status().await?;
    with.status().await?;
    let clock = RedisClock::new(&without).await?;
    let case = |prefix: &str| EnqueueCase {
        url: String::new(),
        prefix: prefix.to_string(),
        tasks,
        per_call: 1,
        in_flight: args.in_flight,
        accounts: args.accounts,
        timeout,
    };
    eprintln!("  enqueue, 1 per call, without WAIT…");
    let mut no = enqueue_case(cluster, &without, &clock, &case("cN"), ClusterCase::Enqueue).await?;
    no.name = format!("{}, wait_replicas=0", no.name);
    eprintln!("  enqueue, 1 per call, wait_replicas=1…");
    let mut yes = enqueue_case(cluster, &with, &clock, &case("cY"), ClusterCase::Enqueue).await?;
    yes.name = format!("{}, wait_replicas=1", yes.name);
    Ok(WaitCost {
        primaries: 3,
        replicas: 3,
        wait_timeout_ms,
        without: no,
        with: yes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(cpu: &[f64], commands: &[u64]) -> ClusterSample {
        ClusterSample {
            case: ClusterCase::Enqueue,
            name: "x".into(),
            jobs: 1_000,
            elapsed: Duration::from_secs(1),
            latency: Latency::default(),
            primaries: cpu
                .iter()
                .zip(commands)
                .enumerate()
                .map(|(i, (&cpu, &commands))| PrimaryLoad {
                    port: i as u16,
                    cpu,
                    commands,
                })
                .collect(),
        }
    }

    #[test]
    fn shares_and_their_largest_deviation_from_an_even_split() {
        let s = sample(&[0.010, 0.010, 0.020], &[300, 300, 400]);
        let cpu = s.cpu_shares();
        assert!((cpu[2] - 0.5).abs() < 1e-12);
        // 0.5 of 3 is 1.5 times a third: 50% over; the others 25% under.
        assert!((max_deviation(&cpu) - 0.5).abs() < 1e-12);
        assert!((max_deviation(&s.command_shares()) - 0.2).abs() < 1e-12);
        // 40 ms of CPU over 1,000 jobs: 40 µs per job, 10 / 10 / 20 on each primary.
        assert!((s.redis_us_per_job() - 40.0).abs() < 1e-9);
        assert_eq!(s.us_per_job_each().len(), 3);
        assert!((s.us_per_job_each()[2] - 20.0).abs() < 1e-9);
        // One primary carries everything: no deviation.
        assert_eq!(max_deviation(&sample(&[0.5], &[9]).cpu_shares()), 0.0);
    }
}
