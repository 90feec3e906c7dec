//! The one clock: the Redis server's (DESIGN §5).
//!
//! Every decision about time (is a lease expired, is a task due, when does a backoff end)
//! is made inside a Lua script with the server's own `TIME`, so all processes judge leases by
//! one clock however far their own estimates drift or step. Each script takes the time as its
//! first argument, [`At`]: [`At::Server`] (production: the script reads `TIME` itself) or
//! [`At::Ms`] (tests move time instead of sleeping, with a [`ManualClock`]).
//!
//! Processes still need an estimate of the server's time for what they only show or bound
//! (an enqueue's `run_at` check, a wait-time metric): a [`RedisClock`] reads Redis `TIME` at
//! start and every minute and advances it with the local monotonic clock in between.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::error::Result;
use crate::task::Millis;

/// How often a [`RedisClock`] re-reads the server's time.
pub const CLOCK_SYNC_INTERVAL: Duration = Duration::from_secs(60);

/// The time a script call acts at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum At {
    /// The Redis server's `TIME`, read by the script itself: what production uses, so that
    /// every lease decision is made by one clock.
    Server,
    /// This instant (ms since the epoch): tests, which move time instead of sleeping.
    Ms(Millis),
}

impl At {
    /// The script argument: empty for the server's clock.
    pub fn arg(self) -> String {
        match self {
            At::Server => String::new(),
            At::Ms(ms) => ms.to_string(),
        }
    }

    /// The given instant, or this machine's wall clock as an estimate of the server's (for
    /// hints only, never for a decision).
    pub fn estimate(self) -> Millis {
        match self {
            At::Ms(ms) => ms,
            At::Server => wall_clock_ms(),
        }
    }
}

impl From<Millis> for At {
    fn from(ms: Millis) -> At {
        At::Ms(ms)
    }
}

/// This machine's wall clock, in ms since the epoch.
pub fn wall_clock_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

/// Something that tells the time in milliseconds since the epoch.
pub trait Clock: Send + Sync {
    /// The best estimate of the server's time now, for what is shown or bounded.
    fn now_ms(&self) -> Millis;

    /// The time script calls act at: a given instant by default (test clocks); the server's
    /// own `TIME` for a clock that follows the server.
    fn at(&self) -> At {
        At::Ms(self.now_ms())
    }
}

/// Follows the Redis server's `TIME`; its script calls use the server's clock itself.
#[derive(Debug)]
pub struct RedisClock {
    // A std mutex: held for a few instructions, never across an await.
    anchor: Mutex<(Instant, Millis)>,
}

impl RedisClock {
    /// Reads the server's time once; call [`RedisClock::sync`] (or spawn [`RedisClock::run`])
    /// to follow it.
    pub async fn new(broker: &Broker) -> Result<Arc<RedisClock>> {
        let server = broker.server_time_ms().await?;
        Ok(Arc::new(RedisClock::starting_at(server)))
    }

    /// A clock whose estimate starts at `server` (what a read of `TIME` gave).
    pub fn starting_at(server: Millis) -> RedisClock {
        RedisClock {
            anchor: Mutex::new((Instant::now(), server)),
        }
    }

    /// Re-reads the server's time. The estimate follows it both ways: a server whose clock
    /// stepped back (a failover, an NTP step) is followed, not waited for.
    pub async fn sync(&self, broker: &Broker) -> Result<()> {
        let server = broker.server_time_ms().await?;
        self.set(server);
        Ok(())
    }

    /// Sets the estimate to `server` now (what a sync does with the time it read).
    pub fn set(&self, server: Millis) {
        *self.anchor.lock().expect("clock lock") = (Instant::now(), server);
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
        server + at.elapsed().as_millis() as Millis
    }

    fn at(&self) -> At {
        At::Server
    }
}

/// The machine's clock as the estimate, and the server's own `TIME` for every script call:
/// for programs that enqueue or run tasks without following the server (tools, tests of
/// processors).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> Millis {
        wall_clock_ms()
    }

    fn at(&self) -> At {
        At::Server
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
