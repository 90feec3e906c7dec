//! The background passes, driven by hand with a manual clock: each `tick(now)` does one pass.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use taskfleet::artifacts::{ArtifactStore, LocalStore};
use taskfleet::testing;
use taskfleet::{At, Broker, ManualClock, NewTask, QueueConfig, TaskStatus};
use taskfleet_worker::heartbeat::Heartbeat;
use taskfleet_worker::in_flight::{Attempt, Entry, RunState};
use taskfleet_worker::processors::testing::TestProcessor;
use taskfleet_worker::recoverer::Recoverer;
use taskfleet_worker::scheduler::Scheduler;
use taskfleet_worker::{Handler, Shared, WorkerConfig};
use tokio_util::sync::CancellationToken;

const T0: i64 = 1_767_225_600_000;
const DAY: i64 = 24 * 3_600_000;

fn shared(worker_id: &str, store: Arc<dyn ArtifactStore>) -> Arc<Shared> {
    let broker = Broker::builder(testing::shared_redis().url())
        .prefix(testing::fresh_prefix())
        .worker_id(worker_id)
        .queue("test", QueueConfig::default())
        .build()
        .unwrap();
    Arc::new(Shared::new(
        broker,
        Arc::new(ManualClock::new(T0)),
        WorkerConfig {
            worker_id: worker_id.to_string(),
            types: vec!["test".into()],
            concurrency: 1,
            grace: Duration::from_secs(1),
            poll: Duration::from_secs(1),
            schedule_every: Duration::from_secs(1),
            work_dir: std::env::temp_dir(),
        },
        HashMap::from([(
            "test".to_string(),
            Handler {
                processor: Arc::new(TestProcessor),
                config: QueueConfig::default(),
            },
        )]),
        Some(store),
        Default::default(),
    ))
}

#[tokio::test]
async fn the_scheduler_trims_a_finished_task_with_its_artifacts_once_its_retention_passed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalStore::new(dir.path()));
    let s = shared("w-trim", store.clone());
    let b = &s.broker;
    let e = b
        .enqueue(NewTask::new("test", json!({})), T0)
        .await
        .unwrap();
    let c = b.claim(&["test"], 1, T0).await.unwrap().remove(0);
    store
        .put(&c.id, "out.txt", b"hello".to_vec())
        .await
        .unwrap();
    b.complete_one("test", &c.id, &c.lease, json!({}), T0)
        .await
        .unwrap();

    let sched = Scheduler::new(s.clone());
    assert_eq!(sched.tick(T0 + 7 * DAY - 1, true).await.unwrap().trimmed, 0);
    assert!(store.get(&e.id, "out.txt").await.unwrap().is_some());
    assert_eq!(sched.tick(T0 + 7 * DAY, true).await.unwrap().trimmed, 1);
    assert!(b.get(&e.id).await.unwrap().is_none());
    assert!(store.get(&e.id, "out.txt").await.unwrap().is_none());
}

#[tokio::test]
async fn the_scheduler_promotes_due_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let s = shared("w-promote", Arc::new(LocalStore::new(dir.path())));
    let b = &s.broker;
    let e = b
        .enqueue(NewTask::new("test", json!({})).run_at(T0 + 1_000), T0)
        .await
        .unwrap();
    let sched = Scheduler::new(s.clone());
    assert_eq!(sched.tick(T0 + 999, false).await.unwrap().promoted, 0);
    assert_eq!(b.status_of(&e.id).await.unwrap(), TaskStatus::Scheduled);
    assert_eq!(sched.tick(T0 + 1_000, false).await.unwrap().promoted, 1);
    assert_eq!(b.status_of(&e.id).await.unwrap(), TaskStatus::Queued);
}

#[tokio::test]
async fn the_recoverer_takes_back_at_once_the_tasks_of_a_worker_whose_heartbeat_key_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    // The dead worker: it claimed a task and was registered, but its heartbeat key is gone.
    let dead = shared("w-dead", Arc::new(LocalStore::new(dir.path())));
    let b = &dead.broker;
    let e = b
        .enqueue(NewTask::new("test", json!({})), T0)
        .await
        .unwrap();
    b.claim(&["test"], 1, T0).await.unwrap();
    testing::register_vanished_worker(b, "w-dead", T0).await;
    // Well inside the 30 s lease: only the missing heartbeat key can explain a recovery.
    let report = Recoverer::new(dead.clone()).tick(T0 + 1_000).await.unwrap();
    assert_eq!(report.requeued, vec![("test".to_string(), e.id.clone())]);
    assert_eq!(b.status_of(&e.id).await.unwrap(), TaskStatus::Queued);
    let left = b.dead_workers(10).await.unwrap();
    assert!(left.is_empty(), "the dead worker is forgotten: {left:?}");
}

fn shared_with(worker_id: &str, types: &[&str]) -> Arc<Shared> {
    let mut b = Broker::builder(testing::shared_redis().url())
        .prefix(testing::fresh_prefix())
        .worker_id(worker_id);
    let mut queues = HashMap::new();
    for t in types {
        b = b.queue(*t, QueueConfig::default());
        queues.insert(
            t.to_string(),
            Handler {
                processor: Arc::new(TestProcessor),
                config: QueueConfig::default(),
            },
        );
    }
    Arc::new(Shared::new(
        b.build().unwrap(),
        Arc::new(ManualClock::new(T0)),
        WorkerConfig {
            worker_id: worker_id.to_string(),
            types: types.iter().map(|t| t.to_string()).collect(),
            concurrency: 4,
            grace: Duration::from_secs(1),
            poll: Duration::from_secs(1),
            schedule_every: Duration::from_secs(1),
            work_dir: std::env::temp_dir(),
        },
        queues,
        None,
        Default::default(),
    ))
}

/// Claims one task of `t` and puts its attempt in the worker's table, as the runner does.
async fn claim_into_table(s: &Shared, t: &str) -> Attempt {
    s.broker
        .enqueue(NewTask::new(t, json!({})), T0)
        .await
        .unwrap();
    let c = s.broker.claim(&[t], 1, T0).await.unwrap().remove(0);
    let a = Attempt {
        id: c.id.clone(),
        lease: c.lease.clone(),
    };
    s.in_flight.start(
        a.clone(),
        Entry {
            task_type: t.to_string(),
            parent_id: None,
            webhook_url: None,
            cancel: CancellationToken::new(),
            state: RunState::Running,
        },
    );
    a
}

#[tokio::test]
async fn one_types_failing_extend_keeps_neither_the_other_types_nor_the_registration_from_a_beat() {
    let s = shared_with("w-beat", &["good", "bad"]);
    let good = claim_into_table(&s, "good").await;
    claim_into_table(&s, "bad").await;
    // The bad type's lease set is broken (a wrong type): its extend fails every time.
    let bad_set = s.broker.keys().processing("bad");
    testing::command::<()>(&s.broker, &["DEL", &bad_set]).await;
    testing::command::<()>(&s.broker, &["SET", &bad_set, "broken"]).await;
    let beat = Heartbeat::new(s.clone()).tick(At::Ms(T0 + 10_000)).await;
    assert_eq!((beat.errors, beat.extended), (1, 1), "{beat:?}");
    // The good type's lease runs a full lease from the beat.
    let deadline: i64 = testing::command(
        &s.broker,
        &["ZSCORE", &s.broker.keys().processing("good"), &good.id],
    )
    .await;
    assert_eq!(deadline, T0 + 10_000 + 30_000);
    // The worker is registered, for longer than a lease: a few slow beats do not get a live
    // worker declared dead.
    let live = s.broker.live_workers(10).await.unwrap();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].in_flight, 2);
    let ttl: i64 = testing::command(&s.broker, &["PTTL", &s.broker.keys().worker("w-beat")]).await;
    assert!(ttl > 30_000, "registration lives {ttl} ms");
}

#[tokio::test]
async fn a_recoverer_whose_clock_estimate_jumped_ahead_leaves_live_leases_alone() {
    let s = shared_with("w-live", &["t"]);
    let a = claim_into_table(&s, "t").await;
    // Claimed at the manual T0, far in the server's past: pretend it is live by renewing
    // it at the server's own time.
    s.broker
        .extend("t", &[(a.id.clone(), a.lease.clone())], At::Server)
        .await
        .unwrap();
    // Another worker of the same keyspace, whose estimate stepped an hour ahead.
    let server = s.broker.server_time_ms().await.unwrap();
    let ahead = taskfleet::RedisClock::starting_at(server + 3_600_000);
    let other = Arc::new(Shared::new(
        s.broker.clone(),
        Arc::new(ahead),
        s.config.clone(),
        HashMap::new(),
        None,
        Default::default(),
    ));
    let report = Recoverer::new(other.clone())
        .tick(other.at())
        .await
        .unwrap();
    assert!(report.requeued.is_empty(), "{report:?}");
    assert_eq!(
        s.broker.status_of(&a.id).await.unwrap(),
        TaskStatus::Processing
    );
}
