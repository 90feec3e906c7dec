//! retry.lua from the library: a failed or cancelled task back in its queue at its band, with
//! a new attempt budget and a bounded history of how it ended; the browse reads the API's lists
//! and charts use. Time is passed in, never slept through.

mod common;

use common::{new_task, setup, T0};
use serde_json::json;
use taskfleet::broker::retry::MAX_PREVIOUS_ERRORS;
use taskfleet::{Error, Priority, TaskStatus};

#[tokio::test]
async fn a_retried_task_is_claimed_again_at_its_band_with_a_fresh_budget() {
    let b = setup();
    let low = b
        .enqueue(new_task(1).priority(Priority::Low), T0)
        .await
        .unwrap()
        .id;
    // Three attempts, three failures: failed for good.
    for i in 0..3 {
        let c = b.claim(&["q"], 1, T0 + i * 60_000).await.unwrap();
        b.fail_one("q", &low, &c[0].lease, "boom", false, T0 + i * 60_000 + 1)
            .await
            .unwrap();
        b.promote(T0 + (i + 1) * 60_000 - 1).await.unwrap();
    }
    let t = b.get_required(&low).await.unwrap();
    assert_eq!((t.status, t.attempts), (TaskStatus::Failed, 3));
    b.retry(&low, T0 + 600_000).await.unwrap();
    let t = b.get_required(&low).await.unwrap();
    assert_eq!(
        (t.status, t.attempts, t.max_attempts),
        (TaskStatus::Queued, 0, 3)
    );
    assert_eq!(t.error, None);
    assert_eq!(t.previous_errors.len(), 1);
    assert_eq!(t.previous_errors[0].attempts, 3);
    assert_eq!(t.previous_errors[0].retried_at, T0 + 600_000);
    // Its band still counts: a normal task enqueued later is claimed first.
    let normal = b.enqueue(new_task(2), T0 + 700_000).await.unwrap().id;
    let c = b.claim(&["q"], 2, T0 + 800_000).await.unwrap();
    let order: Vec<&str> = c.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(order, [normal.as_str(), low.as_str()]);
    assert_eq!(c[1].attempt, 1);
}

#[tokio::test]
async fn only_failed_or_cancelled_tasks_are_retried_and_the_history_is_bounded() {
    let b = setup();
    let id = b.enqueue(new_task(1), T0).await.unwrap().id;
    assert!(matches!(
        b.retry(&id, T0).await,
        Err(Error::NotRetryable { status, .. }) if status == "queued"
    ));
    assert!(matches!(
        b.retry("0190f3c2-0000-7000-8000-000000000000", T0).await,
        Err(Error::NotFound(_))
    ));
    for i in 0..(MAX_PREVIOUS_ERRORS as i64 + 3) {
        b.cancel(&id, T0 + 2 * i).await.unwrap();
        b.retry(&id, T0 + 2 * i + 1).await.unwrap();
    }
    let t = b.get_required(&id).await.unwrap();
    assert_eq!(t.previous_errors.len(), MAX_PREVIOUS_ERRORS);
    // The oldest went first.
    assert_eq!(t.previous_errors[0].finished_at, T0 + 6);
    assert!(t.previous_errors.iter().all(|e| e.status == "cancelled"));
}

#[tokio::test]
async fn finished_tasks_are_read_back_by_time_and_owner() {
    let b = setup();
    let mine = b.enqueue(new_task(1), T0).await.unwrap().id;
    let theirs = b
        .enqueue(
            taskfleet::NewTask::new("q", json!({})).owner("globex", "bob"),
            T0,
        )
        .await
        .unwrap()
        .id;
    for (at, id) in [(T0 + 1_000, &mine), (T0 + 61_000, &theirs)] {
        let c = b.claim(&["q"], 1, at - 500).await.unwrap();
        assert_eq!(&c[0].id, id);
        b.complete_one("q", id, &c[0].lease, json!({}), at)
            .await
            .unwrap();
    }
    let (count, latest) = b
        .finished_since("q", TaskStatus::Completed, T0, 10)
        .await
        .unwrap();
    assert_eq!(count, 2);
    assert_eq!(
        latest,
        vec![(theirs.clone(), T0 + 61_000), (mine.clone(), T0 + 1_000)]
    );
    let per_minute = b
        .finished_counts("q", TaskStatus::Completed, T0, 60_000, 3)
        .await
        .unwrap();
    assert_eq!(per_minute, [1, 1, 0]);
    let briefs = b.briefs("q", &[mine.clone(), "gone".into()]).await.unwrap();
    let brief = briefs[0].as_ref().unwrap();
    assert_eq!(
        (brief.account_id.as_deref(), brief.user_id.as_deref()),
        (Some("acme"), Some("ann"))
    );
    assert_eq!(
        (brief.started_at, brief.finished_at),
        (Some(T0 + 500), Some(T0 + 1_000))
    );
    assert!(briefs[1].is_none());
    // Newest first for a finished state; the account's part by a bounded walk.
    let head = b.state_head("q", TaskStatus::Completed, 10).await.unwrap();
    assert_eq!(head[0].id, theirs);
    let (acme, complete) = b
        .state_of_account("q", TaskStatus::Completed, "acme", 10, 100)
        .await
        .unwrap();
    assert!(complete);
    assert_eq!(
        acme.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        [mine.as_str()]
    );
}
