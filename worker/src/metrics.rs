//! The worker's Prometheus metrics: counters per type, the in-flight gauge, and histograms of
//! the wait from enqueue to start and of run time; served as text on `--metrics-listen`.
//! Kept and encoded by the `prometheus-client` crate; this file only names the series and
//! caches each type's handles, so counting a task costs no allocation.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Histogram bucket upper bounds, in seconds: sub-millisecond starts up to hour-long runs.
const BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0, 600.0,
    3600.0,
];

/// How many kinds of [`Event`] there are.
const EVENTS: usize = 9;

/// The events the worker counts, per task type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Event {
    Claimed,
    Completed,
    Failed,
    Retried,
    Recovered,
    Cancelled,
    /// A webhook delivery accepted (2xx) by its receiver.
    WebhookDelivered,
    /// A webhook attempt that failed (it is retried on the schedule).
    WebhookRetried,
    /// A webhook delivery given up after its last attempt.
    WebhookGivenUp,
}

impl Event {
    const ALL: [Event; EVENTS] = [
        Event::Claimed,
        Event::Completed,
        Event::Failed,
        Event::Retried,
        Event::Recovered,
        Event::Cancelled,
        Event::WebhookDelivered,
        Event::WebhookRetried,
        Event::WebhookGivenUp,
    ];

    /// The series name, without `taskfleet_worker_` and `_total` (the encoder adds them).
    fn name(self) -> &'static str {
        match self {
            Event::Claimed => "claimed",
            Event::Completed => "completed",
            Event::Failed => "failed",
            Event::Retried => "retried",
            Event::Recovered => "recovered",
            Event::Cancelled => "cancelled",
            Event::WebhookDelivered => "webhooks_delivered",
            Event::WebhookRetried => "webhook_attempts_failed",
            Event::WebhookGivenUp => "webhooks_given_up",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabel {
    task_type: String,
}

/// One type's handles into the families (each a cheap shared clone of the series).
struct TypeSeries {
    events: [Counter; EVENTS],
    wait: Histogram,
    run: Histogram,
}

/// All of one worker's metrics.
pub struct Metrics {
    registry: Registry,
    events: [Family<TypeLabel, Counter>; EVENTS],
    wait: Family<TypeLabel, Histogram>,
    run: Family<TypeLabel, Histogram>,
    in_flight: Gauge,
    redis_errors: Counter<u64, AtomicU64>,
    // A std mutex: held for one map lookup, never across an await.
    by_type: Mutex<HashMap<String, TypeSeries>>,
}

fn histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("taskfleet_worker");
        let events: [Family<TypeLabel, Counter>; EVENTS] = Default::default();
        for (e, family) in Event::ALL.iter().zip(&events) {
            registry.register(
                e.name(),
                format!("Tasks {} by this worker", e.name()),
                family.clone(),
            );
        }
        let wait =
            Family::<TypeLabel, Histogram>::new_with_constructor(histogram as fn() -> Histogram);
        let run =
            Family::<TypeLabel, Histogram>::new_with_constructor(histogram as fn() -> Histogram);
        registry.register(
            "wait_seconds",
            "From enqueue to the processor's start",
            wait.clone(),
        );
        registry.register("run_seconds", "How long processors ran", run.clone());
        let in_flight = Gauge::default();
        registry.register(
            "in_flight",
            "Tasks claimed and not yet acknowledged",
            in_flight.clone(),
        );
        let redis_errors = Counter::default();
        registry.register(
            "redis_errors",
            "Redis calls that failed",
            redis_errors.clone(),
        );
        Metrics {
            registry,
            events,
            wait,
            run,
            in_flight,
            redis_errors,
            by_type: Mutex::new(HashMap::new()),
        }
    }
}

impl Metrics {
    /// `f` on one type's series (made on first use), under the map's lock: no handle is
    /// cloned per count (a clone of the 11 handles and their drop were 4% of a busy worker's
    /// CPU).
    fn with_series<R>(&self, task_type: &str, f: impl FnOnce(&TypeSeries) -> R) -> R {
        let mut map = self.by_type.lock().expect("metrics lock");
        // Looked up by &str first: no String allocated per count on the hot path.
        if let Some(s) = map.get(task_type) {
            return f(s);
        }
        let label = TypeLabel {
            task_type: task_type.to_string(),
        };
        let s = TypeSeries {
            events: std::array::from_fn(|i| self.events[i].get_or_create(&label).clone()),
            wait: self.wait.get_or_create(&label).clone(),
            run: self.run.get_or_create(&label).clone(),
        };
        f(map.entry(task_type.to_string()).or_insert(s))
    }

    pub fn count(&self, e: Event, task_type: &str, n: u64) {
        self.with_series(task_type, |s| s.events[e as usize].inc_by(n));
    }

    pub fn get(&self, e: Event, task_type: &str) -> u64 {
        self.with_series(task_type, |s| s.events[e as usize].get())
    }

    pub fn observe_wait(&self, task_type: &str, secs: f64) {
        self.with_series(task_type, |s| s.wait.observe(secs));
    }

    pub fn observe_run(&self, task_type: &str, secs: f64) {
        self.with_series(task_type, |s| s.run.observe(secs));
    }

    pub fn set_in_flight(&self, n: usize) {
        self.in_flight.set(n as i64);
    }

    pub fn redis_error(&self) {
        self.redis_errors.inc();
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String");
        out
    }
}

/// Serves `GET /metrics` (any path) on `listener` until `stop` fires. A minimal HTTP/1.1
/// responder: one request per connection, enough for Prometheus and curl.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, stop: CancellationToken) {
    loop {
        let conn = tokio::select! {
            _ = stop.cancelled() => return,
            c = listener.accept() => c,
        };
        let Ok((mut sock, _)) = conn else { continue };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let _ =
                tokio::time::timeout(std::time::Duration::from_secs(2), sock.read(&mut buf)).await;
            let body = metrics.render();
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = sock.write_all(head.as_bytes()).await;
            let _ = sock.write_all(body.as_bytes()).await;
            let _ = sock.shutdown().await;
        });
    }
}
