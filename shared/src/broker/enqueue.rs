//! Enqueue: new tasks written by `enqueue.lua`, one script call per type and batch, with the
//! per-account limits of [`Limits`](crate::config::Limits): the top band an account may ask
//! for (checked here), the tasks and request bytes it may hold (checked inside the script,
//! atomically with the write), and its enqueue rate ([`Broker::take_rate`]).

use std::collections::HashMap;

use futures::future::join_all;
use redis::FromRedisValue;
use sha2::{Digest, Sha256};

use std::sync::Arc;

use super::conn::{script_source, Dual, Durable};
use super::group::Group;
use super::shards::Shard;
use super::{validate_ident, Broker, EVENTS_MAXLEN, IDEMPOTENCY_TTL, MAX_BATCH, MAX_REQUEST_BYTES};
use crate::clock::At;
use crate::config::AccountLimit;
use crate::error::{Error, Result};
use crate::task::{Enqueued, Millis, NewTask, Priority, TaskStatus, MAX_TASK_ID};

/// The enqueue script's source, as the server runs it.
pub const ENQUEUE_SOURCE: &str = script_source!("enqueue.lua", "now.lua", "band.lua", "wake.lua");
static ENQUEUE: std::sync::LazyLock<Dual> = std::sync::LazyLock::new(|| Dual::new(ENQUEUE_SOURCE));

/// The keys of `enqueue.lua` for the shard of hash tag `tag`.
pub(crate) fn enqueue_keys(k: &crate::keys::Keys, tag: &str) -> Vec<String> {
    vec![
        k.queued(tag),
        k.scheduled(tag),
        k.stats(tag),
        k.events(tag),
        k.wake(tag),
        k.task_prefix(tag),
        k.account_prefix(tag),
        k.idem_prefix(tag),
        k.account_bytes(tag),
    ]
}

/// The values one task takes in `enqueue.lua`'s arguments.
const STRIDE: usize = 13;

/// How long new tasks avoid a shard whose enqueue no replica confirmed.
const AVOID_UNCONFIRMED: std::time::Duration = std::time::Duration::from_secs(2);

/// Whether one refused task refuses its whole call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Nothing is written if any task is refused.
    All,
    /// Each task on its own: the calls that group commit puts together.
    Each,
}

impl Mode {
    fn arg(self) -> &'static str {
        match self {
            Mode::All => "all",
            Mode::Each => "each",
        }
    }
}

/// A lane of enqueue's group commit: the tasks of one call share a shard, the account limits
/// the script checks, and the time it acts at.
pub(crate) type EnqueueLane = (Shard, AccountLimit, At);
/// Enqueue's group commit.
pub(crate) type EnqueueGroup = Group<EnqueueLane, Prepared, Enqueued>;

/// The rate limit's group commit: by rate key, the enqueues each caller counts; each caller
/// is answered with the count up to and including its own.
pub(crate) type RateGroup = Group<String, u64, u64>;

/// Builds the broker's rate group: one `INCRBY` (and `EXPIRE`) per call for all its callers.
pub(crate) fn rate_group(inner: std::sync::Weak<super::Inner>) -> Arc<RateGroup> {
    Group::new(
        MAX_BATCH,
        Arc::new(move |key: String, items: Vec<u64>| {
            let inner = inner.clone();
            Box::pin(async move {
                let n = items.len();
                let Some(inner) = inner.upgrade() else {
                    return (0..n)
                        .map(|_| Err(Error::Unavailable("the broker is gone".into())))
                        .collect();
                };
                let broker = Broker { inner };
                let total: u64 = items.iter().sum();
                let counted: Result<(u64,)> = broker
                    .with_conn(async |c| {
                        redis::pipe()
                            .incr(&key, total)
                            .expire(&key, 120)
                            .ignore()
                            .query_async(c)
                            .await
                    })
                    .await;
                match counted {
                    Err(e) => (0..n).map(|_| Err(e.clone())).collect(),
                    Ok((after,)) => {
                        // In the order sent: each caller's count is where its own ends.
                        let mut upto = after - total;
                        items
                            .into_iter()
                            .map(|k| {
                                upto += k;
                                Ok(upto)
                            })
                            .collect()
                    }
                }
            })
        }),
    )
}

/// Builds the broker's enqueue group: a lane's tasks go out in one `each` call with their
/// queue positions. It holds the broker weakly (the broker holds it).
pub(crate) fn enqueue_group(inner: std::sync::Weak<super::Inner>) -> Arc<EnqueueGroup> {
    Group::new(
        MAX_BATCH,
        Arc::new(
            move |(shard, limit, at): EnqueueLane, mut items: Vec<Prepared>| {
                let inner = inner.clone();
                Box::pin(async move {
                    let n = items.len();
                    let Some(inner) = inner.upgrade() else {
                        return (0..n)
                            .map(|_| Err(Error::Unavailable("the broker is gone".into())))
                            .collect();
                    };
                    let broker = Broker { inner };
                    for (k, p) in items.iter_mut().enumerate() {
                        p.index = k;
                    }
                    match broker
                        .enqueue_call_limited(&shard, items, at, Mode::Each, limit, true)
                        .await
                    {
                        Err(e) => (0..n).map(|_| Err(e.clone())).collect(),
                        Ok(answers) => {
                            let mut out: Vec<Option<Result<Enqueued>>> =
                                (0..n).map(|_| None).collect();
                            for (i, r) in answers {
                                out[i] = Some(r);
                            }
                            out.into_iter()
                                .map(|r| {
                                    r.unwrap_or_else(|| {
                                        Err(Error::Redis("enqueue answered too few".into()))
                                    })
                                })
                                .collect()
                        }
                    }
                })
            },
        ),
    )
}

/// What the rate limit said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateOutcome {
    Allowed,
    /// Over the account's enqueues per minute: try again after this many seconds.
    Limited {
        limit: u64,
        retry_after_secs: u64,
    },
}

/// One task ready for the script: its arguments, and what it becomes if written.
pub(crate) struct Prepared {
    index: usize,
    shard: Shard,
    id: String,
    priority: Priority,
    run_at: Millis,
    account_id: String,
    idempotency_key: Option<String>,
    args: [String; STRIDE],
}

/// One script call spelled out: its source, keys and arguments (for a tool that drives the
/// script itself, such as the benchmark's `redis-benchmark` run).
#[derive(Debug, Clone)]
pub struct ScriptCall {
    pub source: &'static str,
    pub keys: Vec<String>,
    pub args: Vec<String>,
    /// The ids the tasks were given (each also among `args`).
    pub ids: Vec<String>,
}

/// `enqueue.lua`'s answer, decoded.
struct Reply {
    now: Millis,
    busy_ms: i64,
    completed: i64,
    /// Each task's queue position in its shard, in call order, if asked for.
    positions: Vec<Option<u64>>,
    /// Tasks not written as asked: (index in the call, from 0; outcome; id; status).
    exceptions: Vec<(usize, String, String, String)>,
}

impl Reply {
    fn decode(v: Vec<redis::Value>) -> Result<Reply> {
        let bad = || Error::Redis("enqueue returned a malformed reply".into());
        let int = |x: &redis::Value| i64::from_redis_value(x.clone());
        let text = |x: &redis::Value| String::from_redis_value(x.clone());
        if v.len() < 4 {
            return Err(bad());
        }
        let p = usize::try_from(int(&v[3])?).map_err(|_| bad())?;
        let rest = v.len().checked_sub(4 + p).ok_or_else(bad)?;
        if !rest.is_multiple_of(4) {
            return Err(bad());
        }
        let positions = v[4..4 + p]
            .iter()
            .map(|x| Ok(u64::try_from(int(x)?).ok()))
            .collect::<Result<_>>()?;
        let mut exceptions = Vec::new();
        for row in v[4 + p..].chunks_exact(4) {
            let index = usize::try_from(int(&row[0])? - 1).map_err(|_| bad())?;
            exceptions.push((index, text(&row[1])?, text(&row[2])?, text(&row[3])?));
        }
        Ok(Reply {
            now: int(&v[0])?,
            busy_ms: int(&v[1])?,
            completed: int(&v[2])?,
            positions,
            exceptions,
        })
    }
}

/// A task's request, checked and serialised: a JSON object of at most [`MAX_REQUEST_BYTES`],
/// and (with `check_catalog`) for a catalog type as its processor will parse it, so a program
/// that enqueues through the library gets the API's validation, the field named
/// (`request.<field>`). Enqueue and schedules check with it.
pub(crate) fn checked_request(
    task_type: &str,
    request: &serde_json::Value,
    check_catalog: bool,
) -> Result<String> {
    if !request.is_object() {
        return Err(Error::invalid("request", "must be a JSON object"));
    }
    if let Some(catalog_type) = check_catalog
        .then(|| task_type.parse::<crate::TaskType>().ok())
        .flatten()
    {
        crate::catalog::requests::validate_for(catalog_type, request).map_err(|e| {
            let field = if e.field == "request" {
                e.field
            } else {
                format!("request.{}", e.field)
            };
            Error::invalid(field, e.message)
        })?;
    }
    let json = request.to_string();
    if json.len() > MAX_REQUEST_BYTES {
        return Err(Error::invalid(
            "request",
            format!("at most {MAX_REQUEST_BYTES} bytes of JSON"),
        ));
    }
    Ok(json)
}

/// What a caller asked for, hashed: an Idempotency-Key that comes again with a different
/// request is refused. The API gives its own (of the request as sent); the library's default
/// covers every field that changes what the task does.
pub fn fingerprint(t: &NewTask, priority: Priority) -> String {
    if let Some(fp) = &t.fingerprint {
        return fp.clone();
    }
    let canonical = serde_json::json!([
        t.task_type,
        t.request,
        priority.as_str(),
        t.run_at,
        t.webhook_url,
        t.parent_id,
        t.batch_id,
        t.max_attempts,
    ]);
    hex::encode(&Sha256::digest(canonical.to_string().as_bytes())[..16])
}

impl Broker {
    /// Enqueues one task, with its queue position. Concurrent calls of this process to the
    /// same shard are sent together (group commit, see [`super::group`]): one script call
    /// for many callers, each answered with its own outcome or error.
    pub async fn enqueue(&self, task: NewTask, at: impl Into<At>) -> Result<Enqueued> {
        let at = at.into();
        let p = self.prepare(0, &task, true)?;
        let limit = self.shard_limit(&p.shard, &p.account_id)?;
        self.inner
            .enqueue_group
            .submit((p.shard.clone(), limit, at), p)
            .await
    }

    /// Enqueues many tasks: one script call per type (one round trip for one type), each
    /// atomic: if a task of a call is refused (its account's quota, a reused Idempotency-Key),
    /// nothing of that call is written. Every task is validated before anything is written.
    pub async fn enqueue_many(
        &self,
        tasks: Vec<NewTask>,
        at: impl Into<At>,
    ) -> Result<Vec<Enqueued>> {
        self.enqueue_checked(tasks, at.into(), true).await
    }

    /// Enqueues without the catalog's check of the requests: for tests of what a processor
    /// does with a request that got past every check (feature `testing`).
    #[cfg(feature = "testing")]
    pub async fn enqueue_unchecked(&self, task: NewTask, at: impl Into<At>) -> Result<Enqueued> {
        Ok(self
            .enqueue_checked(vec![task], at.into(), false)
            .await?
            .remove(0))
    }

    async fn enqueue_checked(
        &self,
        tasks: Vec<NewTask>,
        at: At,
        check_catalog: bool,
    ) -> Result<Vec<Enqueued>> {
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
        let mut groups: HashMap<Shard, Vec<Prepared>> = HashMap::new();
        for (i, t) in tasks.iter().enumerate() {
            let p = self.prepare(i, t, check_catalog)?;
            groups.entry(p.shard.clone()).or_default().push(p);
        }
        let calls = groups.into_iter().flat_map(|(shard, items)| {
            let mut chunks: Vec<Vec<Prepared>> = Vec::new();
            for p in items {
                match chunks.last_mut() {
                    Some(c) if c.len() < MAX_BATCH => c.push(p),
                    _ => chunks.push(vec![p]),
                }
            }
            chunks.into_iter().map(move |chunk| (shard.clone(), chunk))
        });
        let results = join_all(calls.map(|(shard, chunk)| async move {
            self.enqueue_call(&shard, chunk, at, Mode::All).await
        }))
        .await;
        let mut out: Vec<Option<Enqueued>> = vec![None; tasks.len()];
        for r in results {
            for (i, e) in r? {
                out[i] = Some(e?);
            }
        }
        out.into_iter()
            .map(|e| e.ok_or_else(|| Error::Redis("enqueue returned too few tasks".into())))
            .collect()
    }

    /// Checks a task as an enqueue would, writing nothing (a batch checks all first).
    pub(crate) fn check_new(&self, t: &NewTask) -> Result<()> {
        self.prepare(0, t, true).map(|_| ())
    }

    /// Checks one task and turns it into the script's arguments.
    fn prepare(&self, index: usize, t: &NewTask, check_catalog: bool) -> Result<Prepared> {
        let q = self.queue_config(&t.task_type)?;
        let request = checked_request(&t.task_type, &t.request, check_catalog)?;
        validate_ident("account_id", &t.account_id, 128)?;
        validate_ident("user_id", &t.user_id, 128)?;
        if let Some(url) = &t.webhook_url {
            crate::webhooks::validate_url("webhook_url", url)?;
        }
        if let Some(k) = &t.idempotency_key {
            if k.is_empty() || k.len() > 255 || !k.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(Error::invalid(
                    "idempotency_key",
                    "1-255 printable characters without spaces",
                ));
            }
        }
        if let Some(id) = &t.id {
            if !crate::task::is_task_id(id) {
                return Err(Error::invalid(
                    "id",
                    format!(
                        "a task id is 1-{MAX_TASK_ID} of a-z, A-Z, 0-9, '.', '_', '-', not starting with '.'"
                    ),
                ));
            }
        }
        let max_attempts = t.max_attempts.unwrap_or(q.max_attempts);
        if !(1..=100).contains(&max_attempts) {
            return Err(Error::invalid("max_attempts", "must be 1-100"));
        }
        let priority = t.priority.unwrap_or(q.default_priority);
        let limit = self.inner.limits.for_account(&t.account_id);
        if priority < limit.max_priority {
            return Err(Error::invalid(
                "priority",
                format!(
                    "{priority} is above what this account may use (at most {})",
                    limit.max_priority
                ),
            ));
        }
        let run_at = t.run_at.unwrap_or(0);
        if run_at < 0 {
            return Err(Error::invalid("run_at", "must not be before 1970"));
        }
        // The shard: the one an id the caller chose hashes to; else the one its
        // Idempotency-Key does (a retry lands where the key is), else any. The id says it.
        let (shard, id) = match &t.id {
            Some(id) => (self.shard_of(&t.task_type, id)?, id.clone()),
            None => {
                let id = self.new_id(&t.task_type, &t.account_id, t.idempotency_key.as_deref())?;
                (self.shard_of(&t.task_type, &id)?, id)
            }
        };
        let fingerprint = if t.idempotency_key.is_some() {
            fingerprint(t, priority)
        } else {
            String::new()
        };
        Ok(Prepared {
            index,
            shard,
            priority,
            run_at,
            account_id: t.account_id.clone(),
            idempotency_key: t.idempotency_key.clone(),
            args: [
                id.clone(),
                if t.id.is_some() { "1" } else { "" }.to_string(),
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
                fingerprint,
            ],
            id,
        })
    }

    /// The enqueue script call that would write `tasks` (one type, at most [`MAX_BATCH`],
    /// the limits of the first task's account), spelled out rather than sent.
    pub fn enqueue_script_call(&self, tasks: &[NewTask], at: impl Into<At>) -> Result<ScriptCall> {
        let first = tasks
            .first()
            .ok_or_else(|| Error::invalid("tasks", "at least one"))?;
        if tasks.len() > MAX_BATCH || tasks.iter().any(|t| t.task_type != first.task_type) {
            return Err(Error::invalid(
                "tasks",
                format!("one type, at most {MAX_BATCH}"),
            ));
        }
        let prepared = tasks
            .iter()
            .enumerate()
            .map(|(i, t)| self.prepare(i, t, true))
            .collect::<Result<Vec<_>>>()?;
        if prepared.iter().any(|p| p.shard != prepared[0].shard) {
            return Err(Error::invalid("tasks", "one shard: give their ids"));
        }
        let limit = self.shard_limit(&prepared[0].shard, &first.account_id)?;
        let (keys, mut args) =
            self.enqueue_keys_args(&prepared[0].shard, at.into(), Mode::All, limit, false);
        for p in &prepared {
            args.extend(p.args.iter().cloned());
        }
        Ok(ScriptCall {
            source: ENQUEUE_SOURCE,
            keys: keys.to_vec(),
            args,
            ids: prepared.iter().map(|p| p.id.clone()).collect(),
        })
    }

    /// An account's limits in one shard: its quotas split evenly over the type's shards (each
    /// shard's script sees only its own), the rest as they are.
    fn shard_limit(&self, shard: &Shard, account_id: &str) -> Result<AccountLimit> {
        let count = u64::from(self.shard_count(shard.task_type())?);
        let mut limit = self.inner.limits.for_account(account_id);
        limit.max_tasks = limit.max_tasks.div_ceil(count);
        limit.max_bytes = limit.max_bytes.div_ceil(count);
        Ok(limit)
    }

    /// The keys and leading arguments of one enqueue call.
    fn enqueue_keys_args(
        &self,
        shard: &Shard,
        at: At,
        mode: Mode,
        limit: AccountLimit,
        positions: bool,
    ) -> (Arc<[String]>, Vec<String>) {
        let keys = match self.queue_entry(shard.task_type()) {
            Ok(q) => q.enqueue_keys[usize::from(shard.index())].clone(),
            Err(_) => enqueue_keys(&self.inner.keys, shard.tag()).into(),
        };
        let args = vec![
            at.arg(),
            shard.task_type().to_string(),
            IDEMPOTENCY_TTL.as_secs().to_string(),
            EVENTS_MAXLEN.to_string(),
            mode.arg().to_string(),
            limit.max_tasks.to_string(),
            limit.max_bytes.to_string(),
            if positions { "1" } else { "" }.to_string(),
        ];
        (keys, args)
    }

    /// One script call: the tasks of one type (at most [`MAX_BATCH`]); per task, its index
    /// in the caller's list and what became of it.
    async fn enqueue_call(
        &self,
        shard: &Shard,
        chunk: Vec<Prepared>,
        at: At,
        mode: Mode,
    ) -> Result<Vec<(usize, Result<Enqueued>)>> {
        // Every task of a call shares its account's limits: the script checks them against
        // each account it sees, so a call mixes accounts only if they share limits.
        let limits: Vec<_> = chunk
            .iter()
            .map(|p| self.shard_limit(shard, &p.account_id))
            .collect::<Result<_>>()?;
        if limits.windows(2).any(|w| w[0] != w[1]) {
            // Different limits in one call: split it by account limits.
            let mut by_limit: HashMap<_, Vec<Prepared>> = HashMap::new();
            for (p, l) in chunk.into_iter().zip(limits) {
                by_limit.entry(l).or_default().push(p);
            }
            let parts = join_all(
                by_limit
                    .into_values()
                    .map(|c| Box::pin(self.enqueue_call(shard, c, at, mode))),
            )
            .await;
            let mut out = Vec::new();
            for p in parts {
                out.extend(p?);
            }
            return Ok(out);
        }
        self.enqueue_call_limited(shard, chunk, at, mode, limits[0], false)
            .await
    }

    /// One script call of tasks that share `limit`; with `positions`, each written or found
    /// task's queue position is in its answer.
    async fn enqueue_call_limited(
        &self,
        shard: &Shard,
        chunk: Vec<Prepared>,
        at: At,
        mode: Mode,
        limit: AccountLimit,
        positions: bool,
    ) -> Result<Vec<(usize, Result<Enqueued>)>> {
        let task_type = shard.task_type();
        let (keys, mut args) = self.enqueue_keys_args(shard, at, mode, limit, positions);
        args.reserve(chunk.len() * STRIDE);
        let mut chunk = chunk;
        for p in &mut chunk {
            args.extend(p.args.iter_mut().map(std::mem::take));
        }
        let written = self
            .durable_script(&ENQUEUE, &keys, &args, Durable::Refuse)
            .await;
        let why = match &written {
            Ok((_, Err(why))) => Some(format!("enqueue not confirmed: {why}")),
            Err(Error::Unavailable(why)) => Some(why.clone()),
            _ => None,
        };
        if let Some(why) = why {
            // New tasks go to other shards for a while: this one's primary lacks replicas.
            self.inner
                .unconfirmed
                .lock()
                .expect("unconfirmed lock")
                .insert(
                    shard.tag().to_string(),
                    std::time::Instant::now() + AVOID_UNCONFIRMED,
                );
            // Not a promise (written on the primary only, or not at all). The caller sends it
            // again: the same id or Idempotency-Key finds the task if it was written.
            return Err(Error::Unavailable(why));
        }
        let (reply, _) = written?;
        let reply = Reply::decode(reply)?;
        // A queue position is exact within the task's shard; over several shards it is that
        // position times their count (claims spread evenly over them).
        let spread = u64::from(self.shard_count(task_type)?);
        let mut exceptions: HashMap<usize, (String, String, String)> = reply
            .exceptions
            .into_iter()
            .map(|(i, o, id, s)| (i, (o, id, s)))
            .collect();
        let refused = exceptions.values().any(|(o, _, _)| o != "exists");
        let average_run_ms =
            (reply.completed > 0).then(|| (reply.busy_ms / reply.completed).max(0) as u64);
        let mut out = Vec::with_capacity(chunk.len());
        for (k, p) in chunk.into_iter().enumerate() {
            let result = match exceptions.remove(&k) {
                None if refused && mode == Mode::All => Err(Error::invalid(
                    "tasks",
                    "another task of the same call was refused; nothing was written",
                )),
                None => {
                    let status = if p.run_at > reply.now {
                        TaskStatus::Scheduled
                    } else {
                        TaskStatus::Queued
                    };
                    Ok(self.enqueued(&p, task_type, p.id.clone(), status, true))
                }
                Some((outcome, id, status)) => match outcome.as_str() {
                    "exists" => Ok(self.enqueued(&p, task_type, id, status.parse()?, false)),
                    "mismatch" => Err(Error::IdempotencyMismatch {
                        key: p.idempotency_key.clone().unwrap_or_default(),
                        earlier: id,
                    }),
                    "quota_tasks" | "quota_bytes" => Err(Error::QuotaExceeded {
                        account: p.account_id.clone(),
                        task_type: task_type.to_string(),
                        what: if outcome == "quota_tasks" {
                            "tasks"
                        } else {
                            "bytes"
                        },
                        limit: if outcome == "quota_tasks" {
                            limit.max_tasks
                        } else {
                            limit.max_bytes
                        },
                    }),
                    other => Err(Error::Redis(format!("enqueue answered {other:?}"))),
                },
            };
            let result = result.map(|mut e| {
                if let Some(position) = reply.positions.get(k) {
                    e.queue_position = position.map(|p| p * spread);
                    e.average_run_ms = average_run_ms;
                }
                e
            });
            out.push((p.index, result));
        }
        Ok(out)
    }

    fn enqueued(
        &self,
        p: &Prepared,
        task_type: &str,
        id: String,
        status: TaskStatus,
        created: bool,
    ) -> Enqueued {
        Enqueued {
            id,
            task_type: task_type.to_string(),
            status,
            priority: p.priority,
            created,
            queue_position: None,
            average_run_ms: None,
        }
    }

    /// Counts `n` enqueues against the account's per-minute limit (a fixed window in Redis,
    /// so every API replica and worker shares it). `now` is the caller's estimate of the
    /// server's time: it only picks the minute. Past the limit the enqueues still count (a
    /// client that keeps trying stays limited), and the answer says when the window ends.
    /// Concurrent calls of this process for one account and minute share one `INCRBY`
    /// (group commit), each answered by its own place in the count.
    pub async fn take_rate(&self, account_id: &str, n: u64, now: Millis) -> Result<RateOutcome> {
        let limit = self.inner.limits.for_account(account_id).rate_per_minute;
        if limit == 0 || n == 0 {
            return Ok(RateOutcome::Allowed);
        }
        let window = now.div_euclid(60_000);
        let count = self
            .inner
            .rate_group
            .submit(self.inner.keys.rate(account_id, window), n)
            .await?;
        if count > limit {
            let retry_after_secs = ((window + 1) * 60_000 - now).div_euclid(1000).max(1) as u64;
            return Ok(RateOutcome::Limited {
                limit,
                retry_after_secs,
            });
        }
        Ok(RateOutcome::Allowed)
    }
}
