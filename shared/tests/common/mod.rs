//! Helpers shared by the library's integration tests.
#![allow(dead_code)]

use std::time::Duration;

use serde_json::json;
use taskfleet::testing;
use taskfleet::{Broker, NewTask, QueueConfig};

/// An arbitrary fixed time to start the clock at (2026-01-01).
pub const T0: i64 = 1_767_225_600_000;

/// A queue config with short, readable numbers.
pub fn queue(max_attempts: u32) -> QueueConfig {
    QueueConfig {
        max_attempts,
        backoff_base: Duration::from_secs(10),
        backoff_max: Duration::from_secs(600),
        ..QueueConfig::default()
    }
}

/// A broker with one queue "q" (3 attempts) under a fresh prefix on the shared test server.
pub fn setup() -> Broker {
    testing::broker(&[("q", queue(3))])
}

/// A small task of queue "q" owned by account "acme".
pub fn new_task(n: usize) -> NewTask {
    NewTask::new("q", json!({"n": n})).owner("acme", "ann")
}

/// How many keys exist under the broker's prefix.
pub async fn key_count(b: &Broker) -> usize {
    testing::key_count(b).await
}
