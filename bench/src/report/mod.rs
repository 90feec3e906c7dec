//! The results of a run, in three steps: what was measured ([`Measurements`], filled in by
//! `core` and `fleet`), the report built from it once ([`Report`]: one [`Row`] per case of the
//! table, the goals, the figures the prose quotes), and two renderers that only format a
//! [`Report`]: [`text`] for the terminal and [`markdown`] for the README's `## Benchmarks`.
//!
//! Nothing here reads a command-line type: the run's shape arrives as plain values
//! ([`Setup`]).
//!
//! - [`measured`]: what a run measured, and reads over its rounds (medians).
//! - [`goals`]: issue 11's targets, checked against the same run's ceilings, and issue 10's
//!   cluster goals, against the same run's single server.
//! - [`cluster`]: the cluster step's and the ordering runs' figures.
//! - [`text`], [`markdown`]: the renderers (and the README section's helpers).

pub mod cluster;
pub mod goals;
pub mod markdown;
pub mod measured;
pub mod text;

use crate::fleet::{FleetReport, StartLatency};
use crate::machine::Machine;
use crate::sample::{Latency, Sample, Spread};

pub use goals::Goal;
pub use markdown::{markdown, replace_section, wrap_prose};
pub use measured::{Case, CaseRounds, Floors, Measurements, Memory, Round, ScriptRun, Setup};
pub use text::text;

/// How far apart (max − min over the median) the rounds' ceilings may be before a run counts
/// as disturbed.
pub const DISTURBED_SPREAD: f64 = 0.15;
/// How many cores other processes may use on average before a run counts as disturbed.
pub const DISTURBED_OTHER_LOAD: f64 = 0.25;

/// What Redis spent on one command during a case.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandCost {
    pub name: String,
    pub us_per_job: f64,
    pub us_per_call: f64,
}

/// One case of the table, every column computed: the renderers only format it.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub name: String,
    /// jobs/s over the rounds (a single figure for a case run once).
    pub jobs_per_sec: Spread,
    /// The median jobs/s over the median 50-client EVALSHA ceiling.
    pub x_evalsha: f64,
    /// Latency per call (p50, p99, max) of the median round; `None` for a case without calls
    /// of its own (the worker drain, redis-benchmark runs).
    pub per_call: Option<Latency>,
    /// Redis CPU µs per job (per op for a ceiling).
    pub redis_us_per_job: f64,
    /// The share of one core redis-server used during the case.
    pub redis_busy: f64,
    /// The ceiling's Redis CPU per op over this case's per job.
    pub x_by_redis_cpu: f64,
    /// This process's CPU µs per job, where this process was the client.
    pub client_us_per_job: Option<f64>,
    pub notes: String,
    /// `INFO commandstats` of the median round, most time first; empty where not measured.
    pub commands: Vec<CommandCost>,
}

/// A round's figures, for the terminal.
#[derive(Debug, Clone, PartialEq)]
pub struct RoundLine {
    pub evalsha: f64,
    pub evalsha_one_client: f64,
    pub set: f64,
    pub cases: Vec<f64>,
}

/// The worker and HTTP figures the prose quotes, computed.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetFacts {
    pub worker_concurrency: usize,
    pub drain_tasks: usize,
    pub drain_secs: f64,
    pub drain_startup_ms: f64,
    pub drain_worker_us_per_task: f64,
    pub latency: StartLatency,
    pub latency_workers: usize,
    pub latency_secs: u64,
    pub idle_cpu: f64,
    pub idle_secs: u64,
    pub http: Vec<HttpFacts>,
}

/// One HTTP enqueue run.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpFacts {
    pub connections: usize,
    pub requests: usize,
    pub jobs_per_sec: f64,
    pub x_evalsha: f64,
    /// Over the library's enqueue, one task a call (its median).
    pub x_library: f64,
    pub api_us_per_request: f64,
}

/// The report: built once from [`Measurements`], read by both renderers.
#[derive(Debug, Clone)]
pub struct Report {
    pub setup: Setup,
    pub machine: Machine,
    pub date: String,
    pub load_before: String,
    pub load_after: String,
    pub other_load: f64,
    pub disturbed: bool,
    pub rounds: usize,
    pub ceiling: Spread,
    pub ceiling_one_client: Spread,
    pub set: Spread,
    pub ceiling_command: String,
    pub ceiling_one_client_command: String,
    pub round_lines: Vec<RoundLine>,
    /// The library cases, the worker and HTTP cases, the redis-benchmark script runs, then
    /// the two ceilings.
    pub rows: Vec<Row>,
    /// Median of the rounds.
    pub memory: Memory,
    /// The library's enqueue one task a call, median jobs/s.
    pub library_enqueue: f64,
    pub fleet: Option<FleetFacts>,
    /// The cluster step, next to the single server (`None` when it did not run).
    pub cluster: Option<cluster::ClusterFacts>,
    /// The ordering error across shards, one line per shard count.
    pub ordering: Vec<cluster::OrderingFacts>,
    /// The floor runs as ratios (`None` when they did not run).
    pub floors: Option<FloorFacts>,
    pub goals: Vec<Goal>,
}

/// The floor runs ([`crate::floor`]) as the prose quotes them.
#[derive(Debug, Clone, PartialEq)]
pub struct FloorFacts {
    /// Tasks a call of the batched floor and the claim size of the drain floor.
    pub batch: usize,
    pub claim_batch: usize,
    /// × the EVALSHA ceiling: the batched enqueue floor, HSET alone pipelined, the drain floor.
    pub enqueue_x: f64,
    pub hset_x: f64,
    pub drain_x: f64,
    /// × EVALSHA from one client: the one-task-a-call floor from one client.
    pub one_client_x: f64,
    /// Redis CPU µs per task of each, and per op of the ceiling.
    pub enqueue_us: f64,
    pub hset_us: f64,
    pub drain_us: f64,
    pub ceiling_us: f64,
}

fn floor_facts(m: &Measurements) -> Option<FloorFacts> {
    let f = m.floors.as_ref()?;
    Some(FloorFacts {
        batch: f.enqueue_batched.tasks_per_call,
        claim_batch: f.drain.tasks_per_call,
        enqueue_x: m.ratio(f.enqueue_batched.jobs_per_sec()),
        hset_x: m.ratio(f.hset_pipelined.jobs_per_sec()),
        drain_x: m.ratio(f.drain.jobs_per_sec()),
        one_client_x: f.enqueue_one_client.jobs_per_sec() / m.one_client_spread().median.max(1e-9),
        enqueue_us: f.enqueue_batched.server_us_per_job,
        hset_us: f.hset_pipelined.server_us_per_job,
        drain_us: f.drain.server_us_per_job,
        ceiling_us: m.ceiling_us_per_op(),
    })
}

impl Report {
    pub fn new(m: &Measurements) -> Report {
        Report {
            setup: m.setup.clone(),
            machine: m.machine.clone(),
            date: m.date.clone(),
            load_before: m.load_before.clone(),
            load_after: m.load_after.clone(),
            other_load: m.other_load,
            disturbed: m.disturbed(),
            rounds: m.rounds.len(),
            ceiling: m.ceiling_spread(),
            ceiling_one_client: m.one_client_spread(),
            set: m.set_spread(),
            ceiling_command: m.ceiling_command.clone(),
            ceiling_one_client_command: m.ceiling_one_client_command.clone(),
            round_lines: m
                .rounds
                .iter()
                .map(|r| RoundLine {
                    evalsha: r.ceiling.evalsha.ops_per_sec,
                    evalsha_one_client: r.ceiling.evalsha_one_client.ops_per_sec,
                    set: r.ceiling.set.ops_per_sec,
                    cases: r.samples.iter().map(|(_, s)| s.jobs_per_sec()).collect(),
                })
                .collect(),
            rows: rows(m),
            memory: m.memory(),
            library_enqueue: m.library_enqueue(),
            fleet: m.fleet.as_ref().map(|f| fleet_facts(m, f)),
            cluster: m.cluster.as_ref().map(|c| cluster::cluster_facts(m, c)),
            ordering: cluster::ordering_facts(&m.ordering),
            floors: floor_facts(m),
            goals: goals::goals(m),
        }
    }

    /// The row of a case by its name.
    pub fn row(&self, name: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.name == name)
    }
}

/// A row from a measured sample: `spread` over the rounds, the other columns from `s`.
fn sample_row(m: &Measurements, s: &Sample, spread: Spread, notes: String) -> Row {
    let jobs = s.jobs.max(1) as f64;
    Row {
        name: s.name.clone(),
        jobs_per_sec: spread,
        x_evalsha: m.ratio(spread.median),
        per_call: (s.latency.calls > 0).then_some(s.latency),
        redis_us_per_job: s.server_us_per_job(),
        redis_busy: s.server_busy(),
        x_by_redis_cpu: m.cpu_bound(s.server_us_per_job()),
        client_us_per_job: Some(s.client_us_per_job()),
        notes,
        commands: s
            .commands
            .iter()
            .map(|c| CommandCost {
                name: c.name.clone(),
                us_per_job: c.usec as f64 / jobs,
                us_per_call: c.usec as f64 / c.calls.max(1) as f64,
            })
            .collect(),
    }
}

/// A row of a redis-benchmark run: no calls, no client of ours, no commandstats.
fn benchmark_row(m: &Measurements, name: String, jobs: Spread, us: f64, notes: String) -> Row {
    Row {
        name,
        jobs_per_sec: jobs,
        x_evalsha: m.ratio(jobs.median),
        per_call: None,
        redis_us_per_job: us,
        redis_busy: jobs.median * us / 1e6,
        x_by_redis_cpu: m.cpu_bound(us),
        client_us_per_job: None,
        notes,
        commands: Vec::new(),
    }
}

fn rows(m: &Measurements) -> Vec<Row> {
    let one_client = m.one_client_spread();
    let mut rows: Vec<Row> = m
        .cases()
        .into_iter()
        .filter_map(|case| {
            let c = m.case(case)?;
            let notes = match case {
                Case::EnqueueOneAtATime => format!(
                    "{:.2}× EVALSHA from 1 client",
                    c.jobs_per_sec.median / one_client.median.max(1e-9)
                ),
                _ => String::new(),
            };
            Some(sample_row(m, c.sample, c.jobs_per_sec, notes))
        })
        .collect();
    if let Some(f) = &m.fleet {
        let once = |s: &Sample| Spread::of(&[s.jobs_per_sec()]);
        rows.push(sample_row(m, &f.drain, once(&f.drain), String::new()));
        for h in &f.http {
            let notes = format!("{:.2}× library enqueue, 1 per call", x_library(m, h));
            rows.push(sample_row(m, &h.sample, once(&h.sample), notes));
        }
    }
    for s in &m.script_runs {
        let jobs = Spread::of(&[s.jobs_per_sec()]);
        rows.push(benchmark_row(
            m,
            s.name.clone(),
            jobs,
            s.server_us_per_job,
            String::new(),
        ));
    }
    if let Some(f) = &m.floors {
        for s in f.rows() {
            let jobs = Spread::of(&[s.jobs_per_sec()]);
            let notes = if std::ptr::eq(s, &f.enqueue_one_client) {
                format!(
                    "{:.2}× EVALSHA from 1 client",
                    s.jobs_per_sec() / one_client.median.max(1e-9)
                )
            } else {
                String::new()
            };
            rows.push(benchmark_row(
                m,
                s.name.clone(),
                jobs,
                s.server_us_per_job,
                notes,
            ));
        }
    }
    rows.push(benchmark_row(
        m,
        format!(
            "ceiling: `EVALSHA` of `return 1`, redis-benchmark, {} clients",
            m.setup.ceiling_clients
        ),
        m.ceiling_spread(),
        m.ceiling_us_per_op(),
        "Redis CPU per op".into(),
    ));
    rows.push(benchmark_row(
        m,
        "ceiling: `EVALSHA` of `return 1`, redis-benchmark, 1 client".into(),
        one_client,
        m.one_client_us_per_op(),
        "Redis CPU per op; the ceiling of 1 call at a time".into(),
    ));
    rows
}

fn x_library(m: &Measurements, h: &crate::fleet::HttpRun) -> f64 {
    h.sample.jobs_per_sec() / m.library_enqueue().max(1e-9)
}

fn fleet_facts(m: &Measurements, f: &FleetReport) -> FleetFacts {
    FleetFacts {
        worker_concurrency: f.worker_concurrency,
        drain_tasks: f.drain.jobs,
        drain_secs: f.drain.elapsed.as_secs_f64(),
        drain_startup_ms: f.drain_startup.as_secs_f64() * 1e3,
        drain_worker_us_per_task: f.drain_worker_cpu * 1e6 / f.drain.jobs.max(1) as f64,
        latency: f.latency,
        latency_workers: f.latency_workers,
        latency_secs: f.latency_secs,
        idle_cpu: f.idle_cpu,
        idle_secs: f.idle_secs,
        http: f
            .http
            .iter()
            .map(|h| HttpFacts {
                connections: h.connections,
                requests: h.sample.jobs,
                jobs_per_sec: h.sample.jobs_per_sec(),
                x_evalsha: m.ratio(h.sample.jobs_per_sec()),
                x_library: x_library(m, h),
                api_us_per_request: h.api_cpu * 1e6 / h.sample.jobs.max(1) as f64,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::text::{plus_minus, range};
    use super::*;
    use crate::ceiling::{Ceiling, Ceilings};
    use crate::cluster::{
        ClusterCase, ClusterReport, ClusterRun, ClusterSample, DrainMode, PrimaryLoad,
    };
    use crate::ordering::{OrderingError, OrderingRun};

    /// The library cases of the fixture's rounds, in order.
    const CASES: [Case; 4] = [
        Case::Enqueue,
        Case::EnqueueMany,
        Case::Drain { consumers: 1 },
        Case::Drain { consumers: 4 },
    ];

    fn sample(name: &str, jobs_per_sec: f64, server_cpu: f64) -> Sample {
        Sample {
            name: name.into(),
            jobs: 100_000,
            elapsed: Duration::from_secs_f64(100_000.0 / jobs_per_sec),
            latency: Latency::default(),
            server_cpu,
            client_cpu: 0.0,
            commands: Vec::new(),
        }
    }

    fn ceiling(ops: f64, us: f64) -> Ceiling {
        Ceiling {
            test: "X".into(),
            ops_per_sec: ops,
            p50_ms: None,
            server_us_per_op: us,
        }
    }

    /// Rounds of (EVALSHA ceiling, its µs per op, [enqueue, enqueue_many, drain 1, drain 4]
    /// jobs/s), with the Redis CPU of each case set to the round's number (1, 2, 3…).
    fn report(rounds: &[(f64, f64, [f64; 4])], bytes: &[u64]) -> Measurements {
        Measurements {
            setup: Setup {
                command: "taskfleet-bench core".into(),
                tasks: 100_000,
                accounts: 100,
                consumers: vec![1, 4],
                ceiling_clients: 50,
                in_flight: 50,
            },
            other_load: 0.0,
            ceiling_command: String::new(),
            ceiling_one_client_command: String::new(),
            machine: Machine {
                cores: 2,
                cpu_model: "test".into(),
                redis_version: "7".into(),
            },
            date: String::new(),
            load_before: String::new(),
            load_after: String::new(),
            rounds: rounds
                .iter()
                .zip(bytes)
                .enumerate()
                .map(|(i, ((ops, us, cases), &b))| Round {
                    ceiling: Ceilings {
                        set: ceiling(90_000.0, 5.0),
                        evalsha: ceiling(*ops, *us),
                        evalsha_one_client: ceiling(20_000.0, 12.0),
                    },
                    samples: CASES
                        .iter()
                        .zip(cases)
                        .enumerate()
                        .map(|(k, (&c, &j))| (c, sample(&format!("case {k}"), j, (i + 1) as f64)))
                        .collect(),
                    memory: Memory {
                        tasks: 100_000,
                        one_by_one: b,
                        batched: b,
                    },
                })
                .collect(),
            script_runs: Vec::new(),
            floors: None,
            fleet: None,
            ordering: Vec::new(),
            cluster: None,
        }
    }

    fn three_rounds() -> Measurements {
        report(
            &[
                (90_000.0, 8.0, [30_000.0, 93_000.0, 38_000.0, 50_000.0]),
                (100_000.0, 9.0, [33_000.0, 104_000.0, 40_000.0, 60_000.0]),
                (80_000.0, 7.0, [36_000.0, 97_000.0, 39_000.0, 55_000.0]),
            ],
            &[70_000_000, 60_000_000, 80_000_000],
        )
    }

    #[test]
    fn ratios_are_median_case_over_median_ceiling() {
        let r = three_rounds();
        assert_eq!(r.evalsha(), 90_000.0);
        let c = r.ceiling_spread();
        assert_eq!((c.min, c.max), (80_000.0, 100_000.0));
        let batched = r.case(Case::EnqueueMany).unwrap().jobs_per_sec;
        // (Durations are whole ns: the jobs/s come back within a hundredth.)
        assert!((batched.median - 97_000.0).abs() < 0.01);
        assert!((batched.min - 93_000.0).abs() < 0.01);
        assert!((batched.max - 104_000.0).abs() < 0.01);
        // Not the round-by-round ratios (1.03, 1.04, 1.21), whose median would be 1.04.
        assert!((r.ratio(batched.median) - 97.0 / 90.0).abs() < 1e-6);
        assert_eq!(r.cases(), CASES.to_vec());
        assert!(r.case(Case::EnqueueOneAtATime).is_none());
    }

    fn script(name: &str, per_call: usize, ops: f64, us: f64) -> ScriptRun {
        ScriptRun {
            name: name.into(),
            tasks_per_call: per_call,
            ops_per_sec: ops,
            server_us_per_job: us,
        }
    }

    #[test]
    fn a_goal_beyond_the_floor_says_so() {
        let mut r = three_rounds();
        r.floors = Some(Floors {
            // 720 calls of 100: 72 000 tasks/s = 0.80× the median ceiling of 90 000.
            enqueue_batched: script("floor: enqueue", 100, 720.0, 11.0),
            // 10 000/s over 20 000/s from one client.
            enqueue_one_client: script("floor: one", 1, 10_000.0, 30.0),
            hset_pipelined: script("floor: hset", 1, 108_000.0, 6.0),
            // 1 500 calls of 32: 48 000/s = 0.53×.
            drain: script("floor: drain", 32, 1_500.0, 14.0),
        });
        let goals = goals::goals(&r);
        let g = |w: &str| goals.iter().find(|g| g.what == w).unwrap().clone();
        let batched = g("batched enqueue");
        assert_eq!(batched.floor_text(), "0.80×");
        assert_eq!(batched.verdict(), "missed: the floor is below the target");
        assert_eq!(g("enqueue, 1 per call, 50 in flight").floor_text(), "0.80×");
        // The drain goal (0.5×) is under its floor (0.53×) and met: met, whatever the floor.
        let drain = g("drain, 4 consumers");
        assert_eq!(
            (drain.floor_text().as_str(), drain.verdict()),
            ("0.53×", "met")
        );
        // A goal with no floor run has none.
        assert_eq!(g("memory per queued task").floor_text(), "");
        let report = Report::new(&r);
        let md = markdown::markdown(&report);
        assert!(md.contains("| batched enqueue | ≥ 1.3× EVALSHA | 1.08× | 0.80× | missed: the floor is below the target |"), "{md}");
        assert!(md.contains("| floor: drain | 48000 |"), "{md}");
        let prose = md.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(prose.contains("reaches 0.80× EVALSHA"), "{md}");
    }

    #[test]
    fn goals_use_the_medians() {
        let r = three_rounds();
        let goals = goals::goals(&r);
        let g = |w: &str| goals.iter().find(|g| g.what == w).unwrap().clone();
        // Median batched enqueue over median ceiling: 97 000 / 90 000 = 1.08, short of 1.3.
        assert_eq!(g("batched enqueue").measured, "1.08×");
        assert_eq!(g("batched enqueue").target, "≥ 1.3× EVALSHA");
        assert!(!g("batched enqueue").met);
        // One task a call, 50 in flight: 33 000 / 90 000.
        assert_eq!(g("enqueue, 1 per call, 50 in flight").measured, "0.37×");
        // Drain 4: median 55 000 / 90 000 = 0.61.
        assert_eq!(g("drain, 4 consumers").measured, "0.61×");
        assert!(g("drain, 4 consumers").met);
        // Memory: the median round's 700 B per task.
        assert_eq!(g("memory per queued task").measured, "700 B");
        let below = report(
            &[
                (100_000.0, 8.0, [1.0, 128_000.0, 1.0, 1.0]),
                (100_000.0, 8.0, [1.0, 135_000.0, 1.0, 1.0]),
                (100_000.0, 8.0, [1.0, 125_000.0, 1.0, 1.0]),
            ],
            &[1, 1, 1],
        );
        // One round above the goal does not carry it.
        let batched = goals::goals(&below)
            .into_iter()
            .find(|g| g.what == "batched enqueue")
            .unwrap();
        assert!(!batched.met, "{batched:?}");
    }

    #[test]
    fn one_call_at_a_time_is_held_to_the_one_client_ceiling() {
        let mut r = three_rounds();
        for (i, round) in r.rounds.iter_mut().enumerate() {
            let j = [15_000.0, 17_000.0, 16_000.0][i];
            round
                .samples
                .push((Case::EnqueueOneAtATime, sample("one at a time", j, 1.0)));
        }
        let goals = goals::goals(&r);
        let g = goals
            .iter()
            .find(|g| g.what == "enqueue, 1 call at a time")
            .unwrap();
        // Median 16 000 over the one-client ceiling's 20 000.
        assert_eq!(g.measured, "0.80×");
        assert_eq!(g.target, "≥ 0.8× EVALSHA from 1 client");
        assert!(g.met);
        let report = Report::new(&r);
        let row = report.row("one at a time").unwrap();
        assert_eq!(row.notes, "0.80× EVALSHA from 1 client");
        // The × EVALSHA column stays over the 50-client ceiling: 16 000 / 90 000.
        assert!((row.x_evalsha - 16.0 / 90.0).abs() < 1e-6);
    }

    #[test]
    fn the_other_columns_come_from_each_case_s_median_round() {
        let r = three_rounds();
        // Batched enqueue's median (97 000) is round 3: its Redis CPU is 3 s.
        assert_eq!(r.case(Case::EnqueueMany).unwrap().sample.server_cpu, 3.0);
        // Enqueue one by one's median (33 000) is round 2.
        assert_eq!(r.case(Case::Enqueue).unwrap().sample.server_cpu, 2.0);
        // The ceiling's µs per op comes from its median round (round 1, 90 000).
        assert_eq!(r.ceiling_us_per_op(), 8.0);
        // And the row built from it carries that round's figures.
        let report = Report::new(&r);
        let row = report.row("case 1").unwrap();
        assert!((row.redis_us_per_job - 30.0).abs() < 1e-9);
        assert!((row.x_by_redis_cpu - 8.0 / 30.0).abs() < 1e-9);
    }

    #[test]
    fn a_run_is_disturbed_when_the_ceilings_spread_too_far() {
        assert!(three_rounds().disturbed());
        let calm = report(
            &[
                (95_000.0, 8.0, [1.0; 4]),
                (100_000.0, 8.0, [1.0; 4]),
                (97_000.0, 8.0, [1.0; 4]),
            ],
            &[1, 1, 1],
        );
        assert!(!calm.disturbed());
        assert_eq!(range(&calm.ceiling_spread()), "95000–100000");
        assert_eq!(plus_minus(&calm.ceiling_spread()), "±2.6%");
        assert_eq!(range(&Spread::of(&[5.0])), "once");
    }

    #[test]
    fn the_reports_say_medians_of_the_rounds() {
        let r = Report::new(&three_rounds());
        let md = markdown(&r);
        assert!(md.contains("**3 interleaved rounds**"), "{md}");
        assert!(md.contains("| 97000 | 93000–104000 | 1.08 |"), "{md}");
        assert!(text(&r).contains("round 3: EVALSHA 80000"));
    }

    #[test]
    fn both_renderers_show_every_row() {
        let r = Report::new(&three_rounds());
        // The four cases and the two ceilings.
        assert_eq!(r.rows.len(), 6);
        let (md, txt) = (markdown(&r), text(&r));
        for row in &r.rows {
            assert!(md.contains(&format!("| {} |", row.name)), "{}", row.name);
            assert!(txt.contains(&row.name.replace('`', "")), "{}", row.name);
        }
        assert!(
            md.contains("| ceiling: `EVALSHA` of `return 1`, redis-benchmark, 1 client | 20000 |")
        );
    }

    fn cluster_sample(
        case: ClusterCase,
        name: &str,
        jobs_per_sec: f64,
        cpu: &[f64],
    ) -> ClusterSample {
        ClusterSample {
            case,
            name: name.into(),
            jobs: 100_000,
            elapsed: Duration::from_secs_f64(100_000.0 / jobs_per_sec),
            latency: Latency::default(),
            primaries: cpu
                .iter()
                .enumerate()
                .map(|(i, &cpu)| PrimaryLoad {
                    port: 7000 + i as u16,
                    cpu,
                    commands: 1_000,
                })
                .collect(),
        }
    }

    #[test]
    fn the_cluster_step_is_held_to_the_single_server_of_the_same_run() {
        let mut m = three_rounds();
        let run = |primaries: usize, enqueue: f64, cpu: &[f64]| ClusterRun {
            primaries,
            samples: vec![
                cluster_sample(ClusterCase::EnqueueMany, "batched", 90_000.0, cpu),
                cluster_sample(ClusterCase::Enqueue, "one", enqueue, cpu),
                cluster_sample(ClusterCase::Drain, "drain", 40_000.0, cpu),
            ],
        };
        m.cluster = Some(ClusterReport {
            shards: 16,
            tasks: 100_000,
            drain: DrainMode::Library,
            runs: vec![
                // 2 s of CPU for 100 000 jobs: 20 µs a job.
                run(1, 30_000.0, &[2.0]),
                // 2.4 s over three: 24 µs a job (1.2×), one primary half again a third.
                run(3, 40_000.0, &[0.6, 0.6, 1.2]),
            ],
            wake: None,
            wait: None,
        });
        m.ordering = vec![OrderingRun {
            shards: 1,
            tasks: 4,
            claim_batch: 1,
            error: OrderingError {
                claims: 4,
                ..OrderingError::default()
            },
            elapsed: Duration::from_secs(1),
        }];
        let r = Report::new(&m);
        let c = r.cluster.as_ref().unwrap();
        // The single server's one-per-call enqueue has a median of 33 000: 30 000 is 0.91×.
        let one = c.row(1, ClusterCase::Enqueue).unwrap();
        assert!((one.x_single.unwrap() - 30.0 / 33.0).abs() < 1e-6);
        assert!((c.row(3, ClusterCase::Enqueue).unwrap().cpu_deviation - 0.5).abs() < 1e-9);
        let (growth, _) = c.cpu_growth().unwrap();
        assert!((growth - 1.2).abs() < 1e-9);
        let g = |w: &str| {
            r.goals
                .iter()
                .find(|g| g.what.starts_with(w))
                .unwrap()
                .clone()
        };
        assert_eq!(g("cluster of 1 primary: one").measured, "0.91×");
        assert!(g("cluster of 1 primary: one").met);
        assert!(!g("load spread over 3 primaries").met);
        assert_eq!(g("load spread over 3 primaries").measured, "±50.0%");
        assert!(!g("Redis CPU per job, more primaries").met);
        assert!(g("ordering, 1 shard").met);
        let md = markdown(&r);
        assert!(md.contains("| 3 | one | 40000 | 1.21 |"), "{md}");
        assert!(md.contains("| 1 | 4 | 0.00% | 0.00% | 0.0 / 0 |"), "{md}");
        assert!(text(&r).contains("cluster step: 16 shards"));
        // 16 shards over 3 primaries: 6 on one, 6 × 3 / 16 = 1.125 of a third.
        assert!(
            md.replace('\n', " ")
                .contains("one holds 6 of them, 12.5% over 1/3 by the shard count alone"),
            "{md}"
        );
    }
}
