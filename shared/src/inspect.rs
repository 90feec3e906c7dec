//! Read-only queries for the API, dashboards and tests: one task, queue status, lists.
//! Nothing here changes a task; writes go through [`crate::broker`].
//!
//! A queue may be spread over several shards ([`crate::broker::Shard`]): each query reads
//! every shard it needs in one fan-out (one pipeline on a single server, one per slot,
//! concurrently, on a cluster) and merges the answers. Counts are sums; orders are merged by
//! score, so a queue's head and a task's position are those of the whole queue.

use std::collections::{BTreeMap, HashMap};

use redis::Cmd;
use serde::Serialize;

use crate::broker::{Broker, Shard};
use crate::error::{Error, Result};
use crate::keys::Keys;
use crate::task::{Millis, Task, TaskStatus};

/// One queue's counts by state, whether it is paused, and its counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueStatus {
    pub task_type: String,
    /// Every state of [`TaskStatus`], by its name.
    pub counts: BTreeMap<String, u64>,
    pub paused: bool,
    /// The `stats` hash (summed over shards): enqueued, started, completed, failed, retried,
    /// cancelled, recovered, busy_ms.
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

/// The set that holds the ids of a shard in a state.
pub(crate) fn state_key(k: &Keys, tag: &str, s: TaskStatus) -> String {
    match s {
        TaskStatus::Scheduled => k.scheduled(tag),
        TaskStatus::Queued => k.queued(tag),
        TaskStatus::Processing => k.processing(tag),
        TaskStatus::Retrying => k.retrying(tag),
        TaskStatus::Completed => k.completed(tag),
        TaskStatus::Failed => k.failed(tag),
        TaskStatus::Cancelled => k.cancelled(tag),
    }
}

use crate::browse::on;

impl Broker {
    /// Every registered queue's status, in one fan-out.
    pub async fn status(&self) -> Result<Vec<QueueStatus>> {
        let k = self.keys();
        let shards = self.all_shards();
        let per = TaskStatus::ALL.len() + 2;
        let mut cmds = Vec::with_capacity(shards.len() * per);
        for sh in &shards {
            for s in TaskStatus::ALL {
                cmds.push(on!(state_key(k, sh.tag(), s), "ZCARD"));
            }
            cmds.push(on!(k.paused(sh.tag()), "EXISTS"));
            cmds.push(on!(k.stats(sh.tag()), "HGETALL"));
        }
        let values: Vec<redis::Value> = self.fanout(cmds).await?;
        let mut out: Vec<QueueStatus> = Vec::new();
        for (sh, row) in shards.iter().zip(values.chunks(per)) {
            if out.last().map(|q| q.task_type.as_str()) != Some(sh.task_type()) {
                out.push(QueueStatus {
                    task_type: sh.task_type().to_string(),
                    counts: TaskStatus::ALL
                        .iter()
                        .map(|s| (s.as_str().to_string(), 0))
                        .collect(),
                    paused: false,
                    stats: BTreeMap::new(),
                });
            }
            let q = out.last_mut().expect("pushed above");
            for (j, s) in TaskStatus::ALL.into_iter().enumerate() {
                let n: u64 = redis::from_redis_value(row[j].clone())?;
                *q.counts.entry(s.as_str().to_string()).or_default() += n;
            }
            // Pausing writes every shard; one shard paused means a pause (or a resume) is
            // under way, and the queue shows paused until it is done.
            let paused: i64 = redis::from_redis_value(row[per - 2].clone())?;
            q.paused |= paused == 1;
            let stats: BTreeMap<String, i64> = redis::from_redis_value(row[per - 1].clone())?;
            for (name, n) in stats {
                *q.stats.entry(name).or_default() += n;
            }
        }
        Ok(out)
    }

    /// One account's tasks of every registered queue by state, in one fan-out: per shard and
    /// state, `ZINTERCARD` of the state's set and the account's index (`tf:{T}:account:<a>`,
    /// the same hash tag, so one Cluster slot). Each count stops at `limit` (a count equal to
    /// it means at least that many). Redis walks the smaller of the two sets for each, so the
    /// work is bounded by the account's own index and the state's set, never the whole keyspace.
    pub async fn account_counts(
        &self,
        account_id: &str,
        limit: u64,
    ) -> Result<Vec<(String, BTreeMap<String, u64>)>> {
        let k = self.keys();
        let shards = self.all_shards();
        let mut cmds = Vec::new();
        for sh in &shards {
            let index = k.account(sh.tag(), account_id);
            for s in TaskStatus::ALL {
                let key = state_key(k, sh.tag(), s);
                let mut c = redis::cmd("ZINTERCARD");
                c.arg(2).arg(&key).arg(&index).arg("LIMIT").arg(limit);
                cmds.push((key, c));
            }
        }
        let values: Vec<u64> = self.fanout(cmds).await?;
        let per = TaskStatus::ALL.len();
        let mut out: Vec<(String, BTreeMap<String, u64>)> = Vec::new();
        for (sh, row) in shards.iter().zip(values.chunks(per)) {
            if out.last().map(|(t, _)| t.as_str()) != Some(sh.task_type()) {
                out.push((sh.task_type().to_string(), BTreeMap::new()));
            }
            let (_, counts) = out.last_mut().expect("pushed above");
            for (s, n) in TaskStatus::ALL.into_iter().zip(row) {
                let c = counts.entry(s.as_str().to_string()).or_default();
                *c = (*c + n).min(limit);
            }
        }
        Ok(out)
    }

    /// How many tasks of each registered queue completed at or after `since` (ms), in one
    /// fan-out: throughput over a recent window.
    pub async fn completed_since(&self, since: Millis) -> Result<HashMap<String, u64>> {
        let shards = self.all_shards();
        let cmds = shards
            .iter()
            .map(|sh| on!(self.keys().completed(sh.tag()), "ZCOUNT", since, "+inf"))
            .collect();
        let counts: Vec<u64> = self.fanout(cmds).await?;
        let mut out: HashMap<String, u64> = self
            .queue_names()
            .into_iter()
            .map(|t| (t.to_string(), 0))
            .collect();
        for (sh, n) in shards.iter().zip(counts) {
            *out.entry(sh.task_type().to_string()).or_default() += n;
        }
        Ok(out)
    }

    /// The shards an id may live in: the one it names, else the one it hashes to in every
    /// registered queue (an id a caller chose).
    fn candidates(&self, id: &str) -> Vec<Shard> {
        match self.route(id) {
            Some(s) => vec![s],
            None => self
                .queue_names()
                .into_iter()
                .filter_map(|t| self.shard_of(t, id).ok())
                .collect(),
        }
    }

    /// One task by id: one read when the id names its shard (every id the library makes
    /// does), else one fan-out over every queue.
    pub async fn get(&self, id: &str) -> Result<Option<Task>> {
        let cmds = self
            .candidates(id)
            .iter()
            .map(|sh| on!(self.keys().task(sh.tag(), id), "HGETALL"))
            .collect();
        let hashes: Vec<HashMap<String, String>> = self.fanout(cmds).await?;
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
        let cmds = ids
            .iter()
            .map(|id| {
                let sh = self.shard_of(task_type, id)?;
                Ok(on!(self.keys().task(sh.tag(), id), "HGETALL"))
            })
            .collect::<Result<Vec<_>>>()?;
        let hashes: Vec<HashMap<String, String>> = self.fanout(cmds).await?;
        let mut out = Vec::with_capacity(ids.len());
        for h in hashes {
            out.extend(Task::from_hash(h)?);
        }
        Ok(out)
    }

    /// Up to `limit` ready tasks of one type, in the order claim takes them.
    pub async fn list_queued(&self, task_type: &str, limit: usize) -> Result<Vec<Task>> {
        let ids: Vec<String> = self
            .merged_state_head(task_type, TaskStatus::Queued, limit)
            .await?
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        self.get_many(task_type, &ids).await
    }

    /// The first `limit` queued tasks of one type (every account's) with their positions.
    pub async fn queue_head(&self, task_type: &str, limit: usize) -> Result<Vec<QueuedEntry>> {
        self.state_head(task_type, TaskStatus::Queued, limit).await
    }

    /// Up to `limit` queued tasks of one account and type in the order claim takes them, with
    /// their queue positions ([`Broker::state_of_account`] of `queued`).
    pub async fn queued_of_account(
        &self,
        task_type: &str,
        account_id: &str,
        limit: usize,
        max_scan: usize,
    ) -> Result<(Vec<QueuedEntry>, bool)> {
        self.state_of_account(task_type, TaskStatus::Queued, account_id, limit, max_scan)
            .await
    }

    /// How many tasks of its type run before a queued task (0 = next); `None` if not queued.
    pub async fn queue_position(&self, task_type: &str, id: &str) -> Result<Option<u64>> {
        let shard = self.shard_of(task_type, id)?;
        let key = self.keys().queued(shard.tag());
        let (rank, score): (Option<u64>, Option<f64>) = self
            .with_conn(async |c| {
                redis::pipe()
                    .cmd("ZRANK")
                    .arg(&key)
                    .arg(id)
                    .cmd("ZSCORE")
                    .arg(&key)
                    .arg(id)
                    .query_async(c)
                    .await
            })
            .await?;
        let (Some(rank), Some(score)) = (rank, score) else {
            return Ok(None);
        };
        let ahead = self
            .ahead_elsewhere(task_type, TaskStatus::Queued, shard.index(), &[score])
            .await?;
        Ok(Some(rank + ahead[0]))
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
        let mut cmds = Vec::new();
        let mut sources = Vec::new();
        for t in types {
            for sh in self.shards(t)? {
                let key = self.keys().account(sh.tag(), account_id);
                let max = match &before {
                    Some((ms, _)) => {
                        // Ids created in the cursor's own millisecond: filtered by id below.
                        cmds.push(on!(key.clone(), "ZRANGEBYSCORE", *ms, *ms, "WITHSCORES"));
                        sources.push(*t);
                        format!("({ms}")
                    }
                    None => "+inf".to_string(),
                };
                cmds.push(on!(
                    key,
                    "ZREVRANGEBYSCORE",
                    &max,
                    "-inf",
                    "WITHSCORES",
                    "LIMIT",
                    0,
                    limit
                ));
                sources.push(*t);
            }
        }
        let lists: Vec<Vec<(String, i64)>> = self.fanout(cmds).await?;
        let mut all: Vec<(Millis, String, String)> = Vec::new();
        for (t, list) in sources.into_iter().zip(lists) {
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
        all.dedup();
        all.truncate(limit);
        Ok(all)
    }

    /// The status of each task id that exists, in one fan-out.
    pub async fn statuses(&self, ids: &[String]) -> Result<HashMap<String, TaskStatus>> {
        let mut cmds = Vec::new();
        let mut owners = Vec::new();
        for id in ids {
            for sh in self.candidates(id) {
                cmds.push(on!(self.keys().task(sh.tag(), id), "HGET", "status"));
                owners.push(id);
            }
        }
        let found: Vec<Option<String>> = self.fanout(cmds).await?;
        let mut out = HashMap::new();
        for (id, s) in owners.into_iter().zip(found) {
            if let Some(s) = s {
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
