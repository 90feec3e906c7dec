//! The recoverer: brings back tasks whose lease ran out, and at once the tasks of workers
//! whose heartbeat key is gone (expired or deleted). Every worker runs one; recover.lua is
//! idempotent, so two recoverers at once do no harm.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use taskfleet::{At, RecoverReport};
use tokio_util::sync::CancellationToken;

use crate::metrics::Event;
use crate::Shared;

/// The most registered workers one pass looks at: bounded work per tick.
pub const MAX_WORKERS: usize = 1_000;

pub struct Recoverer {
    shared: Arc<Shared>,
}

impl Recoverer {
    pub fn new(shared: Arc<Shared>) -> Recoverer {
        Recoverer { shared }
    }

    /// A quarter of the lease on average: an expired lease waits at most that long.
    fn interval(&self) -> Duration {
        self.shared.broker.lease() / 4
    }

    pub async fn run(self, stop: CancellationToken) {
        loop {
            // Jittered (±25%): workers started together (a deploy) would otherwise all run
            // their recoverers in the same instant, every time, and load Redis in bursts.
            let jitter = rand::rng().random_range(0.75..1.25);
            let wait = self.interval().mul_f64(jitter);
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            if let Err(e) = self.tick(self.shared.at()).await {
                self.shared.health.bad("recover", &e);
                self.shared.metrics.redis_error();
            }
        }
    }

    /// One pass: find dead workers, recover expired leases and theirs, forget the dead.
    pub async fn tick(&self, at: impl Into<At>) -> taskfleet::Result<RecoverReport> {
        let s = &self.shared;
        let dead = s.broker.dead_workers(MAX_WORKERS).await?;
        let report = s.broker.recover(at, &dead).await?;
        for (t, id) in report.requeued.iter().chain(&report.failed) {
            tracing::warn!(task_type = %t, id = %id, "recovered a task whose worker is gone");
            s.metrics.count(Event::Recovered, t, 1);
        }
        s.broker.forget_workers(&dead).await?;
        Ok(report)
    }
}
