//! Read-only queries for the API, dashboards and tests: one task, queue status, lists.
//! Nothing here changes a task; writes go through [`crate::broker`].

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::broker::Broker;
use crate::error::{Error, Result};
use crate::task::{Millis, Task, TaskStatus};

/// One queue's counts by state, whether it is paused, and its counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueStatus {
    pub task_type: String,
    /// Every state of [`TaskStatus`], by its name.
    pub counts: BTreeMap<String, u64>,
    pub paused: bool,
    /// The `stats` hash: enqueued, started, completed, failed, retried, cancelled, recovered, busy_ms.
    pub stats: BTreeMap<String, i64>,
}

/// How many queue entries one read of [`Broker::queued_of_account`] takes.
pub const QUEUE_SCAN_PAGE: usize = 1_000;

/// A queued task's place: its id, its score (band × 10^13 + enqueue ms) and how many tasks of
/// its type run before it.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedEntry {
    pub id: String,
    pub score: f64,
    pub position: u64,
}

impl QueueStatus {
    pub fn count(&self, s: TaskStatus) -> u64 {
        self.counts.get(s.as_str()).copied().unwrap_or(0)
    }
}

impl Broker {
    /// Every registered queue's status, in one round trip.
    pub async fn status(&self) -> Result<Vec<QueueStatus>> {
        let names = self.queue_names();
        let k = self.keys();
        let mut pipe = redis::pipe();
        for t in &names {
            for s in TaskStatus::ALL {
                pipe.cmd("ZCARD").arg(self.state_key(t, s));
            }
            pipe.cmd("EXISTS").arg(k.paused(t));
            pipe.cmd("HGETALL").arg(k.stats(t));
        }
        let values: Vec<redis::Value> = self.with_conn(async |c| pipe.query_async(c).await).await?;
        let per = TaskStatus::ALL.len() + 2;
        let mut out = Vec::with_capacity(names.len());
        for (i, t) in names.into_iter().enumerate() {
            let row = &values[i * per..(i + 1) * per];
            let mut counts = BTreeMap::new();
            for (j, s) in TaskStatus::ALL.into_iter().enumerate() {
                let n: u64 = redis::from_redis_value(row[j].clone())?;
                counts.insert(s.as_str().to_string(), n);
            }
            let paused: i64 = redis::from_redis_value(row[per - 2].clone())?;
            let stats: BTreeMap<String, i64> = redis::from_redis_value(row[per - 1].clone())?;
            out.push(QueueStatus {
                task_type: t.to_string(),
                counts,
                paused: paused == 1,
                stats,
            });
        }
        Ok(out)
    }

    /// One account's tasks of every registered queue by state, in one round trip: per type and
    /// state, `ZINTERCARD` of the state's set and the account's index (`tf:{T}:account:<a>`,
    /// the same hash tag, so one Cluster slot). Each count stops at `limit` (a count equal to
    /// it means at least that many). Redis walks the smaller of the two sets for each, so the
    /// work is bounded by the account's own index and the state's set, never the whole keyspace.
    pub async fn account_counts(
        &self,
        account_id: &str,
        limit: u64,
    ) -> Result<Vec<(String, BTreeMap<String, u64>)>> {
        let names = self.queue_names();
        let k = self.keys();
        let mut pipe = redis::pipe();
        for t in &names {
            let index = k.account(t, account_id);
            for s in TaskStatus::ALL {
                pipe.cmd("ZINTERCARD")
                    .arg(2)
                    .arg(self.state_key(t, s))
                    .arg(&index)
                    .arg("LIMIT")
                    .arg(limit);
            }
        }
        let values: Vec<u64> = self.with_conn(async |c| pipe.query_async(c).await).await?;
        let per = TaskStatus::ALL.len();
        Ok(names
            .into_iter()
            .enumerate()
            .map(|(i, t)| {
                let counts = TaskStatus::ALL
                    .into_iter()
                    .zip(&values[i * per..(i + 1) * per])
                    .map(|(s, n)| (s.as_str().to_string(), *n))
                    .collect();
                (t.to_string(), counts)
            })
            .collect())
    }

    /// How many tasks of each registered queue completed at or after `since` (ms), in one
    /// round trip: throughput over a recent window.
    pub async fn completed_since(&self, since: Millis) -> Result<HashMap<String, u64>> {
        let names = self.queue_names();
        let mut pipe = redis::pipe();
        for t in &names {
            pipe.cmd("ZCOUNT")
                .arg(self.keys().completed(t))
                .arg(since)
                .arg("+inf");
        }
        let counts: Vec<u64> = self.with_conn(async |c| pipe.query_async(c).await).await?;
        Ok(names.into_iter().map(String::from).zip(counts).collect())
    }

    /// The set that holds the ids of a type in a state.
    pub fn state_key(&self, task_type: &str, s: TaskStatus) -> String {
        let k = self.keys();
        match s {
            TaskStatus::Scheduled => k.scheduled(task_type),
            TaskStatus::Queued => k.queued(task_type),
            TaskStatus::Processing => k.processing(task_type),
            TaskStatus::Retrying => k.retrying(task_type),
            TaskStatus::Completed => k.completed(task_type),
            TaskStatus::Failed => k.failed(task_type),
            TaskStatus::Cancelled => k.cancelled(task_type),
        }
    }

    /// One task by id, looked up in every registered queue in one round trip.
    pub async fn get(&self, id: &str) -> Result<Option<Task>> {
        let names = self.queue_names();
        let mut pipe = redis::pipe();
        for t in &names {
            pipe.cmd("HGETALL").arg(self.keys().task(t, id));
        }
        let hashes: Vec<HashMap<String, String>> =
            self.with_conn(async |c| pipe.query_async(c).await).await?;
        for h in hashes {
            if let Some(t) = Task::from_hash(h)? {
                return Ok(Some(t));
            }
        }
        Ok(None)
    }

    /// Tasks of one type by id, in the order given; ids that no longer exist are skipped.
    pub async fn get_many(&self, task_type: &str, ids: &[String]) -> Result<Vec<Task>> {
        self.queue_config(task_type)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.cmd("HGETALL").arg(self.keys().task(task_type, id));
        }
        let hashes: Vec<HashMap<String, String>> =
            self.with_conn(async |c| pipe.query_async(c).await).await?;
        let mut out = Vec::with_capacity(ids.len());
        for h in hashes {
            out.extend(Task::from_hash(h)?);
        }
        Ok(out)
    }

    /// Up to `limit` ready tasks of one type, in the order claim takes them.
    pub async fn list_queued(&self, task_type: &str, limit: usize) -> Result<Vec<Task>> {
        self.queue_config(task_type)?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let key = self.keys().queued(task_type);
        let ids: Vec<String> = self
            .with_conn(async |c| {
                redis::cmd("ZRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(limit as i64 - 1)
                    .query_async(c)
                    .await
            })
            .await?;
        self.get_many(task_type, &ids).await
    }

    /// Up to `limit` queued tasks of one account and type in the order claim takes them, with
    /// their queue positions, read by walking the queue in pages and keeping the account's ids
    /// (`ZMSCORE` on its index): bounded work, at most `max_scan` queue entries per call.
    /// The flag says whether the walk reached the end of the queue (or the limit) rather
    /// than stopping at `max_scan`.
    pub async fn queued_of_account(
        &self,
        task_type: &str,
        account_id: &str,
        limit: usize,
        max_scan: usize,
    ) -> Result<(Vec<QueuedEntry>, bool)> {
        self.queue_config(task_type)?;
        let queued = self.keys().queued(task_type);
        let index = self.keys().account(task_type, account_id);
        let mut out = Vec::new();
        let mut start = 0usize;
        while out.len() < limit {
            if start >= max_scan {
                return Ok((out, false));
            }
            let page = QUEUE_SCAN_PAGE.min(max_scan - start);
            let entries: Vec<(String, f64)> = self
                .with_conn(async |c| {
                    redis::cmd("ZRANGE")
                        .arg(&queued)
                        .arg(start)
                        .arg(start + page - 1)
                        .arg("WITHSCORES")
                        .query_async(c)
                        .await
                })
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

    /// The first `limit` queued tasks of one type (every account's) with their positions.
    pub async fn queue_head(&self, task_type: &str, limit: usize) -> Result<Vec<QueuedEntry>> {
        self.queue_config(task_type)?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let queued = self.keys().queued(task_type);
        let entries: Vec<(String, f64)> = self
            .with_conn(async |c| {
                redis::cmd("ZRANGE")
                    .arg(&queued)
                    .arg(0)
                    .arg(limit as i64 - 1)
                    .arg("WITHSCORES")
                    .query_async(c)
                    .await
            })
            .await?;
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

    /// How many tasks of its type run before a queued task (0 = next); `None` if not queued.
    pub async fn queue_position(&self, task_type: &str, id: &str) -> Result<Option<u64>> {
        self.queue_config(task_type)?;
        let key = self.keys().queued(task_type);
        self.with_conn(async |c| redis::cmd("ZRANK").arg(&key).arg(id).query_async(c).await)
            .await
    }

    /// An account's task ids of the given types, newest first (ties: id descending), after
    /// the cursor `before` = (created ms, id) exclusive, at most `limit`: (created ms, type, id).
    pub async fn list_account(
        &self,
        account_id: &str,
        types: &[&str],
        before: Option<(Millis, String)>,
        limit: usize,
    ) -> Result<Vec<(Millis, String, String)>> {
        if limit == 0 || types.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for t in types {
            self.queue_config(t)?;
            let key = self.keys().account(t, account_id);
            let max = match &before {
                Some((ms, _)) => {
                    // Ids created in the cursor's own millisecond: filtered by id below.
                    pipe.cmd("ZRANGEBYSCORE")
                        .arg(&key)
                        .arg(ms)
                        .arg(ms)
                        .arg("WITHSCORES");
                    format!("({ms}")
                }
                None => "+inf".to_string(),
            };
            pipe.cmd("ZREVRANGEBYSCORE")
                .arg(&key)
                .arg(max)
                .arg("-inf")
                .arg("WITHSCORES")
                .arg("LIMIT")
                .arg(0)
                .arg(limit);
        }
        let lists: Vec<Vec<(String, i64)>> =
            self.with_conn(async |c| pipe.query_async(c).await).await?;
        let per = if before.is_some() { 2 } else { 1 };
        let mut all: Vec<(Millis, String, String)> = Vec::new();
        for (i, list) in lists.into_iter().enumerate() {
            let t = types[i / per];
            for (id, ms) in list {
                let keep = match &before {
                    Some((c_ms, c_id)) => ms < *c_ms || (ms == *c_ms && id < *c_id),
                    None => true,
                };
                if keep {
                    all.push((ms, t.to_string(), id));
                }
            }
        }
        all.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.2.cmp(&a.2)));
        all.truncate(limit);
        Ok(all)
    }

    /// The status of each task id that exists, looked up in every queue in one round trip.
    pub async fn statuses(&self, ids: &[String]) -> Result<HashMap<String, TaskStatus>> {
        let names = self.queue_names();
        if ids.is_empty() || names.is_empty() {
            return Ok(HashMap::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            for t in &names {
                pipe.cmd("HGET").arg(self.keys().task(t, id)).arg("status");
            }
        }
        let found: Vec<Option<String>> =
            self.with_conn(async |c| pipe.query_async(c).await).await?;
        let mut out = HashMap::new();
        for (id, row) in ids.iter().zip(found.chunks(names.len())) {
            if let Some(s) = row.iter().flatten().next() {
                out.insert(id.clone(), s.parse()?);
            }
        }
        Ok(out)
    }

    /// Fails with [`Error::NotFound`] unless the task exists.
    pub async fn get_required(&self, id: &str) -> Result<Task> {
        self.get(id)
            .await?
            .ok_or_else(|| Error::NotFound(id.to_string()))
    }
}
