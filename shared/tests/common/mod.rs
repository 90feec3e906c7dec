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

/// Where a test runs: the shared single server, or the shared 3-primary cluster (where a
/// queue has 16 shards unless its config says otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Single,
    Cluster,
}

impl Target {
    /// A builder on the target under a fresh prefix, without queues.
    pub fn builder(self) -> taskfleet::BrokerBuilder {
        let b = match self {
            Target::Single => Broker::builder(testing::shared_redis().url()),
            Target::Cluster => Broker::builder_for(testing::shared_cluster().deployment()),
        };
        b.prefix(testing::fresh_prefix())
    }

    /// A broker on the target under a fresh prefix, with the given queues.
    pub fn broker(self, queues: &[(&str, QueueConfig)]) -> Broker {
        let mut b = self.builder();
        for (name, cfg) in queues {
            b = b.queue(*name, cfg.clone());
        }
        b.build().expect("test broker")
    }

    /// A broker with one queue "q" (3 attempts).
    pub fn setup(self) -> Broker {
        self.broker(&[("q", queue(3))])
    }
}

/// Claims from `types` until `n` are claimed or a claim finds nothing: with shards, one
/// claim looks at two shards first, so it may take fewer than are ready.
pub async fn claim_n(b: &Broker, types: &[&str], n: usize, at: i64) -> Vec<taskfleet::Claimed> {
    let mut out = Vec::new();
    while out.len() < n {
        let got = b.claim(types, n - out.len(), at).await.unwrap();
        if got.is_empty() {
            break;
        }
        out.extend(got);
    }
    out
}

/// The same test body on a single server and on a cluster: `on_both!(name, |target| {...})`
/// makes the tests `name::single` and `name::cluster`.
#[macro_export]
macro_rules! on_both {
    ($name:ident, |$t:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn single() {
                let $t = $crate::common::Target::Single;
                $body
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn cluster() {
                let $t = $crate::common::Target::Cluster;
                $body
            }
        }
    };
}
