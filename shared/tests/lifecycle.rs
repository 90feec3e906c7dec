//! The task lifecycle against a real Redis: order, scheduling, retries, cancel, fencing,
//! recovery, pause, retention. Time is moved, never slept through.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{claim_n, key_count, new_task, queue, setup, T0};
use serde_json::json;
use taskfleet::testing;
use taskfleet::{
    CancelOutcome, Completion, Error, FailOutcome, NewTask, Priority, ReleaseOutcome, TaskStatus,
    TaskType,
};

on_both!(tasks_come_out_by_band_then_enqueue_time, |target| {
    let b = target.setup();
    let mut now = T0;
    for batch in 0..100 {
        let tasks = (0..10)
            .map(|i| {
                let p = Priority::ALL[rand::random_range(0..4)];
                new_task(batch * 10 + i).priority(p)
            })
            .collect();
        b.enqueue_many(tasks, now).await.unwrap();
        now += rand::random_range(0..3);
    }
    let mut seen = Vec::new();
    loop {
        let got = b.claim(&["q"], 64, now).await.unwrap();
        if got.is_empty() {
            break;
        }
        seen.extend(got);
    }
    assert_eq!(seen.len(), 1000);
    // Order is exact within a shard (on a single server, the one shard is the queue); the
    // id's second field names the shard.
    let mut by_shard: std::collections::BTreeMap<String, Vec<_>> = Default::default();
    for c in seen {
        let shard = c.id.split('.').nth(1).unwrap().to_string();
        by_shard.entry(shard).or_default().push(c);
    }
    if target == common::Target::Cluster {
        assert_eq!(by_shard.len(), 16, "a queue on the cluster has 16 shards");
    }
    for w in by_shard.values().flat_map(|v| v.windows(2)) {
        let (a, c) = (&w[0], &w[1]);
        assert!(
            (a.priority.band(), a.created_at) <= (c.priority.band(), c.created_at),
            "{:?}/{} came before {:?}/{}",
            a.priority,
            a.created_at,
            c.priority,
            c.created_at
        );
    }
});

on_both!(
    a_catalog_types_request_is_checked_by_the_library_naming_the_field,
    |target| {
        let b = target.broker(&[("image_generation", taskfleet::QueueConfig::default())]);
        match b
            .enqueue(
                NewTask::new(
                    "image_generation",
                    json!({"prompt": "a cat", "width": 9999}),
                ),
                T0,
            )
            .await
        {
            Err(Error::InvalidInput { field, .. }) => assert_eq!(field, "request.width"),
            other => panic!("expected the width refused, got {other:?}"),
        }
        assert_eq!(key_count(&b).await, 0);
    }
);

on_both!(a_request_without_priority_gets_its_types_band, |target| {
    let b = target.broker(&[(
        "quiz",
        taskfleet::QueueConfig::from(&taskfleet::TaskConfig::default_for(TaskType::Quiz)),
    )]);
    let e = b
        .enqueue(
            NewTask::new("quiz", json!({"source_text": "Paris is in France."})),
            T0,
        )
        .await
        .unwrap();
    assert_eq!(e.priority, Priority::Normal);
    assert_eq!(
        b.get(&e.id).await.unwrap().unwrap().priority,
        Priority::Normal
    );
});

on_both!(
    a_scheduled_task_is_claimable_only_once_the_clock_passes_run_at,
    |target| {
        let b = target.setup();
        let e = b.enqueue(new_task(1).run_at(T0 + 5_000), T0).await.unwrap();
        assert_eq!(e.status, TaskStatus::Scheduled);
        assert!(b.claim(&["q"], 10, T0).await.unwrap().is_empty());
        assert!(b.claim(&["q"], 10, T0 + 4_999).await.unwrap().is_empty());
        let got = b.claim(&["q"], 10, T0 + 5_000).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].id, e.id);
    }
);

on_both!(
    a_failed_attempt_retries_after_a_bounded_backoff_until_attempts_run_out,
    |target| {
        let b = target.setup();
        let e = b.enqueue(new_task(1), T0).await.unwrap();
        let mut now = T0;
        for attempt in 1..=3u32 {
            let c = b.claim(&["q"], 1, now).await.unwrap().remove(0);
            assert_eq!(c.attempt, attempt);
            now += 1_000;
            let outcome = b
                .fail_one("q", &c.id, &c.lease, &format!("boom {attempt}"), false, now)
                .await
                .unwrap();
            let task = b.get(&e.id).await.unwrap().unwrap();
            if attempt < 3 {
                assert_eq!(outcome, FailOutcome::Retrying);
                assert_eq!(task.status, TaskStatus::Retrying);
                let ceiling = (10_000_i64 << (attempt - 1)).min(600_000);
                let due = task.run_at.unwrap();
                assert!(
                    (now..=now + ceiling).contains(&due),
                    "due {due} outside backoff"
                );
                if due > now {
                    assert!(b.claim(&["q"], 1, due - 1).await.unwrap().is_empty());
                }
                now = due;
            } else {
                assert_eq!(outcome, FailOutcome::Failed);
                assert_eq!(task.status, TaskStatus::Failed);
                assert_eq!(task.error.as_deref(), Some("boom 3"));
                assert_eq!(task.attempts, 3);
            }
        }
        assert!(b
            .claim(&["q"], 1, now + 3_600_000)
            .await
            .unwrap()
            .is_empty());
    }
);

on_both!(a_permanent_failure_is_not_retried, |target| {
    let b = target.setup();
    b.enqueue(new_task(1), T0).await.unwrap();
    let c = b.claim(&["q"], 1, T0).await.unwrap().remove(0);
    let o = b
        .fail_one("q", &c.id, &c.lease, "bad input", true, T0)
        .await
        .unwrap();
    assert_eq!(o, FailOutcome::Failed);
    assert_eq!(b.status_of(&c.id).await.unwrap(), TaskStatus::Failed);
});

on_both!(
    a_task_whose_worker_dies_every_time_stops_after_max_attempts,
    |target| {
        let b = target.setup();
        let e = b.enqueue(new_task(1), T0).await.unwrap();
        let lease = b.lease().as_millis() as i64;
        let mut now = T0;
        for attempt in 1..=3 {
            let c = b.claim(&["q"], 1, now).await.unwrap();
            assert_eq!(c.len(), 1, "attempt {attempt} claimable");
            assert_eq!(c[0].attempt, attempt);
            // The worker dies: nothing acks; the lease runs out.
            now += lease + 1;
            b.recover(now, &[]).await.unwrap();
        }
        let t = b.get(&e.id).await.unwrap().unwrap();
        assert_eq!(t.status, TaskStatus::Failed);
        assert_eq!(t.attempts, 3);
        assert!(t.error.unwrap().contains("lease expired"));
    }
);

on_both!(
    cancel_ends_a_waiting_task_marks_a_running_one_and_refuses_a_finished_one,
    |target| {
        let b = target.setup();
        let waiting = b.enqueue(new_task(1), T0).await.unwrap();
        assert_eq!(
            b.cancel(&waiting.id, T0).await.unwrap(),
            CancelOutcome::Cancelled
        );
        assert_eq!(
            b.status_of(&waiting.id).await.unwrap(),
            TaskStatus::Cancelled
        );
        assert!(b.claim(&["q"], 10, T0).await.unwrap().is_empty());

        let running = b.enqueue(new_task(2), T0).await.unwrap();
        let c = b.claim(&["q"], 1, T0).await.unwrap().remove(0);
        assert_eq!(
            b.cancel(&running.id, T0).await.unwrap(),
            CancelOutcome::Requested
        );
        let report = b
            .extend("q", &[(c.id.clone(), c.lease.clone())], T0 + 1)
            .await
            .unwrap();
        assert_eq!(report.cancel_requested, vec![running.id.clone()]);
        assert!(report.lost.is_empty());
        let o = b
            .fail_one("q", &c.id, &c.lease, "cancelled", false, T0 + 2)
            .await
            .unwrap();
        assert_eq!(o, FailOutcome::Cancelled);

        let before = b.get(&running.id).await.unwrap();
        match b.cancel(&running.id, T0 + 3).await {
            Err(Error::AlreadyTerminal { status, .. }) => assert_eq!(status, "cancelled"),
            other => panic!("expected already terminal, got {other:?}"),
        }
        assert_eq!(b.get(&running.id).await.unwrap(), before);
        assert!(matches!(
            b.cancel("nope", T0).await,
            Err(Error::NotFound(_))
        ));
    }
);

on_both!(
    after_recover_re_leases_a_task_the_old_lease_can_change_nothing,
    |target| {
        let b = target.setup();
        b.enqueue(new_task(1), T0).await.unwrap();
        let old = b.claim(&["q"], 1, T0).await.unwrap().remove(0);
        let later = T0 + b.lease().as_millis() as i64 + 1;
        let report = b.recover(later, &[]).await.unwrap();
        assert_eq!(report.requeued, vec![("q".to_string(), old.id.clone())]);
        let new = b.claim(&["q"], 1, later).await.unwrap().remove(0);
        assert_eq!(new.id, old.id);
        assert_eq!(new.attempt, 2);
        assert_ne!(new.lease, old.lease);
        let before = b.get(&old.id).await.unwrap();

        let r = b
            .extend("q", &[(old.id.clone(), old.lease.clone())], later)
            .await
            .unwrap();
        assert_eq!(r.lost, vec![old.id.clone()]);
        assert!(matches!(
            b.complete_one("q", &old.id, &old.lease, json!({"late": true}), later)
                .await,
            Err(Error::StaleLease(_))
        ));
        assert!(matches!(
            b.fail_one("q", &old.id, &old.lease, "late", true, later)
                .await,
            Err(Error::StaleLease(_))
        ));
        assert!(matches!(
            b.progress("q", &old.id, &old.lease, 50, "late").await,
            Err(Error::StaleLease(_))
        ));
        assert_eq!(b.get(&old.id).await.unwrap(), before);
        // The new owner still completes it.
        b.complete_one("q", &new.id, &new.lease, json!({"ok": 1}), later)
            .await
            .unwrap();
        let t = b.get(&new.id).await.unwrap().unwrap();
        assert_eq!(t.status, TaskStatus::Completed);
        assert_eq!(t.result, Some(json!({"ok": 1})));
    }
);

on_both!(
    recover_requeues_expired_leases_fails_exhausted_ones_and_leaves_live_ones,
    |target| {
        let b = target.broker(&[("q", queue(3)), ("once", queue(1))]);
        let lease = b.lease().as_millis() as i64;
        let a = b.enqueue(new_task(1), T0).await.unwrap();
        b.claim(&["q"], 1, T0).await.unwrap();
        let live = b.enqueue(new_task(2), T0).await.unwrap();
        let live_claim = b.claim(&["q"], 1, T0 + lease / 2).await.unwrap().remove(0);
        let once = b
            .enqueue(NewTask::new("once", json!({})), T0)
            .await
            .unwrap();
        b.claim(&["once"], 1, T0).await.unwrap();

        let before_live = b.get(&live.id).await.unwrap();
        let r = b.recover(T0 + lease + 1, &[]).await.unwrap();
        assert_eq!(r.requeued, vec![("q".to_string(), a.id.clone())]);
        assert_eq!(r.failed, vec![("once".to_string(), once.id.clone())]);

        let ta = b.get(&a.id).await.unwrap().unwrap();
        assert_eq!(ta.status, TaskStatus::Queued);
        assert_eq!(ta.attempts, 1);
        let tonce = b.get(&once.id).await.unwrap().unwrap();
        assert_eq!(tonce.status, TaskStatus::Failed);
        assert!(tonce.error.unwrap().contains("lease expired"));
        assert_eq!(b.get(&live.id).await.unwrap(), before_live);
        assert_eq!(live_claim.id, live.id);
    }
);

on_both!(
    recover_takes_back_at_once_the_tasks_of_a_dead_worker,
    |target| {
        let dead = target
            .builder()
            .worker_id("w-dead")
            .queue("q", queue(3))
            .build()
            .unwrap();
        let e = dead.enqueue(new_task(1), T0).await.unwrap();
        dead.claim(&["q"], 1, T0).await.unwrap();
        assert!(dead
            .recover(T0 + 1, &["w-other".into()])
            .await
            .unwrap()
            .requeued
            .is_empty());
        let r = dead.recover(T0 + 1, &["w-dead".into()]).await.unwrap();
        assert_eq!(r.requeued, vec![("q".to_string(), e.id.clone())]);
        assert_eq!(dead.status_of(&e.id).await.unwrap(), TaskStatus::Queued);
    }
);

on_both!(
    claim_returns_nothing_while_paused_and_everything_after_resume,
    |target| {
        let b = target.setup();
        b.enqueue_many((0..5).map(new_task).collect(), T0)
            .await
            .unwrap();
        b.pause(Some("q"), T0).await.unwrap();
        assert!(b.claim(&["q"], 10, T0).await.unwrap().is_empty());
        assert!(b.status().await.unwrap()[0].paused);
        b.resume(Some("q"), T0).await.unwrap();
        assert_eq!(claim_n(&b, &["q"], 10, T0).await.len(), 5);
        assert!(!b.status().await.unwrap()[0].paused);
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_concurrent_claimers_take_each_of_20000_tasks_exactly_once() {
    let b = setup();
    for chunk in 0..20 {
        let tasks = (0..1000).map(|i| new_task(chunk * 1000 + i)).collect();
        b.enqueue_many(tasks, T0).await.unwrap();
    }
    let mut handles = Vec::new();
    for _ in 0..8 {
        let b = b.clone();
        handles.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = b.claim(&["q"], 50, T0 + 1).await.unwrap();
                if got.is_empty() {
                    return mine;
                }
                let done: Vec<Completion> = got
                    .iter()
                    .map(|c| Completion {
                        id: c.id.clone(),
                        lease: c.lease.clone(),
                        result: json!({}),
                    })
                    .collect();
                assert!(b
                    .complete("q", &done, T0 + 2)
                    .await
                    .unwrap()
                    .iter()
                    .all(|ok| *ok));
                mine.extend(got.into_iter().map(|c| c.id));
            }
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    let unique: HashSet<&String> = all.iter().collect();
    assert_eq!(all.len(), 20_000);
    assert_eq!(unique.len(), 20_000);
    let s = &b.status().await.unwrap()[0];
    assert_eq!(s.count(TaskStatus::Completed), 20_000);
    assert_eq!(s.count(TaskStatus::Queued), 0);
    assert_eq!(s.count(TaskStatus::Processing), 0);
}

on_both!(
    trim_removes_finished_tasks_past_retention_with_their_index_entries,
    |target| {
        let b = target.setup();
        let day = 24 * 3_600_000_i64;
        let ids: Vec<String> = b
            .enqueue_many((0..3).map(new_task).collect(), T0)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect();
        let cs = claim_n(&b, &["q"], 2, T0).await;
        let ids: Vec<String> = [cs[0].id.clone(), cs[1].id.clone()]
            .into_iter()
            .chain(
                ids.into_iter()
                    .filter(|id| *id != cs[0].id && *id != cs[1].id),
            )
            .collect();
        b.complete_one("q", &cs[0].id, &cs[0].lease, json!({}), T0)
            .await
            .unwrap();
        b.fail_one("q", &cs[1].id, &cs[1].lease, "x", true, T0)
            .await
            .unwrap();
        b.cancel(&ids[2], T0).await.unwrap();

        assert!(b.trim(T0 + day - 1).await.unwrap().is_empty());
        assert_eq!(
            b.trim(T0 + day).await.unwrap(),
            vec![("q".into(), ids[2].clone())]
        );
        assert!(b.trim(T0 + 7 * day - 1).await.unwrap().is_empty());
        assert_eq!(
            b.trim(T0 + 7 * day).await.unwrap(),
            vec![("q".into(), cs[0].id.clone())]
        );
        assert_eq!(
            b.trim(T0 + 30 * day).await.unwrap(),
            vec![("q".into(), cs[1].id.clone())]
        );
        for id in &ids {
            assert!(b.get(id).await.unwrap().is_none());
        }
        assert!(b
            .list_account("acme", &["q"], None, 10)
            .await
            .unwrap()
            .is_empty());
        let s = &b.status().await.unwrap()[0];
        assert_eq!(s.counts.values().sum::<u64>(), 0);
    }
);

on_both!(every_call_still_works_after_script_flush, |target| {
    // SCRIPT FLUSH empties the whole server's script cache: on a single server, a server of
    // its own, so the other tests running in parallel are not part of this one; on the
    // cluster, every node's cache (the others' calls reload theirs).
    let server = (target == common::Target::Single).then(testing::RedisServer::start);
    let b = match &server {
        Some(s) => testing::broker_on(&s.url(), &[("q", queue(3))]),
        None => target.setup(),
    };
    let e = b.enqueue(new_task(1), T0).await.unwrap();
    testing::flush_scripts(&b).await;
    b.enqueue(new_task(2), T0).await.unwrap();
    let mut cs = claim_n(&b, &["q"], 2, T0).await;
    assert_eq!(cs.len(), 2);
    // The first one enqueued is completed, the other failed (across shards, either may have
    // been claimed first).
    cs.sort_by_key(|c| c.id != e.id);
    testing::flush_scripts(&b).await;
    b.extend("q", &[(cs[0].id.clone(), cs[0].lease.clone())], T0)
        .await
        .unwrap();
    b.complete_one("q", &cs[0].id, &cs[0].lease, json!({}), T0)
        .await
        .unwrap();
    b.fail_one("q", &cs[1].id, &cs[1].lease, "x", true, T0)
        .await
        .unwrap();
    b.recover(T0, &[]).await.unwrap();
    b.trim(T0).await.unwrap();
    b.pause(None, T0).await.unwrap();
    b.resume(None, T0).await.unwrap();
    assert_eq!(b.status_of(&e.id).await.unwrap(), TaskStatus::Completed);
});

on_both!(bad_input_gets_a_clear_error_and_writes_nothing, |target| {
    let b = target.setup();
    let not_object = b.enqueue(NewTask::new("q", json!([1, 2])), T0).await;
    match not_object {
        Err(Error::InvalidInput { field, .. }) => assert_eq!(field, "request"),
        other => panic!("expected invalid request, got {other:?}"),
    }
    assert!(matches!(
        b.enqueue(NewTask::new("podcast", json!({})), T0).await,
        Err(Error::UnknownTaskType(t)) if t == "podcast"
    ));
    assert!(matches!(
        "podcast".parse::<TaskType>(),
        Err(taskfleet::catalog::UnknownTaskType(_))
    ));
    assert!(matches!(
        "asap".parse::<Priority>(),
        Err(Error::InvalidInput { .. })
    ));
    // One bad task in a batch: none of the batch is written.
    let batch = vec![new_task(1), new_task(2).owner("a:b", "u")];
    assert!(matches!(
        b.enqueue_many(batch, T0).await,
        Err(Error::InvalidInput { field, .. }) if field == "account_id"
    ));
    assert!(matches!(
        b.claim(&["nope"], 1, T0).await,
        Err(Error::UnknownTaskType(_))
    ));
    assert_eq!(key_count(&b).await, 0);
});

on_both!(
    an_idempotency_key_returns_the_first_task_even_after_it_finished,
    |target| {
        let b = target.setup();
        let first = b
            .enqueue(new_task(1).idempotency_key("k-1"), T0)
            .await
            .unwrap();
        assert!(first.created);
        let again = b
            .enqueue(new_task(1).idempotency_key("k-1"), T0 + 5)
            .await
            .unwrap();
        assert_eq!(again.id, first.id);
        assert!(!again.created);
        let c = b.claim(&["q"], 10, T0).await.unwrap();
        assert_eq!(c.len(), 1);
        b.complete_one("q", &c[0].id, &c[0].lease, json!({}), T0)
            .await
            .unwrap();
        let after = b
            .enqueue(new_task(1).idempotency_key("k-1"), T0 + 9)
            .await
            .unwrap();
        assert_eq!(
            (after.id.as_str(), after.status),
            (first.id.as_str(), TaskStatus::Completed)
        );
        // Another account's same key is its own.
        let other = b
            .enqueue(
                new_task(4).owner("globex", "gil").idempotency_key("k-1"),
                T0,
            )
            .await
            .unwrap();
        assert_ne!(other.id, first.id);
    }
);

on_both!(
    a_worker_of_several_types_claims_the_best_band_first,
    |target| {
        // Across types the order is exact between one-shard queues; across shards it is the
        // power of two choices' (the benchmark measures its error).
        let one = taskfleet::QueueConfig {
            shards: Some(1),
            ..queue(3)
        };
        let b = target.broker(&[("a", one.clone()), ("b", one)]);
        let low = b
            .enqueue(NewTask::new("a", json!({})).priority(Priority::Low), T0)
            .await
            .unwrap();
        let urgent = b
            .enqueue(
                NewTask::new("b", json!({})).priority(Priority::Urgent),
                T0 + 10,
            )
            .await
            .unwrap();
        let got = b.claim(&["a", "b"], 1, T0 + 20).await.unwrap();
        assert_eq!(got[0].id, urgent.id);
        let got = b.claim(&["a", "b"], 5, T0 + 20).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].id, low.id);
    }
);

on_both!(
    release_gives_a_task_back_without_using_an_attempt,
    |target| {
        let b = target.setup();
        let e = b.enqueue(new_task(1), T0).await.unwrap();
        let c = b.claim(&["q"], 1, T0).await.unwrap().remove(0);
        assert_eq!(
            b.release("q", &[(c.id.clone(), c.lease.clone())], T0)
                .await
                .unwrap(),
            vec![ReleaseOutcome::Released]
        );
        let t = b.get(&e.id).await.unwrap().unwrap();
        assert_eq!((t.status, t.attempts), (TaskStatus::Queued, 0));
        assert_eq!(b.claim(&["q"], 1, T0).await.unwrap()[0].attempt, 1);
    }
);

on_both!(
    account_listing_pages_newest_first_without_gaps_or_duplicates,
    |target| {
        let b = target.broker(&[("a", queue(3)), ("b", queue(3))]);
        for i in 0..25 {
            let tasks = (0..10)
                .map(|j| {
                    NewTask::new(if j % 3 == 0 { "a" } else { "b" }, json!({"i": i}))
                        .owner("acme", "u")
                })
                .collect();
            b.enqueue_many(tasks, T0 + (i / 2) as i64).await.unwrap();
        }
        b.enqueue(NewTask::new("a", json!({})).owner("globex", "u"), T0)
            .await
            .unwrap();
        let mut cursor = None;
        let mut seen = Vec::new();
        loop {
            let page = b
                .list_account("acme", &["a", "b"], cursor.clone(), 7)
                .await
                .unwrap();
            if page.is_empty() {
                break;
            }
            let (ms, _, id) = page.last().unwrap().clone();
            cursor = Some((ms, id));
            seen.extend(page);
        }
        assert_eq!(seen.len(), 250);
        let unique: HashSet<&String> = seen.iter().map(|(_, _, id)| id).collect();
        assert_eq!(unique.len(), 250);
        assert!(seen.windows(2).all(|w| w[0].0 >= w[1].0));
    }
);

#[tokio::test]
async fn an_unreachable_redis_gives_unavailable_within_the_timeout() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let b = taskfleet::Broker::builder(format!("redis://127.0.0.1:{port}"))
        .timeout(Duration::from_millis(300))
        .queue("q", queue(3))
        .build()
        .unwrap();
    assert!(matches!(
        b.enqueue(new_task(1), T0).await,
        Err(Error::Unavailable(_))
    ));
}

on_both!(progress_is_written_to_the_task, |target| {
    let b = target.setup();
    b.enqueue(new_task(1), T0).await.unwrap();
    let c = b.claim(&["q"], 1, T0).await.unwrap().remove(0);
    b.progress("q", &c.id, &c.lease, 40, "halfway-ish")
        .await
        .unwrap();
    let t = b.get(&c.id).await.unwrap().unwrap();
    assert_eq!(
        (t.progress, t.message.as_deref()),
        (40, Some("halfway-ish"))
    );
});

on_both!(a_deferred_task_waits_without_using_an_attempt, |target| {
    let b = target.setup();
    let e = b.enqueue(new_task(1), T0).await.unwrap();
    let c = b.claim(&["q"], 1, T0).await.unwrap().remove(0);
    b.defer(
        "q",
        &c.id,
        &c.lease,
        Duration::from_secs(5),
        "waiting for children",
        T0,
    )
    .await
    .unwrap();
    let t = b.get(&e.id).await.unwrap().unwrap();
    assert_eq!((t.status, t.attempts), (TaskStatus::Scheduled, 0));
    assert!(b.claim(&["q"], 1, T0 + 4_999).await.unwrap().is_empty());
    let again = b.claim(&["q"], 1, T0 + 5_000).await.unwrap().remove(0);
    assert_eq!(again.attempt, 1);
    assert!(matches!(
        b.defer("q", &c.id, &c.lease, Duration::ZERO, "stale", T0)
            .await,
        Err(Error::StaleLease(_))
    ));
});

on_both!(
    recover_stuck_takes_back_tasks_running_longer_than_the_limit,
    |target| {
        let b = target.setup();
        let old = b.enqueue(new_task(1), T0).await.unwrap();
        b.claim(&["q"], 1, T0).await.unwrap();
        let young = b.enqueue(new_task(2), T0).await.unwrap();
        b.claim(&["q"], 1, T0 + 10_000).await.unwrap();
        // Both leases are fresh at T0 + 12 s; only the one started more than 7 s before is taken.
        let r = b
            .recover_stuck(T0 + 12_000, Duration::from_secs(7))
            .await
            .unwrap();
        assert_eq!(r.requeued, vec![("q".to_string(), old.id.clone())]);
        assert_eq!(b.status_of(&old.id).await.unwrap(), TaskStatus::Queued);
        assert_eq!(
            b.status_of(&young.id).await.unwrap(),
            TaskStatus::Processing
        );
    }
);

on_both!(
    a_single_enqueue_answers_its_queue_position_and_the_measured_run_time,
    |target| {
        // Exact in a queue of one shard; with several, the answer is an estimate (the shard's
        // rank × the shard count) and the queue listing gives the exact place.
        let b = target.broker(&[(
            "q",
            taskfleet::QueueConfig {
                shards: Some(1),
                ..queue(3)
            },
        )]);
        let first = b.enqueue(new_task(1), T0).await.unwrap();
        let second = b.enqueue(new_task(2), T0).await.unwrap();
        let urgent = b
            .enqueue(new_task(3).priority(Priority::Urgent), T0)
            .await
            .unwrap();
        assert_eq!(
            (
                first.queue_position,
                second.queue_position,
                urgent.queue_position
            ),
            (Some(0), Some(1), Some(0))
        );
        assert_eq!(first.average_run_ms, None, "nothing has completed yet");
        let c = b.claim(&["q"], 1, T0).await.unwrap().remove(0);
        b.complete_one("q", &c.id, &c.lease, json!({}), T0 + 400)
            .await
            .unwrap();
        let later = b
            .enqueue(new_task(4).run_at(T0 + 60_000), T0 + 500)
            .await
            .unwrap();
        assert_eq!(
            later.queue_position, None,
            "a scheduled task has no place in the queue yet"
        );
        assert_eq!(later.average_run_ms, Some(400));
    }
);

on_both!(
    a_batch_reports_each_task_including_those_an_idempotency_key_found,
    |target| {
        let b = target.setup();
        let first = b
            .enqueue(new_task(0).idempotency_key("k-9"), T0)
            .await
            .unwrap();
        let batch = vec![
            new_task(1),
            new_task(0).idempotency_key("k-9"),
            new_task(3).run_at(T0 + 1_000),
            new_task(4).idempotency_key("k-10"),
        ];
        let got = b.enqueue_many(batch, T0 + 1).await.unwrap();
        let summary: Vec<(bool, TaskStatus)> = got.iter().map(|e| (e.created, e.status)).collect();
        assert_eq!(
            summary,
            vec![
                (true, TaskStatus::Queued),
                (false, TaskStatus::Queued),
                (true, TaskStatus::Scheduled),
                (true, TaskStatus::Queued),
            ]
        );
        assert_eq!(got[1].id, first.id);
        for e in [&got[0], &got[2], &got[3]] {
            assert_eq!(b.get(&e.id).await.unwrap().unwrap().status, e.status);
        }
        // Four distinct tasks exist: the first and the three the batch wrote.
        assert_eq!(b.status().await.unwrap()[0].stats["enqueued"], 4);
    }
);

on_both!(
    statuses_reads_many_tasks_across_queues_in_one_call,
    |target| {
        let b = target.broker(&[("a", queue(3)), ("b", queue(3))]);
        let x = b.enqueue(NewTask::new("a", json!({})), T0).await.unwrap();
        let y = b
            .enqueue(NewTask::new("b", json!({})).run_at(T0 + 5), T0)
            .await
            .unwrap();
        let got = b
            .statuses(&[x.id.clone(), y.id.clone(), "missing".to_string()])
            .await
            .unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[&x.id], TaskStatus::Queued);
        assert_eq!(got[&y.id], TaskStatus::Scheduled);
    }
);

on_both!(
    complete_and_claim_writes_results_fenced_and_leases_the_next_in_order,
    |target| {
        // One shard, so "the next" is exact on both deployments.
        let b = target.broker(&[(
            "q",
            taskfleet::QueueConfig {
                shards: Some(1),
                ..common::queue(3)
            },
        )]);
        let tasks = (0..6).map(new_task).collect();
        b.enqueue_many(tasks, T0).await.unwrap();
        let first = b.claim(&["q"], 2, T0 + 1).await.unwrap();
        assert_eq!(first.len(), 2);
        let done: Vec<Completion> = first
            .iter()
            .map(|c| Completion {
                id: c.id.clone(),
                lease: c.lease.clone(),
                result: json!({"ok": c.id}),
            })
            .collect();
        // A stale lease among them: refused, and it changes nothing, but the claim still runs.
        let mut with_stale = done.clone();
        with_stale.push(Completion {
            id: first[0].id.clone(),
            lease: "not-the-lease".into(),
            result: json!(null),
        });
        let (flags, next) = b
            .complete_and_claim("q", &with_stale, 3, T0 + 2)
            .await
            .unwrap();
        assert_eq!(flags, vec![true, true, false]);
        assert_eq!(next.len(), 3, "three more leased in the same call");
        let requests: Vec<_> = next.iter().map(|c| c.request["n"].as_u64()).collect();
        assert_eq!(requests, vec![Some(2), Some(3), Some(4)], "in queue order");
        for c in &first {
            let t = b.get(&c.id).await.unwrap().unwrap();
            assert_eq!(t.status, TaskStatus::Completed);
            assert_eq!(t.result, Some(json!({"ok": c.id})));
        }
        // The new leases are real: they complete, and the old ones are refused again.
        let again: Vec<Completion> = next
            .iter()
            .map(|c| Completion {
                id: c.id.clone(),
                lease: c.lease.clone(),
                result: json!(1),
            })
            .collect();
        assert_eq!(
            b.complete("q", &again, T0 + 3).await.unwrap(),
            vec![true; 3]
        );
        assert_eq!(
            b.complete("q", &done, T0 + 3).await.unwrap(),
            vec![false; 2]
        );
        // A paused type gives nothing with its completions.
        let last = b.claim(&["q"], 1, T0 + 4).await.unwrap();
        b.pause(Some("q"), T0 + 4).await.unwrap();
        let (flags, next) = b
            .complete_and_claim(
                "q",
                &[Completion {
                    id: last[0].id.clone(),
                    lease: last[0].lease.clone(),
                    result: json!(2),
                }],
                5,
                T0 + 5,
            )
            .await
            .unwrap();
        assert_eq!((flags, next.len()), (vec![true], 0));
    }
);
