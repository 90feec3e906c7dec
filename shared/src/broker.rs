//! The queue client: one method per Lua script, the only code that changes a task.
//!
//! Each script is a `static` next to the method that calls it; redis-rs sends EVALSHA and, on
//! NOSCRIPT (a restarted or flushed Redis), loads the script and sends it again. Every call is
//! bounded by the broker's timeout, so a stalled Redis returns [`Error::Unavailable`] instead
//! of hanging a worker or the API.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use deadpool_redis::{Manager, Pool, Runtime};
use futures::future::join_all;
use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;
use redis::{FromRedisValue, Script};
use serde_json::Value;

use crate::config::{QueueConfig, RetentionSettings, Settings};
use crate::error::{Error, Result};
use crate::keys::Keys;
use crate::task::{Claimed, Enqueued, Millis, NewTask, Priority, TaskStatus};

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

static ENQUEUE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/enqueue.lua")));
static CLAIM: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("scripts/claim.lua")));
static EXTEND: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("scripts/extend.lua")));
static COMPLETE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/complete.lua")));
static FAIL: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("scripts/fail.lua")));
static RELEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/release.lua")));
static CANCEL: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("scripts/cancel.lua")));
static RECOVER: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/recover.lua")));
static TRIM: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("scripts/trim.lua")));
static PAUSE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("scripts/pause.lua")));
static DEFER: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("scripts/defer.lua")));
static PROGRESS: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/progress.lua")));

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
    shared: std::sync::Mutex<Option<MultiplexedConnection>>,
    pub(crate) keys: Keys,
    pub(crate) queues: HashMap<String, QueueConfig>,
    pub(crate) timeout: Duration,
    lease: Duration,
    worker_id: String,
    retention: RetentionSettings,
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

/// An identifier given by a caller (account, user): no `:` (it is a key separator), no spaces.
fn validate_ident(field: &str, v: &str, max: usize) -> Result<()> {
    if v.len() > max || v.bytes().any(|b| b == b':' || !b.is_ascii_graphic()) {
        return Err(Error::invalid(
            field,
            format!("at most {max} printable characters, without ':' or spaces"),
        ));
    }
    Ok(())
}

/// One finished task to record with [`Broker::complete`].
#[derive(Debug, Clone)]
pub struct Completion {
    pub id: String,
    pub lease: String,
    pub result: Value,
}

/// One failed attempt to record with [`Broker::fail`].
#[derive(Debug, Clone)]
pub struct Failure {
    pub id: String,
    pub lease: String,
    pub error: String,
    /// True: never retry (bad input); false: retry while attempts are left.
    pub permanent: bool,
}

/// Where a failed attempt took its task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailOutcome {
    Retrying,
    Failed,
    Cancelled,
    /// The lease was not held: nothing changed.
    Stale,
}

/// What a heartbeat learned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtendReport {
    /// Ids whose lease this worker lost (recovered, finished, gone): stop them, write nothing.
    pub lost: Vec<String>,
    /// Ids whose cancel was requested: stop them and acknowledge with `fail`.
    pub cancel_requested: Vec<String>,
}

/// What a cancel did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The task was waiting and is now cancelled.
    Cancelled,
    /// The task is running; its worker stops it at its next heartbeat.
    Requested,
}

/// What recover did, per outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoverReport {
    /// (type, id) of tasks sent back to `queued`.
    pub requeued: Vec<(String, String)>,
    /// (type, id) of tasks that had no attempts left and ended `failed`.
    pub failed: Vec<(String, String)>,
    /// (type, id) of cancel-requested tasks that ended `cancelled`.
    pub cancelled: Vec<(String, String)>,
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
            queues: HashMap::new(),
        }
    }

    /// A broker for `settings` with every task type of its catalog registered.
    pub fn from_settings(settings: &Settings) -> Result<Broker> {
        Broker::builder(settings.redis.url.clone())
            .prefix(settings.redis.prefix.clone())
            .timeout(Duration::from_millis(settings.redis.timeout_ms))
            .pool_size(settings.redis.pool_size)
            .lease(Duration::from_secs(settings.worker.lease_seconds))
            .retention(settings.retention.clone())
            .queues(settings.catalog()?.queues())
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

    /// Runs `f` on the broker's shared connection within the broker's timeout.
    pub async fn with_conn<T, F>(&self, f: F) -> Result<T>
    where
        F: AsyncFnOnce(&mut MultiplexedConnection) -> redis::RedisResult<T>,
    {
        let timeout = self.inner.timeout;
        let work = async {
            let mut conn = self.shared_conn().await?;
            match f(&mut conn).await {
                Ok(v) => Ok(v),
                Err(e) => {
                    if e.is_io_error()
                        || e.is_connection_dropped()
                        || e.is_connection_refusal()
                        || e.is_timeout()
                        || e.is_unrecoverable_error()
                    {
                        self.inner.shared.lock().expect("connection lock").take();
                    }
                    Err(Error::from(e))
                }
            }
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => {
                // A connection that stopped answering may be dead: take a fresh one next time.
                self.inner.shared.lock().expect("connection lock").take();
                Err(Error::Unavailable(format!(
                    "no answer within {} ms",
                    timeout.as_millis()
                )))
            }
        }
    }

    async fn shared_conn(&self) -> Result<MultiplexedConnection> {
        if let Some(c) = self.inner.shared.lock().expect("connection lock").as_ref() {
            return Ok(c.clone());
        }
        let conn = deadpool_redis::Connection::take(self.inner.pool.get().await?);
        let mut slot = self.inner.shared.lock().expect("connection lock");
        Ok(slot.get_or_insert(conn).clone())
    }

    async fn script<T: FromRedisValue>(
        &self,
        script: &Script,
        keys: &[String],
        args: &[String],
    ) -> Result<T> {
        let mut inv = script.prepare_invoke();
        for k in keys {
            inv.key(k);
        }
        for a in args {
            inv.arg(a);
        }
        // redis-rs loads the script and retries once on NOSCRIPT; a second flush between its
        // load and its retry (a restart, an operator's SCRIPT FLUSH) gets two more chances.
        // A script that never ran changed nothing, so running it again is safe.
        let mut tries = 0;
        loop {
            match self.with_conn(async |c| inv.invoke_async(c).await).await {
                Err(Error::NoScript(_)) if tries < 2 => tries += 1,
                other => return other,
            }
        }
    }

    /// Milliseconds since the epoch by the Redis server's `TIME`.
    pub async fn server_time_ms(&self) -> Result<Millis> {
        let (secs, micros): (i64, i64) = self
            .with_conn(async |c| redis::cmd("TIME").query_async(c).await)
            .await?;
        Ok(secs * 1000 + micros / 1000)
    }

    /// Enqueues one task.
    pub async fn enqueue(&self, task: NewTask, now: Millis) -> Result<Enqueued> {
        Ok(self.enqueue_many(vec![task], now).await?.remove(0))
    }

    /// Enqueues many tasks: one script call per type (one round trip for one type), each
    /// atomic. Every task is validated before anything is written.
    pub async fn enqueue_many(&self, tasks: Vec<NewTask>, now: Millis) -> Result<Vec<Enqueued>> {
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        if tasks.len() > MAX_BATCH * 10 {
            return Err(Error::invalid(
                "tasks",
                format!("at most {} per call", MAX_BATCH * 10),
            ));
        }
        // Validate all first, so bad input writes nothing.
        let mut groups: HashMap<&str, Vec<(usize, Vec<String>)>> = HashMap::new();
        let mut priorities = Vec::with_capacity(tasks.len());
        for (i, t) in tasks.iter().enumerate() {
            let q = self.queue_config(&t.task_type)?;
            if !t.request.is_object() {
                return Err(Error::invalid("request", "must be a JSON object"));
            }
            let request = t.request.to_string();
            if request.len() > MAX_REQUEST_BYTES {
                return Err(Error::invalid(
                    "request",
                    format!("at most {MAX_REQUEST_BYTES} bytes of JSON"),
                ));
            }
            validate_ident("account_id", &t.account_id, 128)?;
            validate_ident("user_id", &t.user_id, 128)?;
            if let Some(k) = &t.idempotency_key {
                if k.is_empty() || k.len() > 255 || !k.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(Error::invalid(
                        "idempotency_key",
                        "1-255 printable characters without spaces",
                    ));
                }
            }
            if let Some(id) = &t.id {
                validate_ident("id", id, 64)?;
            }
            let max_attempts = t.max_attempts.unwrap_or(q.max_attempts);
            if !(1..=100).contains(&max_attempts) {
                return Err(Error::invalid("max_attempts", "must be 1-100"));
            }
            let priority = t.priority.unwrap_or(q.default_priority);
            priorities.push(priority);
            let run_at = t.run_at.unwrap_or(0);
            if run_at < 0 {
                return Err(Error::invalid("run_at", "must not be before 1970"));
            }
            let id =
                t.id.clone()
                    .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
            let args = vec![
                id,
                priority.as_str().to_string(),
                run_at.to_string(),
                max_attempts.to_string(),
                request,
                t.account_id.clone(),
                t.user_id.clone(),
                t.webhook_url.clone().unwrap_or_default(),
                t.parent_id.clone().unwrap_or_default(),
                t.batch_id.clone().unwrap_or_default(),
                t.idempotency_key.clone().unwrap_or_default(),
            ];
            groups
                .entry(t.task_type.as_str())
                .or_default()
                .push((i, args));
        }
        let calls = groups.into_iter().flat_map(|(task_type, items)| {
            let chunks: Vec<Vec<(usize, Vec<String>)>> =
                items.chunks(MAX_BATCH).map(|c| c.to_vec()).collect();
            chunks.into_iter().map(move |chunk| (task_type, chunk))
        });
        let results = join_all(calls.map(|(task_type, chunk)| async move {
            let k = &self.inner.keys;
            let keys = [
                k.queued(task_type),
                k.scheduled(task_type),
                k.stats(task_type),
                k.events(task_type),
                k.signal(task_type),
                k.task_prefix(task_type),
                k.account_prefix(task_type),
                k.idem_prefix(task_type),
            ];
            let mut args = vec![
                now.to_string(),
                task_type.to_string(),
                IDEMPOTENCY_TTL.as_secs().to_string(),
                EVENTS_MAXLEN.to_string(),
            ];
            let order: Vec<usize> = chunk.iter().map(|(i, _)| *i).collect();
            // What each task becomes unless an Idempotency-Key finds an earlier one.
            let expected: Vec<(String, TaskStatus)> = chunk
                .iter()
                .map(|(_, a)| {
                    let later = a[2].parse::<i64>().unwrap_or(0) > now;
                    let status = if later {
                        TaskStatus::Scheduled
                    } else {
                        TaskStatus::Queued
                    };
                    (a[0].clone(), status)
                })
                .collect();
            for (_, a) in chunk {
                args.extend(a);
            }
            let flat: Vec<redis::Value> = self.script(&ENQUEUE, &keys, &args).await?;
            Ok::<_, Error>((task_type, order, expected, flat))
        }))
        .await;
        let mut out: Vec<Option<Enqueued>> = vec![None; tasks.len()];
        for r in results {
            let (task_type, order, expected, flat) = r?;
            let n = |v: &redis::Value| i64::from_redis_value(v.clone());
            if order.len() == 1 {
                // One task: its id, status, whether written, position and the counters.
                let s = |j: usize| String::from_redis_value(flat[j].clone());
                let (busy, done) = (n(&flat[4])?, n(&flat[5])?);
                let i = order[0];
                out[i] = Some(Enqueued {
                    id: s(0)?,
                    task_type: task_type.to_string(),
                    status: s(1)?.parse()?,
                    priority: priorities[i],
                    created: n(&flat[2])? == 1,
                    queue_position: u64::try_from(n(&flat[3])?).ok(),
                    average_run_ms: (done > 0).then(|| (busy / done).max(0) as u64),
                });
                continue;
            }
            // A batch: every task as asked, but for the ones an Idempotency-Key found.
            let mut found: HashMap<usize, (String, String)> = HashMap::new();
            for row in flat.chunks_exact(3) {
                let at = usize::try_from(n(&row[0])? - 1)
                    .map_err(|_| Error::Redis("enqueue returned a bad position".into()))?;
                found.insert(
                    at,
                    (
                        String::from_redis_value(row[1].clone())?,
                        String::from_redis_value(row[2].clone())?,
                    ),
                );
            }
            for (k, (i, (id, status))) in order.into_iter().zip(expected).enumerate() {
                let (id, status, created) = match found.remove(&k) {
                    Some((earlier, s)) => (earlier, s.parse()?, false),
                    None => (id, status, true),
                };
                out[i] = Some(Enqueued {
                    id,
                    task_type: task_type.to_string(),
                    status,
                    priority: priorities[i],
                    created,
                    queue_position: None,
                    average_run_ms: None,
                });
            }
        }
        out.into_iter()
            .map(|e| e.ok_or_else(|| Error::Redis("enqueue returned too few tasks".into())))
            .collect()
    }

    /// Leases up to `n` ready tasks of the given types, best first: for several types, the
    /// heads of their queues are compared (by band, then enqueue time) in one round trip and
    /// the types are claimed in that order. Due scheduled and retrying tasks are promoted
    /// first; a paused type gives nothing.
    pub async fn claim(&self, types: &[&str], n: usize, now: Millis) -> Result<Vec<Claimed>> {
        for t in types {
            self.queue_config(t)?;
        }
        let n = n.min(MAX_BATCH);
        if n == 0 || types.is_empty() {
            return Ok(Vec::new());
        }
        if types.len() == 1 {
            return self.claim_type(types[0], n, now).await;
        }
        let k = &self.inner.keys;
        let mut pipe = redis::pipe();
        for t in types {
            pipe.cmd("ZRANGE")
                .arg(k.queued(t))
                .arg(0)
                .arg(0)
                .arg("WITHSCORES");
            for waiting in [k.scheduled(t), k.retrying(t)] {
                pipe.cmd("ZRANGEBYSCORE")
                    .arg(waiting)
                    .arg("-inf")
                    .arg(now)
                    .arg("LIMIT")
                    .arg(0)
                    .arg(1);
            }
        }
        let heads: Vec<Vec<redis::Value>> =
            self.with_conn(async |c| pipe.query_async(c).await).await?;
        let mut order: Vec<(f64, &str)> = Vec::new();
        for (i, t) in types.iter().enumerate() {
            let head: Vec<(String, f64)> =
                redis::from_redis_value(redis::Value::Array(heads[3 * i].clone()))?;
            let due = !heads[3 * i + 1].is_empty() || !heads[3 * i + 2].is_empty();
            match (head.first(), due) {
                // Due tasks of unknown band: give the type its turn first.
                (_, true) => order.push((f64::MIN, t)),
                (Some((_, score)), false) => order.push((*score, t)),
                (None, false) => {}
            }
        }
        order.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut claimed = Vec::new();
        for (_, t) in order {
            if claimed.len() >= n {
                break;
            }
            claimed.extend(self.claim_type(t, n - claimed.len(), now).await?);
        }
        Ok(claimed)
    }

    async fn claim_type(&self, task_type: &str, n: usize, now: Millis) -> Result<Vec<Claimed>> {
        let k = &self.inner.keys;
        let keys = [
            k.queued(task_type),
            k.scheduled(task_type),
            k.retrying(task_type),
            k.processing(task_type),
            k.paused(task_type),
            k.stats(task_type),
            k.events(task_type),
            k.signal(task_type),
            k.task_prefix(task_type),
        ];
        let args = [
            now.to_string(),
            n.to_string(),
            self.inner.lease.as_millis().to_string(),
            self.inner.worker_id.clone(),
            format!("{}-{:016x}", self.inner.worker_id, rand::random::<u64>()),
            PROMOTE_LIMIT.to_string(),
            EVENTS_MAXLEN.to_string(),
        ];
        let flat: Vec<redis::Value> = self.script(&CLAIM, &keys, &args).await?;
        let mut out = Vec::with_capacity(flat.len() / 11);
        for row in flat[1..].chunks_exact(11) {
            let s = |i: usize| -> Result<String> { Ok(String::from_redis_value(row[i].clone())?) };
            let opt =
                |i: usize| -> Result<Option<String>> { Ok(Some(s(i)?).filter(|v| !v.is_empty())) };
            let num = |i: usize| -> Result<i64> { Ok(i64::from_redis_value(row[i].clone())?) };
            let request = s(6)?;
            out.push(Claimed {
                id: s(0)?,
                task_type: task_type.to_string(),
                lease: s(1)?,
                attempt: num(2)? as u32,
                max_attempts: num(3)? as u32,
                priority: s(4)?.parse::<Priority>()?,
                created_at: num(5)?,
                request: serde_json::from_str(&request).unwrap_or(Value::Null),
                account_id: opt(7)?,
                user_id: opt(8)?,
                parent_id: opt(9)?,
                webhook_url: opt(10)?,
            });
        }
        Ok(out)
    }

    /// Moves due scheduled and retrying tasks of every queue to `queued` (the scheduler's
    /// tick); returns how many moved.
    pub async fn promote(&self, now: Millis) -> Result<u64> {
        let calls = self.queue_names().into_iter().map(|t| async move {
            let k = &self.inner.keys;
            let keys = [
                k.queued(t),
                k.scheduled(t),
                k.retrying(t),
                k.processing(t),
                k.paused(t),
                k.stats(t),
                k.events(t),
                k.signal(t),
                k.task_prefix(t),
            ];
            let args = [
                now.to_string(),
                "0".to_string(),
                "0".to_string(),
                String::new(),
                String::new(),
                PROMOTE_LIMIT.to_string(),
                EVENTS_MAXLEN.to_string(),
            ];
            let flat: Vec<u64> = self.script(&CLAIM, &keys, &args).await?;
            Ok::<u64, Error>(flat.first().copied().unwrap_or(0))
        });
        let mut total = 0;
        for r in join_all(calls).await {
            total += r?;
        }
        Ok(total)
    }

    /// Renews the leases a worker holds on tasks of one type; reports lost and cancel-requested ids.
    pub async fn extend(
        &self,
        task_type: &str,
        held: &[(String, String)],
        now: Millis,
    ) -> Result<ExtendReport> {
        self.queue_config(task_type)?;
        if held.is_empty() {
            return Ok(ExtendReport::default());
        }
        let k = &self.inner.keys;
        let keys = [k.processing(task_type), k.task_prefix(task_type)];
        let mut args = vec![now.to_string(), self.inner.lease.as_millis().to_string()];
        for (id, lease) in held {
            args.push(id.clone());
            args.push(lease.clone());
        }
        let (lost, cancel_requested): (Vec<String>, Vec<String>) =
            self.script(&EXTEND, &keys, &args).await?;
        Ok(ExtendReport {
            lost,
            cancel_requested,
        })
    }

    /// Records results of one type; per task, true if completed, false if its lease was not
    /// held (nothing changed).
    pub async fn complete(
        &self,
        task_type: &str,
        done: &[Completion],
        now: Millis,
    ) -> Result<Vec<bool>> {
        self.queue_config(task_type)?;
        if done.is_empty() {
            return Ok(Vec::new());
        }
        let k = &self.inner.keys;
        let keys = [
            k.processing(task_type),
            k.completed(task_type),
            k.stats(task_type),
            k.events(task_type),
            k.task_prefix(task_type),
        ];
        let mut args = vec![now.to_string(), EVENTS_MAXLEN.to_string()];
        for c in done {
            args.push(c.id.clone());
            args.push(c.lease.clone());
            args.push(c.result.to_string());
        }
        let flags: Vec<i64> = self.script(&COMPLETE, &keys, &args).await?;
        Ok(flags.into_iter().map(|f| f == 1).collect())
    }

    /// Records one result; [`Error::StaleLease`] if the lease is not held.
    pub async fn complete_one(
        &self,
        task_type: &str,
        id: &str,
        lease: &str,
        result: Value,
        now: Millis,
    ) -> Result<()> {
        let done = [Completion {
            id: id.to_string(),
            lease: lease.to_string(),
            result,
        }];
        match self.complete(task_type, &done, now).await?.first() {
            Some(true) => Ok(()),
            _ => Err(Error::StaleLease(id.to_string())),
        }
    }

    /// Records failed attempts of one type: each is retried after a full-jitter backoff while
    /// attempts are left and it is not permanent, else it ends `failed`.
    pub async fn fail(
        &self,
        task_type: &str,
        failures: &[Failure],
        now: Millis,
    ) -> Result<Vec<FailOutcome>> {
        let q = self.queue_config(task_type)?;
        if failures.is_empty() {
            return Ok(Vec::new());
        }
        let k = &self.inner.keys;
        let keys = [
            k.processing(task_type),
            k.retrying(task_type),
            k.failed(task_type),
            k.cancelled(task_type),
            k.stats(task_type),
            k.events(task_type),
            k.task_prefix(task_type),
        ];
        let mut args = vec![
            now.to_string(),
            q.backoff_base.as_millis().to_string(),
            q.backoff_max.as_millis().to_string(),
            EVENTS_MAXLEN.to_string(),
        ];
        for f in failures {
            args.push(f.id.clone());
            args.push(f.lease.clone());
            args.push(f.error.clone());
            args.push(if f.permanent { "permanent" } else { "retry" }.to_string());
            args.push(format!("{:.6}", rand::random::<f64>()));
        }
        let statuses: Vec<String> = self.script(&FAIL, &keys, &args).await?;
        Ok(statuses
            .iter()
            .map(|s| match s.as_str() {
                "retrying" => FailOutcome::Retrying,
                "failed" => FailOutcome::Failed,
                "cancelled" => FailOutcome::Cancelled,
                _ => FailOutcome::Stale,
            })
            .collect())
    }

    /// Records one failed attempt; [`Error::StaleLease`] if the lease is not held.
    pub async fn fail_one(
        &self,
        task_type: &str,
        id: &str,
        lease: &str,
        error: &str,
        permanent: bool,
        now: Millis,
    ) -> Result<FailOutcome> {
        let f = [Failure {
            id: id.to_string(),
            lease: lease.to_string(),
            error: error.to_string(),
            permanent,
        }];
        match self.fail(task_type, &f, now).await?.first() {
            Some(FailOutcome::Stale) | None => Err(Error::StaleLease(id.to_string())),
            Some(o) => Ok(*o),
        }
    }

    /// Gives leased tasks of one type back to `queued` without using up an attempt (a worker
    /// shutting down); per task, true if released.
    pub async fn release(
        &self,
        task_type: &str,
        held: &[(String, String)],
        now: Millis,
    ) -> Result<Vec<bool>> {
        self.queue_config(task_type)?;
        if held.is_empty() {
            return Ok(Vec::new());
        }
        let k = &self.inner.keys;
        let keys = [
            k.processing(task_type),
            k.queued(task_type),
            k.events(task_type),
            k.signal(task_type),
            k.task_prefix(task_type),
        ];
        let mut args = vec![now.to_string(), EVENTS_MAXLEN.to_string()];
        for (id, lease) in held {
            args.push(id.clone());
            args.push(lease.clone());
        }
        let flags: Vec<i64> = self.script(&RELEASE, &keys, &args).await?;
        Ok(flags.into_iter().map(|f| f == 1).collect())
    }

    /// A running task that waits for something gives its slot back: it is `scheduled` until
    /// `due`, and the attempt is given back. [`Error::StaleLease`] if the lease is not held or
    /// its cancel was requested.
    pub async fn defer(
        &self,
        task_type: &str,
        id: &str,
        lease: &str,
        due: Millis,
        message: &str,
    ) -> Result<()> {
        self.queue_config(task_type)?;
        let k = &self.inner.keys;
        let keys = [
            k.processing(task_type),
            k.scheduled(task_type),
            k.events(task_type),
            k.task_prefix(task_type),
        ];
        let args = [
            id.to_string(),
            lease.to_string(),
            due.to_string(),
            message.to_string(),
            EVENTS_MAXLEN.to_string(),
        ];
        match self.script::<i64>(&DEFER, &keys, &args).await? {
            1 => Ok(()),
            _ => Err(Error::StaleLease(id.to_string())),
        }
    }

    /// Writes a running task's progress (0-100) and message, fenced by its lease.
    pub async fn progress(
        &self,
        task_type: &str,
        id: &str,
        lease: &str,
        percent: u8,
        message: &str,
    ) -> Result<()> {
        self.queue_config(task_type)?;
        let k = &self.inner.keys;
        let keys = [k.events(task_type), k.task_prefix(task_type)];
        let args = [
            id.to_string(),
            lease.to_string(),
            percent.min(100).to_string(),
            message.to_string(),
            EVENTS_MAXLEN.to_string(),
        ];
        match self.script::<i64>(&PROGRESS, &keys, &args).await? {
            1 => Ok(()),
            _ => Err(Error::StaleLease(id.to_string())),
        }
    }

    /// Cancels a task wherever it is: waiting ones end at once, a running one is stopped by
    /// its worker. [`Error::AlreadyTerminal`] (nothing changes) if it had finished.
    pub async fn cancel(&self, id: &str, now: Millis) -> Result<CancelOutcome> {
        let task_type = self
            .locate(id)
            .await?
            .ok_or_else(|| Error::NotFound(id.to_string()))?;
        let t = task_type.as_str();
        let k = &self.inner.keys;
        let keys = [
            k.queued(t),
            k.scheduled(t),
            k.retrying(t),
            k.cancelled(t),
            k.stats(t),
            k.events(t),
            k.task_prefix(t),
        ];
        let args = [now.to_string(), id.to_string(), EVENTS_MAXLEN.to_string()];
        let (outcome, status): (String, String) = self.script(&CANCEL, &keys, &args).await?;
        match outcome.as_str() {
            "cancelled" => Ok(CancelOutcome::Cancelled),
            "requested" => Ok(CancelOutcome::Requested),
            "terminal" => Err(Error::AlreadyTerminal {
                id: id.to_string(),
                status,
            }),
            _ => Err(Error::NotFound(id.to_string())),
        }
    }

    /// Takes back, in every queue, leases past their deadline and the leases of `dead_workers`.
    pub async fn recover(&self, now: Millis, dead_workers: &[String]) -> Result<RecoverReport> {
        self.recover_with(now, 0, dead_workers).await
    }

    /// Like [`Broker::recover`], and also takes back tasks whose attempt started before
    /// `started_before` however fresh their lease (an operator's cleanup of stuck tasks).
    pub async fn recover_stuck(
        &self,
        now: Millis,
        started_before: Millis,
    ) -> Result<RecoverReport> {
        self.recover_with(now, started_before.max(1), &[]).await
    }

    async fn recover_with(
        &self,
        now: Millis,
        started_before: Millis,
        dead_workers: &[String],
    ) -> Result<RecoverReport> {
        let calls = self.queue_names().into_iter().map(|t| async move {
            let k = &self.inner.keys;
            let keys = [
                k.processing(t),
                k.queued(t),
                k.failed(t),
                k.cancelled(t),
                k.stats(t),
                k.events(t),
                k.signal(t),
                k.task_prefix(t),
            ];
            let mut args = vec![
                now.to_string(),
                RECOVER_LIMIT.to_string(),
                EVENTS_MAXLEN.to_string(),
                started_before.to_string(),
            ];
            args.extend(dead_workers.iter().cloned());
            let r: (Vec<String>, Vec<String>, Vec<String>) =
                self.script(&RECOVER, &keys, &args).await?;
            Ok::<_, Error>((t, r))
        });
        let mut report = RecoverReport::default();
        for r in join_all(calls).await {
            let (t, (requeued, failed, cancelled)) = r?;
            let tag = |ids: Vec<String>| ids.into_iter().map(move |id| (t.to_string(), id));
            report.requeued.extend(tag(requeued));
            report.failed.extend(tag(failed));
            report.cancelled.extend(tag(cancelled));
        }
        Ok(report)
    }

    /// Removes finished tasks past their retention from every queue; returns (type, id) of
    /// each removed task.
    pub async fn trim(&self, now: Millis) -> Result<Vec<(String, String)>> {
        let day = 24 * 3600 * 1000_i64;
        let r = &self.inner.retention;
        let calls = self.queue_names().into_iter().map(|t| async move {
            let k = &self.inner.keys;
            let keys = [
                k.completed(t),
                k.failed(t),
                k.cancelled(t),
                k.task_prefix(t),
                k.account_prefix(t),
            ];
            let args = [
                now.to_string(),
                (r.completed_days as i64 * day).to_string(),
                (r.failed_days as i64 * day).to_string(),
                (r.cancelled_days as i64 * day).to_string(),
                TRIM_LIMIT.to_string(),
            ];
            let ids: Vec<String> = self.script(&TRIM, &keys, &args).await?;
            Ok::<_, Error>(
                ids.into_iter()
                    .map(|id| (t.to_string(), id))
                    .collect::<Vec<_>>(),
            )
        });
        let mut removed = Vec::new();
        for r in join_all(calls).await {
            removed.extend(r?);
        }
        Ok(removed)
    }

    /// Stops claiming for one type, or for all with `None`; running tasks go on.
    pub async fn pause(&self, task_type: Option<&str>, now: Millis) -> Result<()> {
        self.set_paused(task_type, true, now).await
    }

    /// Resumes claiming for one type, or for all with `None`, and wakes idle workers.
    pub async fn resume(&self, task_type: Option<&str>, now: Millis) -> Result<()> {
        self.set_paused(task_type, false, now).await
    }

    async fn set_paused(&self, task_type: Option<&str>, pause: bool, now: Millis) -> Result<()> {
        let types = match task_type {
            Some(t) => {
                self.queue_config(t)?;
                vec![t]
            }
            None => self.queue_names(),
        };
        let calls = types.into_iter().map(|t| async move {
            let k = &self.inner.keys;
            let keys = [k.paused(t), k.events(t), k.signal(t)];
            let args = [
                if pause { "1" } else { "0" }.to_string(),
                now.to_string(),
                EVENTS_MAXLEN.to_string(),
            ];
            self.script::<i64>(&PAUSE, &keys, &args).await
        });
        for r in join_all(calls).await {
            r?;
        }
        Ok(())
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
}
