//! The heartbeat: every lease/3, one extend call per type for all tasks in flight, so leases
//! never run out while a task is alive; it learns of cancel requests and lost leases from the
//! answers. It also writes this worker's key `tf:worker:<id>` (TTL three intervals) and its
//! score in `tf:workers`, which the recoverers of other workers read.

use std::sync::Arc;
use std::time::Duration;

use taskfleet::TaskStatus;
use tokio_util::sync::CancellationToken;

use crate::{Shared, TaskState};

/// What one beat found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Beat {
    pub extended: usize,
    pub lost: usize,
    pub cancel_requested: usize,
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

    pub async fn run(self, stop: CancellationToken) {
        let mut ticker = tokio::time::interval(self.interval());
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = ticker.tick() => {}
            }
            let now = self.shared.now();
            if let Err(e) = self.tick(now).await {
                self.shared.health.bad("heartbeat", &e);
                self.shared.metrics.redis_error();
            }
        }
        self.unregister().await;
    }

    /// One beat: extend every held lease, mark lost and cancel-requested tasks, cancel the
    /// children of cancelled or failed parents, and refresh this worker's key.
    pub async fn tick(&self, now: i64) -> taskfleet::Result<Beat> {
        let s = &self.shared;
        let mut beat = Beat::default();
        for (t, held) in s.held_by_type() {
            let report = s.broker.extend(&t, &held, now).await?;
            beat.extended += held.len() - report.lost.len();
            beat.lost += report.lost.len();
            beat.cancel_requested += report.cancel_requested.len();
            for id in &report.lost {
                tracing::warn!(id = %id, "lease lost (recovered elsewhere): stopping the task, writing nothing");
                s.mark(id, TaskState::Lost);
            }
            for id in &report.cancel_requested {
                tracing::info!(id = %id, "cancel requested: stopping the task");
                s.mark(id, TaskState::CancelRequested);
            }
        }
        self.cancel_orphans(now).await?;
        self.register(now).await?;
        s.health.ok();
        Ok(beat)
    }

    /// A child task (a lesson video of a course) whose parent was cancelled or failed is
    /// cancelled too.
    async fn cancel_orphans(&self, now: i64) -> taskfleet::Result<()> {
        let s = &self.shared;
        let children: Vec<(String, String)> = s
            .in_flight
            .lock()
            .expect("in-flight lock")
            .iter()
            .filter(|(_, f)| f.state == TaskState::Running)
            .filter_map(|(id, f)| f.parent_id.clone().map(|p| (id.clone(), p)))
            .collect();
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
                match s.broker.cancel(&child, now).await {
                    Ok(_) | Err(taskfleet::Error::AlreadyTerminal { .. }) => {
                        s.mark(&child, TaskState::CancelRequested)
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    async fn register(&self, now: i64) -> taskfleet::Result<()> {
        let s = &self.shared;
        let k = s.broker.keys();
        let key = k.worker(&s.config.worker_id);
        let workers = k.workers();
        let ttl_ms = (self.interval() * 3).as_millis() as i64;
        let host = hostname();
        let fields: Vec<(&str, String)> = vec![
            ("id", s.config.worker_id.clone()),
            ("host", host),
            ("pid", std::process::id().to_string()),
            ("types", s.config.types.join(",")),
            ("concurrency", s.config.concurrency.to_string()),
            ("started_at", self.started_at.to_string()),
            ("in_flight", s.in_flight_count().to_string()),
            ("last_beat", now.to_string()),
        ];
        let id = s.config.worker_id.clone();
        s.broker
            .with_conn(async |c| {
                redis::pipe()
                    .atomic()
                    .hset_multiple(&key, &fields)
                    .ignore()
                    .pexpire(&key, ttl_ms)
                    .ignore()
                    .zadd(&workers, &id, now)
                    .ignore()
                    .query_async::<()>(c)
                    .await
            })
            .await
    }

    /// Shutdown's last step: this worker is gone, and says so.
    async fn unregister(&self) {
        let s = &self.shared;
        let k = s.broker.keys();
        let key = k.worker(&s.config.worker_id);
        let workers = k.workers();
        let id = s.config.worker_id.clone();
        let _ = s
            .broker
            .with_conn(async |c| {
                redis::pipe()
                    .del(&key)
                    .ignore()
                    .zrem(&workers, &id)
                    .ignore()
                    .query_async::<()>(c)
                    .await
            })
            .await;
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
