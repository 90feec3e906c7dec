//! Reads for browsing tasks by state and by owner, for the API's lists and the dashboard: a
//! state's set in its own order (claim order for `queued`, newest first for finished states),
//! one account's part of it found by a bounded walk, the recent finishes of a type, and a short
//! record of many tasks (owner, status, times) in one round trip. Read-only, like [`inspect`];
//! every key comes from [`crate::keys`] through [`Keys`]. A sharded queue's shards are read in
//! one fan-out and merged by score, so orders and places are those of the whole queue.
//!
//! [`inspect`]: crate::inspect
//! [`Keys`]: crate::keys::Keys

use redis::Cmd;

use crate::broker::{Broker, Shard};
use crate::error::Result;
use crate::inspect::{state_key, QueuedEntry, QUEUE_SCAN_PAGE};
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

/// A command on a key, with the key to route it: `on!(key, "ZCOUNT", min, max)`.
macro_rules! on {
    ($key:expr, $name:expr $(, $arg:expr)*) => {{
        let key: String = $key;
        let mut c: Cmd = redis::cmd($name);
        c.arg(&key)$(.arg($arg))*;
        (key, c)
    }};
}
pub(crate) use on;

/// Sorts entries in a state's listing order: ascending score, or descending for
/// [`newest_first`] states; ties by id.
fn listing_order(entries: &mut [(String, f64)], status: TaskStatus) {
    let rev = newest_first(status);
    entries.sort_by(|a, b| {
        let by_score = if rev {
            b.1.total_cmp(&a.1)
        } else {
            a.1.total_cmp(&b.1)
        };
        by_score.then_with(|| a.0.cmp(&b.0))
    });
}

impl Broker {
    /// A range of one shard's set of a state in its listing order, with scores.
    async fn shard_range(
        &self,
        shard: &Shard,
        status: TaskStatus,
        start: usize,
        stop: usize,
    ) -> Result<Vec<(String, f64)>> {
        let key = state_key(self.keys(), shard.tag(), status);
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

    /// The first `limit` entries of a state's set over every shard, merged in listing order.
    pub(crate) async fn merged_state_head(
        &self,
        task_type: &str,
        status: TaskStatus,
        limit: usize,
    ) -> Result<Vec<(String, f64)>> {
        self.queue_config(task_type)?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let last = limit as i64 - 1;
        let rev = newest_first(status);
        let cmds = self
            .shards(task_type)?
            .iter()
            .map(|sh| {
                let (key, mut c) = on!(state_key(self.keys(), sh.tag(), status), "ZRANGE", 0, last);
                if rev {
                    c.arg("REV");
                }
                c.arg("WITHSCORES");
                (key, c)
            })
            .collect();
        let heads: Vec<Vec<(String, f64)>> = self.fanout(cmds).await?;
        let mut all: Vec<(String, f64)> = heads.into_iter().flatten().collect();
        listing_order(&mut all, status);
        all.truncate(limit);
        Ok(all)
    }

    /// The first `limit` tasks of one type in a state (every account's), in the state's listing
    /// order ([`newest_first`]), with their places in it.
    pub async fn state_head(
        &self,
        task_type: &str,
        status: TaskStatus,
        limit: usize,
    ) -> Result<Vec<QueuedEntry>> {
        Ok(self
            .merged_state_head(task_type, status, limit)
            .await?
            .into_iter()
            .enumerate()
            .map(|(i, (id, score))| QueuedEntry {
                id,
                score,
                position: i as u64,
            })
            .collect())
    }

    /// How many entries of a state come before each score in listing order, in every shard
    /// but `own` (whose own rank the caller has), in one fan-out.
    pub(crate) async fn ahead_elsewhere(
        &self,
        task_type: &str,
        status: TaskStatus,
        own: u16,
        scores: &[f64],
    ) -> Result<Vec<u64>> {
        let others: Vec<Shard> = self
            .shards(task_type)?
            .into_iter()
            .filter(|s| s.index() != own)
            .collect();
        if others.is_empty() {
            return Ok(vec![0; scores.len()]);
        }
        let rev = newest_first(status);
        let mut cmds = Vec::new();
        for score in scores {
            let (min, max) = if rev {
                (format!("({score}"), "+inf".to_string())
            } else {
                ("-inf".to_string(), format!("({score}"))
            };
            for sh in &others {
                cmds.push(on!(
                    state_key(self.keys(), sh.tag(), status),
                    "ZCOUNT",
                    &min,
                    &max
                ));
            }
        }
        let counts: Vec<u64> = self.fanout(cmds).await?;
        Ok(counts
            .chunks(others.len())
            .map(|c| c.iter().sum())
            .collect())
    }

    /// Up to `limit` tasks of one account and type in a state, in the state's listing order,
    /// with their places in it: each shard's set is walked in pages and the account's ids kept
    /// (`ZMSCORE` on its index, the same hash tag). Bounded: at most `max_scan` entries in all
    /// per call. The flag says whether every walk reached its end (or the limit) rather than
    /// stopping at its share of `max_scan`.
    pub async fn state_of_account(
        &self,
        task_type: &str,
        status: TaskStatus,
        account_id: &str,
        limit: usize,
        max_scan: usize,
    ) -> Result<(Vec<QueuedEntry>, bool)> {
        let shards = self.shards(task_type)?;
        let budget = max_scan.div_ceil(shards.len()).max(1);
        let mut found: Vec<(u16, QueuedEntry)> = Vec::new();
        let mut complete = true;
        for sh in &shards {
            let (entries, done) = self
                .walk_shard(sh, status, account_id, limit, budget)
                .await?;
            complete &= done;
            found.extend(entries.into_iter().map(|e| (sh.index(), e)));
        }
        let rev = newest_first(status);
        found.sort_by(|a, b| {
            let by_score = if rev {
                b.1.score.total_cmp(&a.1.score)
            } else {
                a.1.score.total_cmp(&b.1.score)
            };
            by_score.then_with(|| a.1.id.cmp(&b.1.id))
        });
        found.truncate(limit);
        if shards.len() > 1 {
            // A rank in its own shard plus what comes before it in every other shard: its
            // place in the whole set.
            for (own, e) in &mut found {
                let ahead = self
                    .ahead_elsewhere(task_type, status, *own, &[e.score])
                    .await?;
                e.position += ahead[0];
            }
        }
        Ok((found.into_iter().map(|(_, e)| e).collect(), complete))
    }

    /// One shard's part of [`Broker::state_of_account`]: places within the shard.
    async fn walk_shard(
        &self,
        shard: &Shard,
        status: TaskStatus,
        account_id: &str,
        limit: usize,
        max_scan: usize,
    ) -> Result<(Vec<QueuedEntry>, bool)> {
        let index = self.keys().account(shard.tag(), account_id);
        let mut out = Vec::new();
        let mut start = 0usize;
        while out.len() < limit {
            if start >= max_scan {
                return Ok((out, false));
            }
            let page = QUEUE_SCAN_PAGE.min(max_scan - start);
            let entries = self
                .shard_range(shard, status, start, start + page - 1)
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
        let shards = self.shards(task_type)?;
        let mut cmds = Vec::with_capacity(shards.len() * 2);
        for sh in &shards {
            let key = state_key(self.keys(), sh.tag(), status);
            cmds.push(on!(key.clone(), "ZCOUNT", since, "+inf"));
            cmds.push(on!(
                key,
                "ZRANGE",
                "+inf",
                since,
                "BYSCORE",
                "REV",
                "LIMIT",
                0,
                limit,
                "WITHSCORES"
            ));
        }
        let values: Vec<redis::Value> = self.fanout(cmds).await?;
        let mut count = 0u64;
        let mut entries: Vec<(String, f64)> = Vec::new();
        for pair in values.chunks(2) {
            count += redis::from_redis_value::<u64>(pair[0].clone())?;
            entries.extend(redis::from_redis_value::<Vec<(String, f64)>>(
                pair[1].clone(),
            )?);
        }
        listing_order(&mut entries, status);
        entries.truncate(limit);
        Ok((
            count,
            entries
                .into_iter()
                .map(|(id, ms)| (id, ms as Millis))
                .collect(),
        ))
    }

    /// How many tasks of one type finished in `status` in each of `buckets` consecutive
    /// windows of `bucket_ms` from `since` (every account's): one fan-out of `ZCOUNT`s on the
    /// shards' sets, whose score is the finish time.
    pub async fn finished_counts(
        &self,
        task_type: &str,
        status: TaskStatus,
        since: Millis,
        bucket_ms: Millis,
        buckets: usize,
    ) -> Result<Vec<u64>> {
        let shards = self.shards(task_type)?;
        if buckets == 0 {
            return Ok(Vec::new());
        }
        let mut cmds = Vec::with_capacity(shards.len() * buckets);
        for sh in &shards {
            let key = state_key(self.keys(), sh.tag(), status);
            for i in 0..buckets as i64 {
                let from = since + i * bucket_ms;
                cmds.push(on!(
                    key.clone(),
                    "ZCOUNT",
                    from,
                    format!("({}", from + bucket_ms)
                ));
            }
        }
        let counts: Vec<u64> = self.fanout(cmds).await?;
        let mut out = vec![0u64; buckets];
        for per_shard in counts.chunks(buckets) {
            for (total, n) in out.iter_mut().zip(per_shard) {
                *total += n;
            }
        }
        Ok(out)
    }

    /// The brief of each task of one type (owner, status, times), in the order given; `None`
    /// for an id that no longer exists. One fan-out of `HMGET`s.
    pub async fn briefs(&self, task_type: &str, ids: &[String]) -> Result<Vec<Option<TaskBrief>>> {
        self.queue_config(task_type)?;
        let cmds = ids
            .iter()
            .map(|id| {
                let sh = self.shard_of(task_type, id)?;
                Ok(on!(
                    self.keys().task(sh.tag(), id),
                    "HMGET",
                    "status",
                    "account_id",
                    "user_id",
                    "created_at",
                    "started_at",
                    "finished_at"
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        type Row = (
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
        );
        let rows: Vec<Row> = self.fanout(cmds).await?;
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
