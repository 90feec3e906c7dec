//! How approximate the claim order across shards is (issue 10): a queue of `S` shards is
//! filled with tasks of mixed priority bands, each batch a millisecond after the last, then
//! drained by one consumer, and the claim order is compared with the global order (band, then
//! enqueue time) the queue would follow with one shard. Within a shard the order is exact; across
//! shards a claim compares the heads of two random shards (the power of two choices), so a
//! claim can start a task while a better one waits in a shard it did not look at.
//!
//! The metric ([`OrderingError::of`]), for each claim in turn, over the tasks still waiting
//! at that moment:
//! - *out of order*: some waiting task comes strictly before it in (band, enqueue time);
//! - *band inversion*: some waiting task has a strictly higher band (what issue 10 asks:
//!   a task of a lower band starts before a waiting task of a higher band);
//! - *displacement*: how many waiting tasks come strictly before it (0 in exact order); its
//!   mean and max over the claims.
//!
//! Tasks of the same band enqueued in the same millisecond are equal: either order is exact.
//! With one shard every figure is 0.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Result};
use serde_json::json;
use taskfleet::{Broker, NewTask, Priority, QueueConfig};

use crate::core::QUEUE;

/// One claim's place in the global order: its band (0 = urgent, claimed first) and its
/// enqueue time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub band: u8,
    pub enqueued_ms: i64,
}

/// How far a claim order is from the global (band, enqueue time) order.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct OrderingError {
    pub claims: usize,
    /// Claims made while a task that comes strictly before it was waiting.
    pub out_of_order: usize,
    /// Claims made while a task of a strictly higher band was waiting.
    pub band_inversions: usize,
    /// Waiting tasks that came strictly before a claim, summed over the claims.
    pub displacement_sum: u64,
    /// The most waiting tasks that came strictly before one claim.
    pub displacement_max: u64,
}

impl OrderingError {
    /// The error of `claims`, the keys of every task in the order they were claimed (every
    /// task waiting from the start, as in the bench case). O(n log n).
    pub fn of(claims: &[Key]) -> OrderingError {
        let mut sorted: Vec<Key> = claims.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let rank = |k: &Key| sorted.binary_search(k).expect("a key of the claims");
        // Waiting tasks per distinct key (a Fenwick tree) and per band.
        let mut waiting = Fenwick::new(sorted.len());
        let mut per_band = [0u64; 256];
        for k in claims {
            waiting.add(rank(k), 1);
            per_band[usize::from(k.band)] += 1;
        }
        let mut e = OrderingError {
            claims: claims.len(),
            ..OrderingError::default()
        };
        for k in claims {
            let r = rank(k);
            let before = waiting.prefix(r);
            if before > 0 {
                e.out_of_order += 1;
            }
            if per_band[..usize::from(k.band)].iter().any(|n| *n > 0) {
                e.band_inversions += 1;
            }
            e.displacement_sum += before as u64;
            e.displacement_max = e.displacement_max.max(before as u64);
            waiting.add(r, -1);
            per_band[usize::from(k.band)] -= 1;
        }
        e
    }

    /// Out-of-order claims as a share of the claims.
    pub fn out_of_order_share(&self) -> f64 {
        self.out_of_order as f64 / self.claims.max(1) as f64
    }

    /// Band inversions as a share of the claims.
    pub fn band_inversion_share(&self) -> f64 {
        self.band_inversions as f64 / self.claims.max(1) as f64
    }

    /// The mean displacement per claim.
    pub fn displacement_mean(&self) -> f64 {
        self.displacement_sum as f64 / self.claims.max(1) as f64
    }
}

/// Counts per rank, with sums of the ranks below one in O(log n).
struct Fenwick(Vec<i64>);

impl Fenwick {
    fn new(n: usize) -> Fenwick {
        Fenwick(vec![0; n + 1])
    }

    fn add(&mut self, at: usize, by: i64) {
        let mut i = at + 1;
        while i < self.0.len() {
            self.0[i] += by;
            i += i & i.wrapping_neg();
        }
    }

    /// The sum over ranks `0..below`.
    fn prefix(&self, below: usize) -> i64 {
        let (mut i, mut s) = (below, 0);
        while i > 0 {
            s += self.0[i];
            i -= i & i.wrapping_neg();
        }
        s
    }
}

/// One ordering run: a queue of `shards` shards.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderingRun {
    pub shards: u16,
    pub tasks: usize,
    /// Tasks per claim of the one consumer.
    pub claim_batch: usize,
    pub error: OrderingError,
    pub elapsed: Duration,
}

/// The band of the `i`th task: the four bands mixed in every batch, in a fixed
/// pseudo-random pattern (the same in every run).
pub fn band_of(i: usize) -> Priority {
    let h = (i as u64)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .rotate_left(17);
    Priority::ALL[(h % 4) as usize]
}

/// Fills a queue of `shards` shards under `prefix` on `url` with `tasks` tasks of mixed bands
/// (100 a call, each call one millisecond after the last), then claims them all with one
/// consumer, `claim_batch` a claim, and measures the order. Bounded by `timeout`.
pub async fn run(
    url: &str,
    prefix: &str,
    shards: u16,
    tasks: usize,
    claim_batch: usize,
    timeout: Duration,
) -> Result<OrderingRun> {
    let b = Broker::builder(url)
        .prefix(prefix)
        .queue(
            QUEUE,
            QueueConfig {
                shards: Some(shards),
                ..QueueConfig::default()
            },
        )
        .worker_id("bench-ordering")
        .timeout(Duration::from_secs(30))
        .build()?;
    let started = Instant::now();
    let deadline = started + timeout;
    let t0 = b.server_time_ms().await?;
    let mut from = 0;
    let mut calls: i64 = 0;
    while from < tasks {
        let batch: Vec<NewTask> = (from..(from + 100).min(tasks))
            .map(|i| {
                NewTask::new(QUEUE, json!({ "n": i % 1000 }))
                    .owner("acct0", "user0-0")
                    .priority(band_of(i))
            })
            .collect();
        from += batch.len();
        b.enqueue_many(batch, t0 + calls).await?;
        calls += 1;
    }
    // Every task is due; the claims act after the last enqueue.
    let at = t0 + calls + 1;
    let mut keys = Vec::with_capacity(tasks);
    while keys.len() < tasks {
        if Instant::now() > deadline {
            bail!(
                "ordering, {shards} shards: {} of {tasks} claimed in {timeout:?}",
                keys.len()
            );
        }
        let got = b.claim(&[QUEUE], claim_batch, at).await?;
        ensure!(
            !got.is_empty(),
            "ordering, {shards} shards: the queue ran dry after {} of {tasks} claims",
            keys.len()
        );
        keys.extend(got.iter().map(|c| Key {
            band: c.priority.band(),
            enqueued_ms: c.created_at,
        }));
    }
    Ok(OrderingRun {
        shards,
        tasks,
        claim_batch,
        error: OrderingError::of(&keys),
        elapsed: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(band: u8, enqueued_ms: i64) -> Key {
        Key { band, enqueued_ms }
    }

    #[test]
    fn an_order_that_follows_band_then_time_has_no_error() {
        let claims = [k(0, 1), k(0, 2), k(1, 1), k(1, 3), k(3, 0)];
        assert_eq!(
            OrderingError::of(&claims),
            OrderingError {
                claims: 5,
                ..OrderingError::default()
            }
        );
    }

    #[test]
    fn equal_keys_in_any_order_are_in_order() {
        let claims = [k(1, 5), k(1, 5), k(1, 5), k(2, 0)];
        let e = OrderingError::of(&claims);
        assert_eq!(
            (e.out_of_order, e.band_inversions, e.displacement_max),
            (0, 0, 0)
        );
    }

    #[test]
    fn a_known_permutation_gives_its_known_figures() {
        // Global order: a(0,1) b(0,2) c(1,1) d(1,2). Claimed: c, a, d, b.
        // c: a and b wait before it (2), both of a higher band: out of order, inversion.
        // a: nothing before it waits (0).
        // d: b waits before it (1), of a higher band: out of order, inversion.
        // b: last (0).
        let claims = [k(1, 1), k(0, 1), k(1, 2), k(0, 2)];
        let e = OrderingError::of(&claims);
        assert_eq!(e.claims, 4);
        assert_eq!(e.out_of_order, 2);
        assert_eq!(e.band_inversions, 2);
        assert_eq!(e.displacement_sum, 3);
        assert_eq!(e.displacement_max, 2);
        assert!((e.out_of_order_share() - 0.5).abs() < 1e-12);
        assert!((e.displacement_mean() - 0.75).abs() < 1e-12);
    }

    #[test]
    fn a_later_task_of_the_same_band_is_out_of_order_but_no_inversion() {
        // (0,2) before (0,1): out of order by one place, the same band.
        let e = OrderingError::of(&[k(0, 2), k(0, 1)]);
        assert_eq!((e.out_of_order, e.band_inversions), (1, 0));
        assert_eq!((e.displacement_sum, e.displacement_max), (1, 1));
    }

    #[test]
    fn the_reverse_order_has_every_claim_but_the_last_out_of_order() {
        let mut claims: Vec<Key> = (0..100).map(|i| k((i % 4) as u8, i / 4)).collect();
        claims.sort();
        claims.reverse();
        let e = OrderingError::of(&claims);
        assert_eq!(e.out_of_order, 99);
        // The i-th claim (from 0) has 99 - i better tasks waiting.
        assert_eq!(e.displacement_sum, (0..100).sum::<u64>());
        assert_eq!(e.displacement_max, 99);
        // The 25 urgent ones come last: every claim before them is an inversion.
        assert_eq!(e.band_inversions, 75);
    }

    #[test]
    fn the_bands_are_mixed_evenly() {
        let mut n = [0usize; 4];
        for i in 0..10_000 {
            n[usize::from(band_of(i).band())] += 1;
        }
        assert!(n.iter().all(|c| (2_000..3_000).contains(c)), "{n:?}");
        // Every batch of 100 has every band.
        let first: std::collections::HashSet<u8> = (0..100).map(|i| band_of(i).band()).collect();
        assert_eq!(first.len(), 4);
    }
}
