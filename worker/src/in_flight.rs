//! The tasks this worker has claimed and not yet acknowledged, one entry per *attempt*: a
//! task id and the lease token of the claim that started it. A task taken back while it ran
//! (an operator's cleanup, a lost lease) and claimed again by this same worker is a second
//! attempt with its own entry: the old run is told it lost, its result is written with its
//! own (stale, refused) lease, and only its own entry is removed when it ends.
//!
//! The table owns its lock, the count of running processors and the notifier of freed
//! slots; the runner, the heartbeat and shutdown use it only through these methods.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use tokio::sync::Notify;
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

/// The in-flight table (see the module's doc).
pub struct InFlight {
    // A std mutex: held for a few map operations, never across an await.
    entries: Mutex<HashMap<Attempt, Entry>>,
    /// Processors running now (≤ concurrency). An attempt whose processor returned but whose
    /// result is not yet written holds no slot, so the next claim overlaps that write.
    running: AtomicUsize,
    slot_freed: Notify,
    concurrency: usize,
}

impl InFlight {
    pub fn new(concurrency: usize) -> InFlight {
        InFlight {
            entries: Mutex::new(HashMap::new()),
            running: AtomicUsize::new(0),
            slot_freed: Notify::new(),
            concurrency,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Attempt, Entry>> {
        self.entries.lock().expect("in-flight lock")
    }

    /// A claimed attempt starts: its entry is added, and any older attempt of the same task
    /// still here is marked lost and its token fired (its lease was taken back before this
    /// claim could happen). Counts a running processor.
    pub fn start(&self, attempt: Attempt, entry: Entry) {
        let mut map = self.lock();
        for (a, e) in map.iter_mut() {
            if a.id == attempt.id && a.lease != attempt.lease {
                e.state = RunState::Lost;
                e.cancel.cancel();
            }
        }
        map.insert(attempt, entry);
        self.running.fetch_add(1, Ordering::AcqRel);
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

    /// How many more tasks may be claimed now: free processor slots, while no more than
    /// `concurrency` results wait to be written (a bound on what a Redis outage piles up).
    pub fn free_slots(&self) -> usize {
        let running = self.running.load(Ordering::Acquire);
        let c = self.concurrency;
        c.saturating_sub(running)
            .min((2 * c).saturating_sub(self.len()))
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
