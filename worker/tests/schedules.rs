//! Recurring schedules with real worker processes (issue 13, part 2): three `taskfleet-worker`
//! processes, their time read from a file the test moves (`--test-clock-file`), race to tick a
//! `*/5 * * * *` schedule through a simulated day, one of them killed with SIGKILL and replaced
//! at noon: exactly 288 tasks, one per tick, each with its tick's derived id.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use common::{broker, eventually, Worker};
use serde_json::json;
use taskfleet::schedules::{CatchUp, NewSchedule};
use taskfleet::testing;

const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
const FIVE_MIN: i64 = 300_000;

/// Sets the processes' time: written aside and renamed, so no reader sees half a number.
fn set_time(path: &Path, ms: i64) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, ms.to_string()).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

async fn quiz_tasks(b: &taskfleet::Broker) -> u64 {
    let s = b.status().await.unwrap();
    s.iter()
        .filter(|s| s.task_type == "quiz")
        .map(|s| s.counts.values().sum::<u64>())
        .sum()
}

#[tokio::test]
async fn three_worker_processes_racing_through_a_day_enqueue_288_tasks_once_each() {
    let url = testing::shared_redis().url();
    let b = broker(&url);
    let prefix = b.keys().prefix().to_string();
    let dir = tempfile::tempdir().unwrap();
    let clock = dir.path().join("now");
    set_time(&clock, T0);
    let s = b
        .create_schedule(
            NewSchedule {
                cron: "*/5 * * * *".into(),
                timezone: "UTC".into(),
                task_type: "quiz".into(),
                request: json!({"source_text": "The Nile is in Africa."}),
                catch_up: CatchUp::Skip,
                account_id: "acme".into(),
                user_id: "ann".into(),
                ..Default::default()
            },
            T0,
        )
        .await
        .unwrap();
    // The workers claim only the test queue: the quiz tasks stay queued, to be counted.
    let clock_arg = clock.display().to_string();
    let args = [
        "--types",
        "test",
        "--test-clock-file",
        clock_arg.as_str(),
        "--schedule-every-ms",
        "3",
    ];
    let mut workers: Vec<Worker> = (0..3)
        .map(|_| Worker::start(&url, &prefix, &args, &[]))
        .collect();
    eventually("three live workers", Duration::from_secs(20), || async {
        let n = b.live_workers(10).await.ok()?.len();
        (n == 3).then_some(())
    })
    .await;

    for k in 1..=288i64 {
        if k == 144 {
            // Noon: one worker dies without a word; another takes its place.
            workers[0].kill();
            workers[0] = Worker::start(&url, &prefix, &args, &[]);
        }
        // A second past the tick, and a little more each time, so each tick is on time.
        set_time(&clock, T0 + k * FIVE_MIN + 1_000 + (k % 7) * 1_000);
        eventually(
            &format!("the task of tick {k}"),
            Duration::from_secs(20),
            || async { (quiz_tasks(&b).await >= k as u64).then_some(()) },
        )
        .await;
    }
    // Every scheduler has had many passes at the last time: still one task per tick.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(quiz_tasks(&b).await, 288);
    let got = b.get_schedule(&s.id).await.unwrap().unwrap();
    assert_eq!((got.fired, got.skipped), (288, 0));
    let ids: BTreeSet<String> = b
        .list_queued("quiz", 1_000)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    let expected: BTreeSet<String> = (1..=288)
        .map(|k| b.schedule_task_id(&got, T0 + k * FIVE_MIN).unwrap())
        .collect();
    assert_eq!(ids, expected);
    for w in &workers {
        w.signal("TERM");
    }
    for w in &mut workers {
        assert_eq!(w.wait_exit(Duration::from_secs(20)), Some(0));
    }
}
