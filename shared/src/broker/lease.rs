//! A task's attempt, from claim to its end: claim (and unclaim, for a claim whose reply was
//! lost), extend (the heartbeat), complete, fail, release, defer, progress and children.
//! Every call after the claim presents the attempt's lease token: a stale one changes nothing.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::future::join_all;
use rand::seq::IndexedRandom;
use redis::FromRedisValue;
use serde_json::Value;

use super::conn::{script, Durable};
use super::shards::Shard;
use super::{Broker, EVENTS_MAXLEN, MAX_BATCH, PROMOTE_LIMIT};
use crate::clock::At;
use crate::error::{Error, Result};
use crate::task::{Claimed, Priority};

type Script = std::sync::LazyLock<super::conn::Dual>;
static CLAIM: Script = script!(
    "claim.lua",
    "now.lua",
    "band.lua",
    "promote.lua",
    "claim.lua"
);
static UNCLAIM: Script = script!("unclaim.lua", "band.lua", "wake.lua");
static EXTEND: Script = script!("extend.lua", "now.lua");
static COMPLETE: Script = script!(
    "complete.lua",
    "now.lua",
    "band.lua",
    "promote.lua",
    "claim.lua",
    "outbox.lua"
);
static FAIL: Script = script!("fail.lua", "now.lua", "outbox.lua");
static RELEASE: Script = script!(
    "release.lua",
    "now.lua",
    "band.lua",
    "wake.lua",
    "outbox.lua"
);
static DEFER: Script = script!("defer.lua", "now.lua", "outbox.lua");
static PROGRESS: Script = script!("progress.lua");
static CHILDREN: Script = script!("children.lua");

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
    shard: Shard,
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

/// Groups the items of one queue by the shard each id lives in, keeping each item's place in
/// the caller's list.
fn by_shard<T>(
    broker: &Broker,
    task_type: &str,
    items: impl IntoIterator<Item = (String, T)>,
) -> Result<HashMap<Shard, Vec<(usize, T)>>> {
    let mut out: HashMap<Shard, Vec<(usize, T)>> = HashMap::new();
    for (i, (id, item)) in items.into_iter().enumerate() {
        out.entry(broker.shard_of(task_type, &id)?)
            .or_default()
            .push((i, item));
    }
    Ok(out)
}

/// Puts per-shard answers back in the caller's order.
fn in_order<R>(n: usize, parts: Vec<Vec<(usize, R)>>) -> Vec<R> {
    let mut out: Vec<Option<R>> = (0..n).map(|_| None).collect();
    for part in parts {
        for (i, r) in part {
            out[i] = Some(r);
        }
    }
    out.into_iter()
        .map(|r| r.expect("an answer for every item"))
        .collect()
}

impl Broker {
    /// Leases up to `n` ready tasks of the given types, best first. Within a shard the order
    /// is exact (band, then enqueue time). Across shards, a type with several is claimed by
    /// the power of two choices: the heads of two shards picked at random are compared and the
    /// better one is claimed first (every other shard is looked at only when both are empty);
    /// across types, the heads are compared likewise. Due scheduled and retrying tasks are
    /// promoted first; a paused type gives nothing. Tasks an earlier claim leased but never
    /// reported (its reply was lost) are given back first.
    pub async fn claim(&self, types: &[&str], n: usize, at: impl Into<At>) -> Result<Vec<Claimed>> {
        self.claim_preferring(types, n, at, None).await
    }

    /// [`Broker::claim`], with `prefer` (a shard that just said it has work, by its wake-up)
    /// as one of its type's two choices.
    pub async fn claim_preferring(
        &self,
        types: &[&str],
        n: usize,
        at: impl Into<At>,
        prefer: Option<&Shard>,
    ) -> Result<Vec<Claimed>> {
        let at = at.into();
        for t in types {
            self.queue_config(t)?;
        }
        self.give_back_unanswered(at).await;
        let n = n.min(MAX_BATCH);
        if n == 0 || types.is_empty() {
            return Ok(Vec::new());
        }
        if types.len() == 1 && self.shard_count(types[0])? == 1 {
            // One type of one shard: nothing to compare.
            return self.claim_shard(&self.shard(types[0], 0)?, n, at).await;
        }
        let mut candidates = Vec::new();
        for t in types {
            let shards = self.shards(t)?;
            if shards.len() <= 2 {
                candidates.extend(shards);
                continue;
            }
            let first = match prefer.filter(|p| p.task_type() == *t) {
                Some(p) => p.clone(),
                None => shards.choose(&mut rand::rng()).expect("shards").clone(),
            };
            let second = loop {
                let s = shards.choose(&mut rand::rng()).expect("shards");
                if *s != first {
                    break s.clone();
                }
            };
            candidates.push(first);
            candidates.push(second);
        }
        let mut claimed = self.claim_best_first(&candidates, n, at).await?;
        if claimed.is_empty() {
            // Both choices were empty: every other shard, best head first.
            let rest: Vec<Shard> = types
                .iter()
                .flat_map(|t| self.shards(t).unwrap_or_default())
                .filter(|s| !candidates.contains(s))
                .collect();
            if !rest.is_empty() {
                claimed = self.claim_best_first(&rest, n, at).await?;
            }
        }
        Ok(claimed)
    }

    /// Claims from `shards` in the order of their heads (band, then enqueue time; a shard with
    /// due scheduled or retrying tasks first), skipping empty ones, until `n` are claimed.
    async fn claim_best_first(&self, shards: &[Shard], n: usize, at: At) -> Result<Vec<Claimed>> {
        // A hint read outside any script (the claims decide), so the local estimate of the
        // time is good enough for "is something due".
        let now = at.estimate();
        let k = &self.inner.keys;
        let mut cmds = Vec::with_capacity(shards.len() * 3);
        for s in shards {
            let queued = k.queued(s.tag());
            let mut head = redis::cmd("ZRANGE");
            head.arg(&queued).arg(0).arg(0).arg("WITHSCORES");
            cmds.push((queued, head));
            for waiting in [k.scheduled(s.tag()), k.retrying(s.tag())] {
                let mut due = redis::cmd("ZRANGEBYSCORE");
                due.arg(&waiting)
                    .arg("-inf")
                    .arg(now)
                    .arg("LIMIT")
                    .arg(0)
                    .arg(1);
                cmds.push((waiting, due));
            }
        }
        let heads: Vec<redis::Value> = self.fanout(cmds).await?;
        let mut order: Vec<(f64, &Shard)> = Vec::new();
        for (i, s) in shards.iter().enumerate() {
            let head: Vec<(String, f64)> = redis::from_redis_value(heads[3 * i].clone())?;
            let due = [&heads[3 * i + 1], &heads[3 * i + 2]]
                .iter()
                .any(|v| !matches!(v, redis::Value::Array(a) if a.is_empty()));
            match (head.first(), due) {
                // Due tasks of unknown band: give the shard its turn first.
                (_, true) => order.push((f64::MIN, s)),
                (Some((_, score)), false) => order.push((*score, s)),
                (None, false) => {}
            }
        }
        order.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut claimed = Vec::new();
        for (_, s) in order {
            if claimed.len() >= n {
                break;
            }
            claimed.extend(self.claim_shard(s, n - claimed.len(), at).await?);
        }
        Ok(claimed)
    }

    /// Leases up to `n` tasks of one shard (one script call).
    pub async fn claim_shard(&self, shard: &Shard, n: usize, at: At) -> Result<Vec<Claimed>> {
        let k = &self.inner.keys;
        let tag = shard.tag();
        let token_prefix = format!("{}-{:016x}", self.inner.worker_id, rand::random::<u64>());
        let keys = [
            k.queued(tag),
            k.scheduled(tag),
            k.retrying(tag),
            k.processing(tag),
            k.paused(tag),
            k.stats(tag),
            k.events(tag),
            k.task_prefix(tag),
            k.claim_record(tag, &token_prefix),
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
                self.remember_unanswered(shard, token_prefix);
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        flat.get(1..)
            .unwrap_or_default()
            .chunks_exact(ClaimRow::WIDTH)
            .map(|row| Ok(ClaimRow::decode(row)?.claimed(shard.task_type())))
            .collect()
    }

    /// Remembers a claim (by its token prefix) whose answer never came: the next claim gives
    /// back what it leased, until its lease would have run out.
    fn remember_unanswered(&self, shard: &Shard, token_prefix: String) {
        self.inner
            .unanswered
            .lock()
            .expect("unanswered lock")
            .push(Unanswered {
                shard: shard.clone(),
                token_prefix,
                until: Instant::now() + self.inner.lease,
            });
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
            match self.unclaim(&u.shard, &u.token_prefix, at).await {
                Ok(Some(n)) => {
                    if n > 0 {
                        tracing::info!(shard = %u.shard.tag(), count = n, "gave back tasks of a claim whose reply was lost");
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

    /// Gives back what the claim call with `token_prefix` leased in `shard`, attempts given
    /// back: `Some(n)` if its record was found (n tasks went back), `None` if there is no
    /// record (the claim never ran, leased nothing, or its record expired with its lease).
    pub async fn unclaim(
        &self,
        shard: &Shard,
        token_prefix: &str,
        at: impl Into<At>,
    ) -> Result<Option<u64>> {
        let k = &self.inner.keys;
        let tag = shard.tag();
        let keys = [
            k.processing(tag),
            k.queued(tag),
            k.events(tag),
            k.wake(tag),
            k.task_prefix(tag),
            k.claim_record(tag, token_prefix),
        ];
        let args = [
            at.into().arg(),
            token_prefix.to_string(),
            EVENTS_MAXLEN.to_string(),
        ];
        let (found, released): (i64, u64) = self.script(&UNCLAIM, &keys, &args).await?;
        Ok((found == 1).then_some(released))
    }

    /// Renews the leases a worker holds on tasks of one type (one call per shard,
    /// concurrently); reports lost and cancel-requested ids.
    pub async fn extend(
        &self,
        task_type: &str,
        held: &[(String, String)],
        at: impl Into<At>,
    ) -> Result<ExtendReport> {
        let at = at.into();
        self.queue_config(task_type)?;
        if held.is_empty() {
            return Ok(ExtendReport::default());
        }
        let groups = by_shard(
            self,
            task_type,
            held.iter().map(|h| (h.0.clone(), h.clone())),
        )?;
        let calls = groups.into_iter().map(|(shard, items)| async move {
            let k = &self.inner.keys;
            let keys = [k.processing(shard.tag()), k.task_prefix(shard.tag())];
            let mut args = vec![at.arg(), self.inner.lease.as_millis().to_string()];
            for (_, (id, lease)) in items {
                args.push(id);
                args.push(lease);
            }
            self.script::<(Vec<String>, Vec<String>)>(&EXTEND, &keys, &args)
                .await
        });
        let mut report = ExtendReport::default();
        for r in join_all(calls).await {
            let (lost, cancel_requested) = r?;
            report.lost.extend(lost);
            report.cancel_requested.extend(cancel_requested);
        }
        Ok(report)
    }

    /// Records results of one type; per task, true if completed, false if its lease was not
    /// held (nothing changed). With `redis.wait_replicas`, answers once the replicas have
    /// them (or, when none acknowledges in time, with a warning: a completion lost with its
    /// primary runs again).
    pub async fn complete(
        &self,
        task_type: &str,
        done: &[Completion],
        at: impl Into<At>,
    ) -> Result<Vec<bool>> {
        Ok(self.complete_and_claim(task_type, done, 0, at).await?.0)
    }

    /// [`Broker::complete`], and in the same script call, claims up to `claim` more tasks of
    /// the shard where most of `done` were (the worker's "fetch next": one call per finished
    /// batch instead of a complete and a claim). The claim is the one [`Broker::claim`]
    /// makes there (due tasks promoted first, nothing while the type is paused), and a claim
    /// whose answer is lost is given back on the next claim as for [`Broker::claim`].
    pub async fn complete_and_claim(
        &self,
        task_type: &str,
        done: &[Completion],
        claim: usize,
        at: impl Into<At>,
    ) -> Result<(Vec<bool>, Vec<Claimed>)> {
        let at = at.into();
        self.queue_config(task_type)?;
        if done.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let claim = claim.min(MAX_BATCH);
        if claim > 0 {
            self.give_back_unanswered(at).await;
        }
        let groups = by_shard(self, task_type, done.iter().map(|c| (c.id.clone(), c)))?;
        // The claim goes with the largest group.
        let claimer = groups
            .iter()
            .max_by_key(|(_, items)| items.len())
            .map(|(shard, _)| shard.clone());
        let calls = groups.into_iter().map(|(shard, items)| {
            let n = if Some(&shard) == claimer.as_ref() {
                claim
            } else {
                0
            };
            async move {
                let (flags, claimed) = self.complete_shard(&shard, &items, n, at).await?;
                Ok::<_, Error>((
                    items
                        .into_iter()
                        .zip(flags)
                        .map(|((i, _), f)| (i, f))
                        .collect::<Vec<_>>(),
                    claimed,
                ))
            }
        });
        let mut parts = Vec::new();
        let mut claimed = Vec::new();
        for r in join_all(calls).await {
            let (p, c) = r?;
            parts.push(p);
            claimed.extend(c);
        }
        Ok((in_order(done.len(), parts), claimed))
    }

    /// One `complete.lua` call: the completions of one shard, then a claim of up to `claim`.
    async fn complete_shard(
        &self,
        shard: &Shard,
        items: &[(usize, &Completion)],
        claim: usize,
        at: At,
    ) -> Result<(Vec<bool>, Vec<Claimed>)> {
        let k = &self.inner.keys;
        let tag = shard.tag();
        let token_prefix = if claim > 0 {
            format!("{}-{:016x}", self.inner.worker_id, rand::random::<u64>())
        } else {
            String::new()
        };
        let keys = [
            k.processing(tag),
            k.completed(tag),
            k.stats(tag),
            k.events(tag),
            k.task_prefix(tag),
            k.queued(tag),
            k.scheduled(tag),
            k.retrying(tag),
            k.paused(tag),
            k.claim_record(tag, &token_prefix),
        ];
        let mut args = Vec::with_capacity(7 + 3 * items.len());
        args.extend([
            at.arg(),
            EVENTS_MAXLEN.to_string(),
            claim.to_string(),
            self.inner.lease.as_millis().to_string(),
            self.inner.worker_id.clone(),
            token_prefix.clone(),
            PROMOTE_LIMIT.to_string(),
        ]);
        for (_, c) in items {
            args.push(c.id.clone());
            args.push(c.lease.clone());
            args.push(c.result.to_string());
        }
        let written: Result<(Vec<redis::Value>, _)> = self
            .durable_script(&COMPLETE, &keys, &args, Durable::Anyway)
            .await;
        let (reply, confirmed) = match written {
            Ok(v) => v,
            Err(e @ Error::Unavailable(_)) if claim > 0 => {
                // As for a claim: what it may have leased is given back on the next claim.
                self.remember_unanswered(shard, token_prefix);
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        if let Err(why) = confirmed {
            // The completions are written on the primary; if it dies before a replica
            // has them, the tasks are recovered and run again (at least once).
            tracing::warn!(shard = %tag, %why, "completions not confirmed by a replica");
        }
        let n = items.len();
        if reply.len() < n {
            return Err(Error::Redis("complete returned too few flags".into()));
        }
        let flags = reply[..n]
            .iter()
            .map(|v| Ok(i64::from_redis_value(v.clone())? == 1))
            .collect::<Result<Vec<bool>>>()?;
        // After the flags: the claim's answer, {promoted, rows...}.
        let claimed = reply
            .get(n + 1..)
            .unwrap_or_default()
            .chunks_exact(ClaimRow::WIDTH)
            .map(|row| Ok(ClaimRow::decode(row)?.claimed(shard.task_type())))
            .collect::<Result<Vec<_>>>()?;
        Ok((flags, claimed))
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
        let groups = by_shard(self, task_type, failures.iter().map(|f| (f.id.clone(), f)))?;
        let calls = groups.into_iter().map(|(shard, items)| async move {
            let k = &self.inner.keys;
            let tag = shard.tag();
            let keys = [
                k.processing(tag),
                k.retrying(tag),
                k.failed(tag),
                k.cancelled(tag),
                k.stats(tag),
                k.events(tag),
                k.task_prefix(tag),
            ];
            let mut args = vec![
                at.arg(),
                q.backoff_base.as_millis().to_string(),
                q.backoff_max.as_millis().to_string(),
                EVENTS_MAXLEN.to_string(),
            ];
            for (_, f) in &items {
                args.push(f.id.clone());
                args.push(f.lease.clone());
                args.push(f.error.clone());
                args.push(if f.permanent { "permanent" } else { "retry" }.to_string());
                args.push(format!("{:.6}", rand::random::<f64>()));
            }
            let rows: Vec<redis::Value> = self.script(&FAIL, &keys, &args).await?;
            let mut out = Vec::with_capacity(rows.len());
            for ((i, _), row) in items.into_iter().zip(&rows) {
                let (status, kids) = outcome_pair(row)?;
                let outcome = match status.as_str() {
                    "retrying" => FailOutcome::Retrying,
                    "failed" => FailOutcome::Failed,
                    "cancelled" => FailOutcome::Cancelled,
                    _ => FailOutcome::Stale,
                };
                out.push((i, (outcome, kids)));
            }
            Ok::<_, Error>(out)
        });
        let parts = join_all(calls)
            .await
            .into_iter()
            .collect::<Result<Vec<_>>>()?;
        let rows = in_order(failures.len(), parts);
        let children: Vec<String> = rows
            .iter()
            .map(|(_, kids)| kids.clone())
            .filter(|k| !k.is_empty())
            .collect();
        if !children.is_empty() {
            self.cascade(children, at).await;
        }
        Ok(rows.into_iter().map(|(o, _)| o).collect())
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
        let groups = by_shard(
            self,
            task_type,
            held.iter().map(|h| (h.0.clone(), h.clone())),
        )?;
        let calls = groups.into_iter().map(|(shard, items)| async move {
            let k = &self.inner.keys;
            let tag = shard.tag();
            let keys = [
                k.processing(tag),
                k.queued(tag),
                k.cancelled(tag),
                k.stats(tag),
                k.events(tag),
                k.wake(tag),
                k.task_prefix(tag),
            ];
            let mut args = vec![at.arg(), EVENTS_MAXLEN.to_string()];
            for (_, (id, lease)) in &items {
                args.push(id.clone());
                args.push(lease.clone());
            }
            let rows: Vec<redis::Value> = self.script(&RELEASE, &keys, &args).await?;
            let mut out = Vec::with_capacity(rows.len());
            for ((i, _), row) in items.into_iter().zip(&rows) {
                let (outcome, kids) = outcome_pair(row)?;
                let outcome = match outcome.as_str() {
                    "released" => ReleaseOutcome::Released,
                    "cancelled" => ReleaseOutcome::Cancelled,
                    _ => ReleaseOutcome::Stale,
                };
                out.push((i, (outcome, kids)));
            }
            Ok::<_, Error>(out)
        });
        let parts = join_all(calls)
            .await
            .into_iter()
            .collect::<Result<Vec<_>>>()?;
        let rows = in_order(held.len(), parts);
        let children: Vec<String> = rows
            .iter()
            .map(|(_, kids)| kids.clone())
            .filter(|k| !k.is_empty())
            .collect();
        if !children.is_empty() {
            self.cascade(children, at).await;
        }
        Ok(rows.into_iter().map(|(o, _)| o).collect())
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
        let shard = self.shard_of(task_type, id)?;
        let k = &self.inner.keys;
        let tag = shard.tag();
        let keys = [
            k.processing(tag),
            k.scheduled(tag),
            k.cancelled(tag),
            k.stats(tag),
            k.events(tag),
            k.task_prefix(tag),
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
        let shard = self.shard_of(task_type, id)?;
        let k = &self.inner.keys;
        let keys = [k.events(shard.tag()), k.task_prefix(shard.tag())];
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
        let shard = self.shard_of(task_type, id)?;
        let keys = [self.inner.keys.task_prefix(shard.tag())];
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
