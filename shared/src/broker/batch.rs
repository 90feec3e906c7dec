//! Batches (issue 13): up to [`MAX_BATCH`] tasks of any types enqueued all or none, read as
//! one (counts by status, progress, done), cancelled as one, and finished once fleet-wide.
//!
//! A batch's tasks live in many shards (slots), so no one script can write them all. The
//! library makes it all or none in three steps: every task is validated first (the error
//! names `tasks[i].<field>`; nothing is written); then the batch record and every task are
//! written *held* (`scheduled` an hour ahead: no worker claims them); then each shard's share
//! is released (`batch_release.lua`: `queued`, or `scheduled` at the task's own `run_at`). If
//! a write fails, what was written is taken back (`batch_discard.lua`) and the record deleted.
//! (A process that dies between writing and releasing leaves its held tasks to run when the
//! hold ends, an hour later: late, never lost.)
//!
//! The batch's record is in the slot of its first task's shard; its id names that shard
//! (`<type>.<shard>.batch-<uuid v7>`), so it is found with no lookup. Completion: each task's
//! terminal script leaves a note in its own shard's delivery queue; the worker that takes the
//! note counts it on the batch ([`Broker::carry_note`]), and the one count that sees every task
//! done, and wins `HSETNX finished_at`, writes the batch's `batch.finished` delivery: once.

use std::collections::HashMap;

use futures::future::join_all;
use redis::Cmd;

use super::conn::{script, Dual};
use super::{validate_ident, Broker, Shard, EVENTS_MAXLEN, MAX_BATCH};
use crate::browse::on;
use crate::clock::At;
use crate::error::{Error, Result};
use crate::task::{Millis, NewTask, Task, TaskStatus};
use crate::webhooks::DeliveryView;

static RELEASE: std::sync::LazyLock<Dual> =
    script!("batch_release.lua", "now.lua", "band.lua", "wake.lua");
static DISCARD: std::sync::LazyLock<Dual> = script!("batch_discard.lua");

/// How far ahead held tasks are scheduled while the rest of their batch is written.
pub const HOLD_MS: Millis = 3_600_000;

/// A batch to enqueue: its tasks (each as for [`Broker::enqueue`]; their owner is the batch's)
/// and the URL told when every task has ended.
#[derive(Debug, Clone, Default)]
pub struct NewBatch {
    pub tasks: Vec<NewTask>,
    pub account_id: String,
    pub user_id: String,
    pub webhook_url: Option<String>,
}

/// What [`Broker::enqueue_batch`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchCreated {
    pub batch_id: String,
    /// In the order of the tasks given.
    pub task_ids: Vec<String>,
}

/// A batch's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub id: String,
    pub account_id: String,
    pub user_id: String,
    pub task_ids: Vec<String>,
    pub webhook_url: Option<String>,
    pub created_at: Millis,
    /// `open` once released (`pending` while being written).
    pub state: String,
    /// When its last task ended (every task terminal, counted once).
    pub finished_at: Option<Millis>,
    pub cancel_requested_at: Option<Millis>,
}

impl Batch {
    fn from_hash(id: &str, mut h: HashMap<String, String>) -> Option<Batch> {
        let account_id = h.remove("account_id")?;
        let num = |h: &HashMap<String, String>, f: &str| h.get(f).and_then(|v| v.parse().ok());
        Some(Batch {
            id: id.to_string(),
            user_id: h.remove("user_id").unwrap_or_default(),
            task_ids: h
                .remove("ids")
                .map(|s| s.split(',').map(str::to_string).collect())
                .unwrap_or_default(),
            webhook_url: h.remove("webhook_url").filter(|u| !u.is_empty()),
            created_at: num(&h, "created_at").unwrap_or(0),
            state: h.remove("state").unwrap_or_default(),
            finished_at: num(&h, "finished_at"),
            cancel_requested_at: num(&h, "cancel_requested_at"),
            account_id,
        })
    }
}

/// Whether an id is a batch's (`<type>.<shard>.batch-<uuid>`).
pub fn is_batch_id(id: &str) -> bool {
    crate::task::is_task_id(id)
        && id
            .splitn(3, '.')
            .nth(2)
            .is_some_and(|r| r.starts_with("batch-"))
}

impl Broker {
    /// Enqueues a batch all or none (see the module's notes); the batch's id and its tasks'.
    pub async fn enqueue_batch(&self, batch: NewBatch, at: impl Into<At>) -> Result<BatchCreated> {
        let at = at.into();
        let n = batch.tasks.len();
        if n == 0 || n > MAX_BATCH {
            return Err(Error::invalid(
                "tasks",
                format!("1-{MAX_BATCH} tasks per batch (got {n})"),
            ));
        }
        validate_ident("account_id", &batch.account_id, 128)?;
        validate_ident("user_id", &batch.user_id, 128)?;
        if let Some(url) = &batch.webhook_url {
            crate::webhooks::validate_url("webhook_url", url)?;
        }
        let now = at.estimate();
        let hold_until = now + HOLD_MS;
        let at_field = |i: usize, e: Error| match e {
            Error::InvalidInput { field, message } => {
                Error::invalid(format!("tasks[{i}].{field}"), message)
            }
            Error::UnknownTaskType(t) => Error::invalid(
                format!("tasks[{i}].task_type"),
                format!("unknown task type {t:?}"),
            ),
            other => other,
        };
        // 1. Validate every task; give each its id and the batch's owner; hold it.
        let mut tasks = Vec::with_capacity(n);
        let mut wanted: Vec<Millis> = Vec::with_capacity(n);
        for (i, mut t) in batch.tasks.into_iter().enumerate() {
            if t.id.is_some() || t.idempotency_key.is_some() {
                return Err(Error::invalid(
                    format!("tasks[{i}].id"),
                    "a batch's tasks get their ids from the batch (no id, no Idempotency-Key)",
                ));
            }
            if let Some(url) = &t.webhook_url {
                crate::webhooks::validate_url("webhook_url", url).map_err(|e| at_field(i, e))?;
            }
            let id = self
                .new_id(&t.task_type, &batch.account_id, None)
                .map_err(|e| at_field(i, e))?;
            t.id = Some(id);
            t.account_id = batch.account_id.clone();
            t.user_id = batch.user_id.clone();
            wanted.push(t.run_at.unwrap_or(0));
            t.run_at = Some(hold_until.max(t.run_at.unwrap_or(0)));
            self.check_new(&t).map_err(|e| at_field(i, e))?;
            tasks.push(t);
        }
        let first = self
            .route(tasks[0].id.as_deref().expect("set above"))
            .expect("our id");
        let batch_id = format!(
            "{}.{}.batch-{}",
            first.task_type(),
            first.index(),
            uuid::Uuid::now_v7()
        );
        let task_ids: Vec<String> = tasks.iter().map(|t| t.id.clone().expect("set")).collect();
        for t in &mut tasks {
            t.batch_id = Some(batch_id.clone());
        }
        // 2. The record, then every task, held.
        let key = self.keys().batch(first.tag(), &batch_id);
        let mut fields = vec![
            ("id", batch_id.clone()),
            ("account_id", batch.account_id.clone()),
            ("user_id", batch.user_id.clone()),
            ("total", n.to_string()),
            ("ids", task_ids.join(",")),
            ("created_at", now.to_string()),
            ("state", "pending".to_string()),
        ];
        if let Some(url) = &batch.webhook_url {
            fields.push(("webhook_url", url.clone()));
        }
        self.with_conn(async |c| {
            redis::cmd("HSET")
                .arg(&key)
                .arg(&fields)
                .query_async::<()>(c)
                .await
        })
        .await?;
        let written = self.enqueue_many(tasks, at).await;
        if let Err(e) = written {
            self.discard_batch(&batch_id, &task_ids).await;
            let _ = self
                .with_conn(async |c| redis::cmd("DEL").arg(&key).query_async::<()>(c).await)
                .await;
            return Err(e);
        }
        // 3. Release each shard's share.
        let mut by_shard: HashMap<Shard, Vec<String>> = HashMap::new();
        for (id, run_at) in task_ids.iter().zip(&wanted) {
            let shard = self.route(id).expect("our id");
            let v = by_shard.entry(shard).or_default();
            v.push(id.clone());
            v.push(run_at.to_string());
        }
        let releases = join_all(by_shard.into_iter().map(|(shard, pairs)| {
            let batch_id = batch_id.clone();
            async move {
                let k = self.keys();
                let t = shard.tag();
                let keys = [
                    k.queued(t),
                    k.scheduled(t),
                    k.events(t),
                    k.wake(t),
                    k.task_prefix(t),
                ];
                let mut args = vec![at.arg(), batch_id, EVENTS_MAXLEN.to_string()];
                args.extend(pairs);
                let mut tries = 0;
                loop {
                    match self.script::<i64>(&RELEASE, &keys, &args).await {
                        Err(Error::Unavailable(_)) if tries < 3 => tries += 1,
                        other => return other,
                    }
                }
            }
        }))
        .await;
        for r in releases {
            r?;
        }
        self.with_conn(async |c| {
            redis::cmd("HSET")
                .arg(&key)
                .arg("state")
                .arg("open")
                .query_async::<()>(c)
                .await
        })
        .await?;
        Ok(BatchCreated { batch_id, task_ids })
    }

    /// Takes back the held tasks of a batch whose writing failed (best effort: what cannot be
    /// reached now runs when its hold ends).
    async fn discard_batch(&self, batch_id: &str, ids: &[String]) {
        let mut by_shard: HashMap<Shard, Vec<String>> = HashMap::new();
        for id in ids {
            if let Some(s) = self.route(id) {
                by_shard.entry(s).or_default().push(id.clone());
            }
        }
        for (shard, ids) in by_shard {
            let k = self.keys();
            let t = shard.tag();
            let keys = [
                k.scheduled(t),
                k.stats(t),
                k.account_bytes(t),
                k.task_prefix(t),
                k.account_prefix(t),
            ];
            let mut args = vec![batch_id.to_string()];
            args.extend(ids);
            if let Err(e) = self.script::<i64>(&DISCARD, &keys, &args).await {
                tracing::warn!(batch = %batch_id, error = %e, "held tasks of a failed batch not taken back");
            }
        }
    }

    /// A batch's record, if it exists.
    pub async fn batch(&self, batch_id: &str) -> Result<Option<Batch>> {
        if !is_batch_id(batch_id) {
            return Ok(None);
        }
        let Some(shard) = self.route(batch_id) else {
            return Ok(None);
        };
        let key = self.keys().batch(shard.tag(), batch_id);
        let h: HashMap<String, String> = self
            .with_conn(async |c| redis::cmd("HGETALL").arg(&key).query_async(c).await)
            .await?;
        Ok(Batch::from_hash(batch_id, h))
    }

    /// Each of the batch's tasks' status (a task trimmed by retention is missing).
    pub async fn batch_statuses(&self, batch: &Batch) -> Result<HashMap<String, TaskStatus>> {
        self.statuses(&batch.task_ids).await
    }

    /// The batch's tasks at positions `offset..offset + limit` of its list.
    pub async fn batch_tasks(
        &self,
        batch: &Batch,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<Task>> {
        let ids: Vec<&String> = batch.task_ids.iter().skip(offset).take(limit).collect();
        let cmds = ids
            .iter()
            .filter_map(|id| {
                let sh = self.route(id)?;
                Some(on!(self.keys().task(sh.tag(), id), "HGETALL"))
            })
            .collect();
        let hashes: Vec<HashMap<String, String>> = self.fanout(cmds).await?;
        let mut out = Vec::with_capacity(hashes.len());
        for h in hashes {
            out.extend(Task::from_hash(h)?);
        }
        Ok(out)
    }

    /// Cancels every task of the batch that has not finished (waiting ones at once, running
    /// ones when their worker next beats). (cancelled now, cancel requested).
    pub async fn cancel_batch(&self, batch: &Batch, at: impl Into<At>) -> Result<(u64, u64)> {
        let at = at.into();
        let Some(shard) = self.route(&batch.id) else {
            return Err(Error::NotFound(batch.id.clone()));
        };
        let key = self.keys().batch(shard.tag(), &batch.id);
        let now = at.estimate();
        self.with_conn(async |c| {
            redis::cmd("HSETNX")
                .arg(&key)
                .arg("cancel_requested_at")
                .arg(now)
                .query_async::<()>(c)
                .await
        })
        .await?;
        let statuses = self.batch_statuses(batch).await?;
        let open: Vec<&String> = batch
            .task_ids
            .iter()
            .filter(|id| statuses.get(*id).is_some_and(|s| !s.is_terminal()))
            .collect();
        let (mut cancelled, mut requested) = (0, 0);
        for chunk in open.chunks(64) {
            let outcomes = join_all(chunk.iter().map(|id| self.cancel(id, at))).await;
            for o in outcomes {
                match o {
                    Ok(crate::CancelOutcome::Cancelled) => cancelled += 1,
                    Ok(crate::CancelOutcome::Requested) => requested += 1,
                    Err(Error::NotFound(_)) | Err(Error::AlreadyTerminal { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok((cancelled, requested))
    }

    /// The batch's `batch.finished` delivery, once it finished (with a webhook_url).
    pub async fn batch_webhook(&self, batch: &Batch) -> Result<Option<DeliveryView>> {
        let Some(shard) = self.route(&batch.id) else {
            return Ok(None);
        };
        Ok(self
            .deliveries(&shard, &[format!("{}.finished", batch.id)])
            .await?
            .pop())
    }
}
