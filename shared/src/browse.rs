//! Reads for browsing tasks by state and by owner, for the API's lists and the dashboard: a
//! state's set in its own order (claim order for `queued`, newest first for finished states),
//! one account's part of it found by a bounded walk, the recent finishes of a type, and a short
//! record of many tasks (owner, status, times) in one round trip. Read-only, like [`inspect`];
//! every key comes from [`crate::keys`] through [`Broker::state_key`] and [`Keys`].
//!
//! [`inspect`]: crate::inspect
//! [`Keys`]: crate::keys::Keys

use crate::broker::Broker;
use crate::error::Result;
use crate::inspect::{QueuedEntry, QUEUE_SCAN_PAGE};
use crate::task::{Millis, TaskStatus};

/// Who owns a task, where it is and when it moved: the fields of its hash that lists filter by
/// and charts are drawn from, without its request or result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskBrief {
    pub id: String,
    pub account_id: Option<String>,
    pub user_id: Option<String>,
    pub status: Option<TaskStatus>,
    pub created_at: Option<Millis>,
    pub started_at: Option<Millis>,
    pub finished_at: Option<Millis>,
}

/// Whether a state's set is listed newest first: the finished states, whose score is the finish
/// time. The waiting and running states are listed in the order they will move (claim order,
/// due time, lease deadline).
pub fn newest_first(s: TaskStatus) -> bool {
    s.is_terminal()
}

impl Broker {
    /// A range of a state's set in its listing order, with scores.
    async fn state_range(
        &self,
        task_type: &str,
        status: TaskStatus,
        start: usize,
        stop: usize,
    ) -> Result<Vec<(String, f64)>> {
        let key = self.state_key(task_type, status);
        let rev = newest_first(status);
        self.with_conn(async |c| {
            let mut cmd = redis::cmd("ZRANGE");
            cmd.arg(&key).arg(start).arg(stop);
            if rev {
                cmd.arg("REV");
            }
            cmd.arg("WITHSCORES").query_async(c).await
        })
        .await
    }

    /// The first `limit` tasks of one type in a state (every account's), in the state's listing
    /// order ([`newest_first`]), with their places in it.
    pub async fn state_head(
        &self,
        task_type: &str,
        status: TaskStatus,
        limit: usize,
    ) -> Result<Vec<QueuedEntry>> {
        self.queue_config(task_type)?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let entries = self.state_range(task_type, status, 0, limit - 1).await?;
        Ok(entries
            .into_iter()
            .enumerate()
            .map(|(i, (id, score))| QueuedEntry {
                id,
                score,
                position: i as u64,
            })
            .collect())
    }

    /// Up to `limit` tasks of one account and type in a state, in the state's listing order,
    /// with their places in it: the set is walked in pages and the account's ids kept
    /// (`ZMSCORE` on its index, the same hash tag). Bounded: at most `max_scan` entries of the
    /// set per call. The flag says whether the walk reached the end (or the limit) rather than
    /// stopping at `max_scan`.
    pub async fn state_of_account(
        &self,
        task_type: &str,
        status: TaskStatus,
        account_id: &str,
        limit: usize,
        max_scan: usize,
    ) -> Result<(Vec<QueuedEntry>, bool)> {
        self.queue_config(task_type)?;
        let index = self.keys().account(task_type, account_id);
        let mut out = Vec::new();
        let mut start = 0usize;
        while out.len() < limit {
            if start >= max_scan {
                return Ok((out, false));
            }
            let page = QUEUE_SCAN_PAGE.min(max_scan - start);
            let entries = self
                .state_range(task_type, status, start, start + page - 1)
                .await?;
            if entries.is_empty() {
                break;
            }
            let ids: Vec<&str> = entries.iter().map(|(id, _)| id.as_str()).collect();
            let mine: Vec<Option<f64>> = self
                .with_conn(async |c| {
                    redis::cmd("ZMSCORE")
                        .arg(&index)
                        .arg(&ids)
                        .query_async(c)
                        .await
                })
                .await?;
            for (offset, ((id, score), m)) in entries.iter().zip(mine).enumerate() {
                if m.is_some() && out.len() < limit {
                    out.push(QueuedEntry {
                        id: id.clone(),
                        score: *score,
                        position: (start + offset) as u64,
                    });
                }
            }
            let short = entries.len() < page;
            start += entries.len();
            if short {
                break;
            }
        }
        Ok((out, true))
    }

    /// Tasks of one type that finished in `status` (completed, failed or cancelled) at or after
    /// `since`: how many (every account's), and the newest `limit` of them as (id, finish ms).
    pub async fn finished_since(
        &self,
        task_type: &str,
        status: TaskStatus,
        since: Millis,
        limit: usize,
    ) -> Result<(u64, Vec<(String, Millis)>)> {
        self.queue_config(task_type)?;
        let key = self.state_key(task_type, status);
        let mut pipe = redis::pipe();
        pipe.cmd("ZCOUNT").arg(&key).arg(since).arg("+inf");
        pipe.cmd("ZRANGE")
            .arg(&key)
            .arg("+inf")
            .arg(since)
            .arg("BYSCORE")
            .arg("REV")
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .arg("WITHSCORES");
        let (count, entries): (u64, Vec<(String, f64)>) =
            self.with_conn(async |c| pipe.query_async(c).await).await?;
        Ok((
            count,
            entries
                .into_iter()
                .map(|(id, ms)| (id, ms as Millis))
                .collect(),
        ))
    }

    /// How many tasks of one type finished in `status` in each of `buckets` consecutive
    /// windows of `bucket_ms` from `since` (every account's): one round trip of `ZCOUNT`s on the
    /// state's set, whose score is the finish time.
    pub async fn finished_counts(
        &self,
        task_type: &str,
        status: TaskStatus,
        since: Millis,
        bucket_ms: Millis,
        buckets: usize,
    ) -> Result<Vec<u64>> {
        self.queue_config(task_type)?;
        if buckets == 0 {
            return Ok(Vec::new());
        }
        let key = self.state_key(task_type, status);
        let mut pipe = redis::pipe();
        for i in 0..buckets as i64 {
            let from = since + i * bucket_ms;
            pipe.cmd("ZCOUNT")
                .arg(&key)
                .arg(from)
                .arg(format!("({}", from + bucket_ms));
        }
        self.with_conn(async |c| pipe.query_async(c).await).await
    }

    /// The brief of each task of one type (owner, status, times), in the order given; `None`
    /// for an id that no longer exists. One round trip of `HMGET`s.
    pub async fn briefs(&self, task_type: &str, ids: &[String]) -> Result<Vec<Option<TaskBrief>>> {
        self.queue_config(task_type)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.cmd("HMGET")
                .arg(self.keys().task(task_type, id))
                .arg("status")
                .arg("account_id")
                .arg("user_id")
                .arg("created_at")
                .arg("started_at")
                .arg("finished_at");
        }
        type Row = (
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
        );
        let rows: Vec<Row> = self.with_conn(async |c| pipe.query_async(c).await).await?;
        let ms = |v: Option<String>| v.and_then(|s| s.parse::<Millis>().ok());
        let text = |v: Option<String>| v.filter(|s| !s.is_empty());
        Ok(ids
            .iter()
            .zip(rows)
            .map(
                |(id, (status, account, user, created, started, finished))| {
                    let status = status?;
                    Some(TaskBrief {
                        id: id.clone(),
                        status: status.parse().ok(),
                        account_id: text(account),
                        user_id: text(user),
                        created_at: ms(created),
                        started_at: ms(started),
                        finished_at: ms(finished),
                    })
                },
            )
            .collect())
    }
}
