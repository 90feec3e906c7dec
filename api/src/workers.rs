//! The live workers, read through the library's registry ([`taskfleet::registry`]) and cached
//! for a moment, because every enqueue's estimate wants the fleet's capacity.

use std::time::{Duration, Instant};

use taskfleet::Broker;
use tokio::sync::Mutex;

/// How long a read of the workers is reused.
pub const WORKER_CACHE_TTL: Duration = Duration::from_secs(2);
/// The most workers read: bounded work per request.
pub const MAX_WORKERS: usize = 1_000;

pub use taskfleet::WorkerInfo;

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
    broker.live_workers(MAX_WORKERS).await
}
