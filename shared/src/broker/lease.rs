//! A task's attempt, from claim to its end: claim (and unclaim, for a claim whose reply was
//! lost), extend (the heartbeat), complete, fail, release, defer, progress and children.
//! Every call after the claim presents the attempt's lease token: a stale one changes nothing.

use std::time::{Duration, Instant};

use futures::future::join_all;
use redis::FromRedisValue;
use serde_json::Value;

use super::conn::script;
use super::{Broker, EVENTS_MAXLEN, MAX_BATCH, PROMOTE_LIMIT};
use crate::clock::At;
use crate::error::{Error, Result};
use crate::task::{Claimed, Priority};

static CLAIM: std::sync::LazyLock<redis::Script> =
    script!("claim.lua", "now.lua", "band.lua", "promote.lua");
static UNCLAIM: std::sync::LazyLock<redis::Script> = script!("unclaim.lua", "band.lua", "wake.lua");
static EXTEND: std::sync::LazyLock<redis::Script> = script!("extend.lua", "now.lua");
static COMPLETE: std::sync::LazyLock<redis::Script> = script!("complete.lua", "now.lua");
static FAIL: std::sync::LazyLock<redis::Script> = script!("fail.lua", "now.lua");
static RELEASE: std::sync::LazyLock<redis::Script> =
    script!("release.lua", "now.lua", "band.lua", "wake.lua");
static DEFER: std::sync::LazyLock<redis::Script> = script!("defer.lua", "now.lua");
static PROGRESS: std::sync::LazyLock<redis::Script> = script!("progress.lua");
static CHILDREN: std::sync::LazyLock<redis::Script> = script!("children.lua");

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

/// What a deferral did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeferOutcome {
    /// The task waits in `scheduled`, its attempt given back.
    Deferred,
    /// Its cancel had been requested: it ended `cancelled` instead.
    Cancelled,
}

/// What a release did with one task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseOutcome {
    /// Back in `queued` at its place, its attempt given back.
    Released,
    /// Its cancel had been requested: it ended `cancelled`.
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

/// A claim call whose reply never came (a timeout): the script may have leased tasks under
/// its token prefix. The next claim gives them back (`unclaim.lua`), until the claim's record
/// has expired with its lease.
#[derive(Debug, Clone)]
pub(crate) struct Unanswered {
    task_type: String,
    token_prefix: String,
    until: Instant,
}

/// A claim's reply row: 11 values per task, named.
struct ClaimRow {
    id: String,
    lease: String,
    attempt: u32,
    max_attempts: u32,
    priority: Priority,
    created_at: i64,
    request: Value,
    account_id: Option<String>,
    user_id: Option<String>,
    parent_id: Option<String>,
    webhook_url: Option<String>,
}

impl ClaimRow {
    const WIDTH: usize = 11;

    fn decode(row: &[redis::Value]) -> Result<ClaimRow> {
        let text = |i: usize| -> Result<String> { Ok(String::from_redis_value(row[i].clone())?) };
        let opt =
            |i: usize| -> Result<Option<String>> { Ok(Some(text(i)?).filter(|v| !v.is_empty())) };
        let num = |i: usize| -> Result<i64> { Ok(i64::from_redis_value(row[i].clone())?) };
        Ok(ClaimRow {
            id: text(0)?,
            lease: text(1)?,
            attempt: num(2)? as u32,
            max_attempts: num(3)? as u32,
            priority: text(4)?.parse()?,
            created_at: num(5)?,
            request: serde_json::from_str(&text(6)?).unwrap_or(Value::Null),
            account_id: opt(7)?,
            user_id: opt(8)?,
            parent_id: opt(9)?,
            webhook_url: opt(10)?,
        })
    }

    fn claimed(self, task_type: &str) -> Claimed {
        Claimed {
            id: self.id,
            task_type: task_type.to_string(),
            lease: self.lease,
            attempt: self.attempt,
            max_attempts: self.max_attempts,
            priority: self.priority,
            created_at: self.created_at,
            request: self.request,
            account_id: self.account_id,
            user_id: self.user_id,
            parent_id: self.parent_id,
            webhook_url: self.webhook_url,
        }
    }
}

/// A script's `{outcome, children}` pair.
fn outcome_pair(v: &redis::Value) -> Result<(String, String)> {
    Ok(<(String, String)>::from_redis_value(v.clone())?)
}

impl Broker {
    /// Leases up to `n` ready tasks of the given types, best first: for several types, the
    /// heads of their queues are compared (by band, then enqueue time) in one round trip and
    /// the types are claimed in that order. Due scheduled and retrying tasks are promoted
    /// first; a paused type gives nothing. Tasks an earlier claim leased but never reported
    /// (its reply was lost) are given back first.
    pub async fn claim(&self, types: &[&str], n: usize, at: impl Into<At>) -> Result<Vec<Claimed>> {
        let at = at.into();
        for t in types {
            self.queue_config(t)?;
        }
        self.give_back_unanswered(at).await;
        let n = n.min(MAX_BATCH);
        if n == 0 || types.is_empty() {
            return Ok(Vec::new());
        }
        if types.len() == 1 {
            return self.claim_type(types[0], n, at).await;
        }
        // Which type's head is best: a hint read outside any script (the claims themselves
        // decide), so the local estimate of the time is good enough for "is something due".
        let now = at.estimate();
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
            claimed.extend(self.claim_type(t, n - claimed.len(), at).await?);
        }
        Ok(claimed)
    }

    async fn claim_type(&self, task_type: &str, n: usize, at: At) -> Result<Vec<Claimed>> {
        let k = &self.inner.keys;
        let token_prefix = format!("{}-{:016x}", self.inner.worker_id, rand::random::<u64>());
        let keys = [
            k.queued(task_type),
            k.scheduled(task_type),
            k.retrying(task_type),
            k.processing(task_type),
            k.paused(task_type),
            k.stats(task_type),
            k.events(task_type),
            k.task_prefix(task_type),
            k.claim_record(task_type, &token_prefix),
        ];
        let args = [
            at.arg(),
            n.to_string(),
            self.inner.lease.as_millis().to_string(),
            self.inner.worker_id.clone(),
            token_prefix.clone(),
            PROMOTE_LIMIT.to_string(),
            EVENTS_MAXLEN.to_string(),
        ];
        let flat: Vec<redis::Value> = match self.script(&CLAIM, &keys, &args).await {
            Ok(v) => v,
            Err(e @ Error::Unavailable(_)) => {
                // The script may have run and leased tasks whose ids we never saw: remember
                // the call, and give them back on the next claim.
                self.inner
                    .unanswered
                    .lock()
                    .expect("unanswered lock")
                    .push(Unanswered {
                        task_type: task_type.to_string(),
                        token_prefix,
                        until: Instant::now() + self.inner.lease,
                    });
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        flat.get(1..)
            .unwrap_or_default()
            .chunks_exact(ClaimRow::WIDTH)
            .map(|row| Ok(ClaimRow::decode(row)?.claimed(task_type)))
            .collect()
    }

    /// Gives back the tasks of claims whose reply was lost. A call that fails, or that finds
    /// no record yet (its claim may still be on its way to Redis), is kept for the next claim
    /// until the claim's lease would have run out.
    async fn give_back_unanswered(&self, at: At) {
        let pending: Vec<Unanswered> =
            std::mem::take(&mut *self.inner.unanswered.lock().expect("unanswered lock"));
        if pending.is_empty() {
            return;
        }
        let mut keep = Vec::new();
        for u in pending {
            if Instant::now() >= u.until {
                continue;
            }
            match self.unclaim(&u.task_type, &u.token_prefix, at).await {
                Ok(Some(n)) => {
                    if n > 0 {
                        tracing::info!(task_type = %u.task_type, count = n, "gave back tasks of a claim whose reply was lost");
                    }
                }
                Ok(None) | Err(_) => keep.push(u),
            }
        }
        self.inner
            .unanswered
            .lock()
            .expect("unanswered lock")
            .extend(keep);
    }

    /// Gives back what the claim call with `token_prefix` leased, attempts given back:
    /// `Some(n)` if its record was found (n tasks went back), `None` if there is no record
    /// (the claim never ran, leased nothing, or its record expired with its lease).
    pub async fn unclaim(
        &self,
        task_type: &str,
        token_prefix: &str,
        at: impl Into<At>,
    ) -> Result<Option<u64>> {
        self.queue_config(task_type)?;
        let k = &self.inner.keys;
        let keys = [
            k.processing(task_type),
            k.queued(task_type),
            k.events(task_type),
            k.signal(task_type),
            k.task_prefix(task_type),
            k.claim_record(task_type, token_prefix),
        ];
        let args = [
            at.into().arg(),
            token_prefix.to_string(),
            EVENTS_MAXLEN.to_string(),
        ];
        let (found, released): (i64, u64) = self.script(&UNCLAIM, &keys, &args).await?;
        Ok((found == 1).then_some(released))
    }

    /// Renews the leases a worker holds on tasks of one type; reports lost and cancel-requested ids.
    pub async fn extend(
        &self,
        task_type: &str,
        held: &[(String, String)],
        at: impl Into<At>,
    ) -> Result<ExtendReport> {
        self.queue_config(task_type)?;
        if held.is_empty() {
            return Ok(ExtendReport::default());
        }
        let k = &self.inner.keys;
        let keys = [k.processing(task_type), k.task_prefix(task_type)];
        let mut args = vec![at.into().arg(), self.inner.lease.as_millis().to_string()];
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
        at: impl Into<At>,
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
        let mut args = vec![at.into().arg(), EVENTS_MAXLEN.to_string()];
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
        at: impl Into<At>,
    ) -> Result<()> {
        let done = [Completion {
            id: id.to_string(),
            lease: lease.to_string(),
            result,
        }];
        match self.complete(task_type, &done, at).await?.first() {
            Some(true) => Ok(()),
            _ => Err(Error::StaleLease(id.to_string())),
        }
    }

    /// Records failed attempts of one type: each is retried after a full-jitter backoff while
    /// attempts are left and it is not permanent, else it ends `failed`. A task that ends
    /// failed or cancelled cancels the tasks it started (its children).
    pub async fn fail(
        &self,
        task_type: &str,
        failures: &[Failure],
        at: impl Into<At>,
    ) -> Result<Vec<FailOutcome>> {
        let at = at.into();
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
            at.arg(),
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
        let rows: Vec<redis::Value> = self.script(&FAIL, &keys, &args).await?;
        let mut outcomes = Vec::with_capacity(rows.len());
        let mut children = Vec::new();
        for row in &rows {
            let (status, kids) = outcome_pair(row)?;
            outcomes.push(match status.as_str() {
                "retrying" => FailOutcome::Retrying,
                "failed" => FailOutcome::Failed,
                "cancelled" => FailOutcome::Cancelled,
                _ => FailOutcome::Stale,
            });
            if !kids.is_empty() {
                children.push(kids);
            }
        }
        if !children.is_empty() {
            self.cascade(children, at).await;
        }
        Ok(outcomes)
    }

    /// Records one failed attempt; [`Error::StaleLease`] if the lease is not held.
    pub async fn fail_one(
        &self,
        task_type: &str,
        id: &str,
        lease: &str,
        error: &str,
        permanent: bool,
        at: impl Into<At>,
    ) -> Result<FailOutcome> {
        let f = [Failure {
            id: id.to_string(),
            lease: lease.to_string(),
            error: error.to_string(),
            permanent,
        }];
        match self.fail(task_type, &f, at).await?.first() {
            Some(FailOutcome::Stale) | None => Err(Error::StaleLease(id.to_string())),
            Some(o) => Ok(*o),
        }
    }

    /// Gives leased tasks of one type back to `queued` without using up an attempt (a worker
    /// shutting down); a task whose cancel was requested ends `cancelled` instead.
    pub async fn release(
        &self,
        task_type: &str,
        held: &[(String, String)],
        at: impl Into<At>,
    ) -> Result<Vec<ReleaseOutcome>> {
        let at = at.into();
        self.queue_config(task_type)?;
        if held.is_empty() {
            return Ok(Vec::new());
        }
        let k = &self.inner.keys;
        let keys = [
            k.processing(task_type),
            k.queued(task_type),
            k.cancelled(task_type),
            k.stats(task_type),
            k.events(task_type),
            k.signal(task_type),
            k.task_prefix(task_type),
        ];
        let mut args = vec![at.arg(), EVENTS_MAXLEN.to_string()];
        for (id, lease) in held {
            args.push(id.clone());
            args.push(lease.clone());
        }
        let rows: Vec<redis::Value> = self.script(&RELEASE, &keys, &args).await?;
        let mut outcomes = Vec::with_capacity(rows.len());
        let mut children = Vec::new();
        for row in &rows {
            let (outcome, kids) = outcome_pair(row)?;
            outcomes.push(match outcome.as_str() {
                "released" => ReleaseOutcome::Released,
                "cancelled" => ReleaseOutcome::Cancelled,
                _ => ReleaseOutcome::Stale,
            });
            if !kids.is_empty() {
                children.push(kids);
            }
        }
        if !children.is_empty() {
            self.cascade(children, at).await;
        }
        Ok(outcomes)
    }

    /// A running task that waits for something gives its slot back: it is `scheduled` for
    /// `delay` from now (the server's), and the attempt is given back. A task whose cancel
    /// was requested ends `cancelled` instead (and cancels its children).
    /// [`Error::StaleLease`] if the lease is not held.
    pub async fn defer(
        &self,
        task_type: &str,
        id: &str,
        lease: &str,
        delay: Duration,
        message: &str,
        at: impl Into<At>,
    ) -> Result<DeferOutcome> {
        let at = at.into();
        self.queue_config(task_type)?;
        let k = &self.inner.keys;
        let keys = [
            k.processing(task_type),
            k.scheduled(task_type),
            k.cancelled(task_type),
            k.stats(task_type),
            k.events(task_type),
            k.task_prefix(task_type),
        ];
        let args = [
            at.arg(),
            id.to_string(),
            lease.to_string(),
            delay.as_millis().to_string(),
            message.to_string(),
            EVENTS_MAXLEN.to_string(),
        ];
        let v: redis::Value = self.script(&DEFER, &keys, &args).await?;
        let (outcome, children) = outcome_pair(&v)?;
        match outcome.as_str() {
            "deferred" => Ok(DeferOutcome::Deferred),
            "cancelled" => {
                if !children.is_empty() {
                    self.cascade(vec![children], at).await;
                }
                Ok(DeferOutcome::Cancelled)
            }
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

    /// A running task records the tasks it started (`(type, id)`), fenced by its lease: when
    /// it ends cancelled or failed, they are cancelled too.
    pub async fn set_children(
        &self,
        task_type: &str,
        id: &str,
        lease: &str,
        children: &[(String, String)],
    ) -> Result<()> {
        self.queue_config(task_type)?;
        let keys = [self.inner.keys.task_prefix(task_type)];
        let list = serde_json::to_string(children).expect("pairs of strings serialize");
        let args = [String::new(), id.to_string(), lease.to_string(), list];
        match self.script::<i64>(&CHILDREN, &keys, &args).await? {
            1 => Ok(()),
            _ => Err(Error::StaleLease(id.to_string())),
        }
    }

    /// Extends many types at once (one call per type, concurrently): per type, its report or
    /// its error, so one type's trouble does not keep the others' leases from being renewed.
    pub async fn extend_all(
        &self,
        held: Vec<(String, Vec<(String, String)>)>,
        at: impl Into<At>,
    ) -> Vec<(String, Result<ExtendReport>)> {
        let at = at.into();
        join_all(held.into_iter().map(|(t, items)| async move {
            let r = self.extend(&t, &items, at).await;
            (t, r)
        }))
        .await
    }
}
