//! Group commit: concurrent single writes of one process to the same place (one shard's
//! enqueue, one account's rate window) go to Redis as one script call, each caller still
//! getting its own answer.
//!
//! No timer: a caller that finds its lane idle sends at once, itself, so a lone call costs
//! nothing extra. Callers that arrive while [`IN_FLIGHT`] calls of their lane are out wait in
//! the lane; when a call comes back, whoever sent it hands its slot to a flusher task that
//! sends what waits (up to the lane's batch size) and goes on until the lane is empty. Under
//! load the batches grow to match the callers, so a busy process sends few large calls
//! instead of many small ones, and Redis spends its time on tasks rather than on calls.
//!
//! Nothing hangs: a waiting caller is answered by the call that carries its item, and a caller
//! whose own call is dropped halfway (an HTTP client that went away) gives its slot to a
//! flusher on the way out, so the callers behind it are still sent.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use tokio::sync::oneshot;

use crate::error::{Error, Result};

/// Calls of one lane out at once: two, so Redis works on one batch while the next is being
/// gathered and sent.
pub const IN_FLIGHT: usize = 2;

/// Sends one batch: one answer per item, in order.
pub type Send<K, I, O> =
    Arc<dyn Fn(K, Vec<I>) -> BoxFuture<'static, Vec<Result<O>>> + Sync + std::marker::Send>;

struct Lane<I, O> {
    busy: usize,
    waiting: Vec<(I, oneshot::Sender<Result<O>>)>,
}

/// One coalescer: lanes by key, each sending through the same function.
pub struct Group<K, I, O> {
    lanes: Mutex<HashMap<K, Lane<I, O>>>,
    max_batch: usize,
    send: Send<K, I, O>,
}

impl<K, I, O> Group<K, I, O>
where
    K: Hash + Eq + Clone + std::marker::Send + Sync + 'static,
    I: std::marker::Send + 'static,
    O: std::marker::Send + 'static,
{
    pub fn new(max_batch: usize, send: Send<K, I, O>) -> Arc<Self> {
        Arc::new(Group {
            lanes: Mutex::new(HashMap::new()),
            max_batch: max_batch.max(1),
            send,
        })
    }

    /// Sends `item` in the next call of lane `key`, and answers with its own result.
    pub async fn submit(self: &Arc<Self>, key: K, item: I) -> Result<O> {
        let item = {
            let mut lanes = self.lanes.lock().expect("group lock");
            let lane = lanes.entry(key.clone()).or_insert_with(|| Lane {
                busy: 0,
                waiting: Vec::new(),
            });
            if lane.busy < IN_FLIGHT && lane.waiting.is_empty() {
                lane.busy += 1;
                Ok(item)
            } else {
                let (tx, rx) = oneshot::channel();
                lane.waiting.push((item, tx));
                Err(rx)
            }
        };
        let item = match item {
            Ok(item) => item,
            // Not sent by us: a flusher (or the caller ahead of us) carries it.
            Err(rx) => {
                return rx.await.unwrap_or_else(|_| {
                    Err(Error::Unavailable(
                        "the grouped call carrying this write was dropped".into(),
                    ))
                })
            }
        };
        // Ours to send, alone: the lane was idle. The guard hands the slot on when we are
        // done (or dropped halfway).
        let guard = Slot {
            group: self.clone(),
            key: Some(key.clone()),
        };
        let mut answers = (self.send)(key, vec![item]).await;
        drop(guard);
        answers
            .pop()
            .unwrap_or_else(|| Err(Error::Redis("a grouped call answered nothing".into())))
    }

    /// Gives back one slot of `key`'s lane: to a flusher if callers wait, else to the lane.
    fn release(self: &Arc<Self>, key: K) {
        let mut lanes = self.lanes.lock().expect("group lock");
        let Some(lane) = lanes.get_mut(&key) else {
            return;
        };
        if lane.waiting.is_empty() {
            lane.busy -= 1;
            if lane.busy == 0 {
                lanes.remove(&key);
            }
            return;
        }
        drop(lanes);
        let group = self.clone();
        tokio::spawn(async move { group.flush(key).await });
    }

    /// Sends what waits in `key`'s lane, batch after batch, holding one of its slots, until
    /// nothing waits.
    async fn flush(self: Arc<Self>, key: K) {
        loop {
            let batch: Vec<_> = {
                let mut lanes = self.lanes.lock().expect("group lock");
                let Some(lane) = lanes.get_mut(&key) else {
                    return;
                };
                if lane.waiting.is_empty() {
                    lane.busy -= 1;
                    if lane.busy == 0 {
                        lanes.remove(&key);
                    }
                    return;
                }
                let n = lane.waiting.len().min(self.max_batch);
                lane.waiting.drain(..n).collect()
            };
            let (items, answer_to): (Vec<I>, Vec<_>) = batch.into_iter().unzip();
            let n = items.len();
            let mut answers = (self.send)(key.clone(), items).await;
            answers.resize_with(n, || {
                Err(Error::Redis("a grouped call answered too few".into()))
            });
            for (tx, answer) in answer_to.into_iter().zip(answers) {
                // A caller that went away does not need its answer.
                let _ = tx.send(answer);
            }
        }
    }
}

/// One lane slot, held while its call is out.
struct Slot<K, I, O>
where
    K: Hash + Eq + Clone + std::marker::Send + Sync + 'static,
    I: std::marker::Send + 'static,
    O: std::marker::Send + 'static,
{
    group: Arc<Group<K, I, O>>,
    key: Option<K>,
}

impl<K, I, O> Drop for Slot<K, I, O>
where
    K: Hash + Eq + Clone + std::marker::Send + Sync + 'static,
    I: std::marker::Send + 'static,
    O: std::marker::Send + 'static,
{
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.group.release(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn doubling(calls: Arc<Mutex<Vec<usize>>>) -> Send<&'static str, u32, u32> {
        Arc::new(move |_key, items: Vec<u32>| {
            calls.lock().unwrap().push(items.len());
            Box::pin(async move {
                tokio::task::yield_now().await;
                items
                    .into_iter()
                    .map(|i| {
                        if i == 13 {
                            Err(Error::invalid("item", "unlucky"))
                        } else {
                            Ok(i * 2)
                        }
                    })
                    .collect()
            })
        })
    }

    #[tokio::test]
    async fn a_lone_call_is_sent_alone_and_answered() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let g = Group::new(100, doubling(calls.clone()));
        assert_eq!(g.submit("a", 4).await.unwrap(), 8);
        assert_eq!(g.submit("a", 5).await.unwrap(), 10);
        assert_eq!(*calls.lock().unwrap(), vec![1, 1]);
        assert!(g.lanes.lock().unwrap().is_empty(), "an idle lane is gone");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_share_calls_and_each_gets_its_own_answer() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let g = Group::new(64, doubling(calls.clone()));
        let done = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..1000u32)
            .map(|i| {
                let (g, done) = (g.clone(), done.clone());
                tokio::spawn(async move {
                    let r = g.submit(if i % 2 == 0 { "even" } else { "odd" }, i).await;
                    done.fetch_add(1, Ordering::Relaxed);
                    (i, r)
                })
            })
            .collect();
        for h in handles {
            let (i, r) = h.await.unwrap();
            match r {
                Ok(v) => assert_eq!(v, i * 2),
                Err(e) => {
                    assert_eq!(i, 13, "only the bad item fails: {e}");
                }
            }
        }
        assert_eq!(done.load(Ordering::Relaxed), 1000);
        let calls = calls.lock().unwrap();
        assert_eq!(calls.iter().sum::<usize>(), 1000, "every item sent once");
        assert!(calls.iter().all(|&n| n <= 64), "batches bounded: {calls:?}");
        assert!(
            calls.len() < 1000,
            "concurrent callers were grouped: {} calls",
            calls.len()
        );
        assert!(g.lanes.lock().unwrap().is_empty(), "every lane drained");
    }

    #[tokio::test]
    async fn a_dropped_sender_hands_on_its_slot() {
        // The first caller's call never finishes; it is dropped; the callers behind it are
        // still sent.
        let sent = Arc::new(AtomicUsize::new(0));
        let s = sent.clone();
        let send: Send<&'static str, u32, u32> = Arc::new(move |_k, items: Vec<u32>| {
            let s = s.clone();
            Box::pin(async move {
                if items == [0] || items == [1] {
                    std::future::pending::<()>().await;
                }
                s.fetch_add(items.len(), Ordering::Relaxed);
                items.into_iter().map(Ok).collect()
            })
        });
        let g = Group::new(10, send);
        let first = tokio::spawn({
            let g = g.clone();
            async move { g.submit("k", 0).await }
        });
        let second = tokio::spawn({
            let g = g.clone();
            async move { g.submit("k", 1).await }
        });
        tokio::task::yield_now().await;
        while g.lanes.lock().unwrap().get("k").map(|l| l.busy) != Some(IN_FLIGHT) {
            tokio::task::yield_now().await;
        }
        let behind = tokio::spawn({
            let g = g.clone();
            async move { g.submit("k", 7).await }
        });
        while g.lanes.lock().unwrap()["k"].waiting.is_empty() {
            tokio::task::yield_now().await;
        }
        first.abort();
        assert_eq!(behind.await.unwrap().unwrap(), 7);
        second.abort();
        assert_eq!(sent.load(Ordering::Relaxed), 1);
    }
}
