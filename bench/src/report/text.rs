//! The report as plain text for the terminal: every row with all its columns, round by round
//! figures, and the goals. Formatting only: every figure comes computed in the [`Report`].

use std::fmt::Write;
use std::time::Duration;

use super::cluster::{percents, slashed, ClusterFacts};
use super::goals::ms_of_us;
use super::{FleetFacts, Report, Row, DISTURBED_SPREAD};
use crate::sample::Spread;

pub(super) fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
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

/// A table row: the Markdown's backticks dropped.
fn row_line(row: &Row) -> String {
    let (p50, p99, max) = row
        .per_call
        .map_or_else(Default::default, |l| (ms(l.p50), ms(l.p99), ms(l.max)));
    let client = row
        .client_us_per_job
        .map_or_else(String::new, |c| format!("{c:.2}"));
    format!(
        "{:<62} {:>9.0} {:>13} {:>8.2} {:>8} {:>8} {:>8} {:>9.2} {:>5.0}% {:>9} {:>8.2}  {}",
        row.name.replace('`', ""),
        row.jobs_per_sec.median,
        range(&row.jobs_per_sec),
        row.x_evalsha,
        p50,
        p99,
        max,
        row.redis_us_per_job,
        row.redis_busy * 100.0,
        client,
        row.x_by_redis_cpu,
        row.notes
    )
}

/// The report as plain text for the terminal.
pub fn text(r: &Report) -> String {
    let mut o = String::new();
    let m = &r.machine;
    let _ = writeln!(
        o,
        "taskfleet-bench core, {}: {} cores, {}, redis-server {}; load {} → {}; other \
         processes used {:.2} cores during the run",
        r.date, m.cores, m.cpu_model, m.redis_version, r.load_before, r.load_after, r.other_load
    );
    let (c, one, set) = (&r.ceiling, &r.ceiling_one_client, &r.set);
    let _ = writeln!(
        o,
        "ceiling, median of {} rounds (min–max): EVALSHA (return 1) {:.0} ops/s ({}, {}), from 1 \
         client {:.0} ops/s ({}), SET {:.0} ops/s ({})",
        c.n,
        c.median,
        range(c),
        plus_minus(c),
        one.median,
        range(one),
        set.median,
        range(set)
    );
    for (i, round) in r.round_lines.iter().enumerate() {
        let cases: Vec<String> = round.cases.iter().map(|j| format!("{j:.0}")).collect();
        let _ = writeln!(
            o,
            "round {}: EVALSHA {:.0}, from 1 client {:.0}, SET {:.0}; cases (jobs/s) {}",
            i + 1,
            round.evalsha,
            round.evalsha_one_client,
            round.set,
            cases.join(", ")
        );
    }
    if r.disturbed {
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
        "\n{:<62} {:>9} {:>13} {:>8} {:>8} {:>8} {:>8} {:>9} {:>6} {:>9} {:>8}  notes",
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
    for row in &r.rows {
        let _ = writeln!(o, "{}", row_line(row));
    }
    if let Some(f) = &r.fleet {
        let _ = writeln!(o, "\n{}", fleet_text(r, f));
    }
    if let Some(c) = &r.cluster {
        o.push_str(&cluster_text(c));
    }
    for l in &r.ordering {
        let _ = writeln!(
            o,
            "ordering, {} shard(s), {} tasks, claim {}: {:.2}% out of order, {:.2}% band \
             inversions, displacement mean {:.1} max {}",
            l.shards,
            l.tasks,
            l.claim_batch,
            l.out_of_order * 100.0,
            l.band_inversions * 100.0,
            l.displacement_mean,
            l.displacement_max
        );
    }
    o.push_str(
        "\nwhere the server's time went (INFO commandstats of each case's median round, µs per \
         job; evalsha includes the rest):\n",
    );
    for row in r.rows.iter().filter(|row| !row.commands.is_empty()) {
        let parts: Vec<String> = row
            .commands
            .iter()
            .take(8)
            .map(|c| format!("{} {:.2} ({:.2}/call)", c.name, c.us_per_job, c.us_per_call))
            .collect();
        let _ = writeln!(o, "  {}: {}", row.name, parts.join(", "));
    }
    let mem = &r.memory;
    let _ = writeln!(
        o,
        "\nmemory (median of the rounds): {} B per task one by one, {} B per task batched ({} \
         tasks each)",
        mem.one_by_one / mem.tasks.max(1) as u64,
        mem.batched / mem.tasks.max(1) as u64,
        mem.tasks
    );
    for g in &r.goals {
        let floor = match g.floor {
            Some(_) => format!(", floor here {}", g.floor_text()),
            None => String::new(),
        };
        let _ = writeln!(
            o,
            "goal {}: {} (target {}{floor}): {}",
            g.what,
            g.measured,
            g.target,
            if g.met {
                "met".into()
            } else {
                g.verdict().to_uppercase()
            }
        );
    }
    o
}

/// The cluster step, for the terminal.
fn cluster_text(c: &ClusterFacts) -> String {
    let mut o = format!(
        "\ncluster step: {} shards, {} tasks a case, drain by {:?}\n",
        c.shards, c.tasks, c.drain
    );
    let rows = c.rows.iter().map(|r| (r.primaries.to_string(), r));
    let wait = c.wait.iter().flat_map(|w| {
        let label = format!("{}+{}", w.primaries, w.replicas);
        [(label.clone(), &w.without), (label, &w.with)]
    });
    for (label, r) in rows.chain(wait) {
        let _ = writeln!(
            o,
            "  {:>4} primaries  {:<66} {:>8.0}/s  ×single {:>5}  ×EVALSHA {:.2}  redis µs/job \
             {:.1} ({})  CPU {}  commands {}  max off 1/N {:.1}%",
            label,
            r.name,
            r.jobs_per_sec,
            r.x_single.map_or_else(|| "-".into(), |x| format!("{x:.2}")),
            r.x_evalsha,
            r.redis_us_per_job,
            slashed(&r.us_each),
            percents(&r.cpu_shares),
            percents(&r.command_shares),
            r.cpu_deviation * 100.0
        );
    }
    if let Some(w) = &c.wake {
        let _ = writeln!(
            o,
            "  cluster of {}: enqueue → start p50 {} ms, p99 {} ms, max {} ms ({} tasks); idle \
             worker {:.3}% of a core",
            w.primaries,
            ms_of_us(w.latency.p50_us),
            ms_of_us(w.latency.p99_us),
            ms_of_us(w.latency.max_us),
            w.latency.tasks,
            w.idle_cpu * 100.0
        );
    }
    if let Some(w) = &c.wait {
        let _ = writeln!(o, "  wait_replicas=1 over without: {:.2}×", w.ratio);
    }
    o
}

/// The worker and HTTP figures beyond the table, for the terminal.
fn fleet_text(r: &Report, f: &FleetFacts) -> String {
    let l = &f.latency;
    let mut o = format!(
        "worker drain: {} tasks in {:.2} s from the process start ({:.0} ms until the first \
         claim), worker CPU {:.1} µs per task\n\
         enqueue → start, {} idle workers, {:.0}/s for {} s ({} tasks): p50 {} ms, p99 {} ms, \
         max {} ms\n\
         idle worker: {:.3}% of a core over {} s (the busier of {})",
        f.drain_tasks,
        f.drain_secs,
        f.drain_startup_ms,
        f.drain_worker_us_per_task,
        f.latency_workers,
        l.rate,
        f.latency_secs,
        l.tasks,
        ms_of_us(l.p50_us),
        ms_of_us(l.p99_us),
        ms_of_us(l.max_us),
        f.idle_cpu * 100.0,
        f.idle_secs,
        f.latency_workers,
    );
    for h in &f.http {
        let _ = write!(
            o,
            "\nHTTP, {} connections: {:.0} requests/s = {:.2}× EVALSHA, {:.2}× the library's \
             enqueue, 1 per call (median {:.0}/s); API CPU {:.1} µs per request",
            h.connections,
            h.jobs_per_sec,
            h.x_evalsha,
            h.x_library,
            r.library_enqueue,
            h.api_us_per_request,
        );
    }
    o
}
