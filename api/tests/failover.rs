//! A primary's failover under load, with real processes: a 3-primary, 3-replica Redis
//! Cluster, the API binary and three worker binaries. Clients enqueue a ledger of 5,000
//! tasks over HTTP while a replica takes over by `CLUSTER FAILOVER` and another primary is
//! SIGKILLed. With `redis.wait_replicas = 1`, every task the API acknowledged (202) reaches a
//! terminal state; without it, the test reports how many acknowledged tasks the failover lost.
//! No process may exit or hang. Needs the worker binary built first (scripts/test.sh does).

mod common;

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::processes::{free_port, http, worker_bin, Proc};
use serde_json::{json, Value};
use taskfleet::testing::{self, RedisCluster};
use taskfleet::{Broker, QueueConfig, TaskStatus, TEST_QUEUE};

const ADMIN_KEY: &str = "failover-admin-key-0123456789abcdef";
const TASKS: usize = 5_000;
const CLIENTS: usize = 8;

/// What one run saw.
#[derive(Debug)]
struct Ledger {
    acknowledged: usize,
    lost: usize,
    terminal: usize,
}

fn command(
    bin: &str,
    cluster: &RedisCluster,
    prefix: &str,
    wait: bool,
    dir: &std::path::Path,
) -> Command {
    let mut c = Command::new(bin);
    c.env_remove("REDIS_URL")
        .env("TASKFLEET__REDIS__CLUSTER_NODES", cluster.nodes_setting())
        .env("TASKFLEET__REDIS__PREFIX", prefix)
        .env(
            "TASKFLEET__REDIS__WAIT_REPLICAS",
            if wait { "1" } else { "0" },
        )
        .env("TASKFLEET__REDIS__WAIT_TIMEOUT_MS", "500")
        .env("TASKFLEET__AUTH__ADMIN_KEY", ADMIN_KEY)
        .env("TASKFLEET__ARTIFACTS__DIR", dir)
        .env("TASKFLEET__WORKER__LEASE_SECONDS", "3")
        // The enqueue rate limit is not what this test is about.
        .env("TASKFLEET__LIMITS__RATE_PER_MINUTE", "0")
        .env(
            "RUST_LOG",
            std::env::var("TEST_RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    if std::env::var("TEST_WORKER_LOGS").is_err() {
        c.stderr(Stdio::null());
    }
    c
}

/// Runs the ledger through a failover and a primary's crash.
async fn run(wait: bool) -> Ledger {
    let cluster = tokio::task::spawn_blocking(|| RedisCluster::start(3, 1))
        .await
        .unwrap();
    let prefix = testing::fresh_prefix();
    let dir = tempfile::tempdir().unwrap();
    let api_bin = env!("CARGO_BIN_EXE_taskfleet-api");
    let out = command(api_bin, &cluster, &prefix, wait, dir.path())
        .args(["keys", "create", "--account", "ledger", "--user", "u1"])
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = String::from_utf8(out.stdout).unwrap().trim().to_string();

    let port = free_port();
    let mut api = Proc(
        command(api_bin, &cluster, &prefix, wait, dir.path())
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--test-processors",
            ])
            .spawn()
            .unwrap(),
    );
    let mut workers: Vec<Proc> = (0..3)
        .map(|_| {
            Proc(
                command(
                    worker_bin().to_str().unwrap(),
                    &cluster,
                    &prefix,
                    wait,
                    dir.path(),
                )
                .args([
                    "--test-processors",
                    "--concurrency",
                    "8",
                    "--poll-ms",
                    "500",
                ])
                .spawn()
                .unwrap(),
            )
        })
        .collect();
    let ready = Instant::now() + Duration::from_secs(30);
    while !matches!(http(port, "GET", "/ready", None, None).await, Ok((200, _))) {
        assert!(Instant::now() < ready, "the API did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Clients enqueue the ledger; a refusal (503 while a primary is away, or when no replica
    // acknowledged in time) is sent again as a new request: only a 202 is a promise.
    let next = Arc::new(AtomicUsize::new(0));
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let refused = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (next, acked, refused, key) =
            (next.clone(), acked.clone(), refused.clone(), key.clone());
        clients.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::SeqCst);
                if n >= TASKS {
                    return;
                }
                let body =
                    json!({"task_type": TEST_QUEUE, "request": {"op": "sleep", "ms": 5, "n": n}});
                let deadline = Instant::now() + Duration::from_secs(60);
                loop {
                    let r = http(port, "POST", "/api/tasks", Some(&key), Some(body.clone())).await;
                    match r {
                        Ok((202, text)) => {
                            let v: Value = serde_json::from_str(&text).unwrap();
                            acked
                                .lock()
                                .unwrap()
                                .push(v["task_id"].as_str().unwrap().to_string());
                            break;
                        }
                        Ok((503, _)) => {
                            refused.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok((status, text)) => panic!("enqueue answered {status}: {text}"),
                        Err(e) => panic!("the API did not answer: {e}"),
                    }
                    assert!(Instant::now() < deadline, "task {n} refused for a minute");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }));
    }

    // A third in: a replica takes over its primary. Two thirds in: another primary dies.
    let failed_over = wait_for_count(&acked, TASKS / 3).await;
    let primaries = cluster.primaries();
    let replica = cluster.replica_of(primaries[0]).expect("a replica");
    let cluster = Arc::new(Mutex::new(cluster));
    {
        let c = cluster.clone();
        let ok = tokio::task::spawn_blocking(move || {
            c.lock().unwrap().failover(replica, Duration::from_secs(10))
        })
        .await
        .unwrap();
        assert!(ok, "CLUSTER FAILOVER did not promote the replica");
    }
    wait_for_count(&acked, 2 * TASKS / 3).await;
    let victim = primaries[1];
    {
        let c = cluster.clone();
        tokio::task::spawn_blocking(move || c.lock().unwrap().kill(victim))
            .await
            .unwrap();
    }
    for c in clients {
        c.await.unwrap();
    }
    let acked: Vec<String> = acked.lock().unwrap().clone();
    eprintln!(
        "wait_replicas={}: {} acknowledged ({} before the failover), {} refusals",
        u8::from(wait),
        acked.len(),
        failed_over,
        refused.load(Ordering::SeqCst)
    );

    // Watch the tasks from the test through the library, on the cluster that is left.
    let nodes = cluster.lock().unwrap().deployment();
    let b = Broker::builder_for(nodes)
        .prefix(&prefix)
        .queue(TEST_QUEUE, QueueConfig::default())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let settled = Instant::now() + Duration::from_secs(120);
    let (terminal, existing) = loop {
        let mut terminal = 0;
        let mut existing = HashSet::new();
        let mut ok = true;
        for chunk in acked.chunks(500) {
            match b.statuses(chunk).await {
                Ok(found) => {
                    for (id, s) in found {
                        terminal += usize::from(s.is_terminal());
                        existing.insert(id);
                    }
                }
                Err(_) => ok = false,
            }
        }
        let (busy, counts) = match b.status().await {
            Ok(s) => (
                s[0].count(TaskStatus::Queued)
                    + s[0].count(TaskStatus::Processing)
                    + s[0].count(TaskStatus::Retrying),
                format!("{:?}", s[0].counts),
            ),
            Err(e) => (1, e.to_string()),
        };
        if ok && busy == 0 && terminal == existing.len() {
            break (terminal, existing);
        }
        assert!(
            Instant::now() < settled,
            "the fleet did not settle: {terminal} of {} acknowledged tasks terminal, {busy} still waiting or running ({counts})",
            acked.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // Nobody exited or hangs: the API answers, every worker runs and beats.
    assert!(api.0.try_wait().unwrap().is_none(), "the API exited");
    assert!(matches!(
        http(port, "GET", "/ready", None, None).await,
        Ok((200, _))
    ));
    for w in &mut workers {
        assert!(w.0.try_wait().unwrap().is_none(), "a worker exited");
    }
    let beating = Instant::now() + Duration::from_secs(20);
    loop {
        let live = b.live_workers(10).await.map(|w| w.len()).unwrap_or(0);
        if live == 3 {
            break;
        }
        assert!(Instant::now() < beating, "{live} of 3 workers beat");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ledger {
        acknowledged: acked.len(),
        lost: acked.len() - existing.len(),
        terminal,
    }
}

async fn wait_for_count(acked: &Mutex<Vec<String>>, n: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let have = acked.lock().unwrap().len();
        if have >= n {
            return have;
        }
        assert!(
            Instant::now() < deadline,
            "{have} of {n} tasks acknowledged"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_survives_a_failover_and_a_primary_crash_and_with_replica_acks_loses_nothing() {
    // One run after the other: each has a cluster of six servers and four processes.
    let with = run(true).await;
    eprintln!("with replica acknowledgement: {with:?}");
    assert_eq!(with.acknowledged, TASKS);
    assert_eq!(with.lost, 0, "an acknowledged task was lost");
    assert_eq!(with.terminal, TASKS, "an acknowledged task did not finish");

    let without = run(false).await;
    eprintln!(
        "without replica acknowledgement: {without:?} ({} acknowledged tasks lost by the crash)",
        without.lost
    );
    assert_eq!(without.acknowledged, TASKS);
    // Whatever survived finished: a lost task is the crash's (reported above), never a hang.
    assert_eq!(without.terminal, without.acknowledged - without.lost);
}
