//! `taskfleet-bench core`: the queue engine through the library, on a redis-server this run
//! starts, next to redis-benchmark on the same server.
//!
//! A single measurement on a small shared machine moves by ±10% from run to run, so the ceiling
//! and the library cases run `--rounds` times, interleaved, each round on fresh keys (the
//! keyspace is flushed between rounds), after an untimed redis-benchmark warm-up. One round,
//! each case under its own key prefix:
//! 0. the ceilings: redis-benchmark of SET and of EVALSHA of `return 1` (50 clients), and of
//!    the same EVALSHA from one client;
//! 1. enqueue N tasks one call each, `in_flight` calls at a time (prefix A; memory measured);
//! 2. enqueue N tasks one call each, one call at a time (prefix S), held to the one-client
//!    ceiling;
//! 3. enqueue N tasks with `enqueue_many`, `batch` a call, `batch_in_flight` at a time
//!    (prefix B; memory measured);
//! 4. drain A with 1 consumer, 5. drain B with 4 consumers: each consumer claims
//!    `claim_batch`, then completes the whole batch in one call.
//!
//! The report gives each case's median jobs/s over the rounds with the min–max beside it, and
//! every ratio is the median case over the median EVALSHA ceiling (one call at a time: over
//! the median one-client ceiling).
//!
//! After the rounds, once each: the enqueue script driven by redis-benchmark, then unless
//! `--skip-fleet` the real binaries ([`crate::fleet`]): one `taskfleet-worker` draining no-op
//! tasks, enqueue → processor start latency at a steady rate with idle workers, an idle
//! worker's CPU, and HTTP enqueue through one `taskfleet-api`; their ratios use the median
//! ceiling too. Then unless `--skip-ordering` the ordering error across shards
//! ([`crate::ordering`], on this server), and unless `--skip-cluster` the cluster step
//! ([`crate::cluster`], on clusters it forms), each held to this run's single-server figures.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde_json::json;
use taskfleet::{
    At, Broker, BrokerBuilder, Clock, Completion, Deployment, NewTask, QueueConfig, RedisClock,
    TaskStatus,
};

use crate::ceiling::{self, CeilingArgs};
use crate::cluster::{self, ClusterArgs};
use crate::fleet::{self, FleetArgs};
use crate::machine::{self, Machine};
use crate::report::{self, Case, Measurements, Memory, Report, Round, ScriptRun, Setup};
use crate::sample::{Meter, Sample};
use crate::server::Server;

/// The queue (task type name) every case uses.
pub const QUEUE: &str = "bench";

#[derive(Debug, Clone, clap::Args)]
pub struct CoreArgs {
    /// Rounds of the ceiling and the library cases, interleaved; each case is reported as the
    /// median of its rounds.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Tasks per case and round.
    #[arg(long, default_value_t = 100_000)]
    pub tasks: usize,
    /// Enqueue calls in flight at once in the one-task-a-call case: as many as the ceiling has
    /// clients, so both keep the same number of requests in flight.
    #[arg(long, default_value_t = 50)]
    pub in_flight: usize,
    /// Tasks per `enqueue_many` call.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// `enqueue_many` calls in flight at once.
    #[arg(long, default_value_t = 16)]
    pub batch_in_flight: usize,
    /// Tasks per claim (each claimed batch is completed in one call).
    #[arg(long, default_value_t = 32)]
    pub claim_batch: usize,
    /// Accounts the tasks are spread over (round robin; ten users an account).
    #[arg(long, default_value_t = 100)]
    pub accounts: usize,
    /// Consumer counts of the drain cases, in order (each drains its own N tasks).
    #[arg(long, value_delimiter = ',', default_value = "1,4")]
    pub consumers: Vec<usize>,
    /// redis-benchmark clients.
    #[arg(long, default_value_t = 50)]
    pub ceiling_clients: usize,
    /// redis-benchmark requests per test.
    #[arg(long, default_value_t = 200_000)]
    pub ceiling_requests: usize,
    /// redis-benchmark requests of the one-client EVALSHA ceiling (one round trip each: a few
    /// seconds at the default).
    #[arg(long, default_value_t = 50_000)]
    pub ceiling_one_client_requests: usize,
    /// The redis-benchmark binary.
    #[arg(long, default_value = "redis-benchmark")]
    pub redis_benchmark: String,
    /// A case that runs longer than this fails the run.
    #[arg(long, default_value_t = 600)]
    pub case_timeout_secs: u64,
    /// Replace the body of this Markdown file's `## Benchmarks` section with the results.
    #[arg(long)]
    pub readme: Option<PathBuf>,
    /// Runs again, up to this many times, while a run was disturbed: the rounds' ceilings
    /// differ by more than 15%, or other processes took CPU (the machine's load changed).
    /// Only with --readme: a run that only prints is not repeated.
    #[arg(long, default_value_t = 2)]
    pub retries: usize,
    /// Write the README even when every run was disturbed.
    #[arg(long)]
    pub readme_even_if_disturbed: bool,
    #[command(flatten)]
    pub fleet: FleetArgs,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// The command line to print in the report (scripts/bench.sh passes its own).
    #[arg(long, default_value = "taskfleet-bench core")]
    pub command: String,
}

pub async fn main(args: CoreArgs) -> Result<()> {
    ensure!(
        args.tasks > 0 && args.in_flight > 0 && args.batch_in_flight > 0 && args.rounds > 0,
        "--tasks, --in-flight, --batch-in-flight and --rounds must be > 0"
    );
    ensure!(
        args.cluster.cluster_primaries.iter().all(|&p| p >= 1)
            && args
                .cluster
                .ordering_shards
                .iter()
                .all(|&s| (1..=1024).contains(&s))
            && args.cluster.ordering_tasks > 0
            && (1..=taskfleet::broker::MAX_BATCH).contains(&args.cluster.ordering_claim_batch),
        "--cluster-primaries must be ≥ 1, --ordering-shards 1-1024, --ordering-tasks > 0 and \
         --ordering-claim-batch 1-{}",
        taskfleet::broker::MAX_BATCH
    );
    ensure!(
        (1..=taskfleet::broker::MAX_BATCH).contains(&args.batch)
            && (1..=taskfleet::broker::MAX_BATCH).contains(&args.claim_batch),
        "--batch and --claim-batch must be 1-{}",
        taskfleet::broker::MAX_BATCH
    );
    let mut report = run(&args).await?;
    println!("{}", report::text(&Report::new(&report)));
    // A run whose ceiling moved says more about the machine's load than about taskfleet: run
    // again, but only when the figures are to go into the README (a printed run says it was
    // disturbed, and another run on a shared machine costs the others their cores).
    let retries = if args.readme.is_some() {
        args.retries
    } else {
        0
    };
    for attempt in 1..=retries {
        if !report.disturbed() {
            break;
        }
        eprintln!(
            "disturbed run: waiting 30 s, then run {} of {}",
            attempt + 1,
            retries + 1
        );
        tokio::time::sleep(Duration::from_secs(30)).await;
        report = run(&args).await?;
        println!("{}", report::text(&Report::new(&report)));
    }
    if report.disturbed() && args.readme.is_some() && !args.readme_even_if_disturbed {
        eprintln!("every run was disturbed: the README is left as it was");
        return Ok(());
    }
    if let Some(path) = &args.readme {
        let old =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let new = report::replace_section(
            &old,
            "## Benchmarks",
            &report::markdown(&Report::new(&report)),
        )?;
        std::fs::write(path, new).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote the Benchmarks section of {}", path.display());
    }
    Ok(())
}

/// Runs every case on a fresh server; the server is killed when this returns.
pub async fn run(args: &CoreArgs) -> Result<Measurements> {
    let load_before = machine::load_average();
    let mut server = Server::start().await?;
    let url = server.url();
    eprintln!("redis-server on 127.0.0.1:{}", server.port());
    let machine = Machine::read(server.version().await?);
    let ceiling_args = CeilingArgs {
        clients: args.ceiling_clients,
        requests: args.ceiling_requests,
        bin: args.redis_benchmark.clone(),
    };
    let timeout = Duration::from_secs(args.case_timeout_secs);

    // Everything the machine's CPUs do during the run, less this process, its waited-for
    // children (redis-benchmark) and redis-server: what other processes took.
    let machine_busy = machine::machine_busy_seconds();
    let ours = crate::sample::own_and_children_cpu_seconds() + server.cpu_seconds().await?;
    let started = Instant::now();

    // An untimed redis-benchmark run first: on a fresh server the first ceiling came out 15-20%
    // below the next ones (two runs out of three), which flagged runs as disturbed for nothing.
    eprintln!("warm-up (untimed)…");
    let warm_up = CeilingArgs {
        requests: (args.ceiling_requests / 4).max(args.ceiling_clients),
        ..ceiling_args.clone()
    };
    ceiling::measure(&mut server, &warm_up, args.ceiling_one_client_requests / 4).await?;

    let clock = RedisClock::new(&broker(&url, "bC", "bench-clock")?).await?;
    let mut rounds = Vec::with_capacity(args.rounds);
    for r in 0..args.rounds {
        eprintln!("round {} of {}…", r + 1, args.rounds);
        rounds.push(round(&mut server, args, &ceiling_args, &clock, r, timeout).await?);
        // The next round starts from an empty keyspace, as this one did.
        server.flush().await?;
    }

    eprintln!("enqueue.lua through redis-benchmark…");
    let mut script_runs = Vec::new();
    for per_call in [1, args.batch] {
        script_runs.push(
            enqueue_script_run(&mut server, &ceiling_args, &clock, args.tasks, per_call).await?,
        );
    }

    eprintln!("the floor: the same tasks' writes alone, through redis-benchmark…");
    let floors = crate::floor::measure(
        &mut server,
        &ceiling_args,
        &clock,
        crate::floor::FloorArgs {
            tasks: args.tasks,
            batch: args.batch,
            claim_batch: args.claim_batch,
            accounts: args.accounts,
            one_client_requests: args.ceiling_one_client_requests,
        },
    )
    .await?;

    let fleet = if args.fleet.skip_fleet {
        None
    } else {
        Some(fleet::run(&mut server, &args.fleet, args.accounts, timeout).await?)
    };

    let mut ordering = Vec::new();
    if !args.cluster.skip_ordering {
        for &shards in &args.cluster.ordering_shards {
            eprintln!(
                "ordering across shards: {} tasks of mixed bands, {shards} shard(s), one consumer…",
                args.cluster.ordering_tasks
            );
            ordering.push(
                crate::ordering::run(
                    &server.url(),
                    &format!("bO{shards}"),
                    shards,
                    args.cluster.ordering_tasks,
                    args.cluster.ordering_claim_batch,
                    timeout,
                )
                .await?,
            );
            server.flush().await?;
        }
    }

    let cluster = if args.cluster.skip_cluster {
        None
    } else {
        Some(cluster::run(args).await?)
    };

    let others = (machine::machine_busy_seconds() - machine_busy)
        - (crate::sample::own_and_children_cpu_seconds() + server.cpu_seconds().await? - ours);
    let other_load = (others / started.elapsed().as_secs_f64().max(1e-9)).max(0.0);
    let evalsha = ["EVALSHA", "<sha of 'return 1'>", "0"];
    Ok(Measurements {
        setup: Setup {
            command: args.command.clone(),
            tasks: args.tasks,
            accounts: args.accounts,
            consumers: args.consumers.clone(),
            ceiling_clients: args.ceiling_clients,
            in_flight: args.in_flight,
        },
        other_load,
        ceiling_command: ceiling_args.command(&evalsha),
        ceiling_one_client_command: ceiling_args
            .one_client(args.ceiling_one_client_requests)
            .command(&evalsha),
        machine,
        date: machine::utc_now(),
        load_before,
        load_after: machine::load_average(),
        rounds,
        script_runs,
        floors: Some(floors),
        fleet,
        ordering,
        cluster,
    })
}

/// One round on fresh keys (prefixes `bA<r>`, `bS<r>`, `bB<r>`, `bD<r>-<i>`): the ceilings,
/// enqueue one call each with `in_flight` calls (A), one call at a time (S), enqueue_many (B),
/// then the drains: the first drains A, the next B, any further ones fresh prefixes filled by
/// enqueue_many first.
async fn round(
    server: &mut Server,
    args: &CoreArgs,
    ceiling_args: &CeilingArgs,
    clock: &Arc<RedisClock>,
    r: usize,
    timeout: Duration,
) -> Result<Round> {
    let url = server.url();
    let single = crate::fleet::single(&url);
    eprintln!("  ceilings…");
    let ceiling = ceiling::measure(server, ceiling_args, args.ceiling_one_client_requests).await?;
    let mut samples = Vec::new();
    let (pa, ps, pb) = (format!("bA{r}"), format!("bS{r}"), format!("bB{r}"));
    let case = |prefix: &str, per_call: usize, in_flight: usize| EnqueueCase {
        url: url.clone(),
        prefix: prefix.to_string(),
        tasks: args.tasks,
        per_call,
        in_flight,
        accounts: args.accounts,
        timeout,
    };

    eprintln!("  enqueue, one call each, {} in flight…", args.in_flight);
    let m0 = server.used_memory().await?;
    let s = enqueue_case(server, clock, &case(&pa, 1, args.in_flight)).await?;
    let m1 = server.used_memory().await?;
    samples.push((Case::Enqueue, s));

    eprintln!("  enqueue, one call at a time…");
    let s = enqueue_case(server, clock, &case(&ps, 1, 1)).await?;
    samples.push((Case::EnqueueOneAtATime, s));

    eprintln!("  enqueue_many…");
    let m2 = server.used_memory().await?;
    let s = enqueue_case(server, clock, &case(&pb, args.batch, args.batch_in_flight)).await?;
    let m3 = server.used_memory().await?;
    samples.push((Case::EnqueueMany, s));
    let memory = Memory {
        tasks: args.tasks,
        one_by_one: m1.saturating_sub(m0),
        batched: m3.saturating_sub(m2),
    };

    for (i, &consumers) in args.consumers.iter().enumerate() {
        let prefix = match i {
            0 => pa.clone(),
            1 => pb.clone(),
            _ => {
                let p = format!("bD{r}-{i}");
                let fill = case(&p, args.batch, args.batch_in_flight);
                let f = broker(&url, &p, "bench-enqueue")?;
                enqueue(&f, clock, &fill).await?;
                p
            }
        };
        eprintln!("  drain with {consumers} consumer(s)…");
        let meter = Meter::start(server).await?;
        let (jobs, calls) = drain(
            &single,
            &prefix,
            consumers,
            args.claim_batch,
            clock,
            timeout,
        )
        .await?;
        let s = meter
            .finish(
                server,
                &format!(
                    "drain, {consumers} consumer{}, claim {} + complete in 1 call",
                    if consumers == 1 { "" } else { "s" },
                    args.claim_batch
                ),
                jobs,
                calls,
            )
            .await?;
        ensure!(
            jobs == args.tasks,
            "drain {prefix} completed {jobs} of {} tasks",
            args.tasks
        );
        check_drained(&broker(&url, &prefix, "bench-check")?, args.tasks).await?;
        samples.push((Case::Drain { consumers }, s));
    }
    Ok(Round {
        ceiling,
        samples,
        memory,
    })
}

/// One enqueue case: `tasks` tasks under `prefix`, `per_call` a call (1: `enqueue`, more:
/// `enqueue_many`), `in_flight` calls at a time.
pub(crate) struct EnqueueCase {
    pub(crate) url: String,
    pub(crate) prefix: String,
    pub(crate) tasks: usize,
    pub(crate) per_call: usize,
    pub(crate) in_flight: usize,
    pub(crate) accounts: usize,
    pub(crate) timeout: Duration,
}

impl EnqueueCase {
    /// The name of its row.
    pub(crate) fn name(&self) -> String {
        if self.per_call == 1 {
            format!("enqueue, 1 per call, {} in flight", self.in_flight)
        } else {
            format!(
                "enqueue_many, {} per call, {} in flight",
                self.per_call, self.in_flight
            )
        }
    }
}

/// Runs an enqueue case on a broker of its own (one connection per call in flight) and
/// measures it.
async fn enqueue_case(
    server: &mut Server,
    clock: &Arc<RedisClock>,
    case: &EnqueueCase,
) -> Result<Sample> {
    let b = broker(&case.url, &case.prefix, "bench-enqueue")?;
    let meter = Meter::start(server).await?;
    let calls = enqueue(&b, clock, case).await?;
    meter.finish(server, &case.name(), case.tasks, calls).await
}

/// The enqueue script driven by redis-benchmark (50 clients, C, no pool) with real arguments,
/// `per_call` tasks a call: what the server does with our script when the client costs
/// nothing, to tell server-side from client-side cost. The script, its keys and arguments are
/// the library's own call (`Broker::enqueue_script_call`), with each task's id made random per
/// request by redis-benchmark.
async fn enqueue_script_run(
    server: &mut Server,
    ceiling_args: &CeilingArgs,
    clock: &Arc<RedisClock>,
    tasks: usize,
    per_call: usize,
) -> Result<ScriptRun> {
    let b = broker(&server.url(), &format!("bR{per_call}"), "bench-script")?;
    let template: Vec<NewTask> = (0..per_call).map(|i| bench_task(i, 1)).collect();
    let call = b.enqueue_script_call(&template, clock.now_ms())?;
    let sha = server.script_load(call.source).await?;
    // -r is read as a C int: a keyspace over 2^31 wraps and every __rand_int__ becomes 0 (one
    // task written over and over). 10^9 keeps the ids distinct but for a handful of collisions.
    let mut cmd: Vec<String> = vec!["-r".into(), "1000000000".into(), "EVALSHA".into(), sha];
    cmd.push(call.keys.len().to_string());
    cmd.extend(call.keys);
    // redis-benchmark puts a fresh random number in every __rand_int__ of every request.
    cmd.extend(call.args.into_iter().map(|a| {
        if call.ids.contains(&a) {
            "r-__rand_int__".to_string()
        } else {
            a
        }
    }));
    let run_args = CeilingArgs {
        requests: (tasks / per_call).max(ceiling_args.clients),
        ..ceiling_args.clone()
    };
    let words: Vec<&str> = cmd.iter().map(String::as_str).collect();
    let c = ceiling::run_measured(server, &run_args, &words).await?;
    Ok(ScriptRun::of(
        format!(
            "enqueue.lua via redis-benchmark, {per_call} per call, {} clients",
            run_args.clients
        ),
        per_call,
        &c,
    ))
}

/// A broker on `url` under `prefix` with the bench queue registered.
pub(crate) fn broker(url: &str, prefix: &str, worker_id: &str) -> Result<Broker> {
    broker_on(&crate::fleet::single(url), prefix, worker_id)
}

/// A broker on `redis` under `prefix` with the bench queue registered (the deployment's
/// default shards: 1 on a single server, 16 on a cluster).
pub(crate) fn broker_on(redis: &Deployment, prefix: &str, worker_id: &str) -> Result<Broker> {
    Ok(builder_on(redis, prefix, worker_id).build()?)
}

/// [`broker_on`]'s builder, for a broker with more settings (replica waits).
pub(crate) fn builder_on(redis: &Deployment, prefix: &str, worker_id: &str) -> BrokerBuilder {
    Broker::builder_for(redis.clone())
        .prefix(prefix)
        .queue(QUEUE, QueueConfig::default())
        .worker_id(worker_id)
        .timeout(Duration::from_secs(30))
}

/// A small task: `{"n": i % 1000}`, of account `i % accounts` and one of its ten users.
pub fn bench_task(i: usize, accounts: usize) -> NewTask {
    let a = i % accounts.max(1);
    NewTask::new(QUEUE, json!({ "n": i % 1000 })).owner(
        format!("acct{a}"),
        format!("user{a}-{}", i / accounts.max(1) % 10),
    )
}

/// Enqueues the case's tasks with `in_flight` calls at a time; returns each call's latency.
pub(crate) async fn enqueue(
    b: &Broker,
    _clock: &Arc<RedisClock>,
    case: &EnqueueCase,
) -> Result<Vec<Duration>> {
    let (n, per_call, accounts, timeout) = (case.tasks, case.per_call, case.accounts, case.timeout);
    let next = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + timeout;
    let mut tasks = Vec::new();
    for _ in 0..case.in_flight {
        let (b, next) = (b.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut calls = Vec::new();
            loop {
                let from = next.fetch_add(per_call, Ordering::Relaxed);
                if from >= n {
                    return Ok::<_, anyhow::Error>(calls);
                }
                if Instant::now() > deadline {
                    bail!("enqueue ran past its {timeout:?} limit");
                }
                let t0 = Instant::now();
                if per_call == 1 {
                    b.enqueue(bench_task(from, accounts), At::Server).await?;
                } else {
                    let batch = (from..(from + per_call).min(n))
                        .map(|i| bench_task(i, accounts))
                        .collect();
                    b.enqueue_many(batch, At::Server).await?;
                }
                calls.push(t0.elapsed());
            }
        }));
    }
    let mut calls = Vec::new();
    for t in tasks {
        calls.extend(t.await??);
    }
    Ok(calls)
}

/// Drains the bench queue under `prefix` with `consumers` loops, each with its own broker
/// (its own worker id and connections): claim `claim_batch`, complete them all in one call,
/// until a claim finds nothing. Returns the jobs completed and each round's latency.
pub(crate) async fn drain(
    redis: &Deployment,
    prefix: &str,
    consumers: usize,
    claim_batch: usize,
    _clock: &Arc<RedisClock>,
    timeout: Duration,
) -> Result<(usize, Vec<Duration>)> {
    let deadline = Instant::now() + timeout;
    let mut loops = Vec::new();
    for c in 0..consumers {
        let b = broker_on(redis, prefix, &format!("bench-consumer-{c}"))?;
        loops.push(tokio::spawn(async move {
            let (mut jobs, mut calls) = (0, Vec::new());
            loop {
                if Instant::now() > deadline {
                    bail!("drain ran past its {timeout:?} limit");
                }
                let t0 = Instant::now();
                let got = b.claim(&[QUEUE], claim_batch, At::Server).await?;
                if got.is_empty() {
                    return Ok::<_, anyhow::Error>((jobs, calls));
                }
                let done: Vec<Completion> = got
                    .into_iter()
                    .map(|t| Completion {
                        id: t.id,
                        lease: t.lease,
                        result: json!({ "ok": true }),
                    })
                    .collect();
                let flags = b.complete(QUEUE, &done, At::Server).await?;
                ensure!(
                    flags.iter().all(|f| *f),
                    "a complete was refused: lease lost"
                );
                calls.push(t0.elapsed());
                jobs += done.len();
            }
        }));
    }
    let (mut jobs, mut calls) = (0, Vec::new());
    for l in loops {
        let (j, c) = l.await??;
        jobs += j;
        calls.extend(c);
    }
    Ok((jobs, calls))
}

/// After a drain: every task completed, none left queued or leased.
pub(crate) async fn check_drained(b: &Broker, n: usize) -> Result<()> {
    let status = b.status().await?;
    let q = status
        .iter()
        .find(|s| s.task_type == QUEUE)
        .context("bench queue status")?;
    ensure!(
        q.count(TaskStatus::Completed) == n as u64
            && q.count(TaskStatus::Queued) == 0
            && q.count(TaskStatus::Processing) == 0,
        "after the drain: {:?}",
        q.counts
    );
    Ok(())
}
