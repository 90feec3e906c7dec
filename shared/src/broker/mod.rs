//! The queue client: one method per Lua script, the only code that changes a task.
//!
//! # Layout
//! - [`conn`]: the shared connection, timeouts, scripts by SHA, and the retry classes of
//!   Redis's errors.
//! - [`enqueue`]: enqueue and its per-account limits (quotas, top band, rate).
//! - [`lease`]: a task's attempt: claim (and unclaim of a claim whose reply was lost),
//!   extend, complete, fail, release, defer, progress, children.
//! - [`maintenance`]: what every worker runs without a leader: promote, recover, trim; and
//!   pause, resume, cancel (which cascades to a task's children).
//! - [`retry`]: a failed or cancelled task back in its queue, from the outside.
//!
//! Each script is a `static` next to the method that calls it; redis-rs sends EVALSHA and, on
//! NOSCRIPT (a restarted or flushed Redis), loads the script and sends it again. Every call is
//! bounded by the broker's timeout, so a stalled Redis returns [`Error::Unavailable`] instead
//! of hanging a worker or the API. Every script acts at an [`At`]: the server's own `TIME`
//! in production, a given instant in tests.

pub(crate) mod conn;
pub mod enqueue;
pub mod lease;
pub mod maintenance;
pub mod retry;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use deadpool_redis::{Manager, Pool, Runtime};
use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;

use crate::clock::At;
use crate::config::{Limits, QueueConfig, RetentionSettings, Settings};
use crate::error::{Error, Result};
use crate::keys::Keys;
use crate::task::{Millis, TaskStatus};

pub use enqueue::RateOutcome;
pub use lease::{
    CancelOutcome, Completion, DeferOutcome, ExtendReport, FailOutcome, Failure, ReleaseOutcome,
};
pub use maintenance::RecoverReport;

/// How many events each type's stream keeps (approximately): `XADD MAXLEN ~`.
pub const EVENTS_MAXLEN: usize = 10_000;
/// How long an Idempotency-Key remembers its task.
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 3600);
/// How many due scheduled or retrying ids one claim promotes per set: bounded work per call.
pub const PROMOTE_LIMIT: usize = 1_000;
/// How many leases one recover call looks at per type.
pub const RECOVER_LIMIT: usize = 1_000;
/// How many finished tasks one trim call removes per set and type.
pub const TRIM_LIMIT: usize = 1_000;
/// The largest batch one script call accepts.
pub const MAX_BATCH: usize = 1_000;
/// The largest request (serialized JSON) the engine stores.
pub const MAX_REQUEST_BYTES: usize = 1 << 20;
/// How many tasks one cancel reaches through children (a course's lessons): bounded work.
pub const MAX_CASCADE: usize = 1_000;

/// A connection-pooled client of one taskfleet keyspace. Cheap to clone.
#[derive(Clone)]
pub struct Broker {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    url: String,
    pub(crate) pool: Pool,
    /// One multiplexed connection taken from the pool and shared by every call: redis-rs
    /// pipelines concurrent commands on it, and no call pays the pool's recycle PING (a round
    /// trip). A std mutex, held only to clone it. Dropped on a connection error, so the next
    /// call takes a fresh one from the pool.
    pub(crate) shared: std::sync::Mutex<Option<MultiplexedConnection>>,
    pub(crate) keys: Keys,
    pub(crate) queues: HashMap<String, QueueConfig>,
    pub(crate) timeout: Duration,
    pub(crate) lease: Duration,
    pub(crate) worker_id: String,
    pub(crate) retention: RetentionSettings,
    pub(crate) limits: Limits,
    /// Claims whose reply never came: given back on the next claim (see [`lease`]). A std
    /// mutex, never held across an await.
    pub(crate) unanswered: std::sync::Mutex<Vec<lease::Unanswered>>,
}

/// Builds a [`Broker`].
pub struct BrokerBuilder {
    url: String,
    prefix: String,
    timeout: Duration,
    pool_size: usize,
    lease: Duration,
    worker_id: String,
    retention: RetentionSettings,
    limits: Limits,
    queues: HashMap<String, QueueConfig>,
}

impl BrokerBuilder {
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }
    /// Every Redis call gives up after this.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
    pub fn pool_size(mut self, n: usize) -> Self {
        self.pool_size = n;
        self
    }
    /// The lease (visibility timeout) a claim grants and an extend renews.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }
    /// The id written into the tasks this broker claims.
    pub fn worker_id(mut self, id: impl Into<String>) -> Self {
        self.worker_id = id.into();
        self
    }
    pub fn retention(mut self, r: RetentionSettings) -> Self {
        self.retention = r;
        self
    }
    /// The per-account limits enqueue enforces (quotas, top band, rate).
    pub fn limits(mut self, l: Limits) -> Self {
        self.limits = l;
        self
    }
    /// Registers a queue (a task type name) and its config.
    pub fn queue(mut self, name: impl Into<String>, config: QueueConfig) -> Self {
        self.queues.insert(name.into(), config);
        self
    }
    pub fn queues(mut self, queues: impl IntoIterator<Item = (String, QueueConfig)>) -> Self {
        self.queues.extend(queues);
        self
    }

    pub fn build(self) -> Result<Broker> {
        for name in self.queues.keys() {
            validate_queue_name(name)?;
        }
        // Connections answer within the broker's timeout (redis-rs would give up after 500 ms,
        // too soon for a large batch on a busy server).
        let conn_cfg = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        let manager = Manager::new_with_config(self.url.as_str(), conn_cfg)
            .map_err(|e| Error::invalid("redis.url", e.to_string()))?;
        let mut pc = deadpool_redis::PoolConfig::new(self.pool_size);
        pc.timeouts.wait = Some(self.timeout);
        pc.timeouts.create = Some(self.timeout);
        pc.timeouts.recycle = Some(self.timeout);
        let pool = Pool::builder(manager)
            .config(pc)
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| Error::invalid("redis.url", e.to_string()))?;
        Ok(Broker {
            inner: Arc::new(Inner {
                url: self.url,
                pool,
                shared: std::sync::Mutex::new(None),
                keys: Keys::new(self.prefix),
                queues: self.queues,
                timeout: self.timeout,
                lease: self.lease,
                worker_id: self.worker_id,
                retention: self.retention,
                limits: self.limits,
                unanswered: std::sync::Mutex::new(Vec::new()),
            }),
        })
    }
}

fn validate_queue_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'#');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "task_type",
            format!("{name:?}: 1-64 characters of a-z, 0-9, _, - or #"),
        ))
    }
}

/// An identifier given by a caller (account, user, task id): no `:` (a key separator), no
/// `,` (a list separator in events and claim records), no spaces.
pub(crate) fn validate_ident(field: &str, v: &str, max: usize) -> Result<()> {
    if v.len() > max
        || v.bytes()
            .any(|b| b == b':' || b == b',' || !b.is_ascii_graphic())
    {
        return Err(Error::invalid(
            field,
            format!("at most {max} printable characters, without ':', ',' or spaces"),
        ));
    }
    Ok(())
}

impl Broker {
    /// A builder for a broker on `url` with the defaults of [`Settings`] and no queues.
    pub fn builder(url: impl Into<String>) -> BrokerBuilder {
        let s = Settings::default();
        BrokerBuilder {
            url: url.into(),
            prefix: s.redis.prefix,
            timeout: Duration::from_millis(s.redis.timeout_ms),
            pool_size: s.redis.pool_size,
            lease: Duration::from_secs(s.worker.lease_seconds),
            worker_id: format!("client-{}", std::process::id()),
            retention: s.retention,
            limits: Limits::unlimited(),
            queues: HashMap::new(),
        }
    }

    /// A builder with everything `settings` says (Redis, prefix, timeout, lease, retention,
    /// per-account limits) and no queues.
    pub fn builder_from(settings: &Settings) -> BrokerBuilder {
        Broker::builder(settings.redis.url.clone())
            .prefix(settings.redis.prefix.clone())
            .timeout(Duration::from_millis(settings.redis.timeout_ms))
            .pool_size(settings.redis.pool_size)
            .lease(Duration::from_secs(settings.worker.lease_seconds))
            .retention(settings.retention.clone())
            .limits(settings.limits.clone())
    }

    /// A broker for `settings` with every task type of its catalog registered.
    pub fn from_settings(settings: &Settings) -> Result<Broker> {
        Broker::builder_from(settings)
            .queues(crate::config::queues(&settings.catalog()?))
            .build()
    }

    /// The Redis URL this broker connects to.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// The call timeout.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    pub fn keys(&self) -> &Keys {
        &self.inner.keys
    }

    pub fn lease(&self) -> Duration {
        self.inner.lease
    }

    pub fn worker_id(&self) -> &str {
        &self.inner.worker_id
    }

    /// The per-account limits this broker enforces.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// The registered queue names, sorted.
    pub fn queue_names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.inner.queues.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }

    pub fn queue_config(&self, task_type: &str) -> Result<&QueueConfig> {
        self.inner
            .queues
            .get(task_type)
            .ok_or_else(|| Error::UnknownTaskType(task_type.to_string()))
    }

    /// A pooled connection, for callers that need raw commands (the API's key store, tests).
    pub async fn conn(&self) -> Result<deadpool_redis::Connection> {
        match tokio::time::timeout(self.inner.timeout, self.inner.pool.get()).await {
            Ok(c) => Ok(c?),
            Err(_) => Err(Error::Unavailable(
                "timed out waiting for a connection".into(),
            )),
        }
    }

    /// Milliseconds since the epoch by the Redis server's `TIME`.
    pub async fn server_time_ms(&self) -> Result<Millis> {
        let (secs, micros): (i64, i64) = self
            .with_conn(async |c| redis::cmd("TIME").query_async(c).await)
            .await?;
        Ok(secs * 1000 + micros / 1000)
    }

    /// The queue a task id lives in, looked up in every registered queue in one round trip.
    pub async fn locate(&self, id: &str) -> Result<Option<String>> {
        let names = self.queue_names();
        let mut pipe = redis::pipe();
        for t in &names {
            pipe.cmd("EXISTS").arg(self.inner.keys.task(t, id));
        }
        let found: Vec<i64> = self.with_conn(async |c| pipe.query_async(c).await).await?;
        Ok(names
            .into_iter()
            .zip(found)
            .find(|(_, f)| *f == 1)
            .map(|(t, _)| t.to_string()))
    }

    /// Status of a task id in one call, for tests and tools.
    pub async fn status_of(&self, id: &str) -> Result<TaskStatus> {
        Ok(self
            .get(id)
            .await?
            .ok_or_else(|| Error::NotFound(id.to_string()))?
            .status)
    }

    /// Cancels the children (JSON lists of `[type, id]`, from a task's `children` field) of
    /// tasks that just ended failed or cancelled, and theirs in turn, at most [`MAX_CASCADE`].
    /// Best effort: what is not reached here is found by the heartbeat of the worker that runs
    /// a child whose parent has ended.
    pub(crate) async fn cascade(&self, children: Vec<String>, at: At) {
        let mut todo: Vec<(String, String)> =
            children.iter().flat_map(|c| parse_children(c)).collect();
        let mut reached = 0;
        while let Some((t, id)) = todo.pop() {
            if reached >= MAX_CASCADE {
                tracing::warn!(
                    remaining = todo.len() + 1,
                    "cascade of a cancel stopped at its bound"
                );
                break;
            }
            reached += 1;
            if self.queue_config(&t).is_err() {
                continue;
            }
            match maintenance::cancel_one(self, &t, &id, at).await {
                Ok((_, grandchildren)) => {
                    todo.extend(grandchildren.iter().flat_map(|c| parse_children(c)))
                }
                Err(e) => tracing::debug!(task = %id, error = %e, "child not cancelled"),
            }
        }
    }
}

/// A `children` field: a JSON array of `[task_type, id]` pairs (empty or malformed: none).
pub(crate) fn parse_children(field: &str) -> Vec<(String, String)> {
    if field.is_empty() {
        return Vec::new();
    }
    serde_json::from_str(field).unwrap_or_default()
}
