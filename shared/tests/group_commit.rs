//! Group commit (issue 11): concurrent single enqueues of one process share script calls, and
//! every caller still gets its own answer, its own error, and nothing else is written. A Redis
//! restart in the middle leaves no caller hanging and loses nothing a caller was told.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::{queue, T0};
use serde_json::json;
use taskfleet::testing::{self, RedisServer};
use taskfleet::{At, Broker, Error, NewTask, TaskStatus};

/// EVALSHA calls the server has run (`INFO commandstats`).
async fn evalsha_calls(b: &Broker) -> u64 {
    let info: String = testing::command(b, &["INFO", "commandstats"]).await;
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn broker_on(server: &RedisServer, timeout: Duration) -> Broker {
    Broker::builder(server.url())
        .prefix(testing::fresh_prefix())
        .timeout(timeout)
        .queue("q", queue(3))
        .build()
        .unwrap()
}

/// What caller `i` of the mix sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Plain,
    /// A request that is not a JSON object.
    Invalid,
    /// One of three Idempotency-Keys, with the same request each time.
    Duplicate(usize),
    /// The key of a task written before, with another request.
    Mismatch,
}

fn kind(i: usize) -> Kind {
    if i % 97 == 5 {
        Kind::Invalid
    } else if i % 41 == 7 {
        Kind::Duplicate(i % 3)
    } else if i % 113 == 11 {
        Kind::Mismatch
    } else {
        Kind::Plain
    }
}

fn task(i: usize) -> NewTask {
    match kind(i) {
        Kind::Plain => NewTask::new("q", json!({ "n": i })).owner("acme", format!("u{i}")),
        Kind::Invalid => NewTask::new("q", json!(["not", "an", "object"])).owner("acme", "x"),
        Kind::Duplicate(k) => NewTask::new("q", json!({ "dup": k }))
            .owner("acme", "d")
            .idempotency_key(format!("dup-{k}")),
        Kind::Mismatch => NewTask::new("q", json!({ "other": i }))
            .owner("acme", "m")
            .idempotency_key("taken"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_concurrent_enqueues_each_get_their_own_answer() {
    let server = RedisServer::start();
    let b = broker_on(&server, Duration::from_secs(5));
    let at = At::Ms(T0);
    let taken = b
        .enqueue(
            NewTask::new("q", json!({ "first": true }))
                .owner("acme", "m")
                .idempotency_key("taken"),
            at,
        )
        .await
        .unwrap();
    let calls_before = evalsha_calls(&b).await;

    // 50 tasks, 20 enqueues each, all at once.
    let callers: Vec<_> = (0..50)
        .map(|c| {
            let b = b.clone();
            tokio::spawn(async move {
                let mut out = Vec::new();
                for j in 0..20 {
                    let i = c * 20 + j;
                    out.push((i, b.enqueue(task(i), at).await));
                }
                out
            })
        })
        .collect();
    let mut answers = Vec::new();
    for c in callers {
        answers.extend(c.await.unwrap());
    }
    assert_eq!(answers.len(), 1000);
    let calls = evalsha_calls(&b).await - calls_before;

    let mut plain_ids = HashSet::new();
    let mut dup_ids: HashMap<usize, HashSet<String>> = HashMap::new();
    let mut dup_created = HashMap::<usize, usize>::new();
    for (i, answer) in &answers {
        match (kind(*i), answer) {
            (Kind::Plain, Ok(e)) => {
                assert!(e.created, "caller {i}: a new task");
                assert_eq!(e.status, TaskStatus::Queued);
                assert!(e.queue_position.is_some(), "caller {i} has its position");
                // Its own task: the request it sent, under its own id.
                let t = b.get(&e.id).await.unwrap().expect("the task is there");
                assert_eq!(
                    t.request,
                    json!({ "n": i }),
                    "caller {i} got another's task"
                );
                assert_eq!(t.user_id.as_deref(), Some(format!("u{i}").as_str()));
                assert!(plain_ids.insert(e.id.clone()), "id {} answered twice", e.id);
            }
            (Kind::Invalid, Err(Error::InvalidInput { field, .. })) => {
                assert_eq!(field, "request", "caller {i}");
            }
            (Kind::Duplicate(k), Ok(e)) => {
                dup_ids.entry(k).or_default().insert(e.id.clone());
                if e.created {
                    *dup_created.entry(k).or_default() += 1;
                }
                let t = b.get(&e.id).await.unwrap().unwrap();
                assert_eq!(t.request, json!({ "dup": k }));
            }
            (Kind::Mismatch, Err(Error::IdempotencyMismatch { key, earlier })) => {
                assert_eq!(key, "taken");
                assert_eq!(earlier, &taken.id, "the earlier task is named");
            }
            (k, other) => panic!("caller {i} ({k:?}) got {other:?}"),
        }
    }
    for k in 0..3 {
        assert_eq!(dup_ids[&k].len(), 1, "key dup-{k} answered with one task");
        assert_eq!(dup_created[&k], 1, "key dup-{k} created its task once");
    }
    let plain = (0..1000).filter(|i| kind(*i) == Kind::Plain).count();
    assert_eq!(plain_ids.len(), plain);
    // Nothing else was written: the plain tasks, three for the keys, and the first one.
    let status = b.status().await.unwrap();
    let q = status.iter().find(|s| s.task_type == "q").unwrap();
    assert_eq!(q.count(TaskStatus::Queued) as usize, plain + 3 + 1);
    assert_eq!(q.stats["enqueued"] as usize, plain + 3 + 1);
    // And they went in fewer calls than callers (the invalid ones never reached Redis).
    assert!(
        calls < 900,
        "{calls} script calls for 1000 concurrent enqueues: not grouped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_restart_mid_way_hangs_no_caller_and_loses_nothing_reported() {
    let mut server = RedisServer::start_durable();
    let b = broker_on(&server, Duration::from_millis(500));
    let callers: Vec<_> = (0..50)
        .map(|c| {
            let b = b.clone();
            tokio::spawn(async move {
                let mut out = Vec::new();
                for j in 0..40 {
                    let i = c * 40 + j;
                    let t = NewTask::new("q", json!({ "n": i })).owner("acme", "ann");
                    // Every call ends: an answer or an error, well within this bound.
                    let r = tokio::time::timeout(Duration::from_secs(20), b.enqueue(t, At::Server))
                        .await
                        .unwrap_or_else(|_| panic!("enqueue {i} hung"));
                    out.push((i, r));
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                out
            })
        })
        .collect();
    // Restart while they run.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let _server = tokio::task::spawn_blocking(move || {
        server.restart();
        server
    })
    .await
    .unwrap();
    let mut ok = Vec::new();
    let mut failed = 0;
    for c in callers {
        for (i, r) in c.await.unwrap() {
            match r {
                Ok(e) => ok.push((i, e.id)),
                Err(Error::Unavailable(_)) => failed += 1,
                Err(e) => panic!("enqueue {i}: {e}"),
            }
        }
    }
    assert!(!ok.is_empty(), "some enqueues succeeded");
    assert!(
        failed > 0,
        "the restart was felt (else the test proves nothing)"
    );
    for (i, id) in &ok {
        let t =
            b.get(id).await.unwrap().unwrap_or_else(|| {
                panic!("task {id} (enqueue {i}) was reported enqueued and is gone")
            });
        assert_eq!(t.request, json!({ "n": i }));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_rate_checks_share_a_count_and_admit_exactly_the_limit() {
    let server = RedisServer::start();
    let mut limits = taskfleet::Limits::unlimited();
    limits.rate_per_minute = 150;
    let b = Broker::builder(server.url())
        .prefix(testing::fresh_prefix())
        .limits(limits)
        .queue("q", queue(3))
        .build()
        .unwrap();
    let before = incrby_calls(&b).await;
    let checks: Vec<_> = (0..200)
        .map(|_| {
            let b = b.clone();
            tokio::spawn(async move { b.take_rate("acme", 1, T0).await.unwrap() })
        })
        .collect();
    let mut allowed = 0;
    for c in checks {
        if c.await.unwrap() == taskfleet::RateOutcome::Allowed {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 150, "exactly the limit admitted");
    let calls = incrby_calls(&b).await - before;
    assert!(
        calls < 180,
        "{calls} INCRBYs for 200 concurrent checks: not grouped"
    );
}

/// INCRBY calls the server has run.
async fn incrby_calls(b: &Broker) -> u64 {
    let info: String = testing::command(b, &["INFO", "commandstats"]).await;
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_incrby:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}
