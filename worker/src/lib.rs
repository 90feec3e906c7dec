//! taskfleet-worker: claims tasks, runs their processors, heartbeats, recovers.
//!
//! # Layout
//! - [`in_flight`]: the attempts claimed and not yet acknowledged, keyed by (id, lease).
//! - [`runner`]: the main loop: claims up to its free capacity, runs each task under its
//!   type's timeout, acknowledges in batches; waits for work on the `signal` lists.
//! - [`heartbeat`]: every lease/3, one extend per type for every task in flight; learns of
//!   cancel requests and lost leases; writes this worker's heartbeat key.
//! - [`recoverer`]: brings back expired leases and the tasks of workers whose heartbeat
//!   key is gone.
//! - [`scheduler`]: promotes due scheduled and retrying tasks; enqueues the due ticks of
//!   recurring schedules; trims by retention.
//! - [`test_clock`]: a clock read from a file, for tests that move real processes' time.
//! - [`metrics`]: Prometheus counters, gauge and histograms.
//! - [`webhook`]: sends the durable webhook deliveries the scripts write (signed, retried over
//!   28 h, to checked addresses only).
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
pub mod in_flight;
pub mod metrics;
pub mod processors;
pub mod recoverer;
pub mod runner;
pub mod scheduler;
pub mod test_clock;
pub mod webhook;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use taskfleet::artifacts::ArtifactStore;
use taskfleet::{At, Broker, Clock, QueueConfig};
use tokio_util::sync::CancellationToken;

use crate::in_flight::InFlight;
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
    /// How often the scheduler promotes due tasks and ticks schedules.
    pub schedule_every: Duration,
    /// Where tasks write their files before they are stored.
    pub work_dir: std::path::PathBuf,
}

/// How this worker handles one task type: its processor, and the config of the type's queue.
#[derive(Clone)]
pub struct Handler {
    pub processor: Arc<dyn Processor>,
    pub config: QueueConfig,
}

/// What the loops share.
pub struct Shared {
    pub broker: Broker,
    pub clock: Arc<dyn Clock>,
    pub config: WorkerConfig,
    pub queues: HashMap<String, Handler>,
    pub store: Option<Arc<dyn ArtifactStore>>,
    pub metrics: Arc<Metrics>,
    /// The attempts claimed and not yet acknowledged.
    pub in_flight: InFlight,
    pub health: Health,
    /// How webhook deliveries are made (issue 13).
    pub webhooks: webhook::DeliveryConfig,
}

impl Shared {
    /// The shared state of a worker; the in-flight table is sized by the concurrency.
    pub fn new(
        broker: Broker,
        clock: Arc<dyn Clock>,
        config: WorkerConfig,
        queues: HashMap<String, Handler>,
        store: Option<Arc<dyn ArtifactStore>>,
        metrics: Arc<Metrics>,
    ) -> Shared {
        Shared {
            in_flight: InFlight::new(config.concurrency),
            broker,
            clock,
            config,
            queues,
            store,
            metrics,
            health: Health::default(),
            webhooks: webhook::DeliveryConfig::default(),
        }
    }

    /// With webhook deliveries made as `cfg` says (the settings' `[webhooks]`).
    pub fn with_webhooks(mut self, cfg: webhook::DeliveryConfig) -> Shared {
        self.webhooks = cfg;
        self
    }

    /// The estimate of the server's time, for what is shown or measured.
    pub fn now(&self) -> taskfleet::Millis {
        self.clock.now_ms()
    }

    /// The time script calls act at: the server's own clock in production.
    pub fn at(&self) -> At {
        self.clock.at()
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

/// An HTTP client builder on rustls with ring, installed as the process's crypto provider at
/// first use (installing it again is harmless): the worker's one way to make a client.
pub fn http_client() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
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
    let deliverer = tokio::spawn(webhook::Deliverer::new(shared.clone()).run(background.clone()));

    let runner = runner::Runner::new(shared.clone());
    runner.run(stop.clone()).await;

    // 2. Drain.
    let deadline = tokio::time::Instant::now() + shared.config.grace;
    while !shared.in_flight.is_empty() && tokio::time::Instant::now() < deadline {
        let _ = tokio::time::timeout_at(deadline, shared.in_flight.slot_freed()).await;
    }
    // 3. Release what is still running.
    runner.release_all().await;
    // 4. Background loops.
    background.cancel();
    let _ = recoverer.await;
    let _ = scheduler.await;
    let _ = deliverer.await;
    runner.finish().await;
    // 5. Heartbeat last.
    heartbeat_stop.cancel();
    let _ = heartbeat.await;
    tracing::info!("worker stopped");
}
