//! Promises kept under races, clock steps and hostile input (issue 8): a claim whose reply is
//! lost, clocks that step, Redis errors that mean "try again", cancels that reach a task's
//! children, explicit ids and reused Idempotency-Keys, bounded listing, per-account quotas.

mod common;

use std::time::Duration;

use common::{key_count, new_task, queue, setup, T0};
use serde_json::json;
use taskfleet::testing::{self, LossyProxy, RedisServer};
use taskfleet::{
    At, Broker, Clock, DeferOutcome, Error, FailOutcome, Failure, Limits, NewTask, Priority,
    RedisClock, ReleaseOutcome, TaskStatus,
};

/// Keeps the server busy running a script for `ms` of its own time (every other client waits),
/// from a connection of its own, so that a call sent meanwhile gets no answer in time.
fn busy_server_for(server: &RedisServer, ms: u64) -> std::thread::JoinHandle<()> {
    let url = server.url();
    std::thread::spawn(move || {
        let client = redis::Client::open(url).unwrap();
        let mut c = client.get_connection().unwrap();
        let script = format!(
            "local t0 = redis.call('TIME') \
             while true do local t = redis.call('TIME') \
             if (t[1] - t0[1]) * 1000000 + (t[2] - t0[2]) > {} then break end end return 1",
            ms * 1000
        );
        let _: i64 = redis::cmd("EVAL").arg(script).arg(0).query(&mut c).unwrap();
    })
}

fn broker_with_timeout(server: &RedisServer, timeout: Duration) -> Broker {
    Broker::builder(server.url())
        .prefix(testing::fresh_prefix())
        .timeout(timeout)
        .queue("q", queue(3))
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_claim_whose_reply_was_lost_gives_its_tasks_back_with_their_attempts() {
    let proxy = LossyProxy::start(testing::shared_redis().port()).await;
    let b = Broker::builder(proxy.url())
        .prefix(testing::fresh_prefix())
        .timeout(Duration::from_millis(300))
        .queue("q", queue(3))
        .build()
        .unwrap();
    // The script is loaded (a first EVALSHA would answer NOSCRIPT and run nothing).
    assert!(b.claim(&["q"], 1, At::Server).await.unwrap().is_empty());
    let mut ids: Vec<String> = b
        .enqueue_many((0..3).map(new_task).collect(), At::Server)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    // The claim runs on the server, but its reply never reaches the caller.
    proxy.drop_replies(true);
    assert!(matches!(
        b.claim(&["q"], 10, At::Server).await,
        Err(Error::Unavailable(_))
    ));
    proxy.drop_replies(false);
    let s = &b.status().await.unwrap()[0];
    assert_eq!(
        s.count(TaskStatus::Processing),
        3,
        "the lost claim did lease them"
    );
    // The next claim first gives back what the lost one leased, then claims: every task is
    // on its first attempt, none waits for its lease to expire.
    let got = b.claim(&["q"], 10, At::Server).await.unwrap();
    let mut claimed: Vec<String> = got.iter().map(|c| c.id.clone()).collect();
    claimed.sort();
    ids.sort();
    assert_eq!(claimed, ids);
    assert!(got.iter().all(|c| c.attempt == 1), "{got:?}");
}

#[tokio::test]
async fn a_process_whose_clock_stepped_forward_recovers_no_live_lease() {
    let b = setup();
    let server = b.server_time_ms().await.unwrap();
    b.enqueue(new_task(1), At::Server).await.unwrap();
    // Worker A claims by the server's clock.
    let c = b.claim(&["q"], 1, At::Server).await.unwrap().remove(0);
    // Process B resynced after a forward step of ten minutes: its estimate is far ahead, and
    // by it every lease would look expired. Its recoverer still judges by the server's clock.
    let stepped = RedisClock::starting_at(server + 600_000);
    assert!(stepped.now_ms() > server + 590_000);
    let report = b.recover(stepped.at(), &[]).await.unwrap();
    assert!(report.requeued.is_empty(), "{report:?}");
    assert_eq!(b.status_of(&c.id).await.unwrap(), TaskStatus::Processing);
    // What the old design did: the recoverer acted at its own estimate.
    let by_estimate = b.recover(stepped.now_ms(), &[]).await.unwrap();
    assert_eq!(
        by_estimate.requeued.len(),
        1,
        "the step the fix guards against"
    );
}

#[tokio::test]
async fn a_process_whose_clock_stepped_back_still_sees_due_tasks_by_the_servers_clock() {
    let b = setup();
    let server = b.server_time_ms().await.unwrap();
    // Due a second ago by the server's clock.
    let e = b
        .enqueue(new_task(1).run_at(server - 1_000), At::Server)
        .await
        .unwrap();
    assert_eq!(e.status, TaskStatus::Queued);
    let later = b
        .enqueue(new_task(2).run_at(server + 400), At::Server)
        .await
        .unwrap();
    assert_eq!(later.status, TaskStatus::Scheduled);
    // A process whose estimate stepped back an hour (and, in the old design, froze there)
    // claims by the server's clock: the due task at once, the later one once it is due.
    let stepped = RedisClock::starting_at(server - 3_600_000);
    let first = b.claim(&["q"], 5, stepped.at()).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].id, e.id);
    let mut second = Vec::new();
    for _ in 0..40 {
        second = b.claim(&["q"], 5, stepped.at()).await.unwrap();
        if !second.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        second.len(),
        1,
        "the scheduled task became due by the server's clock"
    );
    assert_eq!(second[0].id, later.id);
    // And the clock follows the server back: no frozen estimate.
    stepped.set(server);
    assert!((stepped.now_ms() - server).abs() < 60_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_server_is_unavailable_not_an_error_and_the_call_works_once_it_is_free() {
    let server = RedisServer::start();
    let b = broker_with_timeout(&server, Duration::from_secs(5));
    server.raw("CONFIG SET busy-reply-threshold 50");
    let busy = busy_server_for(&server, 800);
    tokio::time::sleep(Duration::from_millis(250)).await;
    match b.enqueue(new_task(1), At::Server).await {
        Err(Error::Unavailable(m)) => assert!(m.contains("BUSY"), "{m}"),
        other => panic!("expected BUSY as Unavailable, got {other:?}"),
    }
    busy.join().unwrap();
    b.enqueue(new_task(1), At::Server).await.unwrap();
}

#[tokio::test]
async fn a_replica_answers_readonly_which_is_unavailable_and_drops_the_connection() {
    let primary = RedisServer::start();
    let replica = RedisServer::start();
    replica.raw(&format!("REPLICAOF 127.0.0.1 {}", primary.port()));
    let b = broker_with_timeout(&replica, Duration::from_secs(2));
    match b.enqueue(new_task(1), At::Server).await {
        Err(Error::Unavailable(m)) => assert!(m.contains("read only"), "{m}"),
        other => panic!("expected READONLY as Unavailable, got {other:?}"),
    }
    // The replica is promoted (a failover): the same broker writes again.
    let promoted = replica.raw("REPLICAOF NO ONE");
    assert!(promoted.starts_with("+OK"), "{promoted}");
    b.enqueue(new_task(1), At::Server).await.unwrap();
}

#[tokio::test]
async fn a_released_task_whose_cancel_was_requested_ends_cancelled() {
    let b = setup();
    let e = b.enqueue(new_task(1), T0).await.unwrap();
    let c = b.claim(&["q"], 1, T0).await.unwrap().remove(0);
    b.cancel(&e.id, T0 + 1).await.unwrap();
    let out = b
        .release("q", &[(c.id.clone(), c.lease.clone())], T0 + 2)
        .await
        .unwrap();
    assert_eq!(out, vec![ReleaseOutcome::Cancelled]);
    let t = b.get(&e.id).await.unwrap().unwrap();
    assert_eq!(t.status, TaskStatus::Cancelled);
    assert!(b.claim(&["q"], 1, T0 + 3).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_deferral_of_a_cancel_requested_task_ends_it_cancelled() {
    let b = setup();
    let e = b.enqueue(new_task(1), T0).await.unwrap();
    let c = b.claim(&["q"], 1, T0).await.unwrap().remove(0);
    b.cancel(&e.id, T0 + 1).await.unwrap();
    let out = b
        .defer(
            "q",
            &c.id,
            &c.lease,
            Duration::from_secs(5),
            "waiting",
            T0 + 2,
        )
        .await
        .unwrap();
    assert_eq!(out, DeferOutcome::Cancelled);
    let t = b.get(&e.id).await.unwrap().unwrap();
    assert_eq!(
        (t.status, t.finished_at),
        (TaskStatus::Cancelled, Some(T0 + 2))
    );
    assert_eq!(b.status().await.unwrap()[0].stats["cancelled"], 1);
}

/// A parent of queue "q" whose children (in "kids") were recorded by its running attempt.
async fn parent_with_children(b: &Broker) -> (taskfleet::Claimed, Vec<String>) {
    let p = b.enqueue(new_task(0), T0).await.unwrap();
    let c = b.claim(&["q"], 1, T0).await.unwrap().remove(0);
    assert_eq!(c.id, p.id);
    let kids: Vec<String> = b
        .enqueue_many(
            (1..=3)
                .map(|i| NewTask::new("kids", json!({"i": i})).parent(p.id.clone()))
                .collect(),
            T0,
        )
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    let pairs: Vec<(String, String)> = kids
        .iter()
        .map(|k| ("kids".to_string(), k.clone()))
        .collect();
    b.set_children("q", &c.id, &c.lease, &pairs).await.unwrap();
    (c, kids)
}

fn family() -> Broker {
    testing::broker(&[("q", queue(1)), ("kids", queue(3))])
}

#[tokio::test]
async fn a_parent_that_fails_cancels_its_waiting_children() {
    let b = family();
    let (c, kids) = parent_with_children(&b).await;
    let out = b
        .fail(
            "q",
            &[Failure {
                id: c.id.clone(),
                lease: c.lease.clone(),
                error: "boom".into(),
                permanent: true,
            }],
            T0 + 1,
        )
        .await
        .unwrap();
    assert_eq!(out, vec![FailOutcome::Failed]);
    for k in &kids {
        assert_eq!(b.status_of(k).await.unwrap(), TaskStatus::Cancelled);
    }
}

#[tokio::test]
async fn a_parent_failed_by_the_recoverer_cancels_its_children() {
    let b = family();
    let (c, kids) = parent_with_children(&b).await;
    // One attempt only, and its lease ran out: the recoverer fails it.
    let r = b.recover(T0 + 31_000, &[]).await.unwrap();
    assert_eq!(r.failed, vec![("q".to_string(), c.id.clone())]);
    for k in &kids {
        assert_eq!(b.status_of(k).await.unwrap(), TaskStatus::Cancelled);
    }
}

#[tokio::test]
async fn a_childs_own_end_or_a_lost_lease_of_its_parent_does_not_reach_siblings() {
    let b = family();
    let (c, kids) = parent_with_children(&b).await;
    // The parent completes: nothing is cancelled.
    b.complete_one("q", &c.id, &c.lease, json!({}), T0 + 1)
        .await
        .unwrap();
    for k in &kids {
        assert_eq!(b.status_of(k).await.unwrap(), TaskStatus::Queued);
    }
}

#[tokio::test]
async fn an_explicit_id_that_exists_answers_with_that_task_and_overwrites_nothing() {
    let b = setup();
    let mut t = new_task(1);
    t.id = Some("order-7".into());
    let first = b.enqueue(t.clone(), T0).await.unwrap();
    assert!(first.created);
    let c = b.claim(&["q"], 1, T0).await.unwrap().remove(0);
    assert_eq!((c.id.as_str(), c.attempt), ("order-7", 1));
    let mut again = t.clone();
    again.request = json!({"n": 99});
    let e = b.enqueue(again, T0 + 5).await.unwrap();
    assert_eq!(
        (e.id.as_str(), e.status, e.created),
        ("order-7", TaskStatus::Processing, false)
    );
    let task = b.get("order-7").await.unwrap().unwrap();
    assert_eq!((task.attempts, task.request), (1, json!({"n": 1})));
    // Still in one set only: `processing`.
    let s = &b.status().await.unwrap()[0];
    assert_eq!(
        (s.count(TaskStatus::Queued), s.count(TaskStatus::Processing)),
        (0, 1)
    );
    // The same id twice in one batch is written once.
    let mut x = new_task(2);
    x.id = Some("order-8".into());
    let both = b.enqueue_many(vec![x.clone(), x], T0).await.unwrap();
    assert_eq!((both[0].created, both[1].created), (true, false));
    assert_eq!(both[1].id, "order-8");
}

#[tokio::test]
async fn an_idempotency_key_reused_with_another_request_is_refused_and_writes_nothing() {
    let b = setup();
    b.enqueue(new_task(1).idempotency_key("k"), T0)
        .await
        .unwrap();
    let before = key_count(&b).await;
    match b.enqueue(new_task(2).idempotency_key("k"), T0 + 1).await {
        Err(Error::IdempotencyMismatch { key, .. }) => assert_eq!(key, "k"),
        other => panic!("expected a mismatch, got {other:?}"),
    }
    // Another priority is another request too.
    assert!(matches!(
        b.enqueue(
            new_task(1).idempotency_key("k").priority(Priority::Urgent),
            T0 + 2
        )
        .await,
        Err(Error::IdempotencyMismatch { .. })
    ));
    assert_eq!(key_count(&b).await, before);
    assert_eq!(b.status().await.unwrap()[0].stats["enqueued"], 1);
    // The same request again is the first task.
    let same = b
        .enqueue(new_task(1).idempotency_key("k"), T0 + 3)
        .await
        .unwrap();
    assert!(!same.created);
}

#[tokio::test]
async fn an_accounts_queued_tasks_are_found_by_a_bounded_walk_of_the_queue() {
    let b = setup();
    let others: Vec<NewTask> = (0..30).map(|i| new_task(i).owner("globex", "g")).collect();
    b.enqueue_many(others, T0).await.unwrap();
    let mine = b
        .enqueue_many(vec![new_task(100), new_task(101)], T0 + 1)
        .await
        .unwrap();
    // Finished tasks in the account's index do not count: complete a third one of acme's.
    let done = b.enqueue(new_task(102), T0 - 5).await.unwrap();
    let c = b.claim(&["q"], 1, T0).await.unwrap().remove(0);
    assert_eq!(c.id, done.id);
    b.complete_one("q", &c.id, &c.lease, json!({}), T0)
        .await
        .unwrap();
    let (found, complete) = b.queued_of_account("q", "acme", 10, 1_000).await.unwrap();
    assert!(complete);
    let got: Vec<(String, u64)> = found.iter().map(|e| (e.id.clone(), e.position)).collect();
    assert_eq!(
        got,
        vec![(mine[0].id.clone(), 30), (mine[1].id.clone(), 31)]
    );
    // A walk bounded before them says it did not reach the end.
    let (found, complete) = b.queued_of_account("q", "acme", 10, 20).await.unwrap();
    assert!(found.is_empty());
    assert!(!complete);
}

fn limited(limits: Limits) -> Broker {
    Broker::builder(testing::shared_redis().url())
        .prefix(testing::fresh_prefix())
        .queue("q", queue(3))
        .limits(limits)
        .build()
        .unwrap()
}

#[tokio::test]
async fn an_account_holds_no_more_tasks_or_bytes_than_its_quota_and_trim_gives_them_back() {
    let mut l = Limits::unlimited();
    l.max_tasks = 3;
    let b = limited(l);
    b.enqueue_many((0..3).map(new_task).collect(), T0)
        .await
        .unwrap();
    let before = key_count(&b).await;
    match b.enqueue(new_task(3), T0).await {
        Err(Error::QuotaExceeded { what, limit, .. }) => assert_eq!((what, limit), ("tasks", 3)),
        other => panic!("expected the quota, got {other:?}"),
    }
    // A batch that would pass it is refused whole.
    assert!(b.enqueue_many(vec![new_task(4)], T0).await.is_err());
    assert_eq!(key_count(&b).await, before);
    // Another account has its own.
    b.enqueue(new_task(5).owner("globex", "g"), T0)
        .await
        .unwrap();
    // Finished tasks count until retention trims them.
    let c = b.claim(&["q"], 1, T0).await.unwrap().remove(0);
    b.complete_one("q", &c.id, &c.lease, json!({}), T0)
        .await
        .unwrap();
    assert!(b.enqueue(new_task(6), T0).await.is_err());
    b.trim(T0 + 8 * 24 * 3_600_000).await.unwrap();
    b.enqueue(new_task(6), T0 + 8 * 24 * 3_600_000)
        .await
        .unwrap();

    let mut l = Limits::unlimited();
    l.max_bytes = 100;
    let b = limited(l);
    let big = |n: usize| NewTask::new("q", json!({"pad": "x".repeat(n)})).owner("acme", "ann");
    b.enqueue(big(40), T0).await.unwrap();
    match b.enqueue(big(60), T0).await {
        Err(Error::QuotaExceeded { what, .. }) => assert_eq!(what, "bytes"),
        other => panic!("expected the byte quota, got {other:?}"),
    }
    b.enqueue(big(20), T0).await.unwrap();
}

#[tokio::test]
async fn an_account_may_be_kept_from_the_urgent_band() {
    let mut l = Limits::unlimited();
    l.accounts.insert(
        "acme".into(),
        taskfleet::config::AccountLimits {
            max_priority: Some(Priority::High),
            ..Default::default()
        },
    );
    let b = limited(l);
    match b.enqueue(new_task(1).priority(Priority::Urgent), T0).await {
        Err(Error::InvalidInput { field, .. }) => assert_eq!(field, "priority"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    b.enqueue(new_task(1).priority(Priority::High), T0)
        .await
        .unwrap();
    // Others keep every band.
    b.enqueue(
        new_task(2).owner("globex", "g").priority(Priority::Urgent),
        T0,
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn the_rate_limit_counts_per_account_and_minute() {
    let mut l = Limits::unlimited();
    l.rate_per_minute = 5;
    let b = limited(l);
    assert_eq!(
        b.take_rate("acme", 5, T0).await.unwrap(),
        taskfleet::RateOutcome::Allowed
    );
    match b.take_rate("acme", 1, T0 + 1_000).await.unwrap() {
        taskfleet::RateOutcome::Limited {
            limit,
            retry_after_secs,
        } => assert_eq!((limit, retry_after_secs), (5, 59)),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        b.take_rate("globex", 1, T0).await.unwrap(),
        taskfleet::RateOutcome::Allowed
    );
    assert_eq!(
        b.take_rate("acme", 1, T0 + 60_000).await.unwrap(),
        taskfleet::RateOutcome::Allowed
    );
}
