//! The tasks this worker has claimed and not yet acknowledged, one entry per *attempt*: a
//! task id and the lease token of the claim that started it. A task taken back while it ran
//! (an operator's cleanup, a lost lease) and claimed again by this same worker is a second
//! attempt with its own entry: the old run is told it lost, its result is written with its
//! own (stale, refused) lease, and only its own entry is removed when it ends.
//!
//! The table owns its lock, the run permits (one per processor slot), the claims reserved by
//! the acker's fused complete-and-claim, and the notifier of freed slots; the runner, the
//! heartbeat and shutdown use it only through these methods.
//!
//! **Claim-ahead.** While the tasks this worker runs are short (a moving average of their run
//! times under [`AHEAD_BELOW`]), it holds up to `ahead` claimed tasks more than it has slots:
//! they wait for a run permit, so a slot that frees starts its next task at once instead of
//! waiting a round trip for a claim. Their leases are renewed like any other; with long tasks
//! the allowance is 0, so no task waits behind a long one while another worker idles.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// One attempt of a task: its id and the lease token its claim gave.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Attempt {
    pub id: String,
    pub lease: String,
}

/// What the heartbeat or shutdown decided about a running attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    Running,
    /// Its cancel was requested: acknowledge as cancelled.
    CancelRequested,
    /// The lease is gone (recovered, or claimed again): write nothing that counts.
    Lost,
    /// Given back at shutdown: write nothing.
    Released,
}

/// What the table knows of one attempt.
#[derive(Debug, Clone)]
pub struct Entry {
    pub task_type: String,
    pub parent_id: Option<String>,
    pub webhook_url: Option<String>,
    pub cancel: CancellationToken,
    pub state: RunState,
}

/// Claim-ahead is on while the moving average of run times is under this.
pub const AHEAD_BELOW: Duration = Duration::from_millis(100);

/// The in-flight table (see the module's doc).
pub struct InFlight {
    // A std mutex: held for a few map operations, never across an await.
    entries: Mutex<HashMap<Attempt, Entry>>,
    /// Processors running now (≤ concurrency): each holds a permit.
    running: AtomicUsize,
    permits: Arc<Semaphore>,
    /// Claims out in a fused complete-and-claim call: slots the main loop leaves alone.
    reserved: AtomicUsize,
    /// The moving average of run times, in µs (u64::MAX until one is known).
    average_run_us: AtomicU64,
    slot_freed: Notify,
    concurrency: usize,
    /// Tasks held beyond the slots while tasks are short.
    ahead: usize,
}

impl InFlight {
    pub fn new(concurrency: usize) -> InFlight {
        InFlight {
            entries: Mutex::new(HashMap::new()),
            running: AtomicUsize::new(0),
            permits: Arc::new(Semaphore::new(concurrency)),
            reserved: AtomicUsize::new(0),
            average_run_us: AtomicU64::new(u64::MAX),
            slot_freed: Notify::new(),
            concurrency,
            ahead: (concurrency / 4).clamp(1, 32),
        }
    }

    /// Waits for a processor slot; the permit is the slot.
    pub async fn permit(&self) -> OwnedSemaphorePermit {
        self.permits
            .clone()
            .acquire_owned()
            .await
            .expect("the permits are never closed")
    }

    /// A processor starts (it holds a permit).
    pub fn began(&self) {
        self.running.fetch_add(1, Ordering::AcqRel);
    }

    /// Processors running now.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Acquire)
    }

    /// Records a finished run's time in the moving average (1/8 weight).
    pub fn observe_run(&self, d: Duration) {
        let us = d.as_micros().min(u128::from(u64::MAX / 2)) as u64;
        let old = self.average_run_us.load(Ordering::Relaxed);
        let new = if old == u64::MAX {
            us
        } else {
            old - old / 8 + us / 8
        };
        self.average_run_us.store(new, Ordering::Relaxed);
    }

    /// The tasks this worker holds at most now: its slots, plus the claim-ahead allowance
    /// while tasks are short.
    fn capacity(&self) -> usize {
        let avg = self.average_run_us.load(Ordering::Relaxed);
        if avg < AHEAD_BELOW.as_micros() as u64 {
            self.concurrency + self.ahead
        } else {
            self.concurrency
        }
    }

    /// How many tasks a fused complete-and-claim may lease once `finishing` entries of the
    /// table are written: reserve them with [`InFlight::reserve`] while the call is out.
    pub fn claimable_after(&self, finishing: usize) -> usize {
        let held = self.len().saturating_sub(finishing) + self.reserved.load(Ordering::Acquire);
        self.capacity().saturating_sub(held)
    }

    /// Keeps `n` slots for a claim that is out.
    pub fn reserve(&self, n: usize) {
        self.reserved.fetch_add(n, Ordering::AcqRel);
    }

    /// Gives back what [`InFlight::reserve`] kept.
    pub fn unreserve(&self, n: usize) {
        self.reserved.fetch_sub(n, Ordering::AcqRel);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Attempt, Entry>> {
        self.entries.lock().expect("in-flight lock")
    }

    /// A claimed attempt is held: its entry is added, and any older attempt of the same task
    /// still here is marked lost and its token fired (its lease was taken back before this
    /// claim could happen). Its processor runs once it has a permit.
    pub fn start(&self, attempt: Attempt, entry: Entry) {
        let mut map = self.lock();
        for (a, e) in map.iter_mut() {
            if a.id == attempt.id && a.lease != attempt.lease {
                e.state = RunState::Lost;
                e.cancel.cancel();
            }
        }
        map.insert(attempt, entry);
    }

    /// An attempt's processor returned: its slot is free (its result may still be written).
    pub fn processor_done(&self) {
        self.running.fetch_sub(1, Ordering::AcqRel);
        self.slot_freed.notify_one();
    }

    /// Waits until a slot may have freed.
    pub async fn slot_freed(&self) {
        self.slot_freed.notified().await
    }

    /// Wakes a waiter on [`InFlight::slot_freed`] (a batch of results was written).
    pub fn notify(&self) {
        self.slot_freed.notify_one();
    }

    /// How many more tasks the main loop may claim now: the capacity less what the table
    /// holds (running, waiting for a slot, or waiting for its result to be written: those
    /// slots are refilled by the acker's fused complete-and-claim) and what a fused claim
    /// out has reserved. A Redis outage piles up at most the capacity in unwritten results.
    pub fn free_slots(&self) -> usize {
        let held = self.len() + self.reserved.load(Ordering::Acquire);
        self.capacity().saturating_sub(held)
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What the table knows of an attempt, if it is still here.
    pub fn get(&self, attempt: &Attempt) -> Option<Entry> {
        self.lock().get(attempt).cloned()
    }

    /// Removes an attempt's entry: only the attempt itself, never another of the same task.
    pub fn remove(&self, attempt: &Attempt) {
        self.lock().remove(attempt);
    }

    /// (id, lease) of every attempt whose lease this worker still holds, grouped by type: at
    /// most one per task (a newer claim marked older attempts lost).
    pub fn held_by_type(&self) -> HashMap<String, Vec<(String, String)>> {
        let mut out: HashMap<String, Vec<(String, String)>> = HashMap::new();
        for (a, e) in self.lock().iter() {
            if matches!(e.state, RunState::Running | RunState::CancelRequested) {
                out.entry(e.task_type.clone())
                    .or_default()
                    .push((a.id.clone(), a.lease.clone()));
            }
        }
        out
    }

    /// Marks the held attempt of task `id` (the one with lease `lease`) and fires its token:
    /// a lost lease always, a cancel request only while it runs.
    pub fn mark(&self, attempt: &Attempt, state: RunState) {
        if let Some(e) = self.lock().get_mut(attempt) {
            if e.state == RunState::Running || state == RunState::Lost {
                e.state = state;
            }
            e.cancel.cancel();
        }
    }

    /// Running attempts that are children of another task: (attempt, parent id).
    pub fn running_children(&self) -> Vec<(Attempt, String)> {
        self.lock()
            .iter()
            .filter(|(_, e)| e.state == RunState::Running)
            .filter_map(|(a, e)| e.parent_id.clone().map(|p| (a.clone(), p)))
            .collect()
    }

    /// Shutdown: marks every held attempt released (a late result is dropped, not written)
    /// and returns their tokens, to fire once they are given back.
    pub fn release_all(&self) -> Vec<CancellationToken> {
        self.lock()
            .values_mut()
            .map(|e| {
                e.state = RunState::Released;
                e.cancel.clone()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry {
            task_type: "t".into(),
            parent_id: None,
            webhook_url: None,
            cancel: CancellationToken::new(),
            state: RunState::Running,
        }
    }

    fn attempt(id: &str, lease: &str) -> Attempt {
        Attempt {
            id: id.into(),
            lease: lease.into(),
        }
    }

    #[test]
    fn claim_ahead_only_while_tasks_are_short_and_reservations_count() {
        let t = InFlight::new(8);
        assert_eq!(t.free_slots(), 8, "no run time known yet: no claim-ahead");
        t.observe_run(Duration::from_millis(2));
        assert_eq!(t.free_slots(), 10, "short tasks: 2 (8 / 4) held ahead");
        t.start(attempt("a", "1"), entry());
        t.start(attempt("b", "1"), entry());
        assert_eq!(t.free_slots(), 8);
        // A fused claim for the two finishing: it may take their places and the rest.
        assert_eq!(t.claimable_after(2), 10);
        t.reserve(10);
        assert_eq!(
            t.free_slots(),
            0,
            "the main loop leaves reserved slots alone"
        );
        t.unreserve(10);
        // Long tasks turn claim-ahead off (the average moves by an eighth per run).
        for _ in 0..40 {
            t.observe_run(Duration::from_secs(5));
        }
        assert_eq!(t.free_slots(), 6);
    }

    #[test]
    fn a_second_claim_of_a_running_task_stops_the_first_attempt() {
        let t = InFlight::new(4);
        let first = entry();
        let token = first.cancel.clone();
        t.start(attempt("x", "L1"), first);
        t.start(attempt("x", "L2"), entry());
        assert!(token.is_cancelled());
        assert_eq!(t.get(&attempt("x", "L1")).unwrap().state, RunState::Lost);
        assert_eq!(t.get(&attempt("x", "L2")).unwrap().state, RunState::Running);
        // Only the newer attempt's lease is renewed.
        assert_eq!(
            t.held_by_type()["t"],
            vec![("x".to_string(), "L2".to_string())]
        );
        // The old attempt's end removes only its own entry.
        t.remove(&attempt("x", "L1"));
        assert!(t.get(&attempt("x", "L2")).is_some());
        assert_eq!(t.len(), 1);
    }
}
