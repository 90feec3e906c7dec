//! The worker fleet with real processes: crashes, stops, cancels, timeouts, panics,
//! shutdown and a Redis restart. Nothing may be lost.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{
    broker, count, enqueue_ids, eventually, now, stat, task, test_task, Worker, LEASE_SECS,
};
use serde_json::json;
use taskfleet::testing::{shared_redis, RedisServer};
use taskfleet::{NewTask, TaskStatus};

#[tokio::test]
async fn a_task_whose_worker_is_killed_is_finished_by_another_worker() {
    let url = shared_redis().url();
    let b = broker(&url);
    let p = b.keys().prefix().to_string();
    let e = b
        .enqueue(test_task(json!({"op": "sleep", "ms": 1500})), now(&b).await)
        .await
        .unwrap();
    let mut first = Worker::start(&url, &p, &["--concurrency", "1"], &[]);
    let t = eventually("first worker runs it", Duration::from_secs(10), || async {
        let t = task(&b, &e.id).await;
        (t.status == TaskStatus::Processing).then_some(t)
    })
    .await;
    first.kill();
    let _second = Worker::start(&url, &p, &["--concurrency", "1"], &[]);
    let done = eventually(
        "recovered and completed",
        Duration::from_secs(30),
        || async {
            let t = task(&b, &e.id).await;
            (t.status == TaskStatus::Completed).then_some(t)
        },
    )
    .await;
    assert_eq!(done.attempts, 2);
    assert_ne!(done.worker_id, t.worker_id);
    assert_eq!(done.result.unwrap()["attempt"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_of_5000_tasks_survives_random_kills_with_every_rerun_explained() {
    let url = shared_redis().url();
    let b = broker(&url);
    let p = b.keys().prefix().to_string();
    let mut ids = Vec::new();
    for chunk in 0..5 {
        let tasks = (0..1000)
            .map(|i| {
                let mut t = test_task(json!({"op": "sleep", "ms": 5, "n": chunk * 1000 + i}));
                t.max_attempts = Some(20);
                t
            })
            .collect();
        ids.extend(
            b.enqueue_many(tasks, now(&b).await)
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.id),
        );
    }
    let args = ["--concurrency", "8"];
    let mut workers: Vec<Worker> = (0..3)
        .map(|_| Worker::start(&url, &p, &args, &[]))
        .collect();
    let mut kills = 0;
    for _ in 0..15 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let i = rand::random_range(0..workers.len());
        workers[i].kill();
        kills += 1;
        workers[i] = Worker::start(&url, &p, &args, &[]);
    }
    eventually("all 5000 completed", Duration::from_secs(90), || async {
        let n = count(&b, TaskStatus::Completed).await?;
        (n == 5000).then_some(())
    })
    .await;
    let mut reruns = 0u64;
    let mut seen = HashSet::new();
    for chunk in ids.chunks(500) {
        for t in b.get_many("test", chunk).await.unwrap() {
            assert_eq!(
                t.status,
                TaskStatus::Completed,
                "task {} not completed",
                t.id
            );
            reruns += u64::from(t.attempts - 1);
            seen.insert(t.id);
        }
    }
    assert_eq!(seen.len(), 5000, "lost tasks");
    let recovered = stat(&b, "recovered").await as u64;
    assert_eq!(reruns, recovered, "every extra run is a recovered lease");
    assert!(kills == 15);
    eprintln!("ledger: 5000 completed, 0 lost, {reruns} reruns = {recovered} recovered leases");
}

#[tokio::test]
async fn a_stopped_worker_past_its_lease_cannot_complete_late() {
    let url = shared_redis().url();
    let b = broker(&url);
    let p = b.keys().prefix().to_string();
    let e = b
        .enqueue(test_task(json!({"op": "sleep", "ms": 4000})), now(&b).await)
        .await
        .unwrap();
    let stopped = Worker::start(&url, &p, &["--concurrency", "1"], &[]);
    let first = eventually("first worker runs it", Duration::from_secs(10), || async {
        let t = task(&b, &e.id).await;
        (t.status == TaskStatus::Processing).then_some(t)
    })
    .await;
    stopped.signal("STOP");
    let _other = Worker::start(&url, &p, &["--concurrency", "1"], &[]);
    let done = eventually("finished elsewhere", Duration::from_secs(30), || async {
        let t = task(&b, &e.id).await;
        (t.status == TaskStatus::Completed).then_some(t)
    })
    .await;
    assert_ne!(done.worker_id, first.worker_id);
    stopped.signal("CONT");
    // Give the resumed worker time to finish its (stale) run and try to write.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = task(&b, &e.id).await;
    assert_eq!(after, done, "the stale worker changed the task");
    assert_eq!(after.attempts, 2);
}

#[tokio::test]
async fn a_slow_task_that_keeps_its_heartbeat_is_never_run_twice() {
    let url = shared_redis().url();
    let b = broker(&url);
    let p = b.keys().prefix().to_string();
    let ms = LEASE_SECS * 1000 * 3 + 500;
    let e = b
        .enqueue(test_task(json!({"op": "sleep", "ms": ms})), now(&b).await)
        .await
        .unwrap();
    let _w1 = Worker::start(&url, &p, &[], &[]);
    let _w2 = Worker::start(&url, &p, &[], &[]);
    let done = eventually("completed", Duration::from_secs(40), || async {
        let t = task(&b, &e.id).await;
        (t.status == TaskStatus::Completed).then_some(t)
    })
    .await;
    assert_eq!(done.attempts, 1);
    assert_eq!(stat(&b, "recovered").await, 0);
    assert_eq!(stat(&b, "started").await, 1);
}

#[tokio::test]
async fn cancelling_a_running_task_stops_its_processor() {
    let url = shared_redis().url();
    let b = broker(&url);
    let p = b.keys().prefix().to_string();
    let e = b
        .enqueue(
            test_task(json!({"op": "sleep", "ms": 60_000})),
            now(&b).await,
        )
        .await
        .unwrap();
    let _w = Worker::start(&url, &p, &[], &[]);
    eventually("running", Duration::from_secs(10), || async {
        (task(&b, &e.id).await.status == TaskStatus::Processing).then_some(())
    })
    .await;
    assert_eq!(
        b.cancel(&e.id, now(&b).await).await.unwrap(),
        taskfleet::CancelOutcome::Requested
    );
    // One heartbeat interval is LEASE/3 = 1 s; allow a few, far below the 60 s sleep.
    let t = eventually("cancelled", Duration::from_secs(5), || async {
        let t = task(&b, &e.id).await;
        (t.status == TaskStatus::Cancelled).then_some(t)
    })
    .await;
    assert_eq!(t.attempts, 1);
}

#[tokio::test]
async fn a_timed_out_or_panicking_task_fails_clearly_and_the_worker_keeps_serving() {
    let url = shared_redis().url();
    let b = broker(&url);
    let p = b.keys().prefix().to_string();
    let mut slow = test_task(json!({"op": "sleep", "ms": 30_000}));
    slow.max_attempts = Some(2);
    let mut boom = test_task(json!({"op": "panic"}));
    boom.max_attempts = Some(2);
    let slow = b.enqueue(slow, now(&b).await).await.unwrap();
    let boom = b.enqueue(boom, now(&b).await).await.unwrap();
    let _w = Worker::start(&url, &p, &["--test-timeout-ms", "500"], &[]);
    for (id, needle) in [(&slow.id, "timed out after 500 ms"), (&boom.id, "panicked")] {
        let t = eventually("failed after retries", Duration::from_secs(20), || async {
            let t = task(&b, id).await;
            (t.status == TaskStatus::Failed).then_some(t)
        })
        .await;
        assert_eq!(t.attempts, 2, "retried once");
        assert!(
            t.error.as_deref().unwrap_or("").contains(needle),
            "{:?}",
            t.error
        );
    }
    let echo = b
        .enqueue(test_task(json!({"op": "echo"})), now(&b).await)
        .await
        .unwrap();
    eventually("worker still serves", Duration::from_secs(10), || async {
        (task(&b, &echo.id).await.status == TaskStatus::Completed).then_some(())
    })
    .await;
}

#[tokio::test]
async fn sigterm_drains_then_gives_unfinished_tasks_back_without_using_attempts() {
    let url = shared_redis().url();
    let b = broker(&url);
    let p = b.keys().prefix().to_string();
    let t0 = now(&b).await;
    let quick = b
        .enqueue(test_task(json!({"op": "sleep", "ms": 300})), t0)
        .await
        .unwrap();
    let long1 = b
        .enqueue(test_task(json!({"op": "sleep", "ms": 60_000})), t0)
        .await
        .unwrap();
    let long2 = b
        .enqueue(test_task(json!({"op": "sleep", "ms": 60_000})), t0)
        .await
        .unwrap();
    let mut w = Worker::start(
        &url,
        &p,
        &["--concurrency", "3"],
        &[("TASKFLEET__WORKER__GRACE_SECONDS", "2")],
    );
    eventually("all three running", Duration::from_secs(10), || async {
        let n = count(&b, TaskStatus::Processing).await?;
        (n == 3).then_some(())
    })
    .await;
    w.signal("TERM");
    assert_eq!(w.wait_exit(Duration::from_secs(15)), Some(0));
    assert_eq!(task(&b, &quick.id).await.status, TaskStatus::Completed);
    for id in [&long1.id, &long2.id] {
        let t = task(&b, id).await;
        assert_eq!((t.status, t.attempts), (TaskStatus::Queued, 0), "task {id}");
    }
    let live = b.live_workers(10).await.unwrap();
    let gone = b.dead_workers(10).await.unwrap();
    assert!(
        live.is_empty() && gone.is_empty(),
        "worker still registered: {live:?} {gone:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_ride_out_a_redis_restart_and_lose_nothing() {
    let mut redis = RedisServer::start_durable();
    let url = redis.url();
    let b = broker(&url);
    let p = b.keys().prefix().to_string();
    let first = enqueue_ids(
        &b,
        (0..200)
            .map(|i| test_task(json!({"op": "sleep", "ms": 30, "i": i})))
            .collect(),
    )
    .await;
    let _w1 = Worker::start(&url, &p, &["--concurrency", "4"], &[]);
    let _w2 = Worker::start(&url, &p, &["--concurrency", "4"], &[]);
    eventually("some work done", Duration::from_secs(20), || async {
        let n = count(&b, TaskStatus::Completed).await?;
        (n >= 20).then_some(())
    })
    .await;
    redis.kill();
    tokio::time::sleep(Duration::from_secs(1)).await;
    redis.restart();
    // The first call on a connection that died with the server fails (503 for an API client);
    // the next takes a fresh connection.
    eventually("redis answers again", Duration::from_secs(10), || async {
        b.server_time_ms().await.ok()
    })
    .await;
    let more = enqueue_ids(
        &b,
        (0..100)
            .map(|i| test_task(json!({"op": "sleep", "ms": 10, "j": i})))
            .collect(),
    )
    .await;
    eventually("all 300 completed", Duration::from_secs(60), || async {
        let n = count(&b, TaskStatus::Completed).await?;
        (n == 300).then_some(())
    })
    .await;
    for chunk in [&first, &more] {
        let tasks = b.get_many("test", chunk).await.unwrap();
        assert_eq!(tasks.len(), chunk.len());
        assert!(tasks.iter().all(|t| t.status == TaskStatus::Completed));
    }
}

#[tokio::test]
async fn a_worker_claims_only_its_types() {
    let url = shared_redis().url();
    let b = broker(&url);
    let p = b.keys().prefix().to_string();
    let t0 = now(&b).await;
    let quiz = b
        .enqueue(NewTask::new("quiz", json!({"source_text": "x"})), t0)
        .await
        .unwrap();
    let tests = enqueue_ids(
        &b,
        (0..20)
            .map(|i| test_task(json!({"op": "noop", "i": i})))
            .collect(),
    )
    .await;
    let _w = Worker::start(&url, &p, &["--types", "test"], &[]);
    eventually("test tasks done", Duration::from_secs(15), || async {
        let n = count(&b, TaskStatus::Completed).await?;
        (n == tests.len() as u64).then_some(())
    })
    .await;
    let q = task(&b, &quiz.id).await;
    assert_eq!((q.status, q.attempts), (TaskStatus::Queued, 0));
}

#[tokio::test]
async fn an_idle_worker_wakes_on_enqueue_not_on_its_slow_poll() {
    let url = shared_redis().url();
    let b = broker(&url);
    let p = b.keys().prefix().to_string();
    let w = Worker::start(
        &url,
        &p,
        &["--poll-ms", "60000", "--metrics-listen", "127.0.0.1:0"],
        &[],
    );
    // Let it reach its idle wait.
    eventually("worker registered", Duration::from_secs(10), || async {
        let n = b.live_workers(10).await.ok()?.len();
        (n == 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let e = b
        .enqueue(test_task(json!({"op": "echo"})), now(&b).await)
        .await
        .unwrap();
    // Far below the 60 s poll: only the enqueue's signal can have woken it.
    eventually("picked up", Duration::from_secs(5), || async {
        (task(&b, &e.id).await.status == TaskStatus::Completed).then_some(())
    })
    .await;
    drop(w);
}

#[tokio::test]
async fn the_metrics_endpoint_counts_what_the_worker_did() {
    let url = shared_redis().url();
    let b = broker(&url);
    let p = b.keys().prefix().to_string();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let _w = Worker::start(&url, &p, &["--metrics-listen", &addr], &[]);
    let t0 = now(&b).await;
    b.enqueue_many(
        (0..3)
            .map(|i| test_task(json!({"op": "echo", "i": i})))
            .collect(),
        t0,
    )
    .await
    .unwrap();
    let mut failing = test_task(json!({"op": "permanent"}));
    failing.max_attempts = Some(1);
    b.enqueue(failing, t0).await.unwrap();
    let body = eventually("metrics show the work", Duration::from_secs(15), || async {
        let body = http_get(&addr).await?;
        (body.contains("taskfleet_worker_completed_total{task_type=\"test\"} 3")
            && body.contains("taskfleet_worker_failed_total{task_type=\"test\"} 1"))
        .then_some(body)
    })
    .await;
    assert!(body.contains("taskfleet_worker_claimed_total{task_type=\"test\"} 4"));
    assert!(body.contains("taskfleet_worker_in_flight 0"));
    assert!(body.contains("taskfleet_worker_wait_seconds_count{task_type=\"test\"} 4"));
    assert!(
        body.contains("taskfleet_worker_run_seconds_bucket{le=\"+Inf\",task_type=\"test\"} 4"),
        "{body}"
    );
}

async fn http_get(addr: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok()?;
    Some(out)
}

#[tokio::test]
async fn a_finished_task_calls_its_webhook_with_the_outcome() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<serde_json::Value>();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Read the head, then as many body bytes as Content-Length says.
                loop {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(head_end) = text.find("\r\n\r\n") {
                        let len: usize = text[..head_end]
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse().ok())?
                            })
                            .unwrap_or(0);
                        if buf.len() >= head_end + 4 + len {
                            let body = &buf[head_end + 4..head_end + 4 + len];
                            let _ = tx.send(serde_json::from_slice(body).unwrap());
                            let _ = sock
                                .write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                                .await;
                            return;
                        }
                    }
                }
            });
        }
    });
    let url = shared_redis().url();
    let b = broker(&url);
    let p = b.keys().prefix().to_string();
    let mut ok = test_task(json!({"op": "echo"}));
    ok.webhook_url = Some(hook.clone());
    let mut bad = test_task(json!({"op": "permanent"}));
    bad.webhook_url = Some(hook.clone());
    let ok = b.enqueue(ok, now(&b).await).await.unwrap();
    let bad = b.enqueue(bad, now(&b).await).await.unwrap();
    // Loopback is refused unless allowed (issue 13): the receiver here is on 127.0.0.1.
    let _w = Worker::start(
        &url,
        &p,
        &[],
        &[("TASKFLEET__WEBHOOKS__ALLOW_NETWORKS", "127.0.0.1")],
    );
    let mut got = Vec::new();
    for _ in 0..2 {
        let v = tokio::time::timeout(Duration::from_secs(15), rx.recv())
            .await
            .expect("a webhook call")
            .unwrap();
        got.push(v);
    }
    got.sort_by_key(|v| v["status"].as_str().unwrap_or("").to_string());
    assert_eq!(got[0]["task_id"], ok.id.as_str());
    assert_eq!(got[0]["status"], "completed");
    assert_eq!(got[0]["result"]["echo"]["op"], "echo");
    assert_eq!(got[1]["task_id"], bad.id.as_str());
    assert_eq!(got[1]["status"], "failed");
    assert_eq!(got[1]["error"], "planned permanent failure");
}

#[tokio::test]
async fn a_task_taken_back_while_running_and_claimed_again_by_the_same_worker_is_ended_by_its_second_run_only(
) {
    // Issue 8, item 1: the first run must not write its result with the second run's lease.
    let url = shared_redis().url();
    let b = broker(&url);
    let p = b.keys().prefix().to_string();
    let e = b
        .enqueue(test_task(json!({"op": "sleep", "ms": 3000})), now(&b).await)
        .await
        .unwrap();
    let _w = Worker::start(&url, &p, &["--concurrency", "4"], &[]);
    let first = eventually("the worker runs it", Duration::from_secs(10), || async {
        let t = task(&b, &e.id).await;
        (t.status == TaskStatus::Processing && t.progress == 0 && t.message.is_some()).then_some(t)
    })
    .await;
    // An operator's cleanup takes it back while it runs; the idle slots of the same worker
    // claim it again at once.
    let report = b
        .recover_stuck(taskfleet::At::Server, Duration::from_millis(1))
        .await
        .unwrap();
    assert_eq!(report.requeued.len(), 1);
    let second = eventually("claimed again", Duration::from_secs(10), || async {
        let t = task(&b, &e.id).await;
        (t.attempts == 2 && t.status == TaskStatus::Processing).then_some(t)
    })
    .await;
    assert_eq!(
        second.worker_id, first.worker_id,
        "the same worker claimed it"
    );
    let done = eventually("completed", Duration::from_secs(20), || async {
        let t = task(&b, &e.id).await;
        t.status.is_terminal().then_some(t)
    })
    .await;
    assert_eq!(done.status, TaskStatus::Completed);
    assert_eq!(done.attempts, 2);
    // The result is the second run's, and it ran its whole 3 s (server clock).
    assert_eq!(done.result.as_ref().unwrap()["attempt"], 2);
    let ran = done.finished_at.unwrap() - second.started_at.unwrap();
    assert!(ran >= 3000, "the second run was ended after {ran} ms");
}
