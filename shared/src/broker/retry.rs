//! Retry from the outside: a failed or cancelled task back in its queue with a new attempt
//! budget (`retry.lua`), its old ending kept in `previous_errors`; and the tasks it had started
//! (a course's lessons) that ended failed or cancelled with it, retried too.

use super::conn::{script, Dual};
use super::shards::Shard;
use super::{parse_children, Broker, EVENTS_MAXLEN, MAX_CASCADE};
use crate::clock::At;
use crate::error::{Error, Result};

static RETRY: std::sync::LazyLock<Dual> = script!("retry.lua", "now.lua", "band.lua", "wake.lua");

/// How many earlier endings a task's `previous_errors` keeps (the oldest go first).
pub const MAX_PREVIOUS_ERRORS: usize = 20;

/// Retries one task of a known shard: the children field if it went back to `queued`.
async fn retry_one(broker: &Broker, shard: &Shard, id: &str, at: At) -> Result<String> {
    let config = broker.queue_config(shard.task_type())?;
    let k = &broker.inner.keys;
    let t = shard.tag();
    let keys = [
        k.queued(t),
        k.failed(t),
        k.cancelled(t),
        k.stats(t),
        k.events(t),
        k.wake(t),
        k.task_prefix(t),
    ];
    let args = [
        at.arg(),
        id.to_string(),
        config.max_attempts.to_string(),
        EVENTS_MAXLEN.to_string(),
        MAX_PREVIOUS_ERRORS.to_string(),
    ];
    let (outcome, status, children): (String, String, String) =
        broker.script(&RETRY, &keys, &args).await?;
    match outcome.as_str() {
        "queued" => Ok(children),
        "conflict" => Err(Error::NotRetryable {
            id: id.to_string(),
            status,
        }),
        _ => Err(Error::NotFound(id.to_string())),
    }
}

impl Broker {
    /// Puts a `failed` or `cancelled` task back in `queued` with a new attempt budget (the
    /// type's `max_attempts` as configured now), its error and ending kept in
    /// `previous_errors`; the tasks it started that ended failed or cancelled go back too (at
    /// most [`MAX_CASCADE`]), so a retried course finds its lessons running again.
    /// [`Error::NotRetryable`] (nothing changes) for a task in any other state.
    pub async fn retry(&self, id: &str, at: impl Into<At>) -> Result<()> {
        let at = at.into();
        let shard = self
            .locate(id)
            .await?
            .ok_or_else(|| Error::NotFound(id.to_string()))?;
        let children = retry_one(self, &shard, id, at).await?;
        let mut todo = parse_children(&children);
        let mut reached = 0;
        while let Some((t, child)) = todo.pop() {
            if reached >= MAX_CASCADE {
                tracing::warn!(
                    remaining = todo.len() + 1,
                    "retry of children stopped at its bound"
                );
                break;
            }
            reached += 1;
            let Ok(shard) = self.shard_of(&t, &child) else {
                continue;
            };
            // A child that completed (or still runs) stays as it is.
            match retry_one(self, &shard, &child, at).await {
                Ok(grandchildren) => todo.extend(parse_children(&grandchildren)),
                Err(e) => tracing::debug!(task = %child, error = %e, "child not retried"),
            }
        }
        Ok(())
    }
}
