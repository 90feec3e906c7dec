//! Dead letters: failed (or cancelled) tasks retried in bulk by a filter (issue 13, part 4),
//! each through the one-task retry (`retry.lua`, its children too), oldest first, bounded per
//! call. A retried task leaves its finished set, so the next call with the same filter picks
//! up where this one stopped.

use futures::StreamExt;

use super::{Broker, MAX_BATCH};
use crate::clock::At;
use crate::error::{Error, Result};
use crate::task::{Millis, TaskStatus};

/// The most tasks one bulk retry retries.
pub const MAX_BULK_RETRY: usize = MAX_BATCH;
/// How many tasks a bulk retry retries when the caller names no limit.
pub const DEFAULT_BULK_RETRY: usize = 100;
/// How many retries one call runs at once.
const RETRY_CONCURRENCY: usize = 16;

/// Which finished tasks a bulk retry takes.
#[derive(Debug, Clone)]
pub struct RetryFilter {
    /// One type, or every registered one.
    pub task_type: Option<String>,
    /// `Failed` (the dead letters, the default) or `Cancelled`.
    pub status: TaskStatus,
    /// Finished at or after this (ms since the epoch).
    pub since: Option<Millis>,
    /// Finished at or before this (ms since the epoch).
    pub until: Option<Millis>,
    /// At most this many (1 to [`MAX_BULK_RETRY`]).
    pub limit: usize,
}

impl Default for RetryFilter {
    fn default() -> Self {
        RetryFilter {
            task_type: None,
            status: TaskStatus::Failed,
            since: None,
            until: None,
            limit: DEFAULT_BULK_RETRY,
        }
    }
}

/// What a bulk retry did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BulkRetried {
    /// The tasks put back in their queues, oldest finish first.
    pub task_ids: Vec<String>,
    /// Whether more tasks matched than were retried (call again for the rest).
    pub more: bool,
}

impl RetryFilter {
    /// Checks the filter; the error names the field.
    pub fn validate(&self) -> Result<()> {
        if !matches!(self.status, TaskStatus::Failed | TaskStatus::Cancelled) {
            return Err(Error::invalid("status", "\"failed\" or \"cancelled\""));
        }
        if !(1..=MAX_BULK_RETRY).contains(&self.limit) {
            return Err(Error::invalid(
                "limit",
                format!("1-{MAX_BULK_RETRY} tasks per call"),
            ));
        }
        if self.since.is_some_and(|s| s < 0) {
            return Err(Error::invalid("since", "milliseconds since the Unix epoch"));
        }
        if self.until.is_some_and(|u| u < 0) {
            return Err(Error::invalid("until", "milliseconds since the Unix epoch"));
        }
        if let (Some(s), Some(u)) = (self.since, self.until) {
            if u < s {
                return Err(Error::invalid("until", "must not be before since"));
            }
        }
        Ok(())
    }
}

impl Broker {
    /// Retries the finished tasks a filter selects (by type, state and finish time), oldest
    /// first, at most `filter.limit`: each as [`Broker::retry`] does (a new attempt budget, its
    /// old ending kept, its failed children too). A task retried meanwhile by someone else is
    /// passed over.
    pub async fn retry_matching(
        &self,
        filter: &RetryFilter,
        at: impl Into<At>,
    ) -> Result<BulkRetried> {
        filter.validate()?;
        let at = at.into();
        let types: Vec<String> = match &filter.task_type {
            Some(t) => {
                self.queue_config(t)?;
                vec![t.clone()]
            }
            None => self.queue_names().into_iter().map(String::from).collect(),
        };
        let k = &self.inner.keys;
        let min = filter.since.map_or("-inf".to_string(), |s| s.to_string());
        let max = filter.until.map_or("+inf".to_string(), |u| u.to_string());
        let mut cmds = Vec::new();
        for t in &types {
            for shard in self.shards(t)? {
                let key = match filter.status {
                    TaskStatus::Cancelled => k.cancelled(shard.tag()),
                    _ => k.failed(shard.tag()),
                };
                let mut c = redis::cmd("ZRANGEBYSCORE");
                c.arg(&key)
                    .arg(&min)
                    .arg(&max)
                    .arg("WITHSCORES")
                    .arg("LIMIT")
                    .arg(0)
                    .arg(filter.limit + 1);
                cmds.push((key, c));
            }
        }
        let found: Vec<Vec<(String, f64)>> = self.fanout(cmds).await?;
        let mut all: Vec<(String, f64)> = found.into_iter().flatten().collect();
        all.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
        let more = all.len() > filter.limit;
        all.truncate(filter.limit);
        let results: Vec<(String, Result<()>)> = futures::stream::iter(all)
            .map(|(id, _)| async move {
                let r = self.retry(&id, at).await;
                (id, r)
            })
            .buffered(RETRY_CONCURRENCY)
            .collect()
            .await;
        let mut out = BulkRetried {
            more,
            ..BulkRetried::default()
        };
        let mut trouble = None;
        for (id, r) in results {
            match r {
                Ok(()) => out.task_ids.push(id),
                // Retried (or removed) by someone else meanwhile.
                Err(Error::NotRetryable { .. } | Error::NotFound(_)) => {}
                Err(e) => {
                    trouble.get_or_insert(e);
                }
            }
        }
        match trouble {
            Some(e) if out.task_ids.is_empty() => Err(e),
            Some(_) => {
                out.more = true;
                Ok(out)
            }
            None => Ok(out),
        }
    }
}
