//! The floor runs (`taskfleet_bench::floor`) on a real redis-server: the floor writes the
//! same task hash the library writes (so its figure is the floor of *this* work), pops and
//! completes what it queued, and its four redis-benchmark runs run to the end. Figures are
//! not checked (no test asserts a rate).

use std::collections::BTreeMap;

use taskfleet::testing::{command, dump, RedisServer};
use taskfleet::{At, Broker, QueueConfig, RedisClock};
use taskfleet_bench::ceiling::CeilingArgs;
use taskfleet_bench::core::{bench_task, QUEUE};
use taskfleet_bench::floor::{self, COMPLETED, DRAIN_FLOOR, ENQUEUE_FLOOR, LEASES, TASK_PREFIX};
use taskfleet_bench::server::Server;

fn pairs(flat: &[String]) -> BTreeMap<String, String> {
    flat.chunks(2)
        .map(|p| (p[0].clone(), p[1].clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_floor_writes_the_hash_the_library_writes_and_completes_it() {
    let server = RedisServer::start();
    let b = Broker::builder(server.url())
        .prefix("fl")
        .queue(QUEUE, QueueConfig::default())
        .build()
        .unwrap();
    let task = bench_task(7, 100);

    // The library's own enqueue, and the hash it stored.
    let done = b.enqueue(task.clone(), At::Server).await.unwrap();
    let stored = dump(&b).await;
    let (_, _, flat) = stored
        .iter()
        .find(|(k, t, _)| t == "hash" && k.ends_with(&format!("task:{}", done.id)))
        .expect("the library's task hash");
    let library = pairs(flat);

    // The floor's write of the same task, from the library's own script arguments.
    let call = b.enqueue_script_call(&[task], At::Server).unwrap();
    let (task_type, tasks) = floor::floor_tasks(&call).unwrap();
    assert_eq!(tasks.len(), 1);
    let created = library["created_at"].clone();
    let mut eval: Vec<String> = vec![
        "EVAL".into(),
        ENQUEUE_FLOOR.into(),
        "2".into(),
        floor::QUEUE.into(),
        TASK_PREFIX.into(),
        task_type,
        created.clone(),
    ];
    eval.extend(tasks[0].args());
    let id = tasks[0].id.clone();
    let args: Vec<&str> = eval.iter().map(String::as_str).collect();
    let queued: i64 = command(&b, &args).await;
    assert_eq!(queued, 1);
    let key = format!("{TASK_PREFIX}{id}");
    let floor_hash = pairs(&command::<Vec<String>>(&b, &["HGETALL", &key]).await);

    // The same fields, and the same values but the id (a fresh one) and created_at (given).
    assert_eq!(
        floor_hash.keys().collect::<Vec<_>>(),
        library.keys().collect::<Vec<_>>(),
        "the floor writes a different hash than the library"
    );
    for (field, value) in &library {
        if field != "id" {
            assert_eq!(&floor_hash[field], value, "field {field}");
        }
    }
    assert_eq!(floor_hash["id"], id);

    // The drain floor leases it and, in the same call, completes the oldest lease: it.
    let popped: i64 = command(
        &b,
        &[
            "EVAL",
            DRAIN_FLOOR,
            "4",
            floor::QUEUE,
            TASK_PREFIX,
            COMPLETED,
            LEASES,
            "32",
            r#"{"ok":true}"#,
            &created,
            "99999999999999",
        ],
    )
    .await;
    assert_eq!(popped, 1);
    let status: String = command(&b, &["HGET", &key, "status"]).await;
    assert_eq!(status, "completed");
    let left: i64 = command(&b, &["ZCARD", floor::QUEUE]).await;
    assert_eq!(left, 0);
    let finished: Vec<String> = command(&b, &["ZRANGE", COMPLETED, "0", "-1"]).await;
    assert_eq!(finished, [id]);
    let leases: i64 = command(&b, &["ZCARD", LEASES]).await;
    assert_eq!(leases, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_four_floor_runs_run_to_the_end_and_leave_nothing() {
    let mut server = Server::start().await.unwrap();
    let b = Broker::builder(server.url())
        .prefix("fc")
        .queue(QUEUE, QueueConfig::default())
        .build()
        .unwrap();
    let clock = RedisClock::new(&b).await.unwrap();
    let args = CeilingArgs {
        clients: 4,
        requests: 200,
        bin: "redis-benchmark".into(),
    };
    let sizes = floor::FloorArgs {
        tasks: 1000,
        batch: 100,
        claim_batch: 32,
        accounts: 100,
        one_client_requests: 200,
    };
    let f = floor::measure(&mut server, &args, &clock, sizes)
        .await
        .expect("the floor runs");
    assert_eq!(f.enqueue_batched.tasks_per_call, 100);
    assert_eq!(f.drain.tasks_per_call, 32);
    for run in f.rows() {
        assert!(run.ops_per_sec > 0.0, "{run:?}");
        assert!(run.server_us_per_job > 0.0, "{run:?}");
    }
    // Flushed after: the next step starts from an empty keyspace.
    let keys: Vec<String> = command(&b, &["KEYS", "*"]).await;
    assert!(keys.is_empty(), "{keys:?}");
}
