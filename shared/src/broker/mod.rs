//! The queue client: one method per Lua script, the only code that changes a task.
//!
//! # Layout
//! - [`conn`]: the connection to either deployment (one server, or a Redis Cluster), timeouts,
//!   scripts by SHA, fan-out across slots, the retry classes of Redis's errors.
//! - [`shards`]: a queue's shards and their hash tags, task ids that carry their shard, the
//!   recorded shard counts.
//! - [`enqueue`]: enqueue and its per-account limits (quotas, top band, rate).
//! - [`lease`]: a task's attempt: claim (across shards, by the power of two choices; and
//!   unclaim of a claim whose reply was lost), extend, complete, fail, release, defer,
//!   progress, children.
//! - [`maintenance`]: what every worker runs without a leader: promote, recover, trim, per
//!   shard; and pause, resume, cancel (which cascades to a task's children).
//! - [`retry`]: a failed or cancelled task back in its queue, from the outside.
//! - [`dead_letters`]: failed (or cancelled) tasks retried in bulk by type and finish time.
//!
//! Each script is a `static` next to the method that calls it; redis-rs sends EVALSHA and, on
//! NOSCRIPT (a restarted or flushed Redis, a promoted replica), loads the script and sends it
//! again. Every call is bounded by the broker's timeout, so a stalled Redis returns
//! [`Error::Unavailable`] instead of hanging a worker or the API. Every script acts at an
//! [`At`]: the server's own `TIME` in production, a given instant in tests.

pub mod batch;
pub mod conn;
pub mod dead_letters;
pub mod enqueue;
pub mod group;
pub mod lease;
pub mod maintenance;
pub mod retry;
pub mod shards;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::At;
use crate::config::{Limits, QueueConfig, RetentionSettings, Settings, DEFAULT_CLUSTER_SHARDS};
use crate::error::{Error, Result};
use crate::keys::Keys;
use crate::task::{Millis, TaskStatus};

pub use batch::{is_batch_id, Batch, BatchCreated, NewBatch};
pub use conn::{Conn, Deployment};
pub use dead_letters::{BulkRetried, RetryFilter};
pub use enqueue::RateOutcome;
pub use lease::{
    CancelOutcome, Completion, DeferOutcome, ExtendReport, FailOutcome, Failure, ReleaseOutcome,
};
pub use maintenance::RecoverReport;
pub use shards::Shard;

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

/// A client of one taskfleet keyspace, on a single server or a Redis Cluster. Cheap to clone.
#[derive(Clone)]
pub struct Broker {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) deployment: Deployment,
    pub(crate) backend: conn::Backend,
    /// With `wait`: the connection that enqueues and completions (and their WAITs) use.
    pub(crate) durable: Option<conn::Backend>,
    pub(crate) keys: Keys,
    pub(crate) queues: HashMap<String, shards::QueueEntry>,
    pub(crate) timeout: Duration,
    pub(crate) lease: Duration,
    pub(crate) worker_id: String,
    pub(crate) retention: RetentionSettings,
    pub(crate) limits: Limits,
    /// Replicas to wait for after an enqueue or a completion, and for how long.
    pub(crate) wait: Option<(u32, Duration)>,
    /// Claims whose reply never came: given back on the next claim (see [`lease`]). A std
    /// mutex, never held across an await.
    pub(crate) unanswered: std::sync::Mutex<Vec<lease::Unanswered>>,
    /// Shards (by tag) whose last enqueue no replica confirmed, until when: new tasks without
    /// an Idempotency-Key go to other shards meanwhile (a primary that lost its replica).
    pub(crate) unconfirmed: std::sync::Mutex<HashMap<String, std::time::Instant>>,
    /// Replicas each slot's primary had connected, and when that was read (`ROLE`).
    pub(crate) replicas_seen: std::sync::Mutex<HashMap<u16, (std::time::Instant, u32)>>,
    /// Single enqueues of this process, grouped into calls per shard ([`group`]).
    pub(crate) enqueue_group: Arc<enqueue::EnqueueGroup>,
    /// Rate-limit counts of this process, grouped per account and minute.
    pub(crate) rate_group: Arc<enqueue::RateGroup>,
}

/// Builds a [`Broker`].
pub struct BrokerBuilder {
    deployment: Deployment,
    prefix: String,
    timeout: Duration,
    lease: Duration,
    worker_id: String,
    retention: RetentionSettings,
    limits: Limits,
    default_shards: u16,
    wait: Option<(u32, Duration)>,
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
    /// The shards of a queue whose config names none (0: the deployment's default).
    pub fn default_shards(mut self, n: u16) -> Self {
        self.default_shards = n;
        self
    }
    /// Enqueues and completions wait until `replicas` replicas have them, at most `timeout`
    /// (0 replicas: no wait).
    pub fn wait_replicas(mut self, replicas: u32, timeout: Duration) -> Self {
        self.wait = (replicas > 0).then_some((replicas, timeout));
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
        let backend = conn::Backend::new(&self.deployment, self.timeout)?;
        let durable = match self.wait {
            Some(_) => Some(conn::Backend::new(&self.deployment, self.timeout)?),
            None => None,
        };
        let default_shards = match self.default_shards {
            0 if self.deployment.is_cluster() => DEFAULT_CLUSTER_SHARDS,
            0 => 1,
            n => n,
        };
        let keys = Keys::new(self.prefix);
        let mut queues = HashMap::new();
        for (name, config) in self.queues {
            validate_queue_name(&name)?;
            let count = config.shards.unwrap_or(default_shards);
            if !(1..=1024).contains(&count) {
                return Err(Error::invalid(
                    format!("task_types.{name}.shards"),
                    "must be 1-1024",
                ));
            }
            let entry = shards::QueueEntry::new(&name, config, count, &keys);
            queues.insert(name, entry);
        }
        Ok(Broker {
            inner: Arc::new_cyclic(|weak| Inner {
                deployment: self.deployment,
                backend,
                durable,
                keys,
                queues,
                timeout: self.timeout,
                lease: self.lease,
                worker_id: self.worker_id,
                retention: self.retention,
                limits: self.limits,
                wait: self.wait,
                unanswered: std::sync::Mutex::new(Vec::new()),
                unconfirmed: std::sync::Mutex::default(),
                replicas_seen: std::sync::Mutex::default(),
                enqueue_group: enqueue::enqueue_group(weak.clone()),
                rate_group: enqueue::rate_group(weak.clone()),
            }),
        })
    }
}

fn validate_queue_name(name: &str) -> Result<()> {
    // No '.': it separates a task id's type, shard and rest; no '#': it marks a shard's tag.
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "task_type",
            format!("{name:?}: 1-64 characters of a-z, 0-9, _ or -"),
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
    /// A builder for a broker on the single server at `url`, with the defaults of
    /// [`Settings`] and no queues.
    pub fn builder(url: impl Into<String>) -> BrokerBuilder {
        Broker::builder_for(Deployment::Single { url: url.into() })
    }

    /// A builder for a broker on `deployment` (one server, or a cluster's seed nodes).
    pub fn builder_for(deployment: Deployment) -> BrokerBuilder {
        let s = Settings::default();
        BrokerBuilder {
            deployment,
            prefix: s.redis.prefix,
            timeout: Duration::from_millis(s.redis.timeout_ms),
            lease: Duration::from_secs(s.worker.lease_seconds),
            worker_id: format!("client-{}", std::process::id()),
            retention: s.retention,
            limits: Limits::unlimited(),
            default_shards: 0,
            wait: None,
            queues: HashMap::new(),
        }
    }

    /// A builder with everything `settings` says (the deployment, prefix, timeout, lease,
    /// retention, shards, replica waits, per-account limits) and no queues.
    pub fn builder_from(settings: &Settings) -> Result<BrokerBuilder> {
        let r = &settings.redis;
        Ok(Broker::builder_for(r.deployment()?)
            .prefix(r.prefix.clone())
            .timeout(Duration::from_millis(r.timeout_ms))
            .lease(Duration::from_secs(settings.worker.lease_seconds))
            .retention(settings.retention.clone())
            .limits(settings.limits.clone())
            .default_shards(r.shards)
            .wait_replicas(r.wait_replicas, Duration::from_millis(r.wait_timeout_ms)))
    }

    /// A broker for `settings` with every task type of its catalog registered.
    pub fn from_settings(settings: &Settings) -> Result<Broker> {
        Broker::builder_from(settings)?
            .queues(crate::config::queues(&settings.catalog()?))
            .build()
    }

    /// Where this broker's Redis is.
    pub fn deployment(&self) -> &Deployment {
        &self.inner.deployment
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
        Ok(&self.queue_entry(task_type)?.config)
    }

    pub(crate) fn queue_entry(&self, task_type: &str) -> Result<&shards::QueueEntry> {
        self.inner
            .queues
            .get(task_type)
            .ok_or_else(|| Error::UnknownTaskType(task_type.to_string()))
    }

    /// Milliseconds since the epoch by the Redis server's `TIME`.
    pub async fn server_time_ms(&self) -> Result<Millis> {
        let (secs, micros): (i64, i64) = self
            .with_conn(async |c| redis::cmd("TIME").query_async(c).await)
            .await?;
        Ok(secs * 1000 + micros / 1000)
    }

    /// The queue and shard a task id lives in: read from the id itself when it carries them
    /// (every id the library makes does), else looked up in every queue (at the shard the id
    /// hashes to) in one fan-out.
    pub async fn locate(&self, id: &str) -> Result<Option<Shard>> {
        if let Some(shard) = self.route(id) {
            return Ok(Some(shard));
        }
        let candidates: Vec<Shard> = self
            .queue_names()
            .into_iter()
            .map(|t| self.shard_of(t, id))
            .collect::<Result<_>>()?;
        let cmds = candidates
            .iter()
            .map(|sh| {
                let key = self.inner.keys.task(sh.tag(), id);
                let mut c = redis::cmd("EXISTS");
                c.arg(&key);
                (key, c)
            })
            .collect();
        let found: Vec<i64> = self.fanout(cmds).await?;
        Ok(candidates
            .into_iter()
            .zip(found)
            .find(|(_, f)| *f == 1)
            .map(|(s, _)| s))
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
            let Ok(shard) = self.shard_of(&t, &id) else {
                continue;
            };
            match maintenance::cancel_one(self, &shard, &id, at).await {
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
