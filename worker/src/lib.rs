//! taskfleet-worker: claims tasks, runs their processors, heartbeats, recovers.
//!
//! # Layout
//! - [`runner`]: the main loop: claims up to its free capacity, runs each task under its
//!   type's timeout, acknowledges in batches; waits for work on the `signal` lists.
//! - [`heartbeat`]: every lease/3, one extend per type for every task in flight; learns of
//!   cancel requests and lost leases; writes this worker's heartbeat key.
//! - [`recoverer`]: brings back expired leases and the tasks of workers whose heartbeat
//!   key is gone.
//! - [`scheduler`]: promotes due scheduled and retrying tasks; trims by retention.
//! - [`metrics`]: Prometheus counters, gauge and histograms.
//! - [`webhook`]: tells a task's `webhook_url` that the task finished.
//! - [`processors`]: the work of each task type.
//!
//! Every worker runs the recoverer and the scheduler: their scripts are idempotent, so there
//! is no leader to elect and no single point of failure.
//!
//! # Shutdown order (SIGTERM or SIGINT)
//! 1. Stop claiming: the runner leaves its loop; nothing new starts.
//! 2. Drain: in-flight tasks get the grace period to finish and be acknowledged.
//! 3. Release: tasks still running are marked released (their late results are dropped),
//!    given back to `queued` without using an attempt, and their cancellation tokens fire.
//! 4. Stop the recoverer and the scheduler.
//! 5. Stop the heartbeat last, so leases stay fresh while draining; its key is deleted so
//!    no one waits for this worker's leases.
//!
//! Exit code 0.

pub mod heartbeat;
pub mod metrics;
pub mod processors;
pub mod recoverer;
pub mod runner;
pub mod scheduler;
pub mod webhook;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use taskfleet::artifacts::ArtifactStore;
use taskfleet::{Broker, Clock, QueueConfig};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::processors::Processor;

/// How a worker runs.
#[derive(Clone)]
pub struct WorkerConfig {
    pub worker_id: String,
    /// The queues this worker claims from.
    pub types: Vec<String>,
    /// How many tasks run at once at most.
    pub concurrency: usize,
    /// How long in-flight tasks get to finish after a stop signal.
    pub grace: Duration,
    /// How long an idle worker blocks on its signal lists before it polls anyway.
    pub poll: Duration,
    /// How often the scheduler promotes due tasks.
    pub schedule_every: Duration,
    /// Where tasks write their files before they are stored.
    pub work_dir: std::path::PathBuf,
}

/// A queue this worker serves: its processor and config.
#[derive(Clone)]
pub struct Queue {
    pub processor: Arc<dyn Processor>,
    pub config: QueueConfig,
}

/// What the loops share.
pub struct Shared {
    pub broker: Broker,
    pub clock: Arc<dyn Clock>,
    pub config: WorkerConfig,
    pub queues: HashMap<String, Queue>,
    pub store: Option<Arc<dyn ArtifactStore>>,
    pub metrics: Arc<Metrics>,
    /// Tasks claimed and not yet acknowledged, by id.
    pub in_flight: Mutex<HashMap<String, InFlight>>,
    /// Notified whenever a slot frees up.
    pub slot_freed: Notify,
    /// Processors running now (≤ concurrency). A task whose processor has returned but whose
    /// result is not yet written no longer holds a slot, so the next claim overlaps that write.
    pub running: std::sync::atomic::AtomicUsize,
    pub health: Health,
}

/// One claimed task.
pub struct InFlight {
    pub task_type: String,
    pub lease: String,
    pub parent_id: Option<String>,
    pub webhook_url: Option<String>,
    pub cancel: CancellationToken,
    pub state: TaskState,
}

/// What the heartbeat or shutdown decided about a running task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    Running,
    /// Its cancel was requested: acknowledge as cancelled.
    CancelRequested,
    /// The lease is gone (recovered elsewhere): write nothing.
    Lost,
    /// Given back at shutdown: write nothing.
    Released,
}

impl Shared {
    pub fn now(&self) -> taskfleet::Millis {
        self.clock.now_ms()
    }

    /// How many more tasks may be claimed now: free processor slots, while no more than
    /// `concurrency` results wait to be written (a bound on what a Redis outage piles up).
    pub fn free_slots(&self) -> usize {
        let running = self.running.load(std::sync::atomic::Ordering::Acquire);
        let c = self.config.concurrency;
        c.saturating_sub(running)
            .min((2 * c).saturating_sub(self.in_flight_count()))
    }

    pub fn in_flight_count(&self) -> usize {
        self.in_flight.lock().expect("in-flight lock").len()
    }

    /// (id, lease) of every in-flight task, grouped by type.
    pub fn held_by_type(&self) -> HashMap<String, Vec<(String, String)>> {
        let mut out: HashMap<String, Vec<(String, String)>> = HashMap::new();
        for (id, f) in self.in_flight.lock().expect("in-flight lock").iter() {
            if matches!(f.state, TaskState::Running | TaskState::CancelRequested) {
                out.entry(f.task_type.clone())
                    .or_default()
                    .push((id.clone(), f.lease.clone()));
            }
        }
        out
    }

    /// Marks a task and fires its token (lost lease, cancel request).
    pub fn mark(&self, id: &str, state: TaskState) {
        if let Some(f) = self.in_flight.lock().expect("in-flight lock").get_mut(id) {
            if f.state == TaskState::Running || state == TaskState::Lost {
                f.state = state;
            }
            f.cancel.cancel();
        }
    }
}

/// Logs Redis trouble once per change of state, not once per failed call.
#[derive(Default)]
pub struct Health {
    down: AtomicBool,
}

impl Health {
    pub fn ok(&self) {
        if self.down.swap(false, Ordering::Relaxed) {
            tracing::info!("redis reachable again");
        }
    }

    pub fn bad(&self, what: &str, e: &taskfleet::Error) {
        if !self.down.swap(true, Ordering::Relaxed) {
            tracing::warn!(error = %e, "redis trouble during {what}; retrying with backoff");
        }
    }
}

/// Retry delays while Redis is unreachable: 50 ms doubling to 2 s.
pub fn backoff(failures: u32) -> Duration {
    Duration::from_millis((50u64 << failures.min(6)).min(2_000))
}

/// Runs a worker until `stop` fires, then shuts down in the documented order.
pub async fn run(shared: Arc<Shared>, stop: CancellationToken) {
    let background = CancellationToken::new();
    let heartbeat_stop = CancellationToken::new();
    let heartbeat =
        tokio::spawn(heartbeat::Heartbeat::new(shared.clone()).run(heartbeat_stop.clone()));
    let recoverer = tokio::spawn(recoverer::Recoverer::new(shared.clone()).run(background.clone()));
    let scheduler = tokio::spawn(scheduler::Scheduler::new(shared.clone()).run(background.clone()));

    let runner = runner::Runner::new(shared.clone());
    runner.run(stop.clone()).await;

    // 2. Drain.
    let deadline = tokio::time::Instant::now() + shared.config.grace;
    while shared.in_flight_count() > 0 && tokio::time::Instant::now() < deadline {
        let _ = tokio::time::timeout_at(deadline, shared.slot_freed.notified()).await;
    }
    // 3. Release what is still running.
    runner.release_all().await;
    // 4. Background loops.
    background.cancel();
    let _ = recoverer.await;
    let _ = scheduler.await;
    runner.finish().await;
    // 5. Heartbeat last.
    heartbeat_stop.cancel();
    let _ = heartbeat.await;
    tracing::info!("worker stopped");
}
