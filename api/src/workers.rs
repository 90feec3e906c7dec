//! The live workers, read from `tf:workers` (ZSET) and their `tf:worker:<id>` heartbeat HASHes
//! (a worker is live while its hash exists: it expires when the worker stops beating). Cached
//! for a moment, because every enqueue's estimate wants the fleet's capacity.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use taskfleet::Broker;
use tokio::sync::Mutex;
use utoipa::ToSchema;

/// How long a read of the workers is reused.
pub const WORKER_CACHE_TTL: Duration = Duration::from_secs(2);
/// The most workers read: bounded work per request.
pub const MAX_WORKERS: usize = 1_000;

/// One live worker, from its heartbeat hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WorkerInfo {
    pub id: String,
    pub host: String,
    pub pid: Option<u32>,
    /// The types it claims; empty = every type.
    pub types: Vec<String>,
    pub concurrency: u32,
    pub started_at: Option<i64>,
    pub in_flight: u32,
}

impl WorkerInfo {
    pub fn serves(&self, task_type: &str) -> bool {
        self.types.is_empty() || self.types.iter().any(|t| t == task_type || t == "*")
    }
}

#[derive(Default)]
pub struct WorkerCache {
    // A tokio mutex: held across the Redis read, so concurrent requests share one read.
    cached: Mutex<Option<(Instant, Vec<WorkerInfo>)>>,
}

impl WorkerCache {
    pub async fn get(&self, broker: &Broker) -> taskfleet::Result<Vec<WorkerInfo>> {
        let mut guard = self.cached.lock().await;
        if let Some((at, workers)) = guard.as_ref() {
            if at.elapsed() < WORKER_CACHE_TTL {
                return Ok(workers.clone());
            }
        }
        let workers = read_live(broker).await?;
        *guard = Some((Instant::now(), workers.clone()));
        Ok(workers)
    }

    /// Slots (sum of concurrency) of the live workers that claim `task_type`; at least 1.
    pub async fn capacity(&self, broker: &Broker, task_type: &str) -> taskfleet::Result<u64> {
        let slots: u64 = self
            .get(broker)
            .await?
            .iter()
            .filter(|w| w.serves(task_type))
            .map(|w| u64::from(w.concurrency.max(1)))
            .sum();
        Ok(slots.max(1))
    }
}

/// Reads the live workers, newest heartbeat first.
pub async fn read_live(broker: &Broker) -> taskfleet::Result<Vec<WorkerInfo>> {
    Ok(broker
        .workers(true, MAX_WORKERS)
        .await?
        .into_iter()
        .filter(|(_, h)| !h.is_empty())
        .map(|(id, mut h)| {
            let num = |v: Option<String>| v.and_then(|s| s.parse::<i64>().ok());
            WorkerInfo {
                id,
                host: h.remove("host").unwrap_or_default(),
                pid: num(h.remove("pid")).map(|p| p as u32),
                types: h
                    .remove("types")
                    .unwrap_or_default()
                    .split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(String::from)
                    .collect(),
                concurrency: num(h.remove("concurrency")).unwrap_or(1).max(0) as u32,
                started_at: num(h.remove("started_at")),
                in_flight: num(h.remove("in_flight")).unwrap_or(0).max(0) as u32,
            }
        })
        .collect())
}
