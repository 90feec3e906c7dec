//! One queue over a Redis Cluster: exactly one owner under contention with the load spread
//! over the primaries, wake-ups by sharded pub/sub, the replica acknowledgement setting, and
//! deployments that are not what the settings say. (The lifecycle suite runs on the cluster
//! too: see lifecycle.rs.)

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use common::{new_task, queue, Target, T0};
use serde_json::json;
use taskfleet::keys::cluster_slot;
use taskfleet::testing::{self, shared_cluster, RedisServer};
use taskfleet::{Broker, Completion, Deployment, Error, QueueConfig, TaskStatus};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_claimers_drain_50000_tasks_of_16_shards_once_each_spread_over_three_primaries() {
    let b = Target::Cluster.setup();
    assert_eq!(b.shard_count("q").unwrap(), 16);
    let mut enqueued = HashSet::new();
    for chunk in 0..50 {
        let tasks = (0..1000).map(|i| new_task(chunk * 1000 + i)).collect();
        for e in b.enqueue_many(tasks, T0).await.unwrap() {
            enqueued.insert(e.id);
        }
    }
    assert_eq!(enqueued.len(), 50_000);
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
                let ok = b.complete("q", &done, T0 + 2).await.unwrap();
                assert!(
                    ok.iter().all(|ok| *ok),
                    "a claimed task's lease was not held"
                );
                mine.extend(got.into_iter().map(|c| c.id));
            }
        }));
    }
    let mut claimed = Vec::new();
    for h in handles {
        claimed.extend(h.await.unwrap());
    }
    let unique: HashSet<&String> = claimed.iter().collect();
    assert_eq!(claimed.len(), 50_000, "a task was claimed twice");
    assert_eq!(unique.len(), 50_000);
    assert!(unique.iter().all(|id| enqueued.contains(*id)));
    let s = &b.status().await.unwrap()[0];
    assert_eq!(s.count(TaskStatus::Completed), 50_000, "a task was lost");
    assert_eq!(s.count(TaskStatus::Queued), 0);
    assert_eq!(s.count(TaskStatus::Processing), 0);

    // Which primary served each claim: the slot of the task's shard.
    let cluster = shared_cluster();
    let mut owner_of_shard: HashMap<u16, u16> = HashMap::new();
    for shard in b.shards("q").unwrap() {
        let slot = cluster_slot(&b.keys().queued(shard.tag()));
        owner_of_shard.insert(shard.index(), cluster.owner_of_slot(slot).unwrap());
    }
    let mut per_primary: BTreeMap<u16, usize> = BTreeMap::new();
    for id in &claimed {
        let shard = b.route(id).expect("an id names its shard").index();
        *per_primary.entry(owner_of_shard[&shard]).or_default() += 1;
    }
    eprintln!("claims per primary: {per_primary:?}");
    assert_eq!(per_primary.len(), 3, "every primary served claims");
    for (port, n) in per_primary {
        let share = n as f64 / 50_000.0;
        assert!(
            (0.25..=0.42).contains(&share),
            "primary {port} served {:.1} % of the claims",
            share * 100.0
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_worker_on_the_cluster_is_woken_by_the_shard_it_should_claim_from() {
    let b = Target::Cluster.setup();
    let mut waiter = taskfleet::WorkWaiter::default();
    // The first wait subscribes and returns at once: the caller claims before it waits.
    assert_eq!(
        b.wait_for_work(&mut waiter, &["q"], Duration::from_secs(600))
            .await,
        None
    );
    assert!(b.claim(&["q"], 1, T0).await.unwrap().is_empty());
    for round in 0..20 {
        let enqueuer = b.clone();
        let sent = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            enqueuer.enqueue(new_task(round), T0).await.unwrap()
        });
        // The poll is ten minutes: only the wake-up can end this wait within the bound.
        let woken = tokio::time::timeout(
            Duration::from_secs(30),
            b.wait_for_work(&mut waiter, &["q"], Duration::from_secs(600)),
        )
        .await
        .expect("an idle waiter was woken by the enqueue");
        let e = sent.await.unwrap();
        let shard = woken.expect("the wake-up names its shard");
        assert_eq!(Some(&shard), b.route(&e.id).as_ref(), "round {round}");
        let got = b
            .claim_preferring(&["q"], 1, T0, Some(&shard))
            .await
            .unwrap();
        assert_eq!(got[0].id, e.id);
    }
}

#[tokio::test]
async fn with_replica_acknowledgement_on_a_cluster_without_replicas_an_enqueue_is_refused_unwritten(
) {
    let b = Target::Cluster
        .builder()
        .queue("q", queue(3))
        .wait_replicas(1, Duration::from_millis(200))
        .build()
        .unwrap();
    match b.enqueue(new_task(1), T0).await {
        Err(Error::Unavailable(m)) => {
            assert!(m.contains("0 replicas connected"), "{m}");
            assert!(m.contains("not written"), "{m}");
        }
        other => panic!("expected unavailable, got {other:?}"),
    }
    assert_eq!(testing::key_count(&b).await, 0);
}

#[tokio::test]
async fn cluster_seed_nodes_that_are_a_single_server_are_refused_and_nothing_is_written() {
    let single = testing::shared_redis();
    let prefix = testing::fresh_prefix();
    let b = Broker::builder_for(Deployment::Cluster {
        nodes: vec![format!("127.0.0.1:{}", single.port())],
    })
    .prefix(&prefix)
    .queue("q", queue(3))
    .build()
    .unwrap();
    match b.check_deployment().await {
        Err(Error::InvalidInput { field, message }) => {
            assert_eq!(field, "redis.cluster_nodes");
            assert!(message.contains("single server"), "{message}");
        }
        other => panic!("expected the deployment refused, got {other:?}"),
    }
    let on_single = testing::broker_on(&single.url(), &[]);
    let keys: Vec<String> = testing::command(&on_single, &["KEYS", &format!("{prefix}:*")]).await;
    assert!(keys.is_empty(), "{keys:?}");
}

#[tokio::test]
async fn a_single_server_url_naming_a_cluster_node_is_refused() {
    let node = shared_cluster().ports()[0];
    let b = Broker::builder(format!("redis://127.0.0.1:{node}"))
        .prefix(testing::fresh_prefix())
        .queue("q", queue(3))
        .build()
        .unwrap();
    match b.check_deployment().await {
        Err(Error::InvalidInput { field, message }) => {
            assert_eq!(field, "redis.url");
            assert!(message.contains("Cluster node"), "{message}");
        }
        other => panic!("expected the deployment refused, got {other:?}"),
    }
}

#[tokio::test]
async fn a_dead_seed_node_is_refused_by_name_and_nothing_is_written() {
    let cluster = shared_cluster();
    let dead = RedisServer::start();
    let dead_addr = format!("127.0.0.1:{}", dead.port());
    drop(dead);
    let mut nodes: Vec<String> = cluster
        .ports()
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    nodes.push(dead_addr.clone());
    let b = Broker::builder_for(Deployment::Cluster { nodes })
        .prefix(testing::fresh_prefix())
        .queue("q", queue(3))
        .build()
        .unwrap();
    match b.check_deployment().await {
        Err(Error::InvalidInput { field, message }) => {
            assert_eq!(field, "redis.cluster_nodes");
            assert!(message.contains(&dead_addr), "{message}");
        }
        other => panic!("expected the dead node named, got {other:?}"),
    }
    assert_eq!(testing::key_count(&b).await, 0);
}

#[tokio::test]
async fn a_shard_count_that_disagrees_with_the_recorded_one_is_refused_and_nothing_is_written() {
    for target in [Target::Single, Target::Cluster] {
        let first = target.setup();
        first.check_deployment().await.unwrap();
        let prefix = first.keys().prefix().to_string();
        first.enqueue(new_task(1), T0).await.unwrap();
        let before = testing::dump(&first).await;
        let recorded = first.shard_count("q").unwrap();
        let other = target
            .builder()
            .prefix(&prefix)
            .queue(
                "q",
                QueueConfig {
                    shards: Some(recorded + 3),
                    ..queue(3)
                },
            )
            .build()
            .unwrap();
        match other.check_deployment().await {
            Err(Error::InvalidInput { field, message }) => {
                assert_eq!(field, "task_types.q.shards");
                assert!(
                    message.contains(&format!("recorded in Redis with {recorded} shards")),
                    "{message}"
                );
            }
            other => panic!("{target:?}: expected the count refused, got {other:?}"),
        }
        assert_eq!(testing::dump(&first).await, before, "{target:?}");
        // The same count is accepted.
        first.check_deployment().await.unwrap();
    }
}

#[tokio::test]
async fn reads_merge_the_shards_queue_head_positions_and_status() {
    let b = Target::Cluster.setup();
    let mut ids = Vec::new();
    for i in 0..64 {
        // One ms apart, so the claim order (band, then enqueue time) is the enqueue order.
        ids.push(b.enqueue(new_task(i), T0 + i as i64).await.unwrap().id);
    }
    let head = b.queue_head("q", 64).await.unwrap();
    let order: Vec<&String> = head.iter().map(|e| &e.id).collect();
    assert_eq!(
        order,
        ids.iter().collect::<Vec<_>>(),
        "the merged head is the queue's order"
    );
    for (i, id) in ids.iter().enumerate().step_by(9) {
        assert_eq!(b.queue_position("q", id).await.unwrap(), Some(i as u64));
    }
    let (mine, complete) = b.queued_of_account("q", "acme", 5, 10_000).await.unwrap();
    assert!(complete);
    let positions: Vec<u64> = mine.iter().map(|e| e.position).collect();
    assert_eq!(positions, vec![0, 1, 2, 3, 4]);
    assert_eq!(b.status().await.unwrap()[0].count(TaskStatus::Queued), 64);
    assert_eq!(b.status().await.unwrap()[0].stats["enqueued"], 64);
    let counts = b.account_counts("acme", 1_000).await.unwrap();
    assert_eq!(counts[0].1["queued"], 64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_of_one_and_two_primaries_are_formed_by_hand_and_serve_every_shard() {
    for (primaries, replicas) in [(1, 0), (2, 1)] {
        let cluster =
            tokio::task::spawn_blocking(move || testing::RedisCluster::start(primaries, replicas))
                .await
                .unwrap();
        let ports = cluster.primaries();
        assert_eq!(ports.len(), primaries);
        // Every slot is served, split evenly between the primaries.
        for slot in [0u16, 8191, 8192, 16383] {
            assert!(cluster.owner_of_slot(slot).is_some(), "slot {slot}");
        }
        if primaries == 2 {
            assert_ne!(cluster.owner_of_slot(8191), cluster.owner_of_slot(8192));
            for p in &ports {
                assert!(
                    cluster.replica_of(*p).is_some(),
                    "primary {p} has a replica"
                );
            }
        }
        let b = Broker::builder_for(cluster.deployment())
            .prefix(testing::fresh_prefix())
            .queue("q", queue(3))
            .build()
            .unwrap();
        b.check_deployment().await.unwrap();
        assert_eq!(b.shard_count("q").unwrap(), 16);
        let tasks = (0..200).map(new_task).collect();
        b.enqueue_many(tasks, T0).await.unwrap();
        let mut claimed = HashSet::new();
        for _ in 0..50 {
            let got = b.claim(&["q"], 50, T0 + 1).await.unwrap();
            if got.is_empty() {
                break;
            }
            claimed.extend(got.into_iter().map(|c| c.id));
        }
        assert_eq!(claimed.len(), 200, "{primaries} primaries");
        tokio::task::spawn_blocking(move || drop(cluster))
            .await
            .unwrap();
    }
}
