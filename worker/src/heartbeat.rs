//! The heartbeat: every lease/3 this worker registers itself (`tf:{workers}:worker:<id>`, alive for two
//! leases, which other workers' recoverers read), then renews the leases of everything in
//! flight with one extend call per type, and learns of cancel requests and lost leases from
//! the answers. Each step stands alone: a slow or failing extend of one type delays neither the
//! registration nor the other types' leases.

use std::sync::Arc;
use std::time::Duration;

use taskfleet::{At, TaskStatus, WorkerInfo};
use tokio_util::sync::CancellationToken;

use crate::in_flight::{Attempt, RunState};
use crate::Shared;

/// What one beat found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Beat {
    pub extended: usize,
    pub lost: usize,
    pub cancel_requested: usize,
    /// Steps that failed (a type's extend, the registration, the orphan check).
    pub errors: usize,
}

pub struct Heartbeat {
    shared: Arc<Shared>,
    started_at: i64,
}

impl Heartbeat {
    pub fn new(shared: Arc<Shared>) -> Heartbeat {
        let started_at = shared.now();
        Heartbeat { shared, started_at }
    }

    /// A third of the lease: two beats can fail before a lease is at risk.
    pub fn interval(&self) -> Duration {
        self.shared.broker.lease() / 3
    }

    /// How long this worker's registration lives without a beat: two leases, so that a few
    /// slow beats never get a live worker declared dead (its leases would be recovered at
    /// once); a dead worker's tasks come back by their leases expiring anyway.
    pub fn registration_ttl(&self) -> Duration {
        self.shared.broker.lease() * 2
    }

    pub async fn run(self, stop: CancellationToken) {
        let mut ticker = tokio::time::interval(self.interval());
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = ticker.tick() => {}
            }
            let beat = self.tick(self.shared.at()).await;
            if beat.errors == 0 {
                self.shared.health.ok();
            }
        }
        if let Err(e) = self
            .shared
            .broker
            .unregister_worker(&self.shared.config.worker_id)
            .await
        {
            tracing::debug!(error = %e, "could not unregister; the key expires by itself");
        }
    }

    /// One beat: register, extend every held lease (each type on its own), mark lost and
    /// cancel-requested attempts, cancel the children of ended parents.
    pub async fn tick(&self, at: At) -> Beat {
        let s = &self.shared;
        let mut beat = Beat::default();
        if let Err(e) = self.register().await {
            beat.errors += 1;
            self.trouble("registration", &e);
        }
        let held: Vec<(String, Vec<(String, String)>)> =
            s.in_flight.held_by_type().into_iter().collect();
        for (t, report) in s.broker.extend_all(held.clone(), at).await {
            let items = held
                .iter()
                .find(|(ht, _)| *ht == t)
                .map(|(_, items)| items.as_slice())
                .unwrap_or_default();
            let attempt_of = |id: &String| {
                items.iter().find(|(i, _)| i == id).map(|(i, l)| Attempt {
                    id: i.clone(),
                    lease: l.clone(),
                })
            };
            match report {
                Ok(report) => {
                    beat.extended += items.len() - report.lost.len();
                    beat.lost += report.lost.len();
                    beat.cancel_requested += report.cancel_requested.len();
                    for a in report.lost.iter().filter_map(attempt_of) {
                        tracing::warn!(id = %a.id, "lease lost (recovered elsewhere): stopping the task, writing nothing");
                        s.in_flight.mark(&a, RunState::Lost);
                    }
                    for a in report.cancel_requested.iter().filter_map(attempt_of) {
                        tracing::info!(id = %a.id, "cancel requested: stopping the task");
                        s.in_flight.mark(&a, RunState::CancelRequested);
                    }
                }
                Err(e) => {
                    beat.errors += 1;
                    self.trouble(&format!("extend of {t}"), &e);
                }
            }
        }
        if let Err(e) = self.cancel_orphans(at).await {
            beat.errors += 1;
            self.trouble("orphan check", &e);
        }
        beat
    }

    fn trouble(&self, what: &str, e: &taskfleet::Error) {
        self.shared.health.bad(what, e);
        self.shared.metrics.redis_error();
    }

    /// A running child task (a lesson video of a course) whose parent ended cancelled or
    /// failed (or is gone) is cancelled too: the backstop for a cascade that did not reach it.
    async fn cancel_orphans(&self, at: At) -> taskfleet::Result<()> {
        let s = &self.shared;
        let children = s.in_flight.running_children();
        if children.is_empty() {
            return Ok(());
        }
        // Every parent's status in one round trip.
        let mut parents: Vec<String> = children.iter().map(|(_, p)| p.clone()).collect();
        parents.sort_unstable();
        parents.dedup();
        let statuses = s.broker.statuses(&parents).await?;
        for (child, parent) in children {
            let parent_status = statuses.get(&parent).copied();
            if matches!(
                parent_status,
                Some(TaskStatus::Cancelled | TaskStatus::Failed) | None
            ) {
                match s.broker.cancel(&child.id, at).await {
                    Ok(_) | Err(taskfleet::Error::AlreadyTerminal { .. }) => {
                        s.in_flight.mark(&child, RunState::CancelRequested)
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    async fn register(&self) -> taskfleet::Result<()> {
        let s = &self.shared;
        let info = WorkerInfo {
            id: s.config.worker_id.clone(),
            host: hostname(),
            pid: Some(std::process::id()),
            types: s.config.types.clone(),
            concurrency: s.config.concurrency as u32,
            started_at: Some(self.started_at),
            in_flight: s.in_flight.len() as u32,
            last_beat: Some(s.now()),
        };
        s.broker
            .register_worker(&info, self.registration_ttl())
            .await
    }
}

/// This machine's name, for the heartbeat key.
pub fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}
