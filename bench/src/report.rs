//! The results of a run: a text table for the terminal, a Markdown section for the README,
//! and the goals of the benchmark issue checked against the ceiling of the same run.

use std::fmt::Write;
use std::time::Duration;

use anyhow::{bail, Result};

use crate::ceiling::Ceilings;
use crate::core::CoreArgs;
use crate::fleet::FleetReport;
use crate::machine::Machine;
use crate::sample::Sample;

/// Batched enqueue must reach this multiple of the EVALSHA ceiling.
pub const GOAL_ENQUEUE_RATIO: f64 = 1.0;
/// A drain with 4 consumers (claim + complete) must reach this multiple of it.
pub const GOAL_DRAIN_RATIO: f64 = 0.5;
/// How far apart the two ceiling runs may be before a run counts as disturbed.
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
    pub ceiling_before: Ceilings,
    pub ceiling_after: Ceilings,
    /// Enqueue one by one, enqueue batched, then one drain per `args.consumers`.
    pub samples: Vec<Sample>,
    pub memory: Memory,
    /// The enqueue script driven by redis-benchmark: the server's side of the cost alone.
    pub script_runs: Vec<ScriptRun>,
    /// The worker and HTTP cases (`None` with `--skip-fleet`).
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

impl CoreReport {
    /// The EVALSHA ceiling the ratios use: the higher of the two runs.
    pub fn evalsha(&self) -> f64 {
        self.ceiling_before
            .evalsha
            .ops_per_sec
            .max(self.ceiling_after.evalsha.ops_per_sec)
    }

    /// True when other processes used more than [`DISTURBED_OTHER_LOAD`] cores on average, or
    /// the two EVALSHA ceiling runs differ by more than [`DISTURBED_SPREAD`]: the figures say
    /// more about the machine's load than about taskfleet, and should be taken again.
    pub fn disturbed(&self) -> bool {
        let (a, b) = (
            self.ceiling_before.evalsha.ops_per_sec,
            self.ceiling_after.evalsha.ops_per_sec,
        );
        (a - b).abs() > DISTURBED_SPREAD * a.max(b) || self.other_load > DISTURBED_OTHER_LOAD
    }

    /// Redis CPU µs per EVALSHA op of the ceiling run the ratios use.
    pub fn ceiling_us_per_op(&self) -> f64 {
        let (a, b) = (&self.ceiling_before.evalsha, &self.ceiling_after.evalsha);
        if a.ops_per_sec >= b.ops_per_sec {
            a.server_us_per_op
        } else {
            b.server_us_per_op
        }
    }

    /// The ratio a case reaches when Redis's CPU is the only limit: the ceiling's CPU per op
    /// over the case's CPU per job. It moves much less with the machine's load than jobs/s.
    pub fn cpu_bound(&self, us_per_job: f64) -> f64 {
        self.ceiling_us_per_op() / us_per_job.max(1e-9)
    }

    pub fn ratio(&self, s: &Sample) -> f64 {
        s.jobs_per_sec() / self.evalsha().max(1e-9)
    }

    pub fn goals(&self) -> Vec<Goal> {
        let mut goals = Vec::new();
        if let Some(s) = self.samples.get(1) {
            let r = self.ratio(s);
            goals.push(Goal {
                what: "batched enqueue".into(),
                target: format!("≥ {GOAL_ENQUEUE_RATIO:.1}× EVALSHA"),
                measured: format!("{r:.2}×"),
                met: r >= GOAL_ENQUEUE_RATIO,
            });
        }
        if let Some(i) = self.args.consumers.iter().position(|&c| c == 4) {
            if let Some(s) = self.samples.get(2 + i) {
                let r = self.ratio(s);
                goals.push(Goal {
                    what: "drain, 4 consumers".into(),
                    target: format!("≥ {GOAL_DRAIN_RATIO:.1}× EVALSHA"),
                    measured: format!("{r:.2}×"),
                    met: r >= GOAL_DRAIN_RATIO,
                });
            }
        }
        let b = self.memory.bytes_per_task();
        goals.push(Goal {
            what: "memory per queued task".into(),
            target: format!("< {GOAL_BYTES_PER_TASK:.0} B"),
            measured: format!("{b:.0} B"),
            met: b < GOAL_BYTES_PER_TASK,
        });
        if let Some(f) = &self.fleet {
            let r = self.ratio(&f.drain);
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

    /// HTTP enqueue over the library's one-call-each enqueue of the same run.
    pub fn http_ratio(&self) -> Option<f64> {
        let f = self.fleet.as_ref()?;
        let lib = self.samples.first()?;
        Some(f.http.jobs_per_sec() / lib.jobs_per_sec().max(1e-9))
    }

    /// The measured samples, the fleet's after the library's.
    pub fn all_samples(&self) -> Vec<&Sample> {
        let mut v: Vec<&Sample> = self.samples.iter().collect();
        if let Some(f) = &self.fleet {
            v.push(&f.drain);
            v.push(&f.http);
        }
        v
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
    for (when, c) in [("before", &r.ceiling_before), ("after", &r.ceiling_after)] {
        let _ = writeln!(
            o,
            "ceiling {when}: SET {:.0} ops/s, EVALSHA (return 1) {:.0} ops/s",
            c.set.ops_per_sec, c.evalsha.ops_per_sec
        );
    }
    if r.disturbed() {
        let _ = writeln!(
            o,
            "WARNING: disturbed run (other processes used {:.2} cores on average, or the \
             ceiling moved by more than {:.0}%): run again when the machine is quieter",
            r.other_load,
            DISTURBED_SPREAD * 100.0
        );
    }
    let _ = writeln!(
        o,
        "\n{:<58} {:>9} {:>8} {:>8} {:>8} {:>8} {:>9} {:>6} {:>9} {:>8}",
        "case",
        "jobs/s",
        "×EVALSHA",
        "p50 ms",
        "p99 ms",
        "max ms",
        "redis µs",
        "busy",
        "client µs",
        "×by CPU"
    );
    for s in r.all_samples() {
        let _ = writeln!(
            o,
            "{:<58} {:>9.0} {:>8.2} {:>8} {:>8} {:>8} {:>9.2} {:>5.0}% {:>9.2} {:>8.2}",
            s.name,
            s.jobs_per_sec(),
            r.ratio(s),
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
            "{:<58} {:>9.0} {:>8.2} {:>8} {:>8} {:>8} {:>9.2} {:>6} {:>9} {:>8.2}",
            s.name,
            s.jobs_per_sec(),
            s.jobs_per_sec() / r.evalsha().max(1e-9),
            "",
            "",
            "",
            s.server_us_per_job,
            "",
            "",
            r.cpu_bound(s.server_us_per_job)
        );
    }
    for (when, c) in [("before", &r.ceiling_before), ("after", &r.ceiling_after)] {
        let _ = writeln!(
            o,
            "{:<58} {:>9.0} {:>8.2} {:>8} {:>8} {:>8} {:>9.2}",
            format!("ceiling {when}: EVALSHA of return 1 (redis µs per op)"),
            c.evalsha.ops_per_sec,
            c.evalsha.ops_per_sec / r.evalsha().max(1e-9),
            "",
            "",
            "",
            c.evalsha.server_us_per_op
        );
    }
    if let Some(f) = &r.fleet {
        let _ = writeln!(o, "\n{}", fleet_text(r, f));
    }
    o.push_str("\nwhere the server's time went (INFO commandstats, µs per job; evalsha includes the rest):\n");
    for s in r.all_samples() {
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
    let _ = writeln!(
        o,
        "\nmemory: {} B per task one by one, {} B per task batched ({} tasks each)",
        r.memory.one_by_one / r.memory.tasks.max(1) as u64,
        r.memory.batched / r.memory.tasks.max(1) as u64,
        r.memory.tasks
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
    let _ = writeln!(
        o,
        "The ceiling is `redis-benchmark` on the same server in the same run, {} clients, no \
         pipelining: `SET` {:.0} / {:.0} ops/s and `EVALSHA` of `return 1` {:.0} / {:.0} ops/s \
         (before / after the cases; `{}`). Every taskfleet call is one EVALSHA, so each case is \
         also given as a ratio to the higher EVALSHA figure (the goals use these ratios). \
         The last column divides the Redis CPU time one ceiling op took by the Redis CPU time \
         one job took: the ratio a case would reach if Redis's own CPU were the only limit on \
         both sides. It moves much less with the machine's load than jobs/s, and it is lower \
         than the measured ratio where the ceiling run leaves Redis idle part of the time \
         (redis-benchmark shares the cores with it; see Redis busy). The `redis-benchmark` rows drive `enqueue.lua` itself \
         with real arguments from 50 C clients: the server's side of enqueue, without our \
         client.\n",
        a.ceiling_clients,
        r.ceiling_before.set.ops_per_sec,
        r.ceiling_after.set.ops_per_sec,
        r.ceiling_before.evalsha.ops_per_sec,
        r.ceiling_after.evalsha.ops_per_sec,
        r.ceiling_command
    );
    if r.disturbed() {
        let _ = writeln!(
            o,
            "**This run was disturbed**: other processes used more than {DISTURBED_OTHER_LOAD} \
             cores on average, or the two ceiling runs differ by more than {:.0}%.\n",
            DISTURBED_SPREAD * 100.0
        );
    }
    o.push_str(
        "| case | jobs/s | × EVALSHA | p50 / p99 ms per call | Redis CPU µs per job | Redis busy | × by Redis CPU |\n",
    );
    o.push_str("|---|---:|---:|---:|---:|---:|---:|\n");
    for s in r.all_samples() {
        let _ = writeln!(
            o,
            "| {} | {:.0} | {:.2} | {} | {:.1} | {:.0}% | {:.2} |",
            s.name,
            s.jobs_per_sec(),
            r.ratio(s),
            per_call(s, " / "),
            s.server_us_per_job(),
            s.server_busy() * 100.0,
            r.cpu_bound(s.server_us_per_job())
        );
    }
    for s in &r.script_runs {
        let _ = writeln!(
            o,
            "| {} | {:.0} | {:.2} | | {:.1} | {:.0}% | {:.2} |",
            s.name,
            s.jobs_per_sec(),
            s.jobs_per_sec() / r.evalsha().max(1e-9),
            s.server_us_per_job,
            s.jobs_per_sec() * s.server_us_per_job / 1e4,
            r.cpu_bound(s.server_us_per_job)
        );
    }
    let _ = writeln!(
        o,
        "| ceiling: `EVALSHA` of `return 1`, redis-benchmark | {:.0} | 1.00 | | {:.1} per op | {:.0}% | 1.00 |",
        r.evalsha(),
        r.ceiling_us_per_op(),
        r.evalsha() * r.ceiling_us_per_op() / 1e4
    );
    let _ = writeln!(
        o,
        "\n{} tasks a case, each a small request (`{{\"n\":123}}`) of one of {} accounts and one \
         of its ten users. \
         Redis memory (`INFO memory` `used_memory`) grew by {:.0} B per queued task enqueued one \
         by one and {:.0} B batched (task hash, its entries in `queued` and in its account's \
         index, and the capped event stream).\n",
        r.memory.tasks,
        a.accounts,
        r.memory.one_by_one as f64 / r.memory.tasks.max(1) as f64,
        r.memory.batched as f64 / r.memory.tasks.max(1) as f64
    );
    if let Some(f) = &r.fleet {
        let _ = writeln!(o, "{}\n", fleet_markdown(r, f));
    }
    o.push_str(
        "Where Redis's time went (`INFO commandstats`, µs per job; `evalsha` includes the \
         commands its script ran):\n\n",
    );
    for s in r.all_samples() {
        let parts: Vec<String> = s
            .commands
            .iter()
            .take(7)
            .map(|c| format!("{} {:.2}", c.name, c.usec as f64 / s.jobs.max(1) as f64))
            .collect();
        let _ = writeln!(o, "- {}: {}", s.name, parts.join(", "));
    }
    o.push('\n');
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
         HTTP: {:.0} requests/s = {:.2}× the library's enqueue, 1 per call ({:.0}/s); API CPU \
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
        r.samples.first().map_or(0.0, Sample::jobs_per_sec),
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
         enqueue one call each of this run ({:.0}/s); the API used {:.1} µs of CPU per request.",
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
        r.samples.first().map_or(0.0, Sample::jobs_per_sec),
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
