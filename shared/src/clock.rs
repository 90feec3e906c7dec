//! The one clock: the Redis server's (DESIGN §5).
//!
//! Scripts take `now_ms` as an argument. In production it comes from a [`RedisClock`], which
//! reads Redis `TIME` at start and every minute and advances it with the local monotonic clock
//! in between, so a skewed or jumping machine clock never decides a lease, a backoff or an
//! order. Tests use a [`ManualClock`] and move time instead of sleeping.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::error::Result;
use crate::task::Millis;

/// How often a [`RedisClock`] re-reads the server's time.
pub const CLOCK_SYNC_INTERVAL: Duration = Duration::from_secs(60);

/// Something that tells the time in milliseconds since the epoch.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> Millis;
}

/// Follows the Redis server's `TIME`.
#[derive(Debug)]
pub struct RedisClock {
    // A std mutex: held for a few instructions, never across an await.
    anchor: Mutex<(Instant, Millis)>,
    last: AtomicI64,
}

impl RedisClock {
    /// Reads the server's time once; call [`RedisClock::sync`] (or spawn [`RedisClock::run`])
    /// to follow it.
    pub async fn new(broker: &Broker) -> Result<Arc<RedisClock>> {
        let server = broker.server_time_ms().await?;
        Ok(Arc::new(RedisClock {
            anchor: Mutex::new((Instant::now(), server)),
            last: AtomicI64::new(server),
        }))
    }

    /// Re-reads the server's time.
    pub async fn sync(&self, broker: &Broker) -> Result<()> {
        let server = broker.server_time_ms().await?;
        *self.anchor.lock().expect("clock lock") = (Instant::now(), server);
        Ok(())
    }

    /// Re-syncs every [`CLOCK_SYNC_INTERVAL`] until `stop` fires; a failed sync keeps the
    /// monotonic estimate.
    pub async fn run(self: Arc<Self>, broker: Broker, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(CLOCK_SYNC_INTERVAL) => {
                    if let Err(e) = self.sync(&broker).await {
                        tracing::debug!(error = %e, "clock sync failed; keeping the local estimate");
                    }
                }
            }
        }
    }
}

impl Clock for RedisClock {
    fn now_ms(&self) -> Millis {
        let (at, server) = *self.anchor.lock().expect("clock lock");
        let estimate = server + at.elapsed().as_millis() as Millis;
        // Never run backwards, even when a sync finds the server behind our estimate.
        self.last
            .fetch_max(estimate, Ordering::Relaxed)
            .max(estimate)
    }
}

/// A clock that tests set and move by hand.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(now: Millis) -> Self {
        ManualClock(AtomicI64::new(now))
    }
    pub fn set(&self, now: Millis) {
        self.0.store(now, Ordering::SeqCst);
    }
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_millis() as Millis, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> Millis {
        self.0.load(Ordering::SeqCst)
    }
}
