//! Following what happens: a shard's event stream read with blocking `XREAD` (the API's
//! Server-Sent Events), and idle workers' wait for work on the shards' wake channels. Both
//! wait on Redis, so each holds a connection of its own: a blocking read on the shared
//! connection would stall every other call pipelined on it.
//!
//! Wake-ups are pub/sub messages, published by the scripts that make tasks ready (enqueue,
//! promote, release, recover, unclaim, resume). On a single server they are plain
//! `PUBLISH`/`SUBSCRIBE`; on a cluster, sharded pub/sub (`SPUBLISH`/`SSUBSCRIBE`): the message
//! stays on the node that owns the shard's slot instead of crossing the whole cluster bus,
//! and redis-rs subscribes again by itself after a failover. Nothing is stored: a worker that
//! is not listening misses nothing it needs, because it claims before it waits and polls
//! slowly as a backstop.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use redis::aio::MultiplexedConnection;
use redis::cluster_async::ClusterConnection;
use redis::streams::{StreamReadOptions, StreamReadReply};
use redis::{AsyncCommands, PushInfo, PushKind};
use tokio::sync::mpsc;

use crate::broker::{Broker, Deployment, Shard};
use crate::error::{Error, Result};
use crate::keys::cluster_slot;

/// One entry of a shard's event stream: its stream id, the tasks it is about (`id` for one
/// task, `ids` for a batch: enqueue, claim and complete write one entry per call), and the
/// status it reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventEntry {
    pub id: String,
    pub tasks: Vec<String>,
    pub status: Option<String>,
}

impl EventEntry {
    pub fn is_about(&self, task_id: &str) -> bool {
        self.tasks.iter().any(|t| t == task_id)
    }
}

/// A reader of one shard's event stream, from a position on.
pub struct EventFollower {
    conn: MultiplexedConnection,
    key: String,
    last_id: String,
}

impl Broker {
    /// A connection of its own to the server that holds `key` (on a cluster, the primary of
    /// its slot), answering within `response` (longer than any block on it).
    async fn dedicated_connection(
        &self,
        key: &str,
        response: Duration,
    ) -> Result<MultiplexedConnection> {
        let url = match self.deployment() {
            Deployment::Single { url } => url.clone(),
            Deployment::Cluster { .. } => format!("redis://{}", self.node_of(key).await?),
        };
        let client =
            redis::Client::open(url).map_err(|e| Error::invalid("redis.url", e.to_string()))?;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout()))
            .set_response_timeout(Some(response));
        Ok(client
            .get_multiplexed_async_connection_with_config(&config)
            .await?)
    }

    /// The `host:port` of the cluster primary that serves `key`'s slot (`CLUSTER SLOTS`).
    async fn node_of(&self, key: &str) -> Result<String> {
        let slot = i64::from(cluster_slot(key));
        let ranges: Vec<redis::Value> = self
            .with_conn(async |c| redis::cmd("CLUSTER").arg("SLOTS").query_async(c).await)
            .await?;
        for range in ranges {
            let redis::Value::Array(parts) = range else {
                continue;
            };
            let (Some(lo), Some(hi), Some(primary)) = (parts.first(), parts.get(1), parts.get(2))
            else {
                continue;
            };
            let (lo, hi): (i64, i64) = (
                redis::from_redis_value(lo.clone())?,
                redis::from_redis_value(hi.clone())?,
            );
            if (lo..=hi).contains(&slot) {
                let (host, port): (String, i64) = match primary {
                    redis::Value::Array(p) if p.len() >= 2 => (
                        redis::from_redis_value(p[0].clone())?,
                        redis::from_redis_value(p[1].clone())?,
                    ),
                    _ => break,
                };
                return Ok(format!("{host}:{port}"));
            }
        }
        Err(Error::Unavailable(format!("no node serves slot {slot}")))
    }

    /// Follows the event stream of `shard` from its current end, on a connection of its own
    /// whose reads may block up to `max_block`.
    pub async fn follow_events(&self, shard: &Shard, max_block: Duration) -> Result<EventFollower> {
        let key = self.keys().events(shard.tag());
        let mut conn = self
            .dedicated_connection(&key, max_block + Duration::from_secs(5))
            .await?;
        let last: Vec<(String, redis::Value)> = redis::cmd("XREVRANGE")
            .arg(&key)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut conn)
            .await?;
        let last_id = last
            .into_iter()
            .next()
            .map(|(id, _)| id)
            .unwrap_or_else(|| "0-0".to_string());
        Ok(EventFollower { conn, key, last_id })
    }

    /// Waits for work on the wake channels of every shard of `types`, at most `poll`; the
    /// shard whose wake-up came first, if one did. An error (Redis away) waits a little and
    /// returns, so the caller polls anyway.
    pub async fn wait_for_work(
        &self,
        waiter: &mut WorkWaiter,
        types: &[&str],
        poll: Duration,
    ) -> Option<Shard> {
        if waiter.subscription.is_none() {
            match self.subscribe_wakes(types).await {
                Ok((sub, channels)) => {
                    waiter.subscription = Some(sub);
                    waiter.channels = channels;
                    // A task made ready before the subscription took effect sent its wake-up
                    // to nobody: the caller claims once more before it waits.
                    return None;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "could not subscribe to wake-ups; polling");
                    tokio::time::sleep(poll.min(Duration::from_millis(500))).await;
                    return None;
                }
            }
        }
        let sub = waiter.subscription.as_mut().expect("subscribed above");
        let first = tokio::select! {
            m = sub.next() => m,
            _ = tokio::time::sleep(poll) => return None,
        };
        let Some(channel) = first else {
            // The subscription ended (the server went away): make a new one next time.
            waiter.subscription = None;
            tokio::time::sleep(Duration::from_millis(100)).await;
            return None;
        };
        // Wake-ups that came meanwhile say the same thing: one claim answers them all.
        while let Some(Some(_)) = sub.next().now_or_never() {}
        waiter.channels.get(&channel).cloned()
    }

    /// A subscription to the wake channels of every shard of `types`.
    async fn subscribe_wakes(
        &self,
        types: &[&str],
    ) -> Result<(Subscription, HashMap<String, Shard>)> {
        let mut channels = HashMap::new();
        for t in types {
            for s in self.shards(t)? {
                channels.insert(self.keys().wake(s.tag()), s);
            }
        }
        let names: Vec<String> = channels.keys().cloned().collect();
        // redis-rs can wait for ever on a connection to a cluster whose node just died
        // (redis-rs issue 1953): every step here is bounded by the broker's timeout.
        let bound = |what: &'static str| {
            move |_| Error::Unavailable(format!("{what} did not finish within the timeout"))
        };
        let limit = self.timeout();
        let sub = match self.deployment() {
            Deployment::Single { url } => {
                let client = redis::Client::open(url.as_str())
                    .map_err(|e| Error::invalid("redis.url", e.to_string()))?;
                let mut pubsub = tokio::time::timeout(limit, client.get_async_pubsub())
                    .await
                    .map_err(bound("connecting to subscribe"))??;
                tokio::time::timeout(limit, pubsub.subscribe(&names))
                    .await
                    .map_err(bound("subscribing"))??;
                Subscription::Single(pubsub.into_on_message())
            }
            Deployment::Cluster { nodes } => {
                let (tx, rx) = mpsc::unbounded_channel();
                let urls: Vec<String> = nodes.iter().map(|n| format!("redis://{n}")).collect();
                let client = redis::cluster::ClusterClientBuilder::new(urls)
                    .use_protocol(redis::ProtocolVersion::RESP3)
                    .push_sender(tx)
                    .connection_timeout(limit)
                    .response_timeout(limit)
                    .build()
                    .map_err(|e| Error::invalid("redis.cluster_nodes", e.to_string()))?;
                let mut conn = tokio::time::timeout(limit, client.get_async_connection())
                    .await
                    .map_err(bound("connecting to subscribe"))??;
                // One channel a call: a call's channels must share a slot.
                for name in &names {
                    tokio::time::timeout(limit, conn.ssubscribe(name))
                        .await
                        .map_err(bound("subscribing"))??;
                }
                Subscription::Cluster { _conn: conn, rx }
            }
        };
        Ok((sub, channels))
    }
}

/// An idle worker's subscription to its wake channels, made on first use.
#[derive(Default)]
pub struct WorkWaiter {
    subscription: Option<Subscription>,
    channels: HashMap<String, Shard>,
}

enum Subscription {
    Single(redis::aio::PubSubStream),
    Cluster {
        /// Kept open: it delivers the pushes.
        _conn: ClusterConnection,
        rx: mpsc::UnboundedReceiver<PushInfo>,
    },
}

impl Subscription {
    /// The channel of the next wake-up; `None` when the subscription has ended.
    async fn next(&mut self) -> Option<String> {
        match self {
            Subscription::Single(stream) => stream
                .next()
                .await
                .map(|m| m.get_channel_name().to_string()),
            Subscription::Cluster { rx, .. } => loop {
                let push = rx.recv().await?;
                if matches!(push.kind, PushKind::SMessage | PushKind::Message) {
                    if let Some(channel) = push.data.first() {
                        return redis::from_redis_value::<String>(channel.clone()).ok();
                    }
                }
            },
        }
    }
}

trait NowOrNever: std::future::Future + Sized {
    /// The future's output if it is ready now, without waiting.
    fn now_or_never(self) -> Option<Self::Output> {
        futures::FutureExt::now_or_never(self)
    }
}

impl<F: std::future::Future> NowOrNever for F {}

impl EventFollower {
    /// The stream id of the last entry read (or of the end when following began).
    pub fn last_id(&self) -> &str {
        &self.last_id
    }

    /// Reads on from `id` instead (a client that resumes from an event it saw).
    pub fn resume_from(&mut self, id: impl Into<String>) {
        self.last_id = id.into();
    }

    /// The next entries after the last one read, waiting up to `block` for some; empty if
    /// none came.
    pub async fn next(&mut self, block: Duration, count: usize) -> Result<Vec<EventEntry>> {
        let opts = StreamReadOptions::default()
            .block(block.as_millis() as usize)
            .count(count);
        let keys = [self.key.as_str()];
        let ids = [self.last_id.as_str()];
        let reply: StreamReadReply = self.conn.xread_options(&keys, &ids, &opts).await?;
        let mut out = Vec::new();
        for key in reply.keys {
            for entry in key.ids {
                let one: Option<String> = entry.get("id");
                let batch: Option<String> = entry.get("ids");
                let mut tasks: Vec<String> = one.into_iter().collect();
                if let Some(b) = batch {
                    tasks.extend(b.split(',').map(str::to_string));
                }
                self.last_id = entry.id.clone();
                out.push(EventEntry {
                    status: entry.get("status"),
                    id: entry.id,
                    tasks,
                });
            }
        }
        Ok(out)
    }
}

impl Broker {
    /// PING: whether Redis answers (the API's readiness).
    pub async fn ping(&self) -> Result<()> {
        let _: String = self
            .with_conn(async |c| redis::cmd("PING").query_async(c).await)
            .await?;
        Ok(())
    }

    /// The server's `maxmemory-policy` (taskfleet needs `noeviction`: an evicted lease or
    /// task hash loses a task).
    pub async fn eviction_policy(&self) -> Result<String> {
        let v: Vec<String> = self
            .with_conn(async |c| {
                redis::cmd("CONFIG")
                    .arg("GET")
                    .arg("maxmemory-policy")
                    .query_async(c)
                    .await
            })
            .await?;
        Ok(v.get(1).cloned().unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_blocking_read_that_times_out_is_an_empty_reply_not_an_error() {
        // XREAD BLOCK answers nil when nothing arrived; `next` relies on that being empty.
        let r: redis::streams::StreamReadReply =
            redis::from_redis_value(redis::Value::Nil).unwrap();
        assert!(r.keys.is_empty());
    }
}
