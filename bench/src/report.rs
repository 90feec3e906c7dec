//! The results of a run: a text table for the terminal, a Markdown section for the README,
//! and the goals of the benchmark issue checked against the ceiling of the same run.

use std::fmt::Write;
use std::time::Duration;

use anyhow::{bail, Result};

use crate::ceiling::Ceilings;
use crate::core::CoreArgs;
use crate::fleet::FleetReport;
use crate::machine::Machine;
use crate::sample::{median_index, Sample, Spread};

/// Batched enqueue must reach this multiple of the EVALSHA ceiling.
pub const GOAL_ENQUEUE_RATIO: f64 = 1.0;
/// A drain with 4 consumers (claim + complete) must reach this multiple of it.
pub const GOAL_DRAIN_RATIO: f64 = 0.5;
/// How far apart (max − min over the median) the rounds' ceilings may be before a run counts
/// as disturbed.
pub const DISTURBED_SPREAD: f64 = 0.15;
/// How many cores other processes may use on average before a run counts as disturbed.
pub const DISTURBED_OTHER_LOAD: f64 = 0.25;
/// Bytes of Redis memory one small queued task may take.
pub const GOAL_BYTES_PER_TASK: f64 = 1024.0;
/// One worker process draining no-op tasks must reach this multiple of the EVALSHA ceiling.
pub const GOAL_WORKER_DRAIN_RATIO: f64 = 0.5;
/// Enqueue → processor start at the latency case's rate: p50 and p99 under these, in µs.
pub const GOAL_START_P50_US: i64 = 500;
pub const GOAL_START_P99_US: i64 = 2_000;
/// An idle worker may use less than this share of one core.
pub const GOAL_IDLE_CPU: f64 = 0.01;
/// HTTP enqueue must reach this multiple of the library's one-call-each enqueue.
pub const GOAL_HTTP_RATIO: f64 = 0.5;

/// Redis memory (`used_memory`) the enqueue cases added.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Memory {
    pub tasks: usize,
    pub one_by_one: u64,
    pub batched: u64,
}

impl Memory {
    /// The larger of the two cases' bytes per queued task.
    pub fn bytes_per_task(&self) -> f64 {
        self.one_by_one.max(self.batched) as f64 / self.tasks.max(1) as f64
    }
}

/// One round on fresh keys: the ceiling, then the library cases.
#[derive(Debug, Clone)]
pub struct Round {
    pub ceiling: Ceilings,
    /// Enqueue one by one, enqueue batched, then one drain per `args.consumers`.
    pub samples: Vec<Sample>,
    pub memory: Memory,
}

/// Everything one `core` run measured.
#[derive(Debug, Clone)]
pub struct CoreReport {
    /// CPU cores other processes of the machine used on average during the run.
    pub other_load: f64,
    pub args: CoreArgs,
    pub ceiling_command: String,
    pub machine: Machine,
    pub date: String,
    pub load_before: String,
    pub load_after: String,
    /// The interleaved rounds of the ceiling and the library cases, in order (at least one).
    pub rounds: Vec<Round>,
    /// The enqueue script driven by redis-benchmark: the server's side of the cost alone.
    pub script_runs: Vec<ScriptRun>,
    /// The worker and HTTP cases (`None` with `--skip-fleet`), run once.
    pub fleet: Option<FleetReport>,
}

/// A taskfleet script run by redis-benchmark with real arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptRun {
    pub name: String,
    pub tasks_per_call: usize,
    pub ops_per_sec: f64,
    pub server_us_per_job: f64,
}

impl ScriptRun {
    pub fn jobs_per_sec(&self) -> f64 {
        self.ops_per_sec * self.tasks_per_call as f64
    }
}

/// One goal and whether this run met it.
#[derive(Debug, Clone, PartialEq)]
pub struct Goal {
    pub what: String,
    pub target: String,
    pub measured: String,
    pub met: bool,
}

/// One case of the table: the spread of its jobs/s over the rounds, and the sample of its
/// median round (the only one for a case run once), whose other columns the table shows.
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    pub sample: &'a Sample,
    pub jobs_per_sec: Spread,
}

impl CoreReport {
    fn evalsha_rounds(&self) -> Vec<f64> {
        self.rounds
            .iter()
            .map(|r| r.ceiling.evalsha.ops_per_sec)
            .collect()
    }

    /// EVALSHA of `return 1` over the rounds.
    pub fn ceiling_spread(&self) -> Spread {
        Spread::of(&self.evalsha_rounds())
    }

    /// SET over the rounds.
    pub fn set_spread(&self) -> Spread {
        let v: Vec<f64> = self
            .rounds
            .iter()
            .map(|r| r.ceiling.set.ops_per_sec)
            .collect();
        Spread::of(&v)
    }

    /// The EVALSHA ceiling every ratio uses: the median of the rounds.
    pub fn evalsha(&self) -> f64 {
        self.ceiling_spread().median
    }

    /// True when other processes used more than [`DISTURBED_OTHER_LOAD`] cores on average, or
    /// the rounds' EVALSHA ceilings differ by more than [`DISTURBED_SPREAD`] of their median:
    /// the figures say more about the machine's load than about taskfleet, and should be
    /// taken again.
    pub fn disturbed(&self) -> bool {
        self.ceiling_spread().relative() > DISTURBED_SPREAD
            || self.other_load > DISTURBED_OTHER_LOAD
    }

    /// Redis CPU µs per EVALSHA op of the median ceiling round.
    pub fn ceiling_us_per_op(&self) -> f64 {
        median_index(&self.evalsha_rounds())
            .map_or(0.0, |i| self.rounds[i].ceiling.evalsha.server_us_per_op)
    }

    /// The ratio a case reaches when Redis's CPU is the only limit: the ceiling's CPU per op
    /// over the case's CPU per job. It moves much less with the machine's load than jobs/s.
    pub fn cpu_bound(&self, us_per_job: f64) -> f64 {
        self.ceiling_us_per_op() / us_per_job.max(1e-9)
    }

    /// `jobs_per_sec` (a case's median, or a case run once) over the median EVALSHA ceiling.
    pub fn ratio(&self, jobs_per_sec: f64) -> f64 {
        jobs_per_sec / self.evalsha().max(1e-9)
    }

    /// Library case `i` (0: enqueue one by one, 1: batched, 2…: the drains) over the rounds.
    pub fn case(&self, i: usize) -> Option<Row<'_>> {
        let samples: Vec<&Sample> = self
            .rounds
            .iter()
            .filter_map(|r| r.samples.get(i))
            .collect();
        let v: Vec<f64> = samples.iter().map(|s| s.jobs_per_sec()).collect();
        Some(Row {
            sample: samples[median_index(&v)?],
            jobs_per_sec: Spread::of(&v),
        })
    }

    /// The library cases over the rounds, in order.
    pub fn cases(&self) -> Vec<Row<'_>> {
        let n = self.rounds.first().map_or(0, |r| r.samples.len());
        (0..n).filter_map(|i| self.case(i)).collect()
    }

    /// Every row of the table: the library cases, then the fleet's (run once).
    pub fn rows(&self) -> Vec<Row<'_>> {
        let mut v = self.cases();
        if let Some(f) = &self.fleet {
            for s in [&f.drain, &f.http] {
                v.push(Row {
                    sample: s,
                    jobs_per_sec: Spread::of(&[s.jobs_per_sec()]),
                });
            }
        }
        v
    }

    /// The enqueue cases' memory: the median of the rounds, each field on its own.
    pub fn memory(&self) -> Memory {
        let med = |f: fn(&Memory) -> u64| {
            let v: Vec<f64> = self.rounds.iter().map(|r| f(&r.memory) as f64).collect();
            Spread::of(&v).median.round() as u64
        };
        Memory {
            tasks: self.rounds.first().map_or(0, |r| r.memory.tasks),
            one_by_one: med(|m| m.one_by_one),
            batched: med(|m| m.batched),
        }
    }

    pub fn goals(&self) -> Vec<Goal> {
        let mut goals = Vec::new();
        if let Some(c) = self.case(1) {
            let r = self.ratio(c.jobs_per_sec.median);
            goals.push(Goal {
                what: "batched enqueue".into(),
                target: format!("≥ {GOAL_ENQUEUE_RATIO:.1}× EVALSHA"),
                measured: format!("{r:.2}×"),
                met: r >= GOAL_ENQUEUE_RATIO,
            });
        }
        if let Some(i) = self.args.consumers.iter().position(|&c| c == 4) {
            if let Some(c) = self.case(2 + i) {
                let r = self.ratio(c.jobs_per_sec.median);
                goals.push(Goal {
                    what: "drain, 4 consumers".into(),
                    target: format!("≥ {GOAL_DRAIN_RATIO:.1}× EVALSHA"),
                    measured: format!("{r:.2}×"),
                    met: r >= GOAL_DRAIN_RATIO,
                });
            }
        }
        let b = self.memory().bytes_per_task();
        goals.push(Goal {
            what: "memory per queued task".into(),
            target: format!("< {GOAL_BYTES_PER_TASK:.0} B"),
            measured: format!("{b:.0} B"),
            met: b < GOAL_BYTES_PER_TASK,
        });
        if let Some(f) = &self.fleet {
            let r = self.ratio(f.drain.jobs_per_sec());
            goals.push(Goal {
                what: "worker drain, 1 process".into(),
                target: format!("≥ {GOAL_WORKER_DRAIN_RATIO:.1}× EVALSHA"),
                measured: format!("{r:.2}×"),
                met: r >= GOAL_WORKER_DRAIN_RATIO,
            });
            let l = &f.latency;
            let rate = f.args.latency_rate;
            goals.push(Goal {
                what: format!("enqueue → start p50 at {rate}/s"),
                target: format!("< {} ms", ms_of_us(GOAL_START_P50_US)),
                measured: format!("{} ms", ms_of_us(l.p50_us)),
                met: l.p50_us < GOAL_START_P50_US,
            });
            goals.push(Goal {
                what: format!("enqueue → start p99 at {rate}/s"),
                target: format!("< {} ms", ms_of_us(GOAL_START_P99_US)),
                measured: format!("{} ms", ms_of_us(l.p99_us)),
                met: l.p99_us < GOAL_START_P99_US,
            });
            goals.push(Goal {
                what: "idle worker CPU".into(),
                target: format!("< {:.0}% of a core", GOAL_IDLE_CPU * 100.0),
                measured: format!("{:.3}%", f.idle_cpu * 100.0),
                met: f.idle_cpu < GOAL_IDLE_CPU,
            });
            if let Some(r) = self.http_ratio() {
                goals.push(Goal {
                    what: "HTTP enqueue, 1 API process".into(),
                    target: format!("≥ {GOAL_HTTP_RATIO:.1}× library enqueue, 1 per call"),
                    measured: format!("{r:.2}×"),
                    met: r >= GOAL_HTTP_RATIO,
                });
            }
        }
        goals
    }

    /// The library's one-call-each enqueue, median of the rounds.
    pub fn library_enqueue(&self) -> f64 {
        self.case(0).map_or(0.0, |c| c.jobs_per_sec.median)
    }

    /// HTTP enqueue over the library's one-call-each enqueue (its median).
    pub fn http_ratio(&self) -> Option<f64> {
        let f = self.fleet.as_ref()?;
        self.case(0)?;
        Some(f.http.jobs_per_sec() / self.library_enqueue().max(1e-9))
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

/// Microseconds as milliseconds with three decimals (`480` → `0.480`).
pub fn ms_of_us(us: i64) -> String {
    format!("{:.3}", us as f64 / 1e3)
}

/// A per-call latency cell: blank for a case without calls of its own (the worker drain).
fn per_call(s: &Sample, sep: &str) -> String {
    if s.latency.calls == 0 {
        String::new()
    } else {
        format!("{}{sep}{}", ms(s.latency.p50), ms(s.latency.p99))
    }
}

/// `min–max` of a spread over several rounds; `once` for a single figure.
pub fn range(s: &Spread) -> String {
    if s.n <= 1 {
        "once".into()
    } else {
        format!("{:.0}–{:.0}", s.min, s.max)
    }
}

/// `±x%`: half the min–max range as a share of the median.
pub fn plus_minus(s: &Spread) -> String {
    format!("±{:.1}%", s.relative() * 50.0)
}

/// The report as plain text for the terminal.
pub fn text(r: &CoreReport) -> String {
    let mut o = String::new();
    let m = &r.machine;
    let _ = writeln!(
        o,
        "taskfleet-bench core, {}: {} cores, {}, redis-server {}; load {} → {}; other \
         processes used {:.2} cores during the run",
        r.date, m.cores, m.cpu_model, m.redis_version, r.load_before, r.load_after, r.other_load
    );
    let (c, set) = (r.ceiling_spread(), r.set_spread());
    let _ = writeln!(
        o,
        "ceiling, median of {} rounds (min–max): EVALSHA (return 1) {:.0} ops/s ({}, {}), SET \
         {:.0} ops/s ({})",
        c.n,
        c.median,
        range(&c),
        plus_minus(&c),
        set.median,
        range(&set)
    );
    for (i, round) in r.rounds.iter().enumerate() {
        let cases: Vec<String> = round
            .samples
            .iter()
            .map(|s| format!("{:.0}", s.jobs_per_sec()))
            .collect();
        let _ = writeln!(
            o,
            "round {}: EVALSHA {:.0}, SET {:.0}; cases (jobs/s) {}",
            i + 1,
            round.ceiling.evalsha.ops_per_sec,
            round.ceiling.set.ops_per_sec,
            cases.join(", ")
        );
    }
    if r.disturbed() {
        let _ = writeln!(
            o,
            "WARNING: disturbed run (other processes used {:.2} cores on average, or the \
             rounds' ceilings differ by more than {:.0}%): run again when the machine is quieter",
            r.other_load,
            DISTURBED_SPREAD * 100.0
        );
    }
    let _ = writeln!(
        o,
        "\n{:<58} {:>9} {:>13} {:>8} {:>8} {:>8} {:>8} {:>9} {:>6} {:>9} {:>8}",
        "case (median round's columns after ×EVALSHA)",
        "jobs/s",
        "min–max",
        "×EVALSHA",
        "p50 ms",
        "p99 ms",
        "max ms",
        "redis µs",
        "busy",
        "client µs",
        "×by CPU"
    );
    for row in r.rows() {
        let s = row.sample;
        let _ = writeln!(
            o,
            "{:<58} {:>9.0} {:>13} {:>8.2} {:>8} {:>8} {:>8} {:>9.2} {:>5.0}% {:>9.2} {:>8.2}",
            s.name,
            row.jobs_per_sec.median,
            range(&row.jobs_per_sec),
            r.ratio(row.jobs_per_sec.median),
            ms(s.latency.p50),
            ms(s.latency.p99),
            ms(s.latency.max),
            s.server_us_per_job(),
            s.server_busy() * 100.0,
            s.client_us_per_job(),
            r.cpu_bound(s.server_us_per_job())
        );
    }
    for s in &r.script_runs {
        let _ = writeln!(
            o,
            "{:<58} {:>9.0} {:>13} {:>8.2} {:>8} {:>8} {:>8} {:>9.2} {:>6} {:>9} {:>8.2}",
            s.name,
            s.jobs_per_sec(),
            "once",
            r.ratio(s.jobs_per_sec()),
            "",
            "",
            "",
            s.server_us_per_job,
            "",
            "",
            r.cpu_bound(s.server_us_per_job)
        );
    }
    let _ = writeln!(
        o,
        "{:<58} {:>9.0} {:>13} {:>8.2} {:>8} {:>8} {:>8} {:>9.2}",
        "ceiling: EVALSHA of return 1 (redis µs per op)",
        c.median,
        range(&c),
        1.0,
        "",
        "",
        "",
        r.ceiling_us_per_op()
    );
    if let Some(f) = &r.fleet {
        let _ = writeln!(o, "\n{}", fleet_text(r, f));
    }
    o.push_str(
        "\nwhere the server's time went (INFO commandstats of each case's median round, µs per \
         job; evalsha includes the rest):\n",
    );
    for row in r.rows() {
        let s = row.sample;
        let parts: Vec<String> = s
            .commands
            .iter()
            .take(8)
            .map(|c| {
                format!(
                    "{} {:.2} ({:.2}/call)",
                    c.name,
                    c.usec as f64 / s.jobs.max(1) as f64,
                    c.usec as f64 / c.calls.max(1) as f64
                )
            })
            .collect();
        let _ = writeln!(o, "  {}: {}", s.name, parts.join(", "));
    }
    let mem = r.memory();
    let _ = writeln!(
        o,
        "\nmemory (median of the rounds): {} B per task one by one, {} B per task batched ({} \
         tasks each)",
        mem.one_by_one / mem.tasks.max(1) as u64,
        mem.batched / mem.tasks.max(1) as u64,
        mem.tasks
    );
    for g in r.goals() {
        let _ = writeln!(
            o,
            "goal {}: {} (target {}): {}",
            g.what,
            g.measured,
            g.target,
            if g.met { "met" } else { "MISSED" }
        );
    }
    o
}

/// The body of the README's `## Benchmarks` section (without the heading).
pub fn markdown(r: &CoreReport) -> String {
    let mut o = String::new();
    let m = &r.machine;
    let a = &r.args;
    let (c, set) = (r.ceiling_spread(), r.set_spread());
    let _ = writeln!(
        o,
        "Measured by `{}` on {}: {} cores ({}), redis-server {} on loopback without \
         persistence, the bench client on the same cores. Load average {} before, {} after; \
         other processes used {:.2} cores on average during the run.\n",
        r.args.command,
        r.date,
        m.cores,
        m.cpu_model,
        m.redis_version,
        r.load_before,
        r.load_after,
        r.other_load
    );
    let consumers: Vec<String> = a
        .consumers
        .iter()
        .map(|c| format!("drain with {c}"))
        .collect();
    let _ = writeln!(
        o,
        "A single measurement on this machine moves by about ±10% from run to run, so the \
         ceiling and the library cases ran in **{} interleaved rounds** (each round: the \
         ceiling, enqueue one call each, enqueue_many, {}), each round on fresh keys (the \
         keyspace is flushed between rounds), after an untimed `redis-benchmark` warm-up of the \
         fresh server (without it the first ceiling often came out 15-20% low). The jobs/s of those cases is the **median of the \
         {} rounds**, with the lowest and highest round beside it, and every ratio is a median \
         case over the median EVALSHA ceiling. The other columns (latency per call, Redis CPU, \
         Redis busy) and the `INFO commandstats` figures below come from each case's median \
         round (the round whose jobs/s is the median), not averaged. The worker, HTTP and \
         `redis-benchmark`-driven `enqueue.lua` cases ran once, after the rounds, and their \
         ratios use the same median ceiling.\n",
        c.n,
        consumers.join(", "),
        c.n
    );
    let _ = writeln!(
        o,
        "The ceiling is `redis-benchmark` on the same server in the same run, {} clients, no \
         pipelining (`{}`): `EVALSHA` of `return 1` {:.0} ops/s, median of {} rounds ({} \
         over the rounds, {}), `SET` {:.0} ops/s ({}). Every taskfleet call is one EVALSHA, \
         so each case is also given as a ratio to the median EVALSHA figure (the goals use \
         these ratios). The last column divides the Redis CPU time one ceiling op took by the \
         Redis CPU time one job took: the ratio a case would reach if Redis's own CPU were the \
         only limit on both sides. It moves much less with the machine's load than jobs/s, \
         and it is lower than the measured ratio where the ceiling run leaves Redis idle part \
         of the time (redis-benchmark shares the cores with it; see Redis busy). The \
         `redis-benchmark` rows drive `enqueue.lua` itself with real arguments from 50 C \
         clients: the server's side of enqueue, without our client.\n",
        a.ceiling_clients,
        r.ceiling_command,
        c.median,
        c.n,
        range(&c),
        plus_minus(&c),
        set.median,
        range(&set)
    );
    if r.disturbed() {
        let _ = writeln!(
            o,
            "**This run was disturbed**: other processes used more than {DISTURBED_OTHER_LOAD} \
             cores on average, or the rounds' ceilings differ by more than {:.0}%.\n",
            DISTURBED_SPREAD * 100.0
        );
    }
    o.push_str(
        "| case | jobs/s, median | min – max | × EVALSHA | p50 / p99 ms per call | Redis CPU µs per job | Redis busy | × by Redis CPU |\n",
    );
    o.push_str("|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for row in r.rows() {
        let s = row.sample;
        let _ = writeln!(
            o,
            "| {} | {:.0} | {} | {:.2} | {} | {:.1} | {:.0}% | {:.2} |",
            s.name,
            row.jobs_per_sec.median,
            range(&row.jobs_per_sec),
            r.ratio(row.jobs_per_sec.median),
            per_call(s, " / "),
            s.server_us_per_job(),
            s.server_busy() * 100.0,
            r.cpu_bound(s.server_us_per_job())
        );
    }
    for s in &r.script_runs {
        let _ = writeln!(
            o,
            "| {} | {:.0} | once | {:.2} | | {:.1} | {:.0}% | {:.2} |",
            s.name,
            s.jobs_per_sec(),
            r.ratio(s.jobs_per_sec()),
            s.server_us_per_job,
            s.jobs_per_sec() * s.server_us_per_job / 1e4,
            r.cpu_bound(s.server_us_per_job)
        );
    }
    let _ = writeln!(
        o,
        "| ceiling: `EVALSHA` of `return 1`, redis-benchmark | {:.0} | {} | 1.00 | | {:.1} per op | {:.0}% | 1.00 |",
        c.median,
        range(&c),
        r.ceiling_us_per_op(),
        c.median * r.ceiling_us_per_op() / 1e4
    );
    let mem = r.memory();
    let _ = writeln!(
        o,
        "\n{} tasks a case and round, each a small request (`{{\"n\":123}}`) of one of {} \
         accounts and one of its ten users. Redis memory (`INFO memory` `used_memory`) grew by \
         {:.0} B per queued task enqueued one by one and {:.0} B batched (median of the \
         rounds; task hash, its entries in `queued` and in its account's index, and the capped \
         event stream).\n",
        mem.tasks,
        a.accounts,
        mem.one_by_one as f64 / mem.tasks.max(1) as f64,
        mem.batched as f64 / mem.tasks.max(1) as f64
    );
    if let Some(f) = &r.fleet {
        let _ = writeln!(o, "{}\n", fleet_markdown(r, f));
    }
    o.push_str(
        "Where Redis's time went (`INFO commandstats` of each case's median round, µs per job; \
         `evalsha` includes the commands its script ran):\n\n",
    );
    for row in r.rows() {
        let s = row.sample;
        let parts: Vec<String> = s
            .commands
            .iter()
            .take(7)
            .map(|c| format!("{} {:.2}", c.name, c.usec as f64 / s.jobs.max(1) as f64))
            .collect();
        let _ = writeln!(o, "- {}: {}", s.name, parts.join(", "));
    }
    o.push('\n');
    let _ = writeln!(
        o,
        "Goals, from the medians of the {} rounds (the worker, latency, idle and HTTP goals \
         from their single run):\n",
        c.n
    );
    o.push_str("| goal | target | measured | |\n|---|---|---|---|\n");
    for g in r.goals() {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} |",
            g.what,
            g.target,
            g.measured,
            if g.met { "met" } else { "missed" }
        );
    }
    wrap_prose(&o, 95)
}

/// The worker and HTTP figures beyond the table, for the terminal.
fn fleet_text(r: &CoreReport, f: &FleetReport) -> String {
    let l = &f.latency;
    format!(
        "worker drain: {} tasks in {:.2} s from the process start ({:.0} ms until the first \
         claim), worker CPU {:.1} µs per task\n\
         enqueue → start, {} idle workers, {:.0}/s for {} s ({} tasks): p50 {} ms, p99 {} ms, \
         max {} ms\n\
         idle worker: {:.3}% of a core over {} s (the busier of {})\n\
         HTTP: {:.0} requests/s = {:.2}× the library's enqueue, 1 per call (median {:.0}/s); API CPU \
         {:.1} µs per request",
        f.drain.jobs,
        f.drain.elapsed.as_secs_f64(),
        f.drain_startup.as_secs_f64() * 1e3,
        f.drain_worker_cpu * 1e6 / f.drain.jobs.max(1) as f64,
        f.args.latency_workers,
        l.rate,
        f.args.latency_secs,
        l.tasks,
        ms_of_us(l.p50_us),
        ms_of_us(l.p99_us),
        ms_of_us(l.max_us),
        f.idle_cpu * 100.0,
        f.args.idle_secs,
        f.args.latency_workers,
        f.http.jobs_per_sec(),
        r.http_ratio().unwrap_or(0.0),
        r.library_enqueue(),
        f.http_api_cpu * 1e6 / f.http.jobs.max(1) as f64,
    )
}

/// The worker and HTTP figures beyond the table, as README prose.
fn fleet_markdown(r: &CoreReport, f: &FleetReport) -> String {
    let l = &f.latency;
    let a = &f.args;
    format!(
        "The worker and HTTP cases run the release binaries on the same server. **Worker \
         drain**: {} no-op tasks (`{{\"op\":\"noop\"}}`, queue `test`) enqueued first, then one \
         `taskfleet-worker --test-processors --concurrency {}` started and timed from its \
         start to the last completion (status polled every 10 ms): {:.2} s, {:.0} ms of it \
         before the first claim; the worker used {:.1} µs of CPU per task. **Enqueue → \
         processor start**: {} idle workers (concurrency {} each) waiting, then `{{\"op\":\"stamp\"}}` \
         tasks enqueued one call each, evenly paced at {:.0}/s for {} s ({} tasks); the \
         processor subtracts the enqueue's µs timestamp from its own at start (one machine, \
         one clock): p50 {} ms, p99 {} ms, max {} ms. **Idle worker**: {:.3}% of a core over \
         {} s (its threads' `/proc/<pid>/task/*/schedstat`, the busier of the {} workers, before \
         the latency case). \
         **HTTP enqueue**: `POST /api/tasks` (`{{\"task_type\":\"test\",\"request\":{{\"op\":\"noop\"}}}}`, 202) \
         to one `taskfleet-api` from {} keep-alive HTTP/1.1 connections of the bench's own \
         client, one request in flight on each, {} requests: {:.0}/s, {:.2}× the library's \
         enqueue one call each of this run (its median, {:.0}/s); the API used {:.1} µs of CPU per request.",
        f.drain.jobs,
        a.worker_concurrency,
        f.drain.elapsed.as_secs_f64(),
        f.drain_startup.as_secs_f64() * 1e3,
        f.drain_worker_cpu * 1e6 / f.drain.jobs.max(1) as f64,
        a.latency_workers,
        a.worker_concurrency,
        l.rate,
        a.latency_secs,
        l.tasks,
        ms_of_us(l.p50_us),
        ms_of_us(l.p99_us),
        ms_of_us(l.max_us),
        f.idle_cpu * 100.0,
        a.idle_secs,
        a.latency_workers,
        a.http_connections,
        f.http.jobs,
        f.http.jobs_per_sec(),
        r.http_ratio().unwrap_or(0.0),
        r.library_enqueue(),
        f.http_api_cpu * 1e6 / f.http.jobs.max(1) as f64,
    )
}

/// Wraps the prose lines of Markdown at `width` columns (as the rest of the README is);
/// tables, headings and code stay as they are, list items continue indented.
pub fn wrap_prose(md: &str, width: usize) -> String {
    let mut out = String::new();
    let mut fenced = false;
    for line in md.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
        }
        let keep = fenced || line.starts_with('|') || line.starts_with('#');
        if keep || line.chars().count() <= width {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let indent = if line.starts_with("- ") { "  " } else { "" };
        let mut current = String::new();
        // True while `current` holds nothing but the indentation.
        let mut fresh = true;
        for word in line.split(' ') {
            if !fresh && current.chars().count() + 1 + word.chars().count() > width {
                out.push_str(&current);
                out.push('\n');
                current = indent.to_string();
                fresh = true;
            }
            if !fresh {
                current.push(' ');
            }
            current.push_str(word);
            fresh = false;
        }
        out.push_str(&current);
        out.push('\n');
    }
    out
}

/// Replaces the body of the section that starts with the line `heading` (up to the next
/// heading of the same or a higher level, outside code fences) with `body`.
pub fn replace_section(doc: &str, heading: &str, body: &str) -> Result<String> {
    let level = heading.chars().take_while(|c| *c == '#').count();
    let lines: Vec<&str> = doc.split_inclusive('\n').collect();
    let Some(start) = lines.iter().position(|l| l.trim_end() == heading) else {
        bail!("no line {heading:?} in the document");
    };
    let mut end = lines.len();
    let mut fenced = false;
    for (i, l) in lines.iter().enumerate().skip(start + 1) {
        if l.starts_with("```") {
            fenced = !fenced;
        }
        let hashes = l.chars().take_while(|c| *c == '#').count();
        if !fenced && hashes >= 1 && hashes <= level && l[hashes..].starts_with(' ') {
            end = i;
            break;
        }
    }
    let mut out: String = lines[..=start].concat();
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out.push('\n');
    out.push_str(body.trim_end());
    out.push('\n');
    if end < lines.len() {
        out.push('\n');
        out.push_str(&lines[end..].concat());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ceiling::Ceiling;
    use crate::sample::Latency;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        core: CoreArgs,
    }

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
    fn report(rounds: &[(f64, f64, [f64; 4])], bytes: &[u64]) -> CoreReport {
        let args = Cli::parse_from(["x", "--skip-fleet"]).core;
        CoreReport {
            other_load: 0.0,
            args,
            ceiling_command: String::new(),
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
                    },
                    samples: cases
                        .iter()
                        .enumerate()
                        .map(|(k, &j)| sample(&format!("case {k}"), j, (i + 1) as f64))
                        .collect(),
                    memory: Memory {
                        tasks: 100_000,
                        one_by_one: b,
                        batched: b,
                    },
                })
                .collect(),
            script_runs: Vec::new(),
            fleet: None,
        }
    }

    fn three_rounds() -> CoreReport {
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
        let batched = r.case(1).unwrap().jobs_per_sec;
        // (Durations are whole ns: the jobs/s come back within a hundredth.)
        assert!((batched.median - 97_000.0).abs() < 0.01);
        assert!((batched.min - 93_000.0).abs() < 0.01);
        assert!((batched.max - 104_000.0).abs() < 0.01);
        // Not the round-by-round ratios (1.03, 1.04, 1.21), whose median would be 1.04.
        assert!((r.ratio(batched.median) - 97.0 / 90.0).abs() < 1e-6);
        assert_eq!(r.cases().len(), 4);
    }

    #[test]
    fn goals_use_the_medians() {
        let r = three_rounds();
        let goals = r.goals();
        let g = |w: &str| goals.iter().find(|g| g.what == w).unwrap().clone();
        // Median batched enqueue over median ceiling: 97 000 / 90 000 = 1.08.
        assert_eq!(g("batched enqueue").measured, "1.08×");
        assert!(g("batched enqueue").met);
        // Drain 4: median 55 000 / 90 000 = 0.61.
        assert_eq!(g("drain, 4 consumers").measured, "0.61×");
        // Memory: the median round's 700 B per task.
        assert_eq!(g("memory per queued task").measured, "700 B");
        let below = report(
            &[
                (100_000.0, 8.0, [1.0, 99_000.0, 1.0, 1.0]),
                (100_000.0, 8.0, [1.0, 105_000.0, 1.0, 1.0]),
                (100_000.0, 8.0, [1.0, 98_000.0, 1.0, 1.0]),
            ],
            &[1, 1, 1],
        );
        // One round above the goal does not carry it.
        assert!(!below.goals()[0].met);
    }

    #[test]
    fn the_other_columns_come_from_each_case_s_median_round() {
        let r = three_rounds();
        // Batched enqueue's median (97 000) is round 3: its Redis CPU is 3 s.
        assert_eq!(r.case(1).unwrap().sample.server_cpu, 3.0);
        // Enqueue one by one's median (33 000) is round 2.
        assert_eq!(r.case(0).unwrap().sample.server_cpu, 2.0);
        // The ceiling's µs per op comes from its median round (round 1, 90 000).
        assert_eq!(r.ceiling_us_per_op(), 8.0);
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
        let r = three_rounds();
        let md = markdown(&r);
        assert!(md.contains("**3 interleaved rounds**"), "{md}");
        assert!(md.contains("| 97000 | 93000–104000 | 1.08 |"), "{md}");
        assert!(text(&r).contains("round 3: EVALSHA 80000"));
    }

    #[test]
    fn replace_section_changes_only_that_section() {
        let doc = "# T\n\n## A\n\na\n\n## Benchmarks\n\nold\n```\n## not a heading\n```\n\n### Sub\n\nx\n\n## C\n\nc\n";
        let out = replace_section(doc, "## Benchmarks", "new\n").unwrap();
        assert_eq!(
            out,
            "# T\n\n## A\n\na\n\n## Benchmarks\n\nnew\n\n## C\n\nc\n"
        );
    }

    #[test]
    fn replace_section_at_the_end_of_the_document() {
        let doc = "## A\n\na\n\n## Benchmarks\n\n(filled in later)\n";
        let out = replace_section(doc, "## Benchmarks", "| x |\n").unwrap();
        assert_eq!(out, "## A\n\na\n\n## Benchmarks\n\n| x |\n");
        // Running again gives the same document.
        assert_eq!(
            replace_section(&out, "## Benchmarks", "| x |\n").unwrap(),
            out
        );
    }

    #[test]
    fn wrap_prose_wraps_paragraphs_and_list_items_but_not_tables() {
        let md = "one two three four five\n- alpha beta gamma delta\n| a | b | c | d | e | f |\n";
        assert_eq!(
            wrap_prose(md, 10),
            "one two\nthree four\nfive\n- alpha\n  beta\n  gamma\n  delta\n| a | b | c | d | e | f |\n"
        );
    }

    #[test]
    fn replace_section_refuses_a_document_without_the_heading() {
        assert!(replace_section("## A\n", "## Benchmarks", "x").is_err());
    }
}
