//! The Redis key layout: the only code that spells a key (DESIGN §3).
//!
//! A task type's keys live in shards: every key of shard `s` of type `T` carries that shard's
//! hash tag ([`shard_tag`]: `{T}` when the type has one shard, `{T#s}` or `{T#s.n}` when it has
//! several), so each Lua script, which only touches the keys of one shard, runs on a single
//! Redis Cluster slot. The key functions below take that tag. Keys that are not about one
//! shard are never touched by a script: the worker registry (tag `{workers}`) and the API keys
//! (tag `{apikeys}`), each in one slot so that its pipelines stay atomic; rate counters and
//! the shard counts, one key per command.

/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "tf";

/// Builds key names under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `<prefix>:{<tag>}:<what>`: a key in a shard's hash tag, so one slot.
    fn tagged(&self, tag: &str, what: &str) -> String {
        format!("{}:{{{}}}:{}", self.prefix, tag, what)
    }

    /// ZSET: ready ids, score = band × 10^13 + enqueue ms (lower runs first).
    pub fn queued(&self, t: &str) -> String {
        self.tagged(t, "queued")
    }
    /// ZSET: ids waiting for their `run_at`, score = due ms.
    pub fn scheduled(&self, t: &str) -> String {
        self.tagged(t, "scheduled")
    }
    /// ZSET: ids waiting out a retry backoff, score = due ms.
    pub fn retrying(&self, t: &str) -> String {
        self.tagged(t, "retrying")
    }
    /// ZSET: leased ids, score = lease deadline ms.
    pub fn processing(&self, t: &str) -> String {
        self.tagged(t, "processing")
    }
    /// ZSET: completed ids, score = finish ms.
    pub fn completed(&self, t: &str) -> String {
        self.tagged(t, "completed")
    }
    /// ZSET: failed ids, score = finish ms.
    pub fn failed(&self, t: &str) -> String {
        self.tagged(t, "failed")
    }
    /// ZSET: cancelled ids, score = finish ms.
    pub fn cancelled(&self, t: &str) -> String {
        self.tagged(t, "cancelled")
    }
    /// HASH: counters (enqueued, started, completed, failed, retried, cancelled, recovered, busy_ms).
    pub fn stats(&self, t: &str) -> String {
        self.tagged(t, "stats")
    }
    /// STRING: present while claiming is stopped for this type.
    pub fn paused(&self, t: &str) -> String {
        self.tagged(t, "paused")
    }
    /// STREAM: task events, capped.
    pub fn events(&self, t: &str) -> String {
        self.tagged(t, "events")
    }
    /// CHANNEL: enqueue, promote, release, recover and resume publish here (sharded pub/sub
    /// on a cluster); idle workers subscribe. A channel, not a key, but named in the shard's
    /// tag so a script may publish to it.
    pub fn wake(&self, t: &str) -> String {
        self.tagged(t, "wake")
    }
    /// Prefix of the task HASH keys; `task_prefix(t) + id` is a task.
    pub fn task_prefix(&self, t: &str) -> String {
        self.tagged(t, "task:")
    }
    /// HASH: one task (DESIGN §4).
    pub fn task(&self, t: &str, id: &str) -> String {
        format!("{}{}", self.task_prefix(t), id)
    }
    /// Prefix of the per-account index keys; `account_prefix(t) + account` is a ZSET of ids.
    pub fn account_prefix(&self, t: &str) -> String {
        self.tagged(t, "account:")
    }
    /// ZSET: one account's task ids of this type, score = created ms.
    pub fn account(&self, t: &str, account_id: &str) -> String {
        format!("{}{}", self.account_prefix(t), account_id)
    }
    /// Prefix of the idempotency keys; `+ account + ":" + key` is a STRING holding a task id.
    pub fn idem_prefix(&self, t: &str) -> String {
        self.tagged(t, "idem:")
    }
    /// STRING: the task id an Idempotency-Key of an account already created.
    pub fn idem(&self, t: &str, account_id: &str, key: &str) -> String {
        format!("{}{}:{}", self.idem_prefix(t), account_id, key)
    }
    /// HASH: request bytes (JSON) each account holds of this type, by account id: its quota.
    pub fn account_bytes(&self, t: &str) -> String {
        self.tagged(t, "account_bytes")
    }
    /// STRING + TTL: the ids one claim call leased (comma-separated), for one lease, so that
    /// a claimer whose reply was lost can give them back; by the call's lease token prefix.
    pub fn claim_record(&self, t: &str, token_prefix: &str) -> String {
        self.tagged(t, &format!("claim:{token_prefix}"))
    }
    /// ZSET: the shard's delivery queue (issue 13): webhook delivery ids and batch notes
    /// (`b|<batch>|<task>|<status>`), score = due ms (a claimed entry: its lease's end).
    /// `includes/outbox.lua` spells it from the task prefix: keep the two in step.
    pub fn hooks(&self, t: &str) -> String {
        self.tagged(t, "hooks")
    }
    /// Prefix of the delivery records; `+ delivery id` is a HASH (event, url, account_id,
    /// body, state, attempts, `a:<n>` each attempt as JSON).
    pub fn hook_prefix(&self, t: &str) -> String {
        self.tagged(t, "hook:")
    }
    /// HASH: a batch (issue 13): account_id, user_id, total, ids, webhook_url, created_at,
    /// state, finished_at and the counts it finished with. In the slot of its first task's
    /// shard (its id names it: `<type>.<shard>.batch-<uuid>`).
    pub fn batch(&self, t: &str, batch_id: &str) -> String {
        self.tagged(t, &format!("batch:{batch_id}"))
    }
    /// HASH: a batch's finished tasks, task id -> the status it ended with.
    pub fn batch_done(&self, t: &str, batch_id: &str) -> String {
        self.tagged(t, &format!("batch:{batch_id}:done"))
    }
    /// HASH: an account's webhook signing secrets, by secret id -> JSON {secret, created_at,
    /// expires_at}. One key per account, touched one command at a time.
    pub fn webhook_secrets(&self, account_id: &str) -> String {
        format!("{}:whsec:{}", self.prefix, account_id)
    }
    /// HASH + TTL: a worker's heartbeat. The registry's keys share the tag `{workers}`, so
    /// a heartbeat writes its hash and its score in one atomic step on a cluster too.
    pub fn worker(&self, worker_id: &str) -> String {
        format!("{}:{{workers}}:worker:{}", self.prefix, worker_id)
    }
    /// ZSET: worker ids, score = last heartbeat ms.
    pub fn workers(&self) -> String {
        format!("{}:{{workers}}:all", self.prefix)
    }
    /// HASH: an API key's account, user and role, by the SHA-256 hex of the key. The API
    /// keys share the tag `{apikeys}` (one slot: a key and its listing change together).
    pub fn apikey(&self, sha256_hex: &str) -> String {
        format!("{}:{{apikeys}}:key:{}", self.prefix, sha256_hex)
    }
    /// STRING + TTL: how many enqueues an account made in one minute window (the API's rate
    /// limit); `window` is the minute since the epoch.
    pub fn rate(&self, account_id: &str, window: i64) -> String {
        format!("{}:rate:{}:{}", self.prefix, account_id, window)
    }
    /// SET: the SHA-256 hex of every API key (for `keys list`).
    pub fn apikeys(&self) -> String {
        format!("{}:{{apikeys}}:all", self.prefix)
    }
    /// HASH: one recurring schedule (DESIGN §3). The schedules share the tag `{schedules}`:
    /// a tick's compare-and-set touches a schedule and the due set in one atomic script.
    pub fn schedule(&self, id: &str) -> String {
        format!("{}:{{schedules}}:schedule:{}", self.prefix, id)
    }
    /// ZSET: active schedules by when they next need a scheduler (their next tick, or a
    /// claimed tick not yet enqueued), score = ms.
    pub fn schedules_due(&self) -> String {
        format!("{}:{{schedules}}:due", self.prefix)
    }
    /// ZSET: every schedule id, score = created ms.
    pub fn schedules_all(&self) -> String {
        format!("{}:{{schedules}}:all", self.prefix)
    }
    /// ZSET: one account's schedule ids, score = created ms.
    pub fn schedules_account(&self, account_id: &str) -> String {
        format!("{}:{{schedules}}:account:{}", self.prefix, account_id)
    }
    /// HASH: each task type's shard count, recorded by the first process to start, so every
    /// process agrees (one that disagrees refuses to start).
    pub fn shard_counts(&self) -> String {
        format!("{}:shards", self.prefix)
    }
}

/// The hash tag of shard `shard` of `count` of type `task_type`. One shard: the type itself
/// (`{video}`). Several: `T#s`, or `T#s.n` for the first `n` that puts the tag's slot in the
/// shard's own `1/count` of the 16,384 slots, so that a cluster whose primaries hold even slot
/// ranges gets an even share of every type (a plain suffix can put most shards of a type on
/// one node).
pub fn shard_tag(task_type: &str, shard: u16, count: u16) -> String {
    if count <= 1 {
        return task_type.to_string();
    }
    let (lo, hi) = shard_slots(shard, count);
    (0u32..)
        .map(|n| {
            if n == 0 {
                format!("{task_type}#{shard}")
            } else {
                format!("{task_type}#{shard}.{n}")
            }
        })
        .find(|tag| (lo..hi).contains(&slot_of_tag(tag)))
        .expect("some suffix lands in every range")
}

/// The slots `[lo, hi)` shard `shard` of `count` aims at.
pub fn shard_slots(shard: u16, count: u16) -> (u16, u16) {
    let count = u32::from(count.max(1));
    let s = u32::from(shard);
    (
        (s * 16_384 / count) as u16,
        ((s + 1) * 16_384 / count) as u16,
    )
}

fn slot_of_tag(tag: &str) -> u16 {
    crc16::State::<crc16::XMODEM>::calculate(tag.as_bytes()) % 16_384
}

/// The Redis Cluster slot of a key: CRC16 (XMODEM, the `crc16` crate redis-rs uses too) of
/// its hash tag, mod 16384.
pub fn cluster_slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let tagged = key.find('{').and_then(|open| {
        key[open + 1..]
            .find('}')
            .filter(|&len| len > 0)
            .map(|len| &bytes[open + 1..open + 1 + len])
    });
    crc16::State::<crc16::XMODEM>::calculate(tagged.unwrap_or(bytes)) % 16384
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_matches_the_cluster_specification() {
        // The Redis Cluster spec's test vector.
        assert_eq!(
            crc16::State::<crc16::XMODEM>::calculate(b"123456789"),
            0x31C3
        );
        assert_eq!(cluster_slot("foo"), 12182);
        assert_eq!(
            cluster_slot("{user1000}.following"),
            cluster_slot("user1000")
        );
    }

    #[test]
    fn each_shard_of_a_type_lands_in_its_own_share_of_the_slots() {
        assert_eq!(shard_tag("video", 0, 1), "video");
        for count in [2u16, 3, 4, 16] {
            let mut seen = std::collections::HashSet::new();
            for s in 0..count {
                let tag = shard_tag("video", s, count);
                let (lo, hi) = shard_slots(s, count);
                let slot = cluster_slot(&Keys::new("tf").queued(&tag));
                assert!((lo..hi).contains(&slot), "{tag}: {slot} not in {lo}..{hi}");
                assert!(seen.insert(tag));
            }
        }
    }

    #[test]
    fn keys_are_spelled_as_the_design_says() {
        let k = Keys::new("tf");
        assert_eq!(k.queued("video"), "tf:{video}:queued");
        assert_eq!(k.task("video", "abc"), "tf:{video}:task:abc");
        assert_eq!(k.worker("w1"), "tf:{workers}:worker:w1");
        assert_eq!(k.idem("quiz", "acme", "k1"), "tf:{quiz}:idem:acme:k1");
    }

    #[test]
    fn the_outbox_fragment_spells_the_delivery_keys_as_keys_rs_does() {
        // includes/outbox.lua: base = task prefix without "task:"; base .. "hooks", "hook:".
        let k = Keys::new("tf");
        let prefix = k.task_prefix("video#3");
        let base = &prefix[..prefix.len() - "task:".len()];
        assert_eq!(format!("{base}hooks"), k.hooks("video#3"));
        assert_eq!(format!("{base}hook:"), k.hook_prefix("video#3"));
    }

    #[test]
    fn every_key_a_script_touches_hashes_to_one_slot() {
        let k = Keys::new("tf");
        for t in ["video", "course_video", "quiz", "x#3"] {
            let keys = [
                k.queued(t),
                k.scheduled(t),
                k.retrying(t),
                k.processing(t),
                k.completed(t),
                k.failed(t),
                k.cancelled(t),
                k.stats(t),
                k.paused(t),
                k.events(t),
                k.wake(t),
                k.task(t, "0190f3c2-0000-7000-8000-000000000000"),
                k.account(t, "acme"),
                k.idem(t, "acme", "key-1"),
                k.account_bytes(t),
                k.claim_record(t, "w1-00ff"),
                k.hooks(t),
                format!("{}x.1", k.hook_prefix(t)),
                k.batch(t, "x.0.batch-1"),
                k.batch_done(t, "x.0.batch-1"),
            ];
            let slot = cluster_slot(&keys[0]);
            for key in &keys {
                assert_eq!(
                    cluster_slot(key),
                    slot,
                    "{key} is not in the slot of {}",
                    keys[0]
                );
            }
        }
        assert_ne!(
            cluster_slot(&k.queued("video")),
            cluster_slot(&k.queued("quiz"))
        );
    }
}
