//! Following what happens: a task type's event stream read with blocking `XREAD` (the API's
//! Server-Sent Events), and idle workers' wait for work on the types' `signal` lists. Both
//! block, so each holds a connection of its own: a blocking read on the shared connection
//! would stall every other call pipelined on it.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::streams::{StreamReadOptions, StreamReadReply};
use redis::AsyncCommands;

use crate::broker::Broker;
use crate::error::{Error, Result};

/// One entry of a type's event stream: its stream id, the tasks it is about (`id` for one
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

/// A reader of one type's event stream, from a position on.
pub struct EventFollower {
    conn: MultiplexedConnection,
    key: String,
    last_id: String,
}

impl Broker {
    /// A connection of its own, answering within `response` (longer than any block on it).
    async fn dedicated_connection(&self, response: Duration) -> Result<MultiplexedConnection> {
        let client = redis::Client::open(self.url())
            .map_err(|e| Error::invalid("redis.url", e.to_string()))?;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout()))
            .set_response_timeout(Some(response));
        Ok(client
            .get_multiplexed_async_connection_with_config(&config)
            .await?)
    }

    /// Follows the event stream of `task_type` from its current end, on a connection of its
    /// own whose reads may block up to `max_block`.
    pub async fn follow_events(
        &self,
        task_type: &str,
        max_block: Duration,
    ) -> Result<EventFollower> {
        self.queue_config(task_type)?;
        let mut conn = self
            .dedicated_connection(max_block + Duration::from_secs(5))
            .await?;
        let key = self.keys().events(task_type);
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

    /// Waits for work on the `signal` lists of `types` (pushed by enqueue, promote, release,
    /// recover and resume), on a connection of its own, at most `poll`; an error (Redis away)
    /// waits a little and returns, so the caller polls anyway.
    pub async fn wait_for_work(&self, waiter: &mut WorkWaiter, types: &[&str], poll: Duration) {
        if waiter.conn.is_none() {
            match self
                .dedicated_connection(poll + Duration::from_secs(2))
                .await
            {
                Ok(c) => waiter.conn = Some(c),
                Err(_) => {
                    tokio::time::sleep(poll.min(Duration::from_millis(500))).await;
                    return;
                }
            }
        }
        let signals: Vec<String> = types.iter().map(|t| self.keys().signal(t)).collect();
        let c = waiter.conn.as_mut().expect("connection made above");
        let r: redis::RedisResult<Option<(String, String)>> = redis::cmd("BLPOP")
            .arg(&signals)
            .arg(poll.as_secs_f64())
            .query_async(c)
            .await;
        if r.is_err() {
            waiter.conn = None;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// An idle worker's connection for [`Broker::wait_for_work`], made on first use.
#[derive(Default)]
pub struct WorkWaiter {
    conn: Option<MultiplexedConnection>,
}

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
