//! What every worker runs, with no leader (the scripts are idempotent): promote due tasks,
//! recover expired leases, trim finished tasks past retention. And the operator's and the
//! owner's controls: pause, resume, cancel.

use std::time::Duration;

use futures::future::join_all;

use super::conn::script;
use super::lease::CancelOutcome;
use super::shards::Shard;
use super::{Broker, EVENTS_MAXLEN, PROMOTE_LIMIT, RECOVER_LIMIT, TRIM_LIMIT};
use crate::clock::At;
use crate::error::{Error, Result};

type Script = std::sync::LazyLock<super::conn::Dual>;
static PROMOTE: Script = script!(
    "promote.lua",
    "now.lua",
    "band.lua",
    "promote.lua",
    "wake.lua"
);
static RECOVER: Script = script!(
    "recover.lua",
    "now.lua",
    "band.lua",
    "wake.lua",
    "outbox.lua"
);
static TRIM: Script = script!("trim.lua", "now.lua");
static PAUSE: Script = script!("pause.lua", "now.lua", "wake.lua");
static CANCEL: Script = script!("cancel.lua", "now.lua", "outbox.lua");

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

/// Cancels one task of a known shard: its outcome and, if it ended now, its children field.
pub(crate) async fn cancel_one(
    broker: &Broker,
    shard: &Shard,
    id: &str,
    at: At,
) -> Result<(CancelOutcome, Vec<String>)> {
    let k = &broker.inner.keys;
    let t = shard.tag();
    let keys = [
        k.queued(t),
        k.scheduled(t),
        k.retrying(t),
        k.cancelled(t),
        k.stats(t),
        k.events(t),
        k.task_prefix(t),
    ];
    let args = [at.arg(), id.to_string(), EVENTS_MAXLEN.to_string()];
    let (outcome, status, children): (String, String, String) =
        broker.script(&CANCEL, &keys, &args).await?;
    let children: Vec<String> = Some(children)
        .filter(|c| !c.is_empty())
        .into_iter()
        .collect();
    match outcome.as_str() {
        "cancelled" => Ok((CancelOutcome::Cancelled, children)),
        "requested" => Ok((CancelOutcome::Requested, children)),
        "terminal" => Err(Error::AlreadyTerminal {
            id: id.to_string(),
            status,
        }),
        _ => Err(Error::NotFound(id.to_string())),
    }
}

impl Broker {
    /// Moves due scheduled and retrying tasks of every queue (every shard) to `queued` and
    /// wakes idle workers (the scheduler's tick); returns how many moved.
    pub async fn promote(&self, at: impl Into<At>) -> Result<u64> {
        let at = at.into();
        let shards = self.all_shards();
        let calls = shards.iter().map(|s| async move {
            let t = s.tag();
            let k = &self.inner.keys;
            let keys = [
                k.queued(t),
                k.scheduled(t),
                k.retrying(t),
                k.events(t),
                k.wake(t),
                k.task_prefix(t),
            ];
            let args = [
                at.arg(),
                PROMOTE_LIMIT.to_string(),
                EVENTS_MAXLEN.to_string(),
            ];
            self.script::<u64>(&PROMOTE, &keys, &args).await
        });
        let mut total = 0;
        for r in join_all(calls).await {
            total += r?;
        }
        Ok(total)
    }

    /// Cancels a task wherever it is: waiting ones end at once, a running one is stopped by
    /// its worker. A task that ends now cancels the tasks it started (a course's lessons).
    /// [`Error::AlreadyTerminal`] (nothing changes) if it had finished.
    pub async fn cancel(&self, id: &str, at: impl Into<At>) -> Result<CancelOutcome> {
        let at = at.into();
        let shard = self
            .locate(id)
            .await?
            .ok_or_else(|| Error::NotFound(id.to_string()))?;
        let (outcome, children) = cancel_one(self, &shard, id, at).await?;
        if !children.is_empty() {
            self.cascade(children, at).await;
        }
        Ok(outcome)
    }

    /// Takes back, in every queue, leases past their deadline and the leases of `dead_workers`.
    pub async fn recover(
        &self,
        at: impl Into<At>,
        dead_workers: &[String],
    ) -> Result<RecoverReport> {
        self.recover_with(at.into(), Duration::ZERO, dead_workers)
            .await
    }

    /// Like [`Broker::recover`], and also takes back tasks whose attempt started more than
    /// `older_than` ago however fresh their lease (an operator's cleanup of stuck tasks).
    pub async fn recover_stuck(
        &self,
        at: impl Into<At>,
        older_than: Duration,
    ) -> Result<RecoverReport> {
        self.recover_with(at.into(), older_than.max(Duration::from_millis(1)), &[])
            .await
    }

    async fn recover_with(
        &self,
        at: At,
        older_than: Duration,
        dead_workers: &[String],
    ) -> Result<RecoverReport> {
        let shards = self.all_shards();
        let calls = shards.iter().map(|s| async move {
            let t = s.tag();
            let k = &self.inner.keys;
            let keys = [
                k.processing(t),
                k.queued(t),
                k.failed(t),
                k.cancelled(t),
                k.stats(t),
                k.events(t),
                k.wake(t),
                k.task_prefix(t),
            ];
            let mut args = vec![
                at.arg(),
                RECOVER_LIMIT.to_string(),
                EVENTS_MAXLEN.to_string(),
                older_than.as_millis().to_string(),
            ];
            args.extend(dead_workers.iter().cloned());
            let r: (Vec<String>, Vec<String>, Vec<String>, Vec<String>) =
                self.script(&RECOVER, &keys, &args).await?;
            Ok::<_, Error>((s.task_type(), r))
        });
        let mut report = RecoverReport::default();
        let mut children = Vec::new();
        for r in join_all(calls).await {
            let (t, (requeued, failed, cancelled, kids)) = r?;
            let tag = |ids: Vec<String>| ids.into_iter().map(move |id| (t.to_string(), id));
            report.requeued.extend(tag(requeued));
            report.failed.extend(tag(failed));
            report.cancelled.extend(tag(cancelled));
            children.extend(kids);
        }
        if !children.is_empty() {
            self.cascade(children, at).await;
        }
        Ok(report)
    }

    /// Removes finished tasks past their retention from every queue; returns (type, id) of
    /// each removed task.
    pub async fn trim(&self, at: impl Into<At>) -> Result<Vec<(String, String)>> {
        let at = at.into();
        let day = 24 * 3600 * 1000_i64;
        let r = &self.inner.retention;
        let shards = self.all_shards();
        let calls = shards.iter().map(|s| async move {
            let t = s.tag();
            let k = &self.inner.keys;
            let keys = [
                k.completed(t),
                k.failed(t),
                k.cancelled(t),
                k.task_prefix(t),
                k.account_prefix(t),
                k.account_bytes(t),
            ];
            let args = [
                at.arg(),
                (r.completed_days as i64 * day).to_string(),
                (r.failed_days as i64 * day).to_string(),
                (r.cancelled_days as i64 * day).to_string(),
                TRIM_LIMIT.to_string(),
            ];
            let ids: Vec<String> = self.script(&TRIM, &keys, &args).await?;
            Ok::<_, Error>(
                ids.into_iter()
                    .map(|id| (s.task_type().to_string(), id))
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
    pub async fn pause(&self, task_type: Option<&str>, at: impl Into<At>) -> Result<()> {
        self.set_paused(task_type, true, at.into()).await
    }

    /// Resumes claiming for one type, or for all with `None`, and wakes idle workers.
    pub async fn resume(&self, task_type: Option<&str>, at: impl Into<At>) -> Result<()> {
        self.set_paused(task_type, false, at.into()).await
    }

    async fn set_paused(&self, task_type: Option<&str>, pause: bool, at: At) -> Result<()> {
        let shards = match task_type {
            Some(t) => self.shards(t)?,
            None => self.all_shards(),
        };
        let calls = shards.iter().map(|s| async move {
            let t = s.tag();
            let k = &self.inner.keys;
            let keys = [k.paused(t), k.events(t), k.wake(t)];
            let args = [
                at.arg(),
                if pause { "1" } else { "0" }.to_string(),
                EVENTS_MAXLEN.to_string(),
            ];
            self.script::<i64>(&PAUSE, &keys, &args).await
        });
        for r in join_all(calls).await {
            r?;
        }
        Ok(())
    }
}
