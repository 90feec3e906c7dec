//! The goals of the benchmark issues (issue 11's targets, issue 10's cluster goals), checked
//! against the ceilings (and the single server) of the same run: every throughput goal is a
//! ratio to a figure measured beside it, never a hard-coded rate.

use super::cluster::cluster_facts;
use super::{Case, Measurements};

/// Enqueue, one task a call, with as many calls in flight as the ceiling has clients (50):
/// at least this multiple of the EVALSHA ceiling.
pub const GOAL_ENQUEUE_RATIO: f64 = 1.0;
/// Enqueue one call at a time: at least this multiple of EVALSHA from one client (`-c 1`).
pub const GOAL_ONE_AT_A_TIME_RATIO: f64 = 0.8;
/// Batched enqueue (`enqueue_many`): at least this multiple of the EVALSHA ceiling.
pub const GOAL_BATCHED_RATIO: f64 = 1.3;
/// A drain with 4 consumers (claim + complete) must reach this multiple of it.
pub const GOAL_DRAIN_RATIO: f64 = 0.5;
/// Bytes of Redis memory one small queued task may take.
pub const GOAL_BYTES_PER_TASK: f64 = 1024.0;
/// One worker process draining no-op tasks must reach this multiple of the EVALSHA ceiling.
pub const GOAL_WORKER_DRAIN_RATIO: f64 = 0.6;
/// Enqueue → processor start at the latency case's rate: p50 and p99 under these, in µs.
pub const GOAL_START_P50_US: i64 = 500;
pub const GOAL_START_P99_US: i64 = 2_000;
/// An idle worker may use less than this share of one core.
pub const GOAL_IDLE_CPU: f64 = 0.01;
/// HTTP enqueue through one API process (the first `--http-connections` run, 50 connections
/// by default): at least this multiple of the EVALSHA ceiling.
pub const GOAL_HTTP_RATIO: f64 = 0.5;

/// A Redis Cluster of one primary (16 shards) reaches at least this multiple of the single
/// server's figure of the same case and run: the cost of cluster mode and shards.
pub const GOAL_CLUSTER_ONE_PRIMARY_RATIO: f64 = 0.8;
/// Each primary of the 3-primary cluster serves within this share of an even third (of the
/// Redis CPU of each case).
pub const GOAL_CLUSTER_SPREAD: f64 = 0.15;
/// Redis CPU per job on more primaries over the figure on one primary, at most (flat: what
/// makes throughput grow with machines).
pub const GOAL_CLUSTER_CPU_GROWTH: f64 = 1.15;
/// Enqueue → processor start p99 on the cluster (issue 10's wake-up test), in µs.
pub const GOAL_CLUSTER_START_P99_US: i64 = 10_000;

/// One goal and whether this run met it.
#[derive(Debug, Clone, PartialEq)]
pub struct Goal {
    pub what: String,
    pub target: String,
    pub measured: String,
    pub met: bool,
    /// The same ratio for the floor run of the same work ([`crate::floor`]), where there is
    /// one: the most any client could reach here while Redis writes the same tasks.
    pub floor: Option<f64>,
    /// The target is above the floor: not reachable on this machine with these writes.
    pub beyond_floor: bool,
}

impl Goal {
    /// `met`, `missed`, or why it was missed when the floor itself is below the target.
    pub fn verdict(&self) -> &'static str {
        match (self.met, self.beyond_floor) {
            (true, _) => "met",
            (false, true) => "missed: the floor is below the target",
            (false, false) => "missed",
        }
    }

    /// The floor as the table shows it (`0.81×`), or empty.
    pub fn floor_text(&self) -> String {
        self.floor.map(|f| format!("{f:.2}×")).unwrap_or_default()
    }
}

/// At least `target` times `of`; `floor` is the same ratio of the floor run, if one ran.
fn at_least(what: String, target: f64, of: &str, measured: f64, floor: Option<f64>) -> Goal {
    Goal {
        what,
        target: format!("≥ {target:.1}× {of}"),
        measured: format!("{measured:.2}×"),
        met: measured >= target,
        floor,
        beyond_floor: floor.is_some_and(|f| f < target),
    }
}

/// The floor runs' ratios: (enqueue batched × EVALSHA, enqueue one call at a time × EVALSHA
/// from 1 client, drain × EVALSHA).
fn floor_ratios(m: &Measurements) -> (Option<f64>, Option<f64>, Option<f64>) {
    let Some(f) = &m.floors else {
        return (None, None, None);
    };
    let one = m.one_client_spread().median.max(1e-9);
    (
        Some(m.ratio(f.enqueue_batched.jobs_per_sec())),
        Some(f.enqueue_one_client.jobs_per_sec() / one),
        Some(m.ratio(f.drain.jobs_per_sec())),
    )
}

/// Microseconds as milliseconds with three decimals (`480` → `0.480`).
pub fn ms_of_us(us: i64) -> String {
    format!("{:.3}", us as f64 / 1e3)
}

/// The goals this run has figures for, in the order of the table.
pub fn goals(m: &Measurements) -> Vec<Goal> {
    let mut goals = Vec::new();
    let (enqueue_floor, one_floor, drain_floor) = floor_ratios(m);
    if let Some(c) = m.case(Case::Enqueue) {
        // One task a call reaches the batched floor at best: coalesced into batches.
        goals.push(at_least(
            format!("enqueue, 1 per call, {} in flight", m.setup.in_flight),
            GOAL_ENQUEUE_RATIO,
            "EVALSHA",
            m.ratio(c.jobs_per_sec.median),
            enqueue_floor,
        ));
    }
    if let Some(c) = m.case(Case::EnqueueOneAtATime) {
        let one = m.one_client_spread().median;
        goals.push(at_least(
            "enqueue, 1 call at a time".into(),
            GOAL_ONE_AT_A_TIME_RATIO,
            "EVALSHA from 1 client",
            c.jobs_per_sec.median / one.max(1e-9),
            one_floor,
        ));
    }
    if let Some(c) = m.case(Case::EnqueueMany) {
        goals.push(at_least(
            "batched enqueue".into(),
            GOAL_BATCHED_RATIO,
            "EVALSHA",
            m.ratio(c.jobs_per_sec.median),
            enqueue_floor,
        ));
    }
    if let Some(c) = m.case(Case::Drain { consumers: 4 }) {
        goals.push(at_least(
            "drain, 4 consumers".into(),
            GOAL_DRAIN_RATIO,
            "EVALSHA",
            m.ratio(c.jobs_per_sec.median),
            drain_floor,
        ));
    }
    let b = m.memory().bytes_per_task();
    goals.push(Goal {
        what: "memory per queued task".into(),
        target: format!("< {GOAL_BYTES_PER_TASK:.0} B"),
        measured: format!("{b:.0} B"),
        met: b < GOAL_BYTES_PER_TASK,
        floor: None,
        beyond_floor: false,
    });
    if let Some(f) = &m.fleet {
        fleet_goals(m, f, &mut goals);
    }
    cluster_goals(m, &mut goals);
    goals
}

fn fleet_goals(m: &Measurements, f: &crate::fleet::FleetReport, goals: &mut Vec<Goal>) {
    let (enqueue_floor, _, drain_floor) = floor_ratios(m);
    goals.push(at_least(
        "worker drain, 1 process".into(),
        GOAL_WORKER_DRAIN_RATIO,
        "EVALSHA",
        m.ratio(f.drain.jobs_per_sec()),
        drain_floor,
    ));
    let l = &f.latency;
    let rate = f.latency_rate;
    goals.push(Goal {
        what: format!("enqueue → start p50 at {rate}/s"),
        target: format!("< {} ms", ms_of_us(GOAL_START_P50_US)),
        measured: format!("{} ms", ms_of_us(l.p50_us)),
        met: l.p50_us < GOAL_START_P50_US,
        floor: None,
        beyond_floor: false,
    });
    goals.push(Goal {
        what: format!("enqueue → start p99 at {rate}/s"),
        target: format!("< {} ms", ms_of_us(GOAL_START_P99_US)),
        measured: format!("{} ms", ms_of_us(l.p99_us)),
        met: l.p99_us < GOAL_START_P99_US,
        floor: None,
        beyond_floor: false,
    });
    goals.push(Goal {
        what: "idle worker CPU".into(),
        target: format!("< {:.0}% of a core", GOAL_IDLE_CPU * 100.0),
        measured: format!("{:.3}%", f.idle_cpu * 100.0),
        met: f.idle_cpu < GOAL_IDLE_CPU,
        floor: None,
        beyond_floor: false,
    });
    if let Some(h) = f.http.first() {
        goals.push(at_least(
            format!("HTTP enqueue, 1 API process, {} connections", h.connections),
            GOAL_HTTP_RATIO,
            "EVALSHA",
            m.ratio(h.sample.jobs_per_sec()),
            enqueue_floor,
        ));
    }
}

/// Issue 10's goals: cluster overhead small, load even, CPU per job flat; wake-ups and idle
/// CPU on the cluster; a single shard's order exact.
fn cluster_goals(m: &Measurements, goals: &mut Vec<Goal>) {
    if let Some(one) = m.ordering.iter().find(|o| o.shards == 1) {
        goals.push(Goal {
            what: "ordering, 1 shard: claims out of (band, time) order".into(),
            target: "0".into(),
            measured: one.error.out_of_order.to_string(),
            met: one.error.out_of_order == 0,
            floor: None,
            beyond_floor: false,
        });
    }
    let Some(c) = &m.cluster else {
        return;
    };
    let facts = cluster_facts(m, c);
    for r in facts.rows.iter().filter(|r| r.primaries == 1) {
        if let Some(x) = r.x_single {
            goals.push(at_least(
                format!("cluster of 1 primary: {}", r.name),
                GOAL_CLUSTER_ONE_PRIMARY_RATIO,
                "single server",
                x,
                None,
            ));
        }
    }
    let largest = facts.largest();
    if let Some((worst, n)) = largest
        .iter()
        .filter(|r| r.primaries > 1)
        .map(|r| (r.cpu_deviation, r.primaries))
        .max_by(|a, b| a.0.total_cmp(&b.0))
    {
        goals.push(Goal {
            what: format!("load spread over {n} primaries (Redis CPU, worst case)"),
            target: format!("each within ±{:.0}% of 1/{n}", GOAL_CLUSTER_SPREAD * 100.0),
            measured: format!("±{:.1}%", worst * 100.0),
            met: worst <= GOAL_CLUSTER_SPREAD,
            floor: None,
            beyond_floor: false,
        });
    }
    if let Some((growth, _)) = facts.cpu_growth() {
        goals.push(Goal {
            what: "Redis CPU per job, more primaries over 1 (worst case)".into(),
            target: format!("≤ {GOAL_CLUSTER_CPU_GROWTH:.2}×"),
            measured: format!("{growth:.2}×"),
            met: growth <= GOAL_CLUSTER_CPU_GROWTH,
            floor: None,
            beyond_floor: false,
        });
    }
    if let Some(w) = &facts.wake {
        goals.push(Goal {
            what: format!("cluster of {}: enqueue → start p99", w.primaries),
            target: format!("< {} ms", ms_of_us(GOAL_CLUSTER_START_P99_US)),
            measured: format!("{} ms", ms_of_us(w.latency.p99_us)),
            met: w.latency.p99_us < GOAL_CLUSTER_START_P99_US,
            floor: None,
            beyond_floor: false,
        });
        goals.push(Goal {
            what: format!("cluster of {}: idle worker CPU", w.primaries),
            target: format!("< {:.0}% of a core", GOAL_IDLE_CPU * 100.0),
            measured: format!("{:.3}%", w.idle_cpu * 100.0),
            met: w.idle_cpu < GOAL_IDLE_CPU,
            floor: None,
            beyond_floor: false,
        });
    }
}
