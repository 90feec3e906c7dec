//! Shards: one queue spread over several hash tags (slots), so that on a Redis Cluster a hot
//! task type is served by several primaries. Shard `s` of type `T` keeps every key one script
//! touches under its own tag ([`shard_tag`]); a task's id carries its type and shard
//! (`<type>.<shard>.<uuid>`), so every call about a task goes straight to its slot.
//!
//! Every process must agree on each type's shard count, or a queue would be split silently:
//! the first process to start records the counts in `tf:shards`, and one whose configuration
//! disagrees refuses to start ([`Broker::check_deployment`]).

use std::collections::HashMap;

use crate::broker::Broker;
use crate::config::QueueConfig;
use crate::error::{Error, Result};
use crate::keys::shard_tag;

/// A registered queue: its config and the tag of each of its shards.
#[derive(Debug, Clone)]
pub(crate) struct QueueEntry {
    pub(crate) config: QueueConfig,
    pub(crate) tags: Vec<String>,
    /// Each shard's keys of `enqueue.lua`, made once: the hot path formats no key.
    pub(crate) enqueue_keys: Vec<std::sync::Arc<[String]>>,
}

impl QueueEntry {
    pub(crate) fn new(
        task_type: &str,
        config: QueueConfig,
        count: u16,
        keys: &crate::keys::Keys,
    ) -> QueueEntry {
        let tags: Vec<String> = (0..count).map(|s| shard_tag(task_type, s, count)).collect();
        let enqueue_keys = tags
            .iter()
            .map(|tag| super::enqueue::enqueue_keys(keys, tag).into())
            .collect();
        QueueEntry {
            config,
            tags,
            enqueue_keys,
        }
    }
}

/// One shard of one queue: where a task's keys live.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Shard {
    task_type: String,
    index: u16,
    tag: String,
}

impl Shard {
    pub fn task_type(&self) -> &str {
        &self.task_type
    }

    pub fn index(&self) -> u16 {
        self.index
    }

    /// The hash tag of the shard's keys (what [`crate::Keys`]'s functions take).
    pub fn tag(&self) -> &str {
        &self.tag
    }
}

/// 64-bit FNV-1a: the same on every machine and version, so every process puts the same id
/// or Idempotency-Key in the same shard.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Broker {
    /// How many shards a registered queue has.
    pub fn shard_count(&self, task_type: &str) -> Result<u16> {
        Ok(self.queue_entry(task_type)?.tags.len() as u16)
    }

    /// Shard `index` of a queue.
    pub fn shard(&self, task_type: &str, index: u16) -> Result<Shard> {
        let entry = self.queue_entry(task_type)?;
        let tag = entry
            .tags
            .get(usize::from(index))
            .ok_or_else(|| Error::invalid("shard", format!("{task_type} has no shard {index}")))?;
        Ok(Shard {
            task_type: task_type.to_string(),
            index,
            tag: tag.clone(),
        })
    }

    /// Every shard of a queue.
    pub fn shards(&self, task_type: &str) -> Result<Vec<Shard>> {
        (0..self.shard_count(task_type)?)
            .map(|s| self.shard(task_type, s))
            .collect()
    }

    /// Every shard of every registered queue.
    pub fn all_shards(&self) -> Vec<Shard> {
        self.queue_names()
            .into_iter()
            .flat_map(|t| self.shards(t).unwrap_or_default())
            .collect()
    }

    /// The shard an id names (`<type>.<shard>.<rest>`, type registered, shard in range).
    pub fn route(&self, id: &str) -> Option<Shard> {
        let mut parts = id.splitn(3, '.');
        let (t, s, rest) = (parts.next()?, parts.next()?, parts.next()?);
        if rest.is_empty() {
            return None;
        }
        let index: u16 = s.parse().ok()?;
        self.shard(t, index).ok()
    }

    /// The shard of `id` in queue `task_type`: the one it names, or else (an id a caller
    /// chose) the one it hashes to.
    pub fn shard_of(&self, task_type: &str, id: &str) -> Result<Shard> {
        match self.route(id) {
            Some(s) if s.task_type == task_type => Ok(s),
            _ => {
                let count = self.shard_count(task_type)?;
                self.shard(task_type, (fnv1a(id) % u64::from(count)) as u16)
            }
        }
    }

    /// The shard a new task goes to: the one its Idempotency-Key hashes to (a retried request
    /// lands on the same shard, where the key is found), else a random one.
    pub(crate) fn pick_shard(&self, task_type: &str, idempotency: Option<&str>) -> Result<Shard> {
        let count = u64::from(self.shard_count(task_type)?);
        let index = match idempotency {
            Some(k) => fnv1a(k) % count,
            None => {
                // Any shard but those whose primary lately confirmed no write (with
                // `redis.wait_replicas`); any at all if every one is so.
                let now = std::time::Instant::now();
                let avoid = self.inner.unconfirmed.lock().expect("unconfirmed lock");
                let ok: Vec<u64> = (0..count)
                    .filter(|i| {
                        let tag =
                            &self.queue_entry(task_type).expect("checked above").tags[*i as usize];
                        avoid.get(tag).is_none_or(|until| *until <= now)
                    })
                    .collect();
                match ok.is_empty() {
                    true => rand::random::<u64>() % count,
                    false => ok[rand::random_range(0..ok.len())],
                }
            }
        };
        self.shard(task_type, index as u16)
    }

    /// A new id for a task of `task_type` (`<type>.<shard>.<uuid v7>`), in the shard its
    /// Idempotency-Key hashes to if it has one: a caller that picks ids itself (the API, to
    /// resend an enqueue whose answer was lost) must pick them here, or a retried request
    /// could land on a shard that never saw its key.
    pub fn new_id(
        &self,
        task_type: &str,
        account_id: &str,
        idempotency_key: Option<&str>,
    ) -> Result<String> {
        let idem = idempotency_key.map(|k| format!("{account_id}:{k}"));
        Ok(Broker::new_task_id(
            &self.pick_shard(task_type, idem.as_deref())?,
        ))
    }

    /// A new task id in `shard`: `<type>.<shard>.<uuid v7>`.
    pub fn new_task_id(shard: &Shard) -> String {
        format!(
            "{}.{}.{}",
            shard.task_type,
            shard.index,
            uuid::Uuid::now_v7()
        )
    }

    /// An id of queue `task_type` derived from `seed` (the same seed, the same id; a course's
    /// lesson from the course id and its number), carrying its shard.
    pub fn derived_id(&self, task_type: &str, seed: &str) -> Result<String> {
        let count = u64::from(self.shard_count(task_type)?);
        Ok(format!("{task_type}.{}.{seed}", fnv1a(seed) % count))
    }

    /// Checks, before anything is written, that the deployment is what the settings say (a
    /// single server that is not a cluster node; a cluster whose every seed node answers, in
    /// cluster mode, with every slot served) and that each queue's shard count agrees with
    /// the one recorded in Redis; then records the counts not recorded yet. A clear error
    /// otherwise: a queue split two ways would lose its order and its idempotency.
    pub async fn check_deployment(&self) -> Result<()> {
        match self.deployment() {
            crate::broker::Deployment::Single { .. } => {
                let info: String = self
                    .with_conn(async |c| redis::cmd("INFO").arg("cluster").query_async(c).await)
                    .await?;
                if info.contains("cluster_enabled:1") {
                    return Err(Error::invalid(
                        "redis.url",
                        "this server is a Redis Cluster node: name the cluster by its seed nodes (TASKFLEET__REDIS__CLUSTER_NODES)",
                    ));
                }
            }
            crate::broker::Deployment::Cluster { nodes } => {
                for node in nodes {
                    check_cluster_node(node, self.inner.timeout).await?;
                }
            }
        }
        let key = self.keys().shard_counts();
        let recorded: HashMap<String, String> = self
            .with_conn(async |c| redis::cmd("HGETALL").arg(&key).query_async(c).await)
            .await?;
        for t in self.queue_names() {
            let mine = self.shard_count(t)?;
            if let Some(theirs) = recorded.get(t) {
                if theirs.parse::<u16>().ok() != Some(mine) {
                    return Err(Error::invalid(
                        format!("task_types.{t}.shards"),
                        format!(
                            "{t} is recorded in Redis with {theirs} shards and configured here with {mine}: every process must use the recorded count (changing it needs the queue drained and `{key}` cleared)"
                        ),
                    ));
                }
            }
        }
        for t in self.queue_names() {
            let mine = self.shard_count(t)?;
            let _: i64 = self
                .with_conn(async |c| {
                    redis::cmd("HSETNX")
                        .arg(&key)
                        .arg(t)
                        .arg(mine)
                        .query_async(c)
                        .await
                })
                .await?;
        }
        Ok(())
    }
}

/// One seed node of a cluster: it answers, it runs in cluster mode, and its cluster serves
/// every slot.
async fn check_cluster_node(node: &str, timeout: std::time::Duration) -> Result<()> {
    let bad = |m: String| Error::invalid("redis.cluster_nodes", m);
    let client = redis::Client::open(format!("redis://{node}")).map_err(|e| bad(e.to_string()))?;
    let cfg = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout));
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&cfg)
        .await
        .map_err(|e| bad(format!("seed node {node} does not answer: {e}")))?;
    let info: String = redis::cmd("INFO")
        .arg("cluster")
        .query_async(&mut conn)
        .await
        .map_err(|e| bad(format!("seed node {node}: {e}")))?;
    if !info.contains("cluster_enabled:1") {
        return Err(bad(format!(
            "seed node {node} is a single server, not a cluster node: name it with TASKFLEET__REDIS__URL instead"
        )));
    }
    let state: String = redis::cmd("CLUSTER")
        .arg("INFO")
        .query_async(&mut conn)
        .await
        .map_err(|e| bad(format!("seed node {node}: {e}")))?;
    if !state.contains("cluster_state:ok") {
        return Err(bad(format!(
            "the cluster of seed node {node} is not ok (cluster_state not ok: slots unserved?)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(shards: u16) -> Broker {
        Broker::builder("redis://127.0.0.1:1")
            .queue(
                "video",
                QueueConfig {
                    shards: Some(shards),
                    ..QueueConfig::default()
                },
            )
            .queue("quiz", QueueConfig::default())
            .build()
            .unwrap()
    }

    #[test]
    fn an_id_carries_its_type_and_shard() {
        let b = broker(4);
        let s = b.shard("video", 3).unwrap();
        let id = Broker::new_task_id(&s);
        assert!(id.starts_with("video.3."), "{id}");
        assert_eq!(b.route(&id), Some(s.clone()));
        assert_eq!(b.shard_of("video", &id).unwrap(), s);
        // An id a caller chose goes where it hashes, the same every time.
        let chosen = b.shard_of("video", "order-7").unwrap();
        assert_eq!(b.shard_of("video", "order-7").unwrap(), chosen);
        assert_eq!(b.route("order-7"), None);
        // A derived id routes to itself.
        let d = b.derived_id("video", "quiz.0.abc-lesson-1").unwrap();
        assert_eq!(b.route(&d).unwrap().task_type(), "video");
        // One shard by default on a single server.
        assert_eq!(b.shard_count("quiz").unwrap(), 1);
        assert_eq!(b.shard("quiz", 0).unwrap().tag(), "quiz");
        assert!(b.route("video.9.x").is_none(), "no shard 9 of 4");
    }

    #[test]
    fn an_idempotency_key_always_picks_the_same_shard() {
        let b = broker(16);
        let a = b.pick_shard("video", Some("acme:k1")).unwrap();
        for _ in 0..10 {
            assert_eq!(b.pick_shard("video", Some("acme:k1")).unwrap(), a);
        }
    }
}
