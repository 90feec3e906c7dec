//! The worker's Prometheus metrics: counters per type, the in-flight gauge, and histograms of
//! the wait from enqueue to start and of run time; served as text on `--metrics-listen`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Histogram bucket upper bounds, in seconds.
const BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0, 600.0,
    3600.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.counts[i] += 1;
            }
        }
        self.count += 1;
        self.sum += secs;
    }
}

fn observe(hists: &Mutex<BTreeMap<String, Histogram>>, task_type: &str, secs: f64) {
    let mut m = hists.lock().expect("metrics lock");
    match m.get_mut(task_type) {
        Some(h) => h.observe(secs),
        None => {
            let mut h = Histogram::default();
            h.observe(secs);
            m.insert(task_type.to_string(), h);
        }
    }
}

/// How many kinds of [`Event`] there are.
const EVENTS: usize = 6;

/// The events the worker counts, per task type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Event {
    Claimed,
    Completed,
    Failed,
    Retried,
    Recovered,
    Cancelled,
}

impl Event {
    const ALL: [Event; EVENTS] = [
        Event::Claimed,
        Event::Completed,
        Event::Failed,
        Event::Retried,
        Event::Recovered,
        Event::Cancelled,
    ];

    fn name(self) -> &'static str {
        match self {
            Event::Claimed => "taskfleet_worker_claimed_total",
            Event::Completed => "taskfleet_worker_completed_total",
            Event::Failed => "taskfleet_worker_failed_total",
            Event::Retried => "taskfleet_worker_retried_total",
            Event::Recovered => "taskfleet_worker_recovered_total",
            Event::Cancelled => "taskfleet_worker_cancelled_total",
        }
    }
}

/// All of one worker's metrics. Mutexes, not locks held across awaits: each update is a few
/// instructions.
#[derive(Default)]
pub struct Metrics {
    /// Per task type, one count per [`Event`].
    counters: Mutex<BTreeMap<String, [u64; EVENTS]>>,
    wait: Mutex<BTreeMap<String, Histogram>>,
    run: Mutex<BTreeMap<String, Histogram>>,
    in_flight: AtomicI64,
    redis_errors: AtomicU64,
}

impl Metrics {
    pub fn count(&self, e: Event, task_type: &str, n: u64) {
        let mut m = self.counters.lock().expect("metrics lock");
        // Look up by &str first: no String allocated per count on the hot path.
        match m.get_mut(task_type) {
            Some(row) => row[e as usize] += n,
            None => {
                let mut row = [0; EVENTS];
                row[e as usize] = n;
                m.insert(task_type.to_string(), row);
            }
        }
    }

    pub fn get(&self, e: Event, task_type: &str) -> u64 {
        self.counters
            .lock()
            .expect("metrics lock")
            .get(task_type)
            .map(|row| row[e as usize])
            .unwrap_or(0)
    }

    pub fn observe_wait(&self, task_type: &str, secs: f64) {
        observe(&self.wait, task_type, secs);
    }

    pub fn observe_run(&self, task_type: &str, secs: f64) {
        observe(&self.run, task_type, secs);
    }

    pub fn set_in_flight(&self, n: usize) {
        self.in_flight.store(n as i64, Ordering::Relaxed);
    }

    pub fn redis_error(&self) {
        self.redis_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let counters = self.counters.lock().expect("metrics lock");
        for e in Event::ALL {
            let _ = writeln!(out, "# TYPE {} counter", e.name());
            for (t, row) in counters.iter() {
                let _ = writeln!(out, "{}{{task_type=\"{t}\"}} {}", e.name(), row[e as usize]);
            }
        }
        drop(counters);
        let _ = writeln!(out, "# TYPE taskfleet_worker_in_flight gauge");
        let _ = writeln!(
            out,
            "taskfleet_worker_in_flight {}",
            self.in_flight.load(Ordering::Relaxed)
        );
        let _ = writeln!(out, "# TYPE taskfleet_worker_redis_errors_total counter");
        let _ = writeln!(
            out,
            "taskfleet_worker_redis_errors_total {}",
            self.redis_errors.load(Ordering::Relaxed)
        );
        for (name, hists) in [
            ("taskfleet_worker_wait_seconds", &self.wait),
            ("taskfleet_worker_run_seconds", &self.run),
        ] {
            let _ = writeln!(out, "# TYPE {name} histogram");
            for (t, h) in hists.lock().expect("metrics lock").iter() {
                for (i, b) in BUCKETS.iter().enumerate() {
                    let _ = writeln!(
                        out,
                        "{name}_bucket{{task_type=\"{t}\",le=\"{b}\"}} {}",
                        h.counts[i]
                    );
                }
                let _ = writeln!(
                    out,
                    "{name}_bucket{{task_type=\"{t}\",le=\"+Inf\"}} {}",
                    h.count
                );
                let _ = writeln!(out, "{name}_sum{{task_type=\"{t}\"}} {}", h.sum);
                let _ = writeln!(out, "{name}_count{{task_type=\"{t}\"}} {}", h.count);
            }
        }
        out
    }
}

/// Serves `GET /metrics` (any path) on `listener` until `stop` fires. A minimal HTTP/1.1
/// responder: one request per connection, enough for Prometheus and curl.
pub async fn serve(
    listener: TcpListener,
    metrics: std::sync::Arc<Metrics>,
    stop: CancellationToken,
) {
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
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = sock.write_all(head.as_bytes()).await;
            let _ = sock.write_all(body.as_bytes()).await;
            let _ = sock.shutdown().await;
        });
    }
}
