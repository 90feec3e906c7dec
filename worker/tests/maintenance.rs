//! The background passes, driven by hand with a manual clock: each `tick(now)` does one pass.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use taskfleet::artifacts::{ArtifactStore, LocalStore};
use taskfleet::testing;
use taskfleet::{Broker, ManualClock, NewTask, QueueConfig, TaskStatus};
use taskfleet_worker::processors::testing::TestProcessor;
use taskfleet_worker::recoverer::Recoverer;
use taskfleet_worker::scheduler::Scheduler;
use taskfleet_worker::{Queue, Shared, WorkerConfig};

const T0: i64 = 1_767_225_600_000;
const DAY: i64 = 24 * 3_600_000;

fn shared(worker_id: &str, store: Arc<dyn ArtifactStore>) -> Arc<Shared> {
    let broker = Broker::builder(testing::shared_redis().url())
        .prefix(testing::fresh_prefix())
        .worker_id(worker_id)
        .queue("test", QueueConfig::default())
        .build()
        .unwrap();
    Arc::new(Shared {
        broker,
        clock: Arc::new(ManualClock::new(T0)),
        config: WorkerConfig {
            worker_id: worker_id.to_string(),
            types: vec!["test".into()],
            concurrency: 1,
            grace: Duration::from_secs(1),
            poll: Duration::from_secs(1),
            schedule_every: Duration::from_secs(1),
            work_dir: std::env::temp_dir(),
        },
        queues: HashMap::from([(
            "test".to_string(),
            Queue {
                processor: Arc::new(TestProcessor),
                config: QueueConfig::default(),
            },
        )]),
        store: Some(store),
        metrics: Default::default(),
        in_flight: Default::default(),
        slot_freed: Default::default(),
        running: Default::default(),
        health: Default::default(),
    })
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
    let workers = b.keys().workers();
    b.with_conn(async |c| {
        redis::cmd("ZADD")
            .arg(&workers)
            .arg(T0)
            .arg("w-dead")
            .query_async::<()>(c)
            .await
    })
    .await
    .unwrap();
    // Well inside the 30 s lease: only the missing heartbeat key can explain a recovery.
    let report = Recoverer::new(dead.clone()).tick(T0 + 1_000).await.unwrap();
    assert_eq!(report.requeued, vec![("test".to_string(), e.id.clone())]);
    assert_eq!(b.status_of(&e.id).await.unwrap(), TaskStatus::Queued);
    let left: Vec<String> = b
        .with_conn(async |c| {
            redis::cmd("ZRANGE")
                .arg(&workers)
                .arg(0)
                .arg(-1)
                .query_async(c)
                .await
        })
        .await
        .unwrap();
    assert!(left.is_empty(), "the dead worker is forgotten: {left:?}");
}
