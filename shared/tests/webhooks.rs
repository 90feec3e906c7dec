//! Issue 13 in the library, on a single server and on a cluster: every terminal transition
//! writes exactly one delivery in its script; deliveries are leased (a dead worker's come
//! back), fenced and retried on a schedule driven by a manual clock; batches are all or none,
//! cancel as one and finish exactly once however many workers carry their notes.

mod common;

use std::time::Duration;

use common::{claim_n, queue, Target, T0};
use serde_json::json;
use taskfleet::webhooks::{Attempt, HookWork, ReportOutcome};
use taskfleet::{testing, Broker, NewBatch, NewTask, TaskStatus};

const HOOK: &str = "https://hooks.example.com/in";
const LEASE: Duration = Duration::from_secs(30);

fn hooked(t: &str, n: usize) -> NewTask {
    let mut t = NewTask::new(t, json!({ "n": n })).owner("acme", "ann");
    t.webhook_url = Some(HOOK.into());
    t
}

/// Every due entry of every shard of `types` at `at`, claimed.
async fn claim_all(b: &Broker, types: &[&str], at: i64) -> Vec<HookWork> {
    let shards: Vec<_> = types.iter().flat_map(|t| b.shards(t).unwrap()).collect();
    let mut out = Vec::new();
    for sh in b.hooks_due(&shards, at).await.unwrap() {
        out.extend(b.claim_hooks(&sh, 1000, LEASE, at).await.unwrap());
    }
    out
}

fn deliveries(work: Vec<HookWork>) -> Vec<taskfleet::webhooks::Delivery> {
    work.into_iter()
        .filter_map(|w| match w {
            HookWork::Delivery(d) => Some(d),
            HookWork::Note { .. } => None,
        })
        .collect()
}

on_both!(
    every_terminal_transition_writes_exactly_one_delivery,
    |target| {
        let b = target.broker(&[("q", queue(1)), ("r", queue(3))]);
        let ids: Vec<String> = b
            .enqueue_many((0..6).map(|n| hooked("q", n)).collect(), T0)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect();
        let retried = b.enqueue(hooked("r", 9), T0).await.unwrap().id;
        // 0 waits and is cancelled; the others run.
        b.cancel(&ids[0], T0 + 1).await.unwrap();
        let mut claimed = claim_n(&b, &["q"], 5, T0 + 2).await;
        claimed.sort_by_key(|c| ids.iter().position(|i| *i == c.id));
        assert_eq!(claimed.len(), 5);
        let r = claim_n(&b, &["r"], 1, T0 + 2).await;
        // 1 completes, 2 fails for good, 3 is cancelled while running (acknowledged through fail),
        // 4 is left to the recoverer (its lease runs out, no attempts left), 5 too but later.
        b.complete_one("q", &ids[1], &claimed[0].lease, json!({"ok": 1}), T0 + 3)
            .await
            .unwrap();
        b.fail_one("q", &ids[2], &claimed[1].lease, "bad input", true, T0 + 3)
            .await
            .unwrap();
        b.cancel(&ids[3], T0 + 3).await.unwrap();
        b.fail_one("q", &ids[3], &claimed[2].lease, "cancelled", true, T0 + 4)
            .await
            .unwrap();
        // A retry is not an ending: no delivery.
        b.fail_one("r", &retried, &r[0].lease, "flaky", false, T0 + 4)
            .await
            .unwrap();
        let lease_end = T0 + 2 + b.lease().as_millis() as i64;
        let report = b.recover(lease_end + 1, &[]).await.unwrap();
        assert_eq!(report.failed.len(), 2, "{report:?}");
        b.complete_one("q", &ids[5], &claimed[4].lease, json!({}), lease_end + 2)
            .await
            .unwrap_err();

        let expect = [
            ("cancelled", "cancelled"),
            ("completed", ""),
            ("failed", "bad input"),
            ("cancelled", ""),
            ("failed", "lease expired"),
            ("failed", "lease expired"),
        ];
        for (id, (status, error)) in ids.iter().zip(expect) {
            let task = b.get(id).await.unwrap().unwrap();
            let d = b.task_webhooks(&task).await.unwrap();
            assert_eq!(d.len(), 1, "{id}: {d:?}");
            assert_eq!(d[0].event, "task.finished");
            assert_eq!(d[0].state, "pending");
            assert_eq!(d[0].url, HOOK);
            assert_eq!(d[0].payload["task_id"], id.as_str());
            assert_eq!(d[0].payload["status"], status, "{id}");
            assert!(
                d[0].payload["error"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with(error),
                "{id}: {}",
                d[0].payload
            );
        }
        let task = b.get(&ids[1]).await.unwrap().unwrap();
        assert_eq!(
            b.task_webhooks(&task).await.unwrap()[0].payload["result"],
            json!({"ok": 1})
        );
        let task = b.get(&retried).await.unwrap().unwrap();
        assert!(b.task_webhooks(&task).await.unwrap().is_empty());
        // And the queue holds exactly those six.
        let work = deliveries(claim_all(&b, &["q", "r"], lease_end + 10).await);
        assert_eq!(work.len(), 6);
    }
);

on_both!(
    a_delivery_is_leased_fenced_and_retried_on_its_schedule,
    |target| {
        let b = target.setup();
        let id = b.enqueue(hooked("q", 1), T0).await.unwrap().id;
        let c = claim_n(&b, &["q"], 1, T0).await;
        b.complete_one("q", &id, &c[0].lease, json!({}), T0 + 1)
            .await
            .unwrap();
        let mut t = T0 + 10;
        let d = deliveries(claim_all(&b, &["q"], t).await).remove(0);
        assert_eq!(d.id, format!("{id}.1"));
        assert_eq!(d.attempts, 0);
        // Held by its lease: nobody else takes it meanwhile.
        assert!(claim_all(&b, &["q"], t + 1000).await.is_empty());
        // Its worker dies: when the lease ends another takes it, and the first one's late report
        // is refused.
        t += LEASE.as_millis() as i64 + 1;
        let again = deliveries(claim_all(&b, &["q"], t).await).remove(0);
        assert_eq!(again.id, d.id);
        let failed = Attempt {
            status: Some(500),
            body: "x".repeat(1000),
            ..Attempt::default()
        };
        assert_eq!(
            b.report_hook(&d, &failed, t).await.unwrap(),
            ReportOutcome::Stale
        );
        // Four failures, each due again after the schedule's wait; the fifth attempt delivers.
        let mut current = again;
        for n in 1..=4u32 {
            let wait = taskfleet::webhooks::retry_delay(n).unwrap();
            assert_eq!(
                b.report_hook(&current, &failed, t).await.unwrap(),
                ReportOutcome::Retry(wait)
            );
            assert!(claim_all(&b, &["q"], t + wait.as_millis() as i64 - 1)
                .await
                .is_empty());
            t += wait.as_millis() as i64;
            current = deliveries(claim_all(&b, &["q"], t).await).remove(0);
            assert_eq!(current.attempts, n);
        }
        let ok = Attempt {
            status: Some(204),
            ..Attempt::default()
        };
        assert_eq!(
            b.report_hook(&current, &ok, t).await.unwrap(),
            ReportOutcome::Delivered
        );
        assert!(claim_all(&b, &["q"], t + 86_400_000).await.is_empty());
        let task = b.get(&id).await.unwrap().unwrap();
        let v = b.task_webhooks(&task).await.unwrap().remove(0);
        assert_eq!(v.state, "delivered");
        let statuses: Vec<Option<u16>> = v.attempts.iter().map(|a| a.status).collect();
        assert_eq!(
            statuses,
            [Some(500), Some(500), Some(500), Some(500), Some(204)]
        );
        assert_eq!(v.attempts[0].body.len(), taskfleet::webhooks::BODY_PREFIX);
        assert_eq!(v.attempts[4].at, t);
    }
);

#[tokio::test]
async fn a_delivery_that_never_succeeds_is_given_up_after_more_than_a_day() {
    let b = Target::Single.setup();
    let id = b.enqueue(hooked("q", 1), T0).await.unwrap().id;
    let c = claim_n(&b, &["q"], 1, T0).await;
    b.complete_one("q", &id, &c[0].lease, json!({}), T0)
        .await
        .unwrap();
    let failed = Attempt {
        error: Some("could not connect".into()),
        ..Attempt::default()
    };
    let mut t = T0;
    let mut attempts = 0;
    for _ in 0..20 {
        let Some(d) = deliveries(claim_all(&b, &["q"], t).await).pop() else {
            break;
        };
        attempts += 1;
        match b.report_hook(&d, &failed, t).await.unwrap() {
            ReportOutcome::Retry(w) => t += w.as_millis() as i64,
            ReportOutcome::GivenUp => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(attempts, 13);
    assert!(
        t - T0 >= 24 * 3_600_000,
        "gave up after {} h",
        (t - T0) / 3_600_000
    );
    let task = b.get(&id).await.unwrap().unwrap();
    assert_eq!(b.task_webhooks(&task).await.unwrap()[0].state, "failed");
}

on_both!(
    a_batch_of_1000_tasks_of_several_types_is_written_whole,
    |target| {
        let b = target.broker(&[("a", queue(3)), ("b", queue(3)), ("c", queue(3))]);
        let tasks: Vec<NewTask> = (0..1000)
            .map(|n| NewTask::new(["a", "b", "c"][n % 3], json!({ "n": n })))
            .collect();
        let created = b
            .enqueue_batch(
                NewBatch {
                    tasks,
                    account_id: "acme".into(),
                    user_id: "ann".into(),
                    webhook_url: Some(HOOK.into()),
                },
                T0,
            )
            .await
            .unwrap();
        assert_eq!(created.task_ids.len(), 1000);
        let batch = b.batch(&created.batch_id).await.unwrap().unwrap();
        assert_eq!(batch.task_ids, created.task_ids);
        assert_eq!(batch.state, "open");
        assert_eq!(batch.account_id, "acme");
        let statuses = b.batch_statuses(&batch).await.unwrap();
        assert_eq!(statuses.len(), 1000);
        assert!(statuses.values().all(|s| *s == TaskStatus::Queued));
        let first = b.get(&created.task_ids[1]).await.unwrap().unwrap();
        assert_eq!(first.task_type, "b");
        assert_eq!(first.batch_id.as_deref(), Some(created.batch_id.as_str()));
        assert_eq!(first.user_id.as_deref(), Some("ann"));
        assert_eq!(
            first.run_at, None,
            "the hold is not shown as the task's run_at"
        );
        // Claimable at once, in order.
        assert_eq!(
            claim_n(&b, &["a", "b", "c"], 1000, T0 + 1).await.len(),
            1000
        );
    }
);

on_both!(a_batch_with_one_bad_task_writes_nothing, |target| {
    let b = target.broker(&[("a", queue(3)), ("b", queue(3))]);
    let before = testing::key_count(&b).await;
    let good = || NewTask::new("a", json!({"n": 1}));
    let cases = [
        (NewTask::new("nope", json!({})), "tasks[3].task_type"),
        (
            NewTask::new("b", json!("not an object")),
            "tasks[3].request",
        ),
        (
            {
                let mut t = good();
                t.webhook_url = Some("ftp://x".into());
                t
            },
            "tasks[3].webhook_url",
        ),
        (
            {
                let mut t = good();
                t.max_attempts = Some(0);
                t
            },
            "tasks[3].max_attempts",
        ),
    ];
    for (bad, field) in cases {
        let mut tasks: Vec<NewTask> = (0..5).map(|_| good()).collect();
        tasks[3] = bad;
        let e = b
            .enqueue_batch(
                NewBatch {
                    tasks,
                    account_id: "acme".into(),
                    user_id: "ann".into(),
                    webhook_url: None,
                },
                T0,
            )
            .await
            .unwrap_err();
        match e {
            taskfleet::Error::InvalidInput { field: f, .. } => assert_eq!(f, field),
            other => panic!("{other:?}"),
        }
    }
    for (n, url, field) in [
        (1001, None, "tasks"),
        (0, None, "tasks"),
        (2, Some("gopher://x"), "webhook_url"),
    ] {
        let e = b
            .enqueue_batch(
                NewBatch {
                    tasks: (0..n).map(|_| good()).collect(),
                    account_id: "acme".into(),
                    user_id: "ann".into(),
                    webhook_url: url.map(str::to_string),
                },
                T0,
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&e, taskfleet::Error::InvalidInput { field: f, .. } if f == field),
            "{e:?}"
        );
    }
    assert_eq!(
        testing::key_count(&b).await,
        before,
        "something was written"
    );
    // A single enqueue through the library checks its webhook_url the same way.
    let mut t = good();
    t.webhook_url = Some("ftp://x".into());
    assert!(matches!(
        b.enqueue(t, T0).await,
        Err(taskfleet::Error::InvalidInput { field, .. }) if field == "webhook_url"
    ));
    assert_eq!(testing::key_count(&b).await, before);
});

on_both!(
    a_batch_finishes_exactly_once_however_many_carry_its_notes,
    |target| {
        let b = target.setup();
        let created = b
            .enqueue_batch(
                NewBatch {
                    tasks: (0..40)
                        .map(|n| NewTask::new("q", json!({ "n": n })))
                        .collect(),
                    account_id: "acme".into(),
                    user_id: "ann".into(),
                    webhook_url: Some(HOOK.into()),
                },
                T0,
            )
            .await
            .unwrap();
        let claimed = claim_n(&b, &["q"], 40, T0 + 1).await;
        assert_eq!(claimed.len(), 40);
        for c in &claimed {
            b.complete_one("q", &c.id, &c.lease, json!({}), T0 + 2)
                .await
                .unwrap();
        }
        let notes: Vec<(taskfleet::Shard, String)> = claim_all(&b, &["q"], T0 + 3)
            .await
            .into_iter()
            .filter_map(|w| match w {
                HookWork::Note { shard, member } => Some((shard, member)),
                _ => None,
            })
            .collect();
        assert_eq!(notes.len(), 40);
        // Three "workers" carry every note at once (as if each had claimed them: a note may be
        // carried twice when its first carrier's lease ran out).
        let carriers = (0..3).map(|_| {
            let b = b.clone();
            let notes = notes.clone();
            tokio::spawn(async move {
                let mut finished = 0;
                for (shard, member) in notes.iter().rev() {
                    if b.carry_note(shard, member, T0 + 4).await.unwrap() {
                        finished += 1;
                    }
                }
                finished
            })
        });
        let mut total = 0;
        for c in carriers {
            total += c.await.unwrap();
        }
        assert_eq!(total, 1, "the batch finished {total} times");
        let batch = b.batch(&created.batch_id).await.unwrap().unwrap();
        assert_eq!(batch.finished_at, Some(T0 + 4));
        let hook = b.batch_webhook(&batch).await.unwrap().unwrap();
        assert_eq!(hook.event, "batch.finished");
        assert_eq!(hook.payload["completed"], 40);
        assert_eq!(hook.payload["total"], 40);
        let finished: Vec<_> = deliveries(claim_all(&b, &["q"], T0 + 5).await);
        assert_eq!(finished.len(), 1);
        assert_eq!(finished[0].id, format!("{}.finished", created.batch_id));
    }
);

on_both!(
    cancelling_a_batch_mid_run_cancels_what_has_not_finished,
    |target| {
        let b = target.setup();
        let created = b
            .enqueue_batch(
                NewBatch {
                    tasks: (0..10)
                        .map(|n| NewTask::new("q", json!({ "n": n })))
                        .collect(),
                    account_id: "acme".into(),
                    user_id: "ann".into(),
                    webhook_url: None,
                },
                T0,
            )
            .await
            .unwrap();
        let claimed = claim_n(&b, &["q"], 4, T0 + 1).await;
        assert_eq!(claimed.len(), 4);
        b.complete_one("q", &claimed[0].id, &claimed[0].lease, json!({}), T0 + 2)
            .await
            .unwrap();
        let batch = b.batch(&created.batch_id).await.unwrap().unwrap();
        let (cancelled, requested) = b.cancel_batch(&batch, T0 + 3).await.unwrap();
        assert_eq!((cancelled, requested), (6, 3));
        let statuses = b.batch_statuses(&batch).await.unwrap();
        let count = |s: TaskStatus| statuses.values().filter(|v| **v == s).count();
        assert_eq!(count(TaskStatus::Cancelled), 6);
        assert_eq!(count(TaskStatus::Processing), 3);
        assert_eq!(count(TaskStatus::Completed), 1);
        let batch = b.batch(&created.batch_id).await.unwrap().unwrap();
        assert_eq!(batch.cancel_requested_at, Some(T0 + 3));
    }
);

on_both!(
    signing_secrets_are_created_once_rotated_and_expire,
    |target| {
        let b = target.setup();
        let (first, s1) = b.create_webhook_secret("acme", T0).await.unwrap();
        assert!(s1.starts_with("whsec_"));
        assert!(matches!(
            b.create_webhook_secret("acme", T0 + 1).await,
            Err(taskfleet::Error::Conflict(_))
        ));
        let grace = Duration::from_secs(3600);
        let (second, s2) = b
            .rotate_webhook_secret("acme", T0 + 2, grace)
            .await
            .unwrap();
        assert_ne!(s1, s2);
        let live = b.webhook_secrets("acme", T0 + 3).await.unwrap();
        let secrets: Vec<&str> = live.iter().map(|(_, s)| s.secret.as_str()).collect();
        assert_eq!(
            secrets,
            [s2.as_str(), s1.as_str()],
            "both sign during the grace period"
        );
        let listed = b.list_webhook_secrets("acme", T0 + 3).await.unwrap();
        assert_eq!(listed[0].id, second.id);
        assert_eq!(listed[1].id, first.id);
        assert_eq!(listed[1].expires_at, Some(T0 + 2 + 3_600_000));
        let after = b.webhook_secrets("acme", T0 + 2 + 3_600_000).await.unwrap();
        assert_eq!(after.len(), 1);
        assert_eq!(after[0].1.secret, s2);
        assert!(b.webhook_secrets("globex", T0).await.unwrap().is_empty());
    }
);

#[tokio::test]
async fn a_note_about_a_batch_id_that_is_not_a_batch_is_taken_off() {
    let b = Target::Single.setup();
    let mut t = NewTask::new("q", json!({}));
    t.batch_id = Some("order-7".into());
    let id = b.enqueue(t, T0).await.unwrap().id;
    let c = claim_n(&b, &["q"], 1, T0).await;
    b.complete_one("q", &id, &c[0].lease, json!({}), T0)
        .await
        .unwrap();
    let work = claim_all(&b, &["q"], T0 + 1).await;
    let HookWork::Note { shard, member } = &work[0] else {
        panic!("{work:?}");
    };
    assert_eq!(member, &format!("b|order-7|{id}|completed"));
    assert!(!b.carry_note(shard, member, T0 + 2).await.unwrap());
    assert!(claim_all(&b, &["q"], T0 + 86_400_000).await.is_empty());
}
