//! Helpers for tests that run real worker processes against a real Redis.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use taskfleet::{Broker, NewTask, QueueConfig, Task};

/// The lease the test workers use: short, so recovery happens within a test.
pub const LEASE_SECS: u64 = 3;

/// A worker process of this build.
pub struct Worker {
    pub child: Child,
}

impl Worker {
    /// Starts `taskfleet-worker --test-processors` on `url` under `prefix`, with extra args
    /// and environment.
    pub fn start(url: &str, prefix: &str, args: &[&str], env: &[(&str, &str)]) -> Worker {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_taskfleet-worker"));
        cmd.arg("--redis-url")
            .arg(url)
            .arg("--test-processors")
            .args(args)
            .env("TASKFLEET__REDIS__PREFIX", prefix)
            .env("TASKFLEET__WORKER__LEASE_SECONDS", LEASE_SECS.to_string())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        if std::env::var("TEST_WORKER_LOGS").is_err() {
            cmd.stderr(Stdio::null());
        }
        if !args.contains(&"--poll-ms") {
            cmd.arg("--poll-ms").arg("500");
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        Worker {
            child: cmd.spawn().expect("spawn taskfleet-worker"),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status();
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        self.signal("KILL");
        let _ = self.child.wait();
    }

    /// Waits for the process to exit, at most `limit`; its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.signal("CONT");
            self.kill();
        }
    }
}

/// The queue config the workers use for the test queue (see main.rs).
pub fn test_queue() -> QueueConfig {
    QueueConfig {
        backoff_base: Duration::from_millis(200),
        backoff_max: Duration::from_secs(2),
        ..QueueConfig::default()
    }
}

/// A broker for the "test" queue (and the catalog) on `url` under a fresh prefix.
pub fn broker(url: &str) -> Broker {
    let mut b = Broker::builder(url)
        .prefix(taskfleet::testing::fresh_prefix())
        .queue("test", test_queue());
    for (name, cfg) in taskfleet::config::queues(&taskfleet::Catalog::default()) {
        b = b.queue(name, cfg);
    }
    b.build().unwrap()
}

pub fn test_task(request: Value) -> NewTask {
    NewTask::new("test", request).owner("acme", "ann")
}

/// Polls `check` every 50 ms until it returns Some, at most `limit` (a bound on waiting for
/// an event, not a timing assertion); panics with `what` when the bound runs out.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn task(b: &Broker, id: &str) -> Task {
    b.get(id).await.unwrap().expect("task exists")
}

pub async fn now(b: &Broker) -> i64 {
    b.server_time_ms().await.unwrap()
}

/// How many tasks of the test queue are in `status` (None while Redis does not answer).
pub async fn count(b: &Broker, status: taskfleet::TaskStatus) -> Option<u64> {
    let s = b.status().await.ok()?;
    s.into_iter()
        .find(|s| s.task_type == "test")
        .map(|s| s.count(status))
}

/// The test queue's counters (`stats` hash).
pub async fn stat(b: &Broker, name: &str) -> i64 {
    let s = b.status().await.unwrap();
    let q = s.into_iter().find(|s| s.task_type == "test").unwrap();
    q.stats.get(name).copied().unwrap_or(0)
}

/// Enqueues and returns the ids.
pub async fn enqueue_ids(b: &Broker, tasks: Vec<NewTask>) -> Vec<String> {
    let at = now(b).await;
    b.enqueue_many(tasks, at)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect()
}
