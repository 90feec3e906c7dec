//! The scheduler: promotes due scheduled and retrying tasks to `queued` (and wakes idle
//! workers), enqueues the due ticks of recurring schedules (each once fleet-wide: a
//! compare-and-set claims a tick, its task id is derived from schedule and tick), and trims
//! finished tasks past their retention together with their artifacts. Every worker runs one;
//! the scripts are idempotent.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use taskfleet::At;
use tokio_util::sync::CancellationToken;

use crate::Shared;

/// How often a scheduler trims, in ticks.
const TRIM_EVERY: u32 = 60;

/// What one tick did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub promoted: u64,
    pub trimmed: usize,
    /// Schedule ticks whose task this pass enqueued.
    pub ticks: usize,
}

pub struct Scheduler {
    shared: Arc<Shared>,
}

impl Scheduler {
    pub fn new(shared: Arc<Shared>) -> Scheduler {
        Scheduler { shared }
    }

    pub async fn run(self, stop: CancellationToken) {
        let mut n = 0u32;
        loop {
            // Jittered (±25%), like the recoverer, so a fleet's schedulers spread out.
            let jitter = rand::rng().random_range(0.75..1.25);
            let wait: Duration = self.shared.config.schedule_every.mul_f64(jitter);
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            n = n.wrapping_add(1);
            if let Err(e) = self.tick(self.shared.at(), n % TRIM_EVERY == 1).await {
                self.shared.health.bad("schedule", &e);
                self.shared.metrics.redis_error();
            }
        }
    }

    /// One pass: promote; enqueue the due ticks of recurring schedules; and with `trim`,
    /// remove expired finished tasks and their files.
    pub async fn tick(&self, at: impl Into<At>, trim: bool) -> taskfleet::Result<Report> {
        let at = at.into();
        let s = &self.shared;
        let mut report = Report {
            promoted: s.broker.promote(at).await?,
            ..Report::default()
        };
        // A schedule's tick step fails on its own: promotion is done either way.
        match s.broker.tick_schedules(at).await {
            Ok(r) => report.ticks = r.enqueued,
            Err(e) => {
                s.health.bad("schedule ticks", &e);
                s.metrics.redis_error();
            }
        }
        if trim {
            let removed = s.broker.trim(at).await?;
            report.trimmed = removed.len();
            if let Some(store) = &s.store {
                for (_, id) in &removed {
                    if let Err(e) = store.delete_task(id).await {
                        tracing::warn!(id = %id, error = %e, "artifacts of a trimmed task not deleted");
                    }
                }
            }
        }
        Ok(report)
    }
}
