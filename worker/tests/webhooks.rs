//! Webhook deliveries against a real local HTTP receiver (issue 13): signatures verify with the
//! account's secret (and not another's; with both during a rotation), a receiver that fails
//! four times gets the fifth attempt (the clock moved, not slept through), loopback is refused
//! unless allowed, redirects are not followed; with real worker processes, a worker killed
//! mid-delivery loses nothing and a batch finished by three workers at once is announced once.

mod common;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{broker, eventually, now, test_queue, test_task, Worker};
use serde_json::{json, Value};
use taskfleet::testing;
use taskfleet::webhooks::{self, NetPolicy};
use taskfleet::{At, Broker, ManualClock, NewBatch, NewTask, TaskStatus};
use taskfleet_worker::processors::testing::TestProcessor;
use taskfleet_worker::webhook::{Deliverer, DeliveryConfig};
use taskfleet_worker::{Handler, Shared, WorkerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const T0: i64 = 1_767_225_600_000;

/// What the receiver answers a request.
#[derive(Debug, Clone)]
enum Answer {
    Status(u16),
    Redirect(&'static str),
    /// Never answers (the connection stays open).
    Hang,
}

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    headers: HashMap<String, String>,
    body: String,
}

impl Seen {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }
}

/// A real HTTP receiver on 127.0.0.1: answers the planned answers in order, then 200 "hello".
#[derive(Clone)]
struct Receiver {
    addr: std::net::SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    plan: Arc<Mutex<VecDeque<Answer>>>,
}

impl Receiver {
    async fn start(plan: Vec<Answer>) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let r = Receiver {
            addr: listener.local_addr().unwrap(),
            seen: Arc::default(),
            plan: Arc::new(Mutex::new(plan.into())),
        };
        let me = r.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let me = me.clone();
                tokio::spawn(async move { me.serve(sock).await });
            }
        });
        r
    }

    async fn serve(&self, mut sock: tokio::net::TcpStream) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        let (head, body) = loop {
            let n = sock.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).to_string();
            if let Some(end) = text.find("\r\n\r\n") {
                let head = text[..end].to_string();
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).to_string();
                    break (head, body);
                }
            }
        };
        let mut lines = head.lines();
        let path = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("")
            .to_string();
        let headers = lines
            .filter_map(|l| {
                let (k, v) = l.split_once(':')?;
                Some((k.trim().to_ascii_lowercase(), v.trim().to_string()))
            })
            .collect();
        self.seen.lock().unwrap().push(Seen {
            path,
            headers,
            body,
        });
        let answer = self
            .plan
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Answer::Status(200));
        let reply = match answer {
            Answer::Status(s) => format!(
                "HTTP/1.1 {s} X\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello"
            ),
            Answer::Redirect(to) => format!(
                "HTTP/1.1 302 Found\r\nlocation: {to}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            ),
            Answer::Hang => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return;
            }
        };
        let _ = sock.write_all(reply.as_bytes()).await;
    }

    fn url(&self, host: &str) -> String {
        format!("http://{host}:{}/hook", self.addr.port())
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// A worker's state (the test queue) for driving the delivery loop by hand, with `allow`ed
/// networks.
fn shared(allow: &[&str]) -> Arc<Shared> {
    let broker = Broker::builder(testing::shared_redis().url())
        .prefix(testing::fresh_prefix())
        .queue("test", test_queue())
        .build()
        .unwrap();
    let cfg = DeliveryConfig {
        policy: NetPolicy::new(&allow.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap(),
        timeout: Duration::from_secs(5),
        every: Duration::from_millis(100),
    };
    Arc::new(
        Shared::new(
            broker,
            Arc::new(ManualClock::new(T0)),
            WorkerConfig {
                worker_id: "w-hooks".into(),
                types: vec!["test".into()],
                concurrency: 1,
                grace: Duration::from_secs(1),
                poll: Duration::from_secs(1),
                schedule_every: Duration::from_secs(1),
                work_dir: std::env::temp_dir(),
            },
            HashMap::from([(
                "test".to_string(),
                Handler {
                    processor: Arc::new(TestProcessor),
                    config: test_queue(),
                },
            )]),
            None,
            Default::default(),
        )
        .with_webhooks(cfg),
    )
}

/// A task of account acme with a webhook to `url`, run and completed at `at`.
async fn finished_task(b: &Broker, url: &str, at: i64) -> String {
    let mut t = NewTask::new("test", json!({"op": "echo"})).owner("acme", "ann");
    t.webhook_url = Some(url.to_string());
    let id = b.enqueue(t, at).await.unwrap().id;
    let c = b.claim(&["test"], 1, at).await.unwrap();
    b.complete_one("test", &id, &c[0].lease, json!({"echo": 1}), at)
        .await
        .unwrap();
    id
}

async fn deliveries(b: &Broker, id: &str) -> Vec<webhooks::DeliveryView> {
    let task = b.get(id).await.unwrap().unwrap();
    b.task_webhooks(&task).await.unwrap()
}

#[tokio::test]
async fn a_delivery_is_signed_with_the_accounts_secret_and_with_both_during_a_rotation() {
    let rx = Receiver::start(vec![]).await;
    let s = shared(&["127.0.0.1"]);
    let b = &s.broker;
    let (_, secret) = b.create_webhook_secret("acme", T0).await.unwrap();
    let id = finished_task(b, &rx.url("127.0.0.1"), T0).await;
    let d = Deliverer::new(s.clone());
    assert_eq!(d.tick(At::Ms(T0 + 1000)).await.unwrap(), 1);
    let got = rx.seen();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(r.header("webhook-id"), format!("{id}.1"));
    assert_eq!(
        r.header("webhook-timestamp"),
        ((T0 + 1000) / 1000).to_string()
    );
    assert_eq!(r.header("content-type"), "application/json");
    let ts: i64 = r.header("webhook-timestamp").parse().unwrap();
    let sig = r.header("webhook-signature");
    assert!(webhooks::verify(
        &secret,
        r.header("webhook-id"),
        ts,
        r.body.as_bytes(),
        sig
    ));
    let stranger = webhooks::generate_secret();
    assert!(!webhooks::verify(
        &stranger,
        r.header("webhook-id"),
        ts,
        r.body.as_bytes(),
        sig
    ));
    // The body tampered with fails too.
    assert!(!webhooks::verify(
        &secret,
        r.header("webhook-id"),
        ts,
        b"{}",
        sig
    ));
    let body = r.json();
    assert_eq!(body["event"], "task.finished");
    assert_eq!(body["task_id"], id.as_str());
    assert_eq!(body["status"], "completed");
    assert_eq!(body["result"], json!({"echo": 1}));
    let v = deliveries(b, &id).await.remove(0);
    assert_eq!(v.state, "delivered");
    assert_eq!(v.attempts.len(), 1);
    assert_eq!(v.attempts[0].status, Some(200));
    assert_eq!(v.attempts[0].body, "hello");

    // A rotation: the old secret and the new one both sign until the grace period ends.
    let (_, newer) = b
        .rotate_webhook_secret("acme", T0 + 2000, Duration::from_secs(3600))
        .await
        .unwrap();
    let second = finished_task(b, &rx.url("127.0.0.1"), T0 + 3000).await;
    d.tick(At::Ms(T0 + 4000)).await.unwrap();
    let r = rx.seen().pop().unwrap();
    assert_eq!(r.header("webhook-id"), format!("{second}.1"));
    let sig = r.header("webhook-signature");
    assert_eq!(sig.split(' ').count(), 2, "{sig}");
    for key in [&secret, &newer] {
        assert!(webhooks::verify(
            key,
            r.header("webhook-id"),
            (T0 + 4000) / 1000,
            r.body.as_bytes(),
            sig
        ));
    }
    // After the grace period, only the new one.
    let third = finished_task(b, &rx.url("127.0.0.1"), T0 + 3_700_000).await;
    d.tick(At::Ms(T0 + 3_701_000)).await.unwrap();
    let r = rx.seen().pop().unwrap();
    assert_eq!(r.header("webhook-id"), format!("{third}.1"));
    let ts = (T0 + 3_701_000) / 1000;
    let sig = r.header("webhook-signature");
    assert!(webhooks::verify(
        &newer,
        r.header("webhook-id"),
        ts,
        r.body.as_bytes(),
        sig
    ));
    assert!(!webhooks::verify(
        &secret,
        r.header("webhook-id"),
        ts,
        r.body.as_bytes(),
        sig
    ));
}

#[tokio::test]
async fn a_receiver_that_fails_four_times_gets_the_fifth_attempt() {
    let rx = Receiver::start(vec![Answer::Status(500); 4]).await;
    let s = shared(&["127.0.0.1"]);
    let b = &s.broker;
    let id = finished_task(b, &rx.url("127.0.0.1"), T0).await;
    let d = Deliverer::new(s.clone());
    let mut t = T0 + 1000;
    assert_eq!(d.tick(At::Ms(t)).await.unwrap(), 1);
    for n in 1..=4u32 {
        let wait = webhooks::retry_delay(n).unwrap().as_millis() as i64;
        // Not before its time...
        assert_eq!(d.tick(At::Ms(t + wait - 1)).await.unwrap(), 0);
        // ...and then.
        t += wait;
        assert_eq!(d.tick(At::Ms(t)).await.unwrap(), 1, "attempt {}", n + 1);
    }
    let got = rx.seen();
    assert_eq!(got.len(), 5);
    assert!(got
        .iter()
        .all(|r| r.header("webhook-id") == format!("{id}.1")));
    let v = deliveries(b, &id).await.remove(0);
    assert_eq!(v.state, "delivered");
    let statuses: Vec<Option<u16>> = v.attempts.iter().map(|a| a.status).collect();
    assert_eq!(
        statuses,
        [Some(500), Some(500), Some(500), Some(500), Some(200)]
    );
    assert_eq!(
        v.attempts[0].error.as_deref(),
        Some("answered 500 Internal Server Error")
    );
    // Nothing left to send.
    assert_eq!(d.tick(At::Ms(t + 86_400_000)).await.unwrap(), 0);
    use taskfleet_worker::metrics::Event;
    assert_eq!(s.metrics.get(Event::WebhookRetried, "test"), 4);
    assert_eq!(s.metrics.get(Event::WebhookDelivered, "test"), 1);
    assert!(s
        .metrics
        .render()
        .contains("taskfleet_worker_webhooks_delivered_total{task_type=\"test\"} 1"));
}

#[tokio::test]
async fn a_host_resolving_to_loopback_is_refused_unless_allowed() {
    let rx = Receiver::start(vec![]).await;
    let refused = shared(&[]);
    let b = &refused.broker;
    // `localhost` resolves to 127.0.0.1 (or ::1): the address is checked after the lookup.
    let id = finished_task(b, &rx.url("localhost"), T0).await;
    let d = Deliverer::new(refused.clone());
    d.tick(At::Ms(T0 + 1000)).await.unwrap();
    assert!(rx.seen().is_empty(), "a refused address was reached");
    let v = deliveries(b, &id).await.remove(0);
    assert_eq!(v.state, "pending");
    let e = v.attempts[0].error.clone().unwrap();
    assert!(
        e.starts_with("refused: the host resolves to a loopback address"),
        "{e}"
    );
    // The same keyspace, a worker that allows 127.0.0.1 (and ::1): the retry goes through.
    let allowed = Shared::new(
        b.clone(),
        Arc::new(ManualClock::new(T0)),
        refused.config.clone(),
        HashMap::new(),
        None,
        Default::default(),
    )
    .with_webhooks(DeliveryConfig {
        policy: NetPolicy::new(&["127.0.0.1/32".into(), "::1".into()]).unwrap(),
        ..DeliveryConfig::default()
    });
    let d = Deliverer::new(Arc::new(allowed));
    d.tick(At::Ms(T0 + 1000 + 5000)).await.unwrap();
    assert_eq!(rx.seen().len(), 1);
    assert_eq!(deliveries(b, &id).await[0].state, "delivered");
}

#[tokio::test]
async fn a_redirect_is_not_followed() {
    let rx = Receiver::start(vec![Answer::Redirect("/elsewhere")]).await;
    let s = shared(&["127.0.0.1"]);
    let b = &s.broker;
    let id = finished_task(b, &rx.url("127.0.0.1"), T0).await;
    Deliverer::new(s.clone())
        .tick(At::Ms(T0 + 1000))
        .await
        .unwrap();
    let paths: Vec<String> = rx.seen().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/hook"]);
    let v = deliveries(b, &id).await.remove(0);
    assert_eq!(v.state, "pending");
    assert_eq!(v.attempts[0].status, Some(302));
    assert_eq!(
        v.attempts[0].error.as_deref(),
        Some("a redirect (not followed)")
    );
    assert_eq!(v.next_at, Some(T0 + 1000 + 5000));
}

const WEBHOOK_ENV: [(&str, &str); 2] = [
    ("TASKFLEET__WEBHOOKS__ALLOW_NETWORKS", "127.0.0.1"),
    ("TASKFLEET__WEBHOOKS__TIMEOUT_SECS", "4"),
];

#[tokio::test]
async fn a_worker_killed_mid_delivery_loses_no_delivery() {
    let rx = Receiver::start(vec![Answer::Hang]).await;
    let url = testing::shared_redis().url();
    let b = broker(&url);
    let p = b.keys().prefix().to_string();
    let mut t = test_task(json!({"op": "echo"}));
    t.webhook_url = Some(rx.url("127.0.0.1"));
    let id = b.enqueue(t, now(&b).await).await.unwrap().id;
    let mut first = Worker::start(&url, &p, &[], &WEBHOOK_ENV);
    // The first attempt reaches the receiver, which never answers: kill the worker then.
    eventually("the first attempt", Duration::from_secs(20), || async {
        (!rx.seen().is_empty()).then_some(())
    })
    .await;
    first.kill();
    let _second = Worker::start(&url, &p, &[], &WEBHOOK_ENV);
    // The delivery's lease (an attempt's timeout and a lease) runs out; another worker sends it.
    eventually("the delivery, again", Duration::from_secs(30), || async {
        (rx.seen().len() >= 2).then_some(())
    })
    .await;
    let v = eventually("delivered", Duration::from_secs(10), || async {
        let v = deliveries(&b, &id).await.pop()?;
        (v.state == "delivered").then_some(v)
    })
    .await;
    let got = rx.seen();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].header("webhook-id"), got[1].header("webhook-id"));
    assert_eq!(got[0].body, got[1].body);
    // The killed worker's attempt left no record; the one that went through did.
    assert_eq!(v.attempts.len(), 1);
    assert_eq!(v.attempts[0].status, Some(200));
    assert_eq!(b.status_of(&id).await.unwrap(), TaskStatus::Completed);
}

#[tokio::test]
async fn a_batch_finished_by_three_workers_at_once_is_announced_once() {
    let rx = Receiver::start(vec![]).await;
    let url = testing::shared_redis().url();
    let b = broker(&url);
    let p = b.keys().prefix().to_string();
    let created = b
        .enqueue_batch(
            NewBatch {
                tasks: (0..60)
                    .map(|_| NewTask::new("test", json!({"op": "sleep", "ms": 300})))
                    .collect(),
                account_id: "acme".into(),
                user_id: "ann".into(),
                webhook_url: Some(rx.url("127.0.0.1")),
            },
            now(&b).await,
        )
        .await
        .unwrap();
    // Three workers of 20 slots each: the 60 tasks end within moments of each other.
    let _w: Vec<Worker> = (0..3)
        .map(|_| Worker::start(&url, &p, &["--concurrency", "20"], &WEBHOOK_ENV))
        .collect();
    let batch = eventually("the batch finished", Duration::from_secs(60), || async {
        let batch = b.batch(&created.batch_id).await.unwrap()?;
        batch.finished_at.is_some().then_some(batch)
    })
    .await;
    let hook = eventually("its webhook delivered", Duration::from_secs(20), || async {
        let h = b.batch_webhook(&batch).await.unwrap()?;
        (h.state == "delivered").then_some(h)
    })
    .await;
    // Every note carried: nothing left in the delivery queue (the workers poll twice a second).
    let shards = b.shards("test").unwrap();
    eventually("every note carried", Duration::from_secs(10), || async {
        let far = now(&b).await + 3_600_000;
        b.hooks_due(&shards, far)
            .await
            .unwrap()
            .is_empty()
            .then_some(())
    })
    .await;
    let finished: Vec<Value> = rx
        .seen()
        .iter()
        .map(Seen::json)
        .filter(|v| v["event"] == "batch.finished")
        .collect();
    assert_eq!(finished.len(), 1, "{finished:?}");
    assert_eq!(finished[0]["batch_id"], created.batch_id.as_str());
    assert_eq!(finished[0]["completed"], 60);
    assert_eq!(finished[0]["total"], 60);
    assert_eq!(hook.attempts.len(), 1);
}

#[tokio::test]
async fn a_receiver_that_hangs_delays_no_other_delivery() {
    let slow = Receiver::start(vec![Answer::Hang]).await;
    let fast = Receiver::start(vec![]).await;
    let url = testing::shared_redis().url();
    let b = broker(&url);
    let p = b.keys().prefix().to_string();
    let env = [
        ("TASKFLEET__WEBHOOKS__ALLOW_NETWORKS", "127.0.0.1"),
        ("TASKFLEET__WEBHOOKS__TIMEOUT_SECS", "60"),
    ];
    let _w = Worker::start(&url, &p, &[], &env);
    let mut t = test_task(json!({"op": "echo"}));
    t.webhook_url = Some(slow.url("127.0.0.1"));
    b.enqueue(t, now(&b).await).await.unwrap();
    eventually(
        "the slow receiver reached",
        Duration::from_secs(20),
        || async { (!slow.seen().is_empty()).then_some(()) },
    )
    .await;
    // While that attempt waits out its 60 s, another task's webhook goes through.
    let mut t = test_task(json!({"op": "echo"}));
    t.webhook_url = Some(fast.url("127.0.0.1"));
    let id = b.enqueue(t, now(&b).await).await.unwrap().id;
    eventually(
        "the fast receiver reached",
        Duration::from_secs(20),
        || async { (!fast.seen().is_empty()).then_some(()) },
    )
    .await;
    assert_eq!(fast.seen()[0].header("webhook-id"), format!("{id}.1"));
    assert_eq!(slow.seen().len(), 1, "the hanging attempt is still waiting");
}
