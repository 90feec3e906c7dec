//! The main loop: claims up to the free capacity across this worker's types, runs each task
//! under its type's timeout, and acknowledges results in batches. An idle worker blocks on
//! its types' `signal` lists, so a new task starts within milliseconds without busy polling.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use taskfleet::{Claimed, Completion, Failure};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::in_flight::{Attempt, Entry, RunState};
use crate::metrics::Event;
use crate::processors::{sanitize, Step, TaskContext, TaskError};
use crate::{backoff, Shared};

/// The largest batch one claim asks for.
pub const MAX_CLAIM: usize = 256;
/// The most results one acknowledgement call writes.
const ACK_BATCH: usize = 512;
/// Scheduler turns the acker gives results still arriving before it writes a batch.
const ACK_GATHER_TURNS: usize = 8;
/// How long a processor whose token fired may take to return before it is aborted.
pub const CANCEL_GRACE: Duration = Duration::from_secs(3);

/// How one run ended.
#[derive(Debug)]
enum Outcome {
    Done(Value),
    /// The processor is waiting for something: defer the task, its attempt given back.
    Waiting(Duration, String),
    Failed(TaskError),
    Panicked(String),
    TimedOut(Duration),
    /// The token fired (cancel requested, lease lost, shutdown) and the processor stopped.
    Stopped,
}

/// One attempt's end, as its run reports it: the lease is the one its own claim gave, so
/// what is written about it is fenced by that lease, whatever else happened to the task.
struct Ack {
    attempt: Attempt,
    task_type: String,
    outcome: Outcome,
    run_secs: f64,
}

pub struct Runner {
    shared: Arc<Shared>,
    /// Keeps the acks channel open while the runner lives (the starter's sender is weak).
    _acks: mpsc::UnboundedSender<Ack>,
    acker: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    tasks: TaskTracker,
    starter: Starter,
}

/// Starts claimed tasks: the main loop's claims, and those the acker's fused
/// complete-and-claim brings back.
#[derive(Clone)]
struct Starter {
    shared: Arc<Shared>,
    acks: mpsc::WeakUnboundedSender<Ack>,
    tasks: TaskTracker,
    /// True while the main loop runs: after it stops (shutdown), the acker claims nothing.
    claiming: Arc<AtomicBool>,
}

impl Runner {
    pub fn new(shared: Arc<Shared>) -> Runner {
        let (tx, rx) = mpsc::unbounded_channel();
        let tasks = TaskTracker::new();
        let starter = Starter {
            shared: shared.clone(),
            acks: tx.downgrade(),
            tasks: tasks.clone(),
            claiming: Arc::new(AtomicBool::new(false)),
        };
        let acker = tokio::spawn(acker(shared.clone(), rx, starter.clone()));
        Runner {
            shared,
            _acks: tx,
            acker: tokio::sync::Mutex::new(Some(acker)),
            tasks,
            starter,
        }
    }

    /// Claims and starts tasks until `stop` fires.
    pub async fn run(&self, stop: CancellationToken) {
        self.starter.claiming.store(true, Ordering::Release);
        struct Stopped<'a>(&'a AtomicBool);
        impl Drop for Stopped<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::Release);
            }
        }
        let _stopped = Stopped(&self.starter.claiming);
        let s = &self.shared;
        let types: Vec<&str> = s.config.types.iter().map(String::as_str).collect();
        let mut waiter = taskfleet::WorkWaiter::default();
        // The shard whose wake-up ended the last wait: the next claim looks there first.
        let mut woken: Option<taskfleet::Shard> = None;
        let mut failures = 0u32;
        loop {
            if stop.is_cancelled() {
                return;
            }
            let free = s.in_flight.free_slots();
            if free == 0 {
                tokio::select! {
                    _ = s.in_flight.slot_freed() => {}
                    _ = stop.cancelled() => return,
                }
                continue;
            }
            let prefer = woken.take();
            let claim =
                s.broker
                    .claim_preferring(&types, free.min(MAX_CLAIM), s.at(), prefer.as_ref());
            match claim.await {
                Ok(claimed) => {
                    s.health.ok();
                    failures = 0;
                    if claimed.is_empty() {
                        tokio::select! {
                            w = s.broker.wait_for_work(&mut waiter, &types, s.config.poll) => woken = w,
                            _ = stop.cancelled() => return,
                        }
                    }
                    for c in claimed {
                        self.starter.start(c);
                    }
                }
                Err(e) => {
                    s.health.bad("claim", &e);
                    s.metrics.redis_error();
                    failures += 1;
                    tokio::select! {
                        _ = tokio::time::sleep(backoff(failures)) => {}
                        _ = stop.cancelled() => return,
                    }
                }
            }
        }
    }

    /// Shutdown step 3: gives every task still in flight back to `queued`, then fires their
    /// tokens. Marked first, so a result that arrives late is dropped, not acknowledged.
    pub async fn release_all(&self) {
        release_all(&self.shared).await
    }

    /// Waits for every task to end and every acknowledgement to be written (bounded).
    pub async fn finish(&self) {
        self.tasks.close();
        let _ = tokio::time::timeout(CANCEL_GRACE * 2, self.tasks.wait()).await;
        let acker = self.acker.lock().await.take();
        // The acker ends when every sender is gone; ours is the last once tasks are done.
        if let Some(a) = acker {
            let _ = tokio::time::timeout(Duration::from_secs(5), async {
                while !self.shared.in_flight.is_empty() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
            .await;
            a.abort();
        }
    }
}

impl Starter {
    /// Holds one claimed task and runs it on its own tokio task once it has a slot.
    fn start(&self, c: Claimed) {
        let s = self.shared.clone();
        let Some(acks) = self.acks.upgrade() else {
            return;
        };

        let Some(queue) = s.queues.get(&c.task_type).cloned() else {
            return;
        };
        let cancel = CancellationToken::new();
        let attempt = Attempt {
            id: c.id.clone(),
            lease: c.lease.clone(),
        };
        s.in_flight.start(
            attempt.clone(),
            Entry {
                task_type: c.task_type.clone(),
                parent_id: c.parent_id.clone(),
                webhook_url: c.webhook_url.clone(),
                cancel: cancel.clone(),
                state: RunState::Running,
            },
        );
        s.metrics.set_in_flight(s.in_flight.len());
        s.metrics.count(Event::Claimed, &c.task_type, 1);
        let waited = (s.now() - c.created_at).max(0) as f64 / 1000.0;
        s.metrics.observe_wait(&c.task_type, waited);
        let span =
            tracing::info_span!("task", id = %c.id, task_type = %c.task_type, attempt = c.attempt);
        let ctx = TaskContext {
            task_id: c.id.clone(),
            task_type: c.task_type.clone(),
            attempt: c.attempt,
            account_id: c.account_id.clone(),
            cancel: cancel.clone(),
            artifact_dir: s.config.work_dir.join(&c.id).join(c.attempt.to_string()),
            broker: s.broker.clone(),
            lease: c.lease.clone(),
            clock: s.clock.clone(),
            span: span.clone(),
        };
        let timeout = queue.config.timeout;
        let shared = s.clone();
        self.tasks.spawn(async move {
            // A slot first: a task claimed ahead waits here (its lease renewed meanwhile),
            // unless it is cancelled, lost or released before it gets one.
            let permit = tokio::select! {
                p = shared.in_flight.permit() => p,
                _ = cancel.cancelled() => {
                    let _ = acks.send(Ack {
                        attempt,
                        task_type: c.task_type,
                        outcome: Outcome::Stopped,
                        run_secs: 0.0,
                    });
                    return;
                }
            };
            shared.in_flight.began();
            let started = Instant::now();
            let request = c.request;
            let processor = queue.processor;
            // Its own tokio task, so that a panic is caught by the JoinHandle and the worker
            // lives on.
            let mut run = tokio::spawn(tracing::Instrument::instrument(
                async move { processor.process(&ctx, request).await },
                span,
            ));
            let outcome = tokio::select! {
                r = &mut run => joined(r),
                _ = tokio::time::sleep(timeout) => {
                    cancel.cancel();
                    stop_within(&mut run, CANCEL_GRACE).await;
                    Outcome::TimedOut(timeout)
                }
                _ = cancel.cancelled() => {
                    match tokio::time::timeout(CANCEL_GRACE, &mut run).await {
                        Ok(r) => match joined(r) {
                            Outcome::Done(_) | Outcome::Waiting(..) | Outcome::Failed(_) => {
                                Outcome::Stopped
                            }
                            other => other,
                        },
                        Err(_) => {
                            run.abort();
                            Outcome::Stopped
                        }
                    }
                }
            };
            // The processor is done: its slot goes to the next task held, while its result
            // is being written.
            drop(permit);
            shared.in_flight.processor_done();
            shared.in_flight.observe_run(started.elapsed());
            let _ = acks.send(Ack {
                attempt,
                task_type: c.task_type,
                outcome,
                run_secs: started.elapsed().as_secs_f64(),
            });
        });
    }

    fn claiming(&self) -> bool {
        self.claiming.load(Ordering::Acquire)
    }
}

/// Gives every task still in flight back to `queued`, then fires their tokens (shutdown).
async fn release_all(s: &Shared) {
    let held = s.in_flight.held_by_type();
    let tokens = s.in_flight.release_all();
    for (t, items) in held {
        let mut failures = 0;
        loop {
            match s.broker.release(&t, &items, s.at()).await {
                Ok(outcomes) => {
                    let cancelled = outcomes
                        .iter()
                        .filter(|o| **o == taskfleet::ReleaseOutcome::Cancelled)
                        .count();
                    s.metrics.count(Event::Cancelled, &t, cancelled as u64);
                    tracing::info!(task_type = %t, count = items.len(), cancelled, "released unfinished tasks to the queue");
                    break;
                }
                Err(e) if failures < 10 => {
                    s.health.bad("release", &e);
                    failures += 1;
                    tokio::time::sleep(backoff(failures)).await;
                }
                Err(e) => {
                    tracing::error!(error = %e, task_type = %t, "could not release tasks; their leases will expire and the recoverer brings them back");
                    break;
                }
            }
        }
    }
    for t in tokens {
        t.cancel();
    }
}

fn joined(r: Result<Result<Step, TaskError>, tokio::task::JoinError>) -> Outcome {
    match r {
        Ok(Ok(Step::Done(v))) => Outcome::Done(v),
        Ok(Ok(Step::WaitFor(d, m))) => Outcome::Waiting(d, m),
        Ok(Err(e)) => Outcome::Failed(e),
        Err(e) if e.is_panic() => {
            let p = e.into_panic();
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into());
            Outcome::Panicked(msg)
        }
        Err(_) => Outcome::Stopped,
    }
}

async fn stop_within(run: &mut tokio::task::JoinHandle<Result<Step, TaskError>>, grace: Duration) {
    if tokio::time::timeout(grace, &mut *run).await.is_err() {
        run.abort();
    }
}

fn short_duration(d: Duration) -> String {
    if d.as_secs() >= 60 && d.as_secs().is_multiple_of(60) {
        format!("{} min", d.as_secs() / 60)
    } else if d.as_millis().is_multiple_of(1000) {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// Writes results in batches: everything that finished since the last write goes in one call
/// per type and kind, so a busy worker costs Redis one script call for many tasks. While Redis
/// is unreachable it retries; the heartbeat keeps the leases alive meanwhile.
async fn acker(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Ack>, starter: Starter) {
    let mut buf = Vec::new();
    while rx.recv_many(&mut buf, ACK_BATCH).await > 0 {
        // Tasks that end together are written together: give the ones about to send their
        // result a few scheduler turns (no timer, no waiting while nothing more arrives), so a
        // burst of short tasks costs one call instead of one per arrival.
        for _ in 0..ACK_GATHER_TURNS {
            if buf.len() >= ACK_BATCH {
                break;
            }
            tokio::task::yield_now().await;
            let before = buf.len();
            while buf.len() < ACK_BATCH {
                match rx.try_recv() {
                    Ok(a) => buf.push(a),
                    Err(_) => break,
                }
            }
            if buf.len() == before {
                break;
            }
        }
        let batch = std::mem::take(&mut buf);
        write_acks(&shared, batch, &starter).await;
        shared.metrics.set_in_flight(shared.in_flight.len());
        shared.in_flight.notify();
    }
}

async fn write_acks(s: &Shared, batch: Vec<Ack>, starter: &Starter) {
    let mut completions: HashMap<String, Vec<Completion>> = HashMap::new();
    let mut failures: HashMap<String, Vec<Failure>> = HashMap::new();
    let mut defers = Vec::new();
    // Every attempt of the batch leaves the table once its result is written (or dropped):
    // by its own (id, lease), never another attempt of the same task.
    let mut done: Vec<Attempt> = Vec::with_capacity(batch.len());
    for a in batch {
        s.metrics.observe_run(&a.task_type, a.run_secs);
        let Some(f) = s.in_flight.get(&a.attempt) else {
            continue;
        };
        done.push(a.attempt.clone());
        let Attempt { id, lease } = a.attempt;
        let failure = |error: String, permanent: bool| Failure {
            id: id.clone(),
            lease: lease.clone(),
            error,
            permanent,
        };
        match (f.state, a.outcome) {
            (RunState::Lost | RunState::Released, _) => {}
            (RunState::CancelRequested, _) | (_, Outcome::Stopped) => failures
                .entry(a.task_type)
                .or_default()
                .push(failure("cancelled".into(), true)),
            (RunState::Running, Outcome::Done(result)) => completions
                .entry(a.task_type)
                .or_default()
                .push(Completion { id, lease, result }),
            (RunState::Running, Outcome::Waiting(d, msg)) => {
                defers.push((a.task_type, id, lease, d, msg))
            }
            (RunState::Running, Outcome::Failed(TaskError::Retry(m))) => failures
                .entry(a.task_type)
                .or_default()
                .push(failure(m, false)),
            (RunState::Running, Outcome::Failed(TaskError::Permanent(m))) => failures
                .entry(a.task_type)
                .or_default()
                .push(failure(m, true)),
            (RunState::Running, Outcome::Panicked(m)) => {
                failures.entry(a.task_type).or_default().push(failure(
                    format!("processor panicked: {}", sanitize::user_message(&m)),
                    false,
                ))
            }
            (RunState::Running, Outcome::TimedOut(d)) => {
                failures.entry(a.task_type).or_default().push(failure(
                    format!("timed out after {}", short_duration(d)),
                    false,
                ))
            }
        }
    }
    for (t, items) in completions {
        // The slots these free, and any others, are refilled by the same call (the fused
        // complete-and-claim); reserved meanwhile, so the main loop does not claim them too.
        let want = if starter.claiming() {
            s.in_flight.claimable_after(items.len())
        } else {
            0
        };
        s.in_flight.reserve(want);
        let written = retry(s, "complete", || {
            s.broker.complete_and_claim(&t, &items, want, s.at())
        })
        .await;
        let flags = written.map(|(flags, claimed)| {
            if starter.claiming() {
                for c in claimed {
                    starter.start(c);
                }
            } else if !claimed.is_empty() {
                // Shutting down meanwhile: give them straight back.
                let held: Vec<_> = claimed.into_iter().map(|c| (c.id, c.lease)).collect();
                let broker = s.broker.clone();
                let (t, at) = (t.clone(), s.at());
                tokio::spawn(async move {
                    if let Err(e) = broker.release(&t, &held, at).await {
                        tracing::warn!(error = %e, "could not give back tasks claimed at shutdown; their leases expire");
                    }
                });
            }
            flags
        });
        s.in_flight.unreserve(want);
        if let Some(flags) = flags {
            let ok = flags.iter().filter(|f| **f).count() as u64;
            // Webhooks: written by the script itself (includes/outbox.lua), sent by the
            // delivery loop (webhook.rs).
            s.metrics.count(Event::Completed, &t, ok);
        }
    }
    for (t, items) in failures {
        if let Some(outcomes) = retry(s, "fail", || s.broker.fail(&t, &items, s.at())).await {
            for o in outcomes {
                let e = match o {
                    taskfleet::FailOutcome::Retrying => Event::Retried,
                    taskfleet::FailOutcome::Failed => Event::Failed,
                    taskfleet::FailOutcome::Cancelled => Event::Cancelled,
                    taskfleet::FailOutcome::Stale => continue,
                };
                s.metrics.count(e, &t, 1);
            }
        }
    }
    for (t, id, lease, d, msg) in defers {
        let r = retry(s, "defer", || async {
            match s.broker.defer(&t, &id, &lease, d, &msg, s.at()).await {
                Err(taskfleet::Error::StaleLease(_)) => Ok(None),
                other => other.map(Some),
            }
        })
        .await;
        match r {
            Some(Some(taskfleet::DeferOutcome::Cancelled)) => {
                // Its cancel was requested while it ran: it ended cancelled, not deferred.
                s.metrics.count(Event::Cancelled, &t, 1);
            }
            Some(_) => {}
            None => {
                tracing::warn!(id = %id, "could not defer; the lease will expire and recovery runs it again")
            }
        }
    }
    for attempt in done {
        s.in_flight.remove(&attempt);
    }
}

/// Retries a write while Redis is unavailable, for as long as a lease could still hold; gives
/// up (the recoverer then has the task) on any other error.
async fn retry<T, F, Fut>(s: &Shared, what: &str, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = taskfleet::Result<T>>,
{
    let give_up = Instant::now() + s.broker.lease() * 2;
    let mut failures = 0;
    loop {
        match f().await {
            Ok(v) => {
                s.health.ok();
                return Some(v);
            }
            Err(e @ taskfleet::Error::Unavailable(_)) if Instant::now() < give_up => {
                s.health.bad(what, &e);
                s.metrics.redis_error();
                failures += 1;
                tokio::time::sleep(backoff(failures)).await;
            }
            Err(e) => {
                tracing::error!(error = %e, "{what} not written");
                return None;
            }
        }
    }
}
