//! The cases that run the real binaries on the run's redis-server: one `taskfleet-worker`
//! process draining pre-enqueued no-op tasks, the latency from enqueue to processor start at
//! a steady rate with idle workers waiting, an idle worker's CPU, and HTTP enqueue through one
//! `taskfleet-api` process ([`crate::http`]) once for each connection count asked for.
//!
//! Every process started here is killed by its pid (and reaped) when its case ends, also when
//! the case fails; every wait is bounded.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context, Result};
use serde_json::json;
use taskfleet::{Broker, Deployment, NewTask, QueueConfig, TaskStatus};
use tokio::process::{Child, Command};

use crate::http::HttpCase;
use crate::sample::{pid_cpu_seconds, pid_run_seconds, Meter, Sample};
use crate::server::Server;

/// The queue of the worker's test processors (`--test-processors`).
pub const TEST_QUEUE: &str = "test";

#[derive(Debug, Clone, clap::Args)]
pub struct FleetArgs {
    /// Leave out the worker and HTTP cases (the queue engine alone).
    #[arg(long)]
    pub skip_fleet: bool,
    /// The taskfleet-worker binary (default: next to this program).
    #[arg(long)]
    pub worker_bin: Option<PathBuf>,
    /// The taskfleet-api binary (default: next to this program).
    #[arg(long)]
    pub api_bin: Option<PathBuf>,
    /// No-op tasks the worker drain case pre-enqueues.
    #[arg(long, default_value_t = 100_000)]
    pub worker_tasks: usize,
    /// `--concurrency` of every worker started.
    #[arg(long, default_value_t = 64)]
    pub worker_concurrency: usize,
    /// Idle workers waiting during the latency case.
    #[arg(long, default_value_t = 2)]
    pub latency_workers: usize,
    /// Tasks a second of the latency case, one enqueue call each, evenly paced.
    #[arg(long, default_value_t = 500)]
    pub latency_rate: u32,
    /// Seconds the latency case enqueues for.
    #[arg(long, default_value_t = 20)]
    pub latency_secs: u64,
    /// Seconds an idle worker's CPU is measured over.
    #[arg(long, default_value_t = 10)]
    pub idle_secs: u64,
    /// POST /api/tasks requests of the HTTP case.
    #[arg(long, default_value_t = 50_000)]
    pub http_requests: usize,
    /// Keep-alive connections of the HTTP case, one request in flight on each: one run (and
    /// one API process) per count, in order. The first is the one the HTTP goal uses (50: as
    /// many requests in flight as the ceiling has clients); 64 is the earlier case, kept.
    #[arg(long, value_delimiter = ',', default_value = "50,64")]
    pub http_connections: Vec<usize>,
}

/// What the worker and HTTP cases measured, with the settings the prose quotes.
#[derive(Debug, Clone)]
pub struct FleetReport {
    /// `--concurrency` of every worker started.
    pub worker_concurrency: usize,
    /// One worker process draining `worker_tasks` no-op tasks, timed from its start (process
    /// start included) to the last completion seen (status polled every 10 ms).
    pub drain: Sample,
    /// From the worker's start until the first task left `queued`.
    pub drain_startup: Duration,
    /// CPU seconds the worker process used during the drain.
    pub drain_worker_cpu: f64,
    pub latency: StartLatency,
    /// The rate the latency case was asked for (tasks a second).
    pub latency_rate: u32,
    pub latency_workers: usize,
    pub latency_secs: u64,
    /// The busiest idle worker's CPU as a share of one core, over `idle_secs`.
    pub idle_cpu: f64,
    pub idle_secs: u64,
    /// POST /api/tasks through one API process, one run per connection count, in order.
    pub http: Vec<HttpRun>,
}

/// One HTTP enqueue run.
#[derive(Debug, Clone)]
pub struct HttpRun {
    /// Keep-alive connections, one request in flight on each.
    pub connections: usize,
    /// Latency per request.
    pub sample: Sample,
    /// CPU seconds the API process used during the run.
    pub api_cpu: f64,
}

/// Enqueue → processor start, as the `stamp` processor measured it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StartLatency {
    pub tasks: usize,
    /// The rate reached: tasks over the enqueue phase's length.
    pub rate: f64,
    pub p50_us: i64,
    pub p99_us: i64,
    pub max_us: i64,
}

/// The value at quantile `q` (0-1) of sorted `v`, nearest rank; 0 for an empty slice.
pub fn quantile(v: &[i64], q: f64) -> i64 {
    if v.is_empty() {
        return 0;
    }
    v[((v.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize]
}

impl StartLatency {
    pub fn of(mut us: Vec<i64>, elapsed: Duration) -> StartLatency {
        us.sort_unstable();
        StartLatency {
            tasks: us.len(),
            rate: us.len() as f64 / elapsed.as_secs_f64().max(1e-9),
            p50_us: quantile(&us, 0.50),
            p99_us: quantile(&us, 0.99),
            max_us: us.last().copied().unwrap_or(0),
        }
    }
}

/// A process this run started: killed by its pid and reaped when dropped.
pub(crate) struct Proc {
    name: &'static str,
    child: Child,
    pid: u32,
}

impl Proc {
    pub(crate) fn spawn(name: &'static str, mut cmd: Command) -> Result<Proc> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let child = cmd.spawn().with_context(|| format!("starting {name}"))?;
        let pid = child.id().context("a started process has a pid")?;
        Ok(Proc { name, child, pid })
    }

    /// CPU time of its live threads to the ns (`schedstat`): for the idle measurement.
    fn run_seconds(&self) -> Result<f64> {
        pid_run_seconds(self.pid)
            .with_context(|| format!("{} (pid {}) is gone", self.name, self.pid))
    }

    pub(crate) fn cpu_seconds(&self) -> Result<f64> {
        pid_cpu_seconds(self.pid)
            .with_context(|| format!("{} (pid {}) is gone", self.name, self.pid))
    }

    /// Fails when the process has already exited.
    pub(crate) fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} (pid {}) exited: {status}", self.name, self.pid);
        }
        Ok(())
    }

    /// Kills it (SIGKILL, by pid) and waits for it, at most 10 s.
    pub(crate) async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

/// A binary next to this program (target/release/…), unless given.
pub(crate) fn sibling(given: &Option<PathBuf>, name: &str) -> Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p.clone());
    }
    let exe = std::env::current_exe()?;
    let p = exe.with_file_name(name);
    ensure!(
        p.exists(),
        "{} not found: build it (cargo build --release -p {name}) or pass its path",
        p.display()
    );
    Ok(p)
}

/// A single server's deployment, from its URL.
pub(crate) fn single(url: &str) -> Deployment {
    Deployment::Single {
        url: url.to_string(),
    }
}

/// A `taskfleet-worker --test-processors` on `redis` (a single server's URL, or a cluster's
/// seed nodes in `TASKFLEET__REDIS__CLUSTER_NODES`, with the cluster's default shards).
pub(crate) fn worker(
    bin: &Path,
    redis: &Deployment,
    prefix: &str,
    concurrency: usize,
) -> Result<Proc> {
    let mut cmd = Command::new(bin);
    match redis {
        Deployment::Single { url } => {
            cmd.args(["--redis-url", url]);
        }
        Deployment::Cluster { nodes } => {
            cmd.env("TASKFLEET__REDIS__CLUSTER_NODES", nodes.join(","));
        }
    }
    cmd.args(["--test-processors", "--types", TEST_QUEUE])
        .args(["--concurrency", &concurrency.to_string()])
        .env("TASKFLEET__REDIS__PREFIX", prefix)
        .env("RUST_LOG", "warn");
    Proc::spawn("taskfleet-worker", cmd)
}

/// A broker on `redis` with the test queue registered (the deployment's default shards).
pub(crate) fn broker(redis: &Deployment, prefix: &str) -> Result<Broker> {
    Ok(Broker::builder_for(redis.clone())
        .prefix(prefix)
        .queue(TEST_QUEUE, QueueConfig::default())
        .worker_id("bench-fleet")
        .timeout(Duration::from_secs(30))
        .build()?)
}

pub(crate) fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

pub(crate) async fn counts(b: &Broker) -> Result<(u64, u64)> {
    let status = b.status().await?;
    let q = status
        .iter()
        .find(|s| s.task_type == TEST_QUEUE)
        .context("test queue status")?;
    Ok((q.count(TaskStatus::Queued), q.count(TaskStatus::Completed)))
}

/// Polls every 10 ms until `n` tasks are completed; returns when the first left `queued`
/// (relative to `from`) and when the last completed.
async fn wait_completed(
    b: &Broker,
    n: u64,
    from: Instant,
    timeout: Duration,
    proc: &mut Proc,
) -> Result<(Duration, Duration)> {
    wait_completed_every(b, n, from, timeout, proc, Duration::from_millis(10)).await
}

/// [`wait_completed`], polling every `poll`.
async fn wait_completed_every(
    b: &Broker,
    n: u64,
    from: Instant,
    timeout: Duration,
    proc: &mut Proc,
    poll: Duration,
) -> Result<(Duration, Duration)> {
    let mut first = None;
    loop {
        let (queued, completed) = counts(b).await?;
        let at = from.elapsed();
        if first.is_none() && queued < n {
            first = Some(at);
        }
        if completed >= n {
            return Ok((first.unwrap_or(at), at));
        }
        if at > timeout {
            bail!("{completed} of {n} tasks completed after {timeout:?}");
        }
        proc.check_alive()?;
        tokio::time::sleep(poll).await;
    }
}

/// Runs the worker and HTTP cases. `timeout` bounds each case.
pub async fn run(
    server: &mut Server,
    args: &FleetArgs,
    accounts: usize,
    timeout: Duration,
) -> Result<FleetReport> {
    let worker_bin = sibling(&args.worker_bin, "taskfleet-worker")?;
    let api_bin = sibling(&args.api_bin, "taskfleet-api")?;
    let url = server.url();

    eprintln!(
        "worker drain: one taskfleet-worker, {} no-op tasks…",
        args.worker_tasks
    );
    let (drain, drain_startup, drain_worker_cpu) =
        drain_case(server, &worker_bin, &url, args, accounts, timeout).await?;

    eprintln!(
        "idle CPU and enqueue → start latency: {} idle workers, {}/s for {} s…",
        args.latency_workers, args.latency_rate, args.latency_secs
    );
    let (idle_cpu, latency) = latency_case(&worker_bin, &single(&url), "bL", args, timeout).await?;

    let mut http = Vec::new();
    for &connections in &args.http_connections {
        eprintln!("HTTP enqueue: one taskfleet-api, {connections} connections…");
        let case = HttpCase {
            bin: &api_bin,
            url: &url,
            prefix: &format!("bH{connections}"),
            requests: args.http_requests,
            connections,
            timeout,
        };
        http.push(crate::http::run(server, &case).await?);
    }
    Ok(FleetReport {
        worker_concurrency: args.worker_concurrency,
        drain,
        drain_startup,
        drain_worker_cpu,
        latency,
        latency_rate: args.latency_rate,
        latency_workers: args.latency_workers,
        latency_secs: args.latency_secs,
        idle_cpu,
        idle_secs: args.idle_secs,
        http,
    })
}

async fn drain_case(
    server: &mut Server,
    bin: &Path,
    url: &str,
    args: &FleetArgs,
    accounts: usize,
    timeout: Duration,
) -> Result<(Sample, Duration, f64)> {
    let prefix = "bW";
    let redis = single(url);
    let b = broker(&redis, prefix)?;
    let n = args.worker_tasks;
    fill_noop(&b, n, accounts).await?;
    let meter = Meter::start(server).await?;
    let drained = worker_drain(&WorkerDrain {
        bin,
        redis: &redis,
        prefix,
        broker: &b,
        tasks: n,
        concurrency: args.worker_concurrency,
        poll: Duration::from_millis(10),
        timeout,
    })
    .await?;
    let sample = meter
        .finish(
            server,
            &format!(
                "worker drain, 1 process, concurrency {}, no-op tasks",
                args.worker_concurrency
            ),
            n,
            Vec::new(),
        )
        .await?;
    Ok((sample, drained.startup, drained.worker_cpu))
}

/// Enqueues `n` no-op tasks of the test queue, 100 a call, spread over `accounts`.
pub(crate) async fn fill_noop(b: &Broker, n: usize, accounts: usize) -> Result<()> {
    let now = b.server_time_ms().await?;
    let mut from = 0;
    while from < n {
        let batch: Vec<NewTask> = (from..(from + 100).min(n))
            .map(|i| {
                let a = i % accounts.max(1);
                NewTask::new(TEST_QUEUE, json!({"op": "noop"}))
                    .owner(format!("acct{a}"), format!("user{a}-0"))
            })
            .collect();
        from += batch.len();
        b.enqueue_many(batch, now).await?;
    }
    Ok(())
}

/// One worker process draining tasks already queued under `prefix`.
pub(crate) struct WorkerDrain<'a> {
    pub bin: &'a Path,
    pub redis: &'a Deployment,
    pub prefix: &'a str,
    /// A broker on the same keys, to watch the counts.
    pub broker: &'a Broker,
    pub tasks: usize,
    pub concurrency: usize,
    /// How often the counts are read (a status read costs 9 commands per shard).
    pub poll: Duration,
    pub timeout: Duration,
}

/// What one worker drain took.
pub(crate) struct Drained {
    /// From the worker's start to the last completion seen.
    pub elapsed: Duration,
    /// From the worker's start until the first task left `queued`.
    pub startup: Duration,
    /// CPU seconds the worker process used.
    pub worker_cpu: f64,
}

/// Starts one worker, waits until it has completed every task (bounded by the timeout),
/// stops it and checks that nothing is left queued.
pub(crate) async fn worker_drain(d: &WorkerDrain<'_>) -> Result<Drained> {
    let n = d.tasks as u64;
    let started = Instant::now();
    let mut w = worker(d.bin, d.redis, d.prefix, d.concurrency)?;
    let waited = wait_completed_every(d.broker, n, started, d.timeout, &mut w, d.poll).await;
    let cpu = w.cpu_seconds();
    w.stop().await;
    let (startup, elapsed) = waited?;
    let (queued, completed) = counts(d.broker).await?;
    ensure!(
        queued == 0 && completed == n,
        "after the worker drain: {queued} queued, {completed} completed"
    );
    Ok(Drained {
        elapsed,
        startup,
        worker_cpu: cpu?,
    })
}

/// Idle workers' CPU, then enqueue → processor start at a steady rate, on `redis` under
/// `prefix`: the busiest idle worker's share of a core, and the latencies.
pub(crate) async fn latency_case(
    bin: &Path,
    redis: &Deployment,
    prefix: &str,
    args: &FleetArgs,
    timeout: Duration,
) -> Result<(f64, StartLatency)> {
    let b = broker(redis, prefix)?;
    let mut workers = Vec::new();
    for _ in 0..args.latency_workers.max(1) {
        match worker(bin, redis, prefix, args.worker_concurrency) {
            Ok(w) => workers.push(w),
            Err(e) => {
                stop_all(workers).await;
                return Err(e);
            }
        }
    }
    let r = latency_with(&b, &mut workers, args, timeout).await;
    stop_all(workers).await;
    r
}

async fn stop_all(workers: Vec<Proc>) {
    for w in workers {
        w.stop().await;
    }
}

async fn latency_with(
    b: &Broker,
    workers: &mut [Proc],
    args: &FleetArgs,
    timeout: Duration,
) -> Result<(f64, StartLatency)> {
    // Warm up: every worker is connected and has run a task, then all go idle.
    let warm = workers.len() * 4;
    for _ in 0..warm {
        b.enqueue(
            NewTask::new(TEST_QUEUE, json!({"op": "noop"})).owner("acct0", "user0-0"),
            b.server_time_ms().await?,
        )
        .await?;
    }
    wait_completed(b, warm as u64, Instant::now(), timeout, &mut workers[0]).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Idle: no task for `idle_secs`; the busiest worker counts.
    let before: Vec<f64> = workers
        .iter()
        .map(Proc::run_seconds)
        .collect::<Result<_>>()?;
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.idle_secs)).await;
    let secs = t0.elapsed().as_secs_f64();
    let mut idle_cpu: f64 = 0.0;
    for (w, b0) in workers.iter().zip(before) {
        idle_cpu = idle_cpu.max((w.run_seconds()? - b0).max(0.0) / secs);
    }

    // A steady rate, one enqueue call per tick, each on its own tokio task so that a slow
    // call does not delay the next tick.
    let total = (u64::from(args.latency_rate) * args.latency_secs) as usize;
    let mut tick = tokio::time::interval(Duration::from_secs(1) / args.latency_rate.max(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = Instant::now();
    let mut calls = Vec::with_capacity(total);
    for _ in 0..total {
        tick.tick().await;
        let b = b.clone();
        calls.push(tokio::spawn(async move {
            let sent = now_us();
            let t = NewTask::new(TEST_QUEUE, json!({"op": "stamp", "sent_us": sent}))
                .owner("acct0", "user0-0");
            b.enqueue(t, taskfleet::At::Server).await
        }));
    }
    let mut ids = Vec::with_capacity(total);
    for c in calls {
        ids.push(c.await??.id);
    }
    let elapsed = started.elapsed();
    wait_completed(
        b,
        (warm + total) as u64,
        Instant::now(),
        timeout,
        &mut workers[0],
    )
    .await?;
    let mut us = Vec::with_capacity(total);
    for chunk in ids.chunks(1000) {
        for t in b.get_many(TEST_QUEUE, chunk).await? {
            let l = t
                .result
                .as_ref()
                .and_then(|r| r.get("latency_us"))
                .and_then(|v| v.as_i64())
                .with_context(|| format!("task {} has no latency_us", t.id))?;
            us.push(l);
        }
    }
    ensure!(us.len() == total, "read {} of {total} results", us.len());
    Ok((idle_cpu, StartLatency::of(us, elapsed)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank_of_sorted_values() {
        let v: Vec<i64> = (1..=1000).collect();
        assert_eq!(quantile(&v, 0.5), 501);
        assert_eq!(quantile(&v, 0.99), 990);
        assert_eq!(quantile(&v, 1.0), 1000);
        assert_eq!(quantile(&[], 0.5), 0);
    }

    #[test]
    fn start_latency_sorts_and_counts_the_rate() {
        let l = StartLatency::of(vec![300, 100, 200, 900], Duration::from_secs(2));
        assert_eq!((l.tasks, l.p50_us, l.max_us), (4, 300, 900));
        assert_eq!(l.p99_us, 900);
        assert!((l.rate - 2.0).abs() < 1e-9);
    }
}
