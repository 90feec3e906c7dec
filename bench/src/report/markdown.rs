//! The report as the body of the README's `## Benchmarks` section: the prose that says how the
//! figures were taken, the table (one line per [`Row`]), where Redis's time went, and the
//! goals; and the two helpers that put it in place (prose wrapped like the rest of the README,
//! the section's body replaced). Formatting only: every figure comes computed in the
//! [`Report`].

use std::fmt::Write;

use anyhow::{bail, Result};

use super::cluster::{percents, slashed, ClusterFacts, OrderingFacts};
use super::goals::ms_of_us;
use super::text::{ms, plus_minus, range};
use super::{FleetFacts, Report, Row, DISTURBED_OTHER_LOAD, DISTURBED_SPREAD};
use crate::cluster::DrainMode;

/// The width the README's prose is wrapped at.
const WIDTH: usize = 95;

fn table_line(row: &Row) -> String {
    let per_call = row
        .per_call
        .map_or_else(String::new, |l| format!("{} / {}", ms(l.p50), ms(l.p99)));
    format!(
        "| {} | {:.0} | {} | {:.2} | {} | {:.1} | {:.0}% | {:.2} | {} |",
        row.name,
        row.jobs_per_sec.median,
        range(&row.jobs_per_sec),
        row.x_evalsha,
        per_call,
        row.redis_us_per_job,
        row.redis_busy * 100.0,
        row.x_by_redis_cpu,
        row.notes
    )
}

/// The body of the README's `## Benchmarks` section (without the heading).
pub fn markdown(r: &Report) -> String {
    let mut o = String::new();
    let m = &r.machine;
    let a = &r.setup;
    let (c, one, set) = (&r.ceiling, &r.ceiling_one_client, &r.set);
    let _ = writeln!(
        o,
        "Measured by `{}` on {}: {} cores ({}), redis-server {} on loopback without \
         persistence, the bench client on the same cores. Load average {} before, {} after; \
         other processes used {:.2} cores on average during the run.\n",
        a.command,
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
         ceilings and the library cases ran in **{} interleaved rounds** (each round: the \
         ceilings, enqueue one task a call with {} calls in flight, enqueue one call at a time, \
         enqueue_many, {}), each round on fresh keys (the keyspace is flushed between rounds), \
         after an untimed `redis-benchmark` warm-up of the fresh server (without it the first \
         ceiling often came out 15-20% low). The one-task-a-call case keeps {} calls in flight, \
         as many as the ceiling has clients; it replaces the earlier case with 16 in flight. The \
         jobs/s of those cases is the **median of the {} rounds**, with the lowest and highest \
         round beside it, and every ratio is a median case over the median EVALSHA ceiling. The \
         other columns (latency per call, Redis CPU, Redis busy) and the `INFO commandstats` \
         figures below come from each case's median round (the round whose jobs/s is the \
         median), not averaged. The worker, HTTP and `redis-benchmark`-driven `enqueue.lua` \
         cases ran once, after the rounds, and their ratios use the same median ceiling.\n",
        r.rounds,
        a.in_flight,
        consumers.join(", "),
        a.in_flight,
        r.rounds
    );
    let _ = writeln!(
        o,
        "The ceiling is `redis-benchmark` on the same server in the same run, {} clients, no \
         pipelining (`{}`): `EVALSHA` of `return 1` {:.0} ops/s, median of {} rounds ({} \
         over the rounds, {}), `SET` {:.0} ops/s ({}). Every taskfleet call is one EVALSHA, \
         so each case is also given as a ratio to the median EVALSHA figure (the goals use \
         these ratios). One call at a time is held to a second ceiling of the same rounds, the \
         same EVALSHA from one client (`{}`): {:.0} ops/s ({}); its row's notes and its goal \
         give that ratio. The column × by Redis CPU divides the Redis CPU time one ceiling op \
         took by the Redis CPU time one job took: the ratio a case would reach if Redis's own \
         CPU were the only limit on both sides. It moves much less with the machine's load than \
         jobs/s, and it is lower than the measured ratio where the ceiling run leaves Redis \
         idle part of the time (redis-benchmark shares the cores with it; see Redis busy). The \
         `redis-benchmark` rows drive `enqueue.lua` itself with real arguments from {} C \
         clients: the server's side of enqueue, without our client.\n",
        a.ceiling_clients,
        r.ceiling_command,
        c.median,
        c.n,
        range(c),
        plus_minus(c),
        set.median,
        range(set),
        r.ceiling_one_client_command,
        one.median,
        range(one),
        a.ceiling_clients
    );
    if r.disturbed {
        let _ = writeln!(
            o,
            "**This run was disturbed**: other processes used more than {DISTURBED_OTHER_LOAD} \
             cores on average, or the rounds' ceilings differ by more than {:.0}%.\n",
            DISTURBED_SPREAD * 100.0
        );
    }
    o.push_str(
        "| case | jobs/s, median | min – max | × EVALSHA | p50 / p99 ms per call | Redis CPU µs per job | Redis busy | × by Redis CPU | notes |\n",
    );
    o.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---|\n");
    for row in &r.rows {
        let _ = writeln!(o, "{}", table_line(row));
    }
    if let Some(f) = &r.floors {
        let _ = writeln!(
            o,
            "\n**The floor** (the `floor:` rows, `redis-benchmark` from C clients, no client of \
             ours, once after the rounds): the same tasks' writes and nothing else, in the \
             cheapest form Redis offers. The ceiling's `return 1` writes nothing; a task has to \
             be written. A script that stores each task's hash (the fields `enqueue.lua` \
             writes, the same values and id lengths) and adds the call's ids to a queue with one \
             `ZADD`, {} tasks a call, reaches {:.2}× EVALSHA ({:.1} µs of Redis CPU per task \
             against {:.1} µs per ceiling op); `HSET` of the same fields alone, no script, \
             pipelined {} deep, {:.2}× ({:.1} µs); one task a call from one client {:.2}× \
             EVALSHA from 1 client. Claiming {} ids under a lease (`ZPOPMIN`, a deadline in a \
             lease set, each hash marked running) and completing as many leased ones (each hash \
             marked completed with a result and a time, one `ZADD` to a completed set) in one \
             script, as the worker's fused complete-and-claim does: {:.2}× ({:.1} µs per task). \
             No idempotency, quota, account index, counters, event, wake-up, attempt or fence: the most any queue writing the same tasks could \
             reach on this machine. The goals table gives each goal's floor; a target above it \
             cannot be met here by any client.",
            f.batch,
            f.enqueue_x,
            f.enqueue_us,
            f.ceiling_us,
            f.batch,
            f.hset_x,
            f.hset_us,
            f.one_client_x,
            f.claim_batch,
            f.drain_x,
            f.drain_us
        );
    }
    let mem = &r.memory;
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
    if let Some(c) = &r.cluster {
        o.push_str(&cluster_markdown(c));
    }
    if !r.ordering.is_empty() {
        o.push_str(&ordering_markdown(&r.ordering));
    }
    o.push_str(
        "Where Redis's time went (`INFO commandstats` of each case's median round, µs per job; \
         `evalsha` includes the commands its script ran):\n\n",
    );
    for row in r.rows.iter().filter(|row| !row.commands.is_empty()) {
        let parts: Vec<String> = row
            .commands
            .iter()
            .take(7)
            .map(|c| format!("{} {:.2}", c.name, c.us_per_job))
            .collect();
        let _ = writeln!(o, "- {}: {}", row.name, parts.join(", "));
    }
    o.push('\n');
    let _ = writeln!(
        o,
        "Goals, from the medians of the {} rounds (the worker, latency, idle and HTTP goals \
         from their single run):\n",
        r.rounds
    );
    o.push_str("| goal | target | measured | floor here | |\n|---|---|---|---|---|\n");
    for g in &r.goals {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} |",
            g.what,
            g.target,
            g.measured,
            g.floor_text(),
            g.verdict()
        );
    }
    wrap_prose(&o, WIDTH)
}

/// The worker and HTTP figures beyond the table, as README prose.
fn fleet_markdown(r: &Report, f: &FleetFacts) -> String {
    let l = &f.latency;
    let mut o = format!(
        "The worker and HTTP cases run the release binaries on the same server. **Worker \
         drain**: {} no-op tasks (`{{\"op\":\"noop\"}}`, queue `test`) enqueued first, then one \
         `taskfleet-worker --test-processors --concurrency {}` started and timed from its \
         start to the last completion (status polled every 10 ms): {:.2} s, {:.0} ms of it \
         before the first claim; the worker used {:.1} µs of CPU per task. **Enqueue → \
         processor start**: {} idle workers (concurrency {} each) waiting, then \
         `{{\"op\":\"stamp\"}}` tasks enqueued one call each, evenly paced at {:.0}/s for {} s \
         ({} tasks); the processor subtracts the enqueue's µs timestamp from its own at start \
         (one machine, one clock): p50 {} ms, p99 {} ms, max {} ms. **Idle worker**: {:.3}% of \
         a core over {} s (its threads' `/proc/<pid>/task/*/schedstat`, the busier of the {} \
         workers, before the latency case).",
        f.drain_tasks,
        f.worker_concurrency,
        f.drain_secs,
        f.drain_startup_ms,
        f.drain_worker_us_per_task,
        f.latency_workers,
        f.worker_concurrency,
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
    if f.http.is_empty() {
        return o;
    }
    let runs: Vec<String> = f
        .http
        .iter()
        .enumerate()
        .map(|(i, h)| {
            format!(
                "{}rom {} connections, {} requests: {:.0}/s, {:.2}× EVALSHA and {:.2}× the \
                 library's enqueue one call each of this run; the API used {:.1} µs of CPU per \
                 request",
                if i == 0 { "F" } else { "f" },
                h.connections,
                h.requests,
                h.jobs_per_sec,
                h.x_evalsha,
                h.x_library,
                h.api_us_per_request
            )
        })
        .collect();
    let _ = write!(
        o,
        " **HTTP enqueue**: `POST /api/tasks` \
         (`{{\"task_type\":\"test\",\"request\":{{\"op\":\"noop\"}}}}`, 202) to one \
         `taskfleet-api` (a fresh one for each connection count; the account's limits raised \
         out of reach but still checked, so each request pays for the rate limit's count) over \
         keep-alive HTTP/1.1 connections of the bench's own client, one request in flight on \
         each; the library's \
         enqueue one call each had a median of {:.0}/s. {}.",
        r.library_enqueue,
        runs.join("; ")
    );
    o
}

/// The cluster step: how it ran, its table, wake-ups and the cost of replica waits.
fn cluster_markdown(c: &ClusterFacts) -> String {
    let mut o = String::new();
    let drain = match c.drain {
        DrainMode::Worker => {
            "one `taskfleet-worker` process draining no-op tasks, held to the single server's \
             worker drain above: a worker is what drains a queue in production, and it claims \
             as a cluster client does (the heads of two shards read in one fan-out, the \
             wake-up of the shard that has work), so this is the fair comparison"
        }
        DrainMode::Library => {
            "4 library consumers (claim + complete in one call each), held to the single \
             server's drain with 4 consumers (no worker binary in this run)"
        }
    };
    let singles: Vec<String> = c
        .single
        .iter()
        .map(|(_, name, x)| format!("{name}: {x:.0}/s"))
        .collect();
    let _ = writeln!(
        o,
        "**On a Redis Cluster** (the `cluster` step; `--skip-cluster` leaves it out): the same \
         queue on clusters of {} primaries that the harness forms on loopback for the step (no \
         replicas, no persistence; every node, the bench client and the worker share the \
         machine's cores, so the aim is not a speedup but a small cluster overhead, an even \
         spread and a flat Redis CPU per job, which is what lets throughput grow with \
         machines), one type of {} shards, {} tasks a case, each case run once on each \
         cluster: enqueue_many and enqueue one task a call as above, then the drain: {}. \
         × single server divides by the single server's figure of the same case in this run \
         ({}). Redis CPU is every primary's `INFO cpu` (`used_cpu_sys` + `used_cpu_user`) \
         over the case; each primary's share of it and of `total_commands_processed` is set \
         against 1/N, and the last column gives the largest distance from 1/N as a share of \
         it. Redis CPU per job includes each node's own event-loop and cluster-bus work, and \
         the nodes compete with each other and the client for the same cores here.\n",
        c.rows
            .iter()
            .map(|r| r.primaries.to_string())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
            .join(", "),
        c.shards,
        c.tasks,
        drain,
        singles.join("; ")
    );
    o.push_str(
        "| primaries | case | jobs/s | × single server | × EVALSHA | p50 / p99 ms per call | Redis CPU µs per job | µs per job on each primary | CPU shares | command shares | max off 1/N (CPU) |\n",
    );
    o.push_str("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    let rows = c.rows.iter().map(|r| (r.primaries.to_string(), r));
    let wait = c.wait.iter().flat_map(|w| {
        let label = format!("{}+{}", w.primaries, w.replicas);
        [(label.clone(), &w.without), (label, &w.with)]
    });
    for (label, r) in rows.chain(wait) {
        let per_call = r
            .per_call
            .map_or_else(String::new, |l| format!("{} / {}", ms(l.p50), ms(l.p99)));
        let _ = writeln!(
            o,
            "| {} | {} | {:.0} | {} | {:.2} | {} | {:.1} | {} | {} | {} | {:.1}% |",
            label,
            r.name,
            r.jobs_per_sec,
            r.x_single.map_or_else(String::new, |x| format!("{x:.2}")),
            r.x_evalsha,
            per_call,
            r.redis_us_per_job,
            slashed(&r.us_each),
            percents(&r.cpu_shares),
            percents(&r.command_shares),
            r.cpu_deviation * 100.0
        );
    }
    o.push('\n');
    let n = c.rows.iter().map(|r| r.primaries).max().unwrap_or(1).max(1);
    let shards = usize::from(c.shards);
    if n > 1 && shards % n != 0 {
        let most = shards.div_ceil(n);
        let _ = writeln!(
            o,
            "{shards} shards do not split evenly over {n} primaries: one holds {most} of them, \
             {:.1}% over 1/{n} by the shard count alone, before any noise (a type's tasks are \
             spread evenly over its shards).\n",
            (most * n) as f64 / shards as f64 * 100.0 - 100.0
        );
    }
    if let Some(w) = &c.wake {
        let l = &w.latency;
        let _ = writeln!(
            o,
            "Wake-ups on the cluster of {} primaries, measured as on the single server (idle \
             workers subscribed to their shards' channels with `SSUBSCRIBE`, tasks enqueued one \
             call each at a steady rate): {} tasks at {:.0}/s, enqueue → processor start p50 {} \
             ms, p99 {} ms, max {} ms; an idle worker used {:.3}% of a core.\n",
            w.primaries,
            l.tasks,
            l.rate,
            ms_of_us(l.p50_us),
            ms_of_us(l.p99_us),
            ms_of_us(l.max_us),
            w.idle_cpu * 100.0
        );
    }
    if let Some(w) = &c.wait {
        let lat = |r: &super::cluster::ClusterRow| {
            r.per_call.map_or_else(String::new, |l| {
                format!(", p50 {} ms, p99 {} ms a call", ms(l.p50), ms(l.p99))
            })
        };
        let _ = writeln!(
            o,
            "The cost of `wait_replicas=1` (rows {}+{}: a cluster of {} primaries with a \
             replica each, {} tasks a run, enqueue one task a call, the same calls in flight): \
             without it {:.0}/s{}; with it (each enqueue answers once a replica has it, `WAIT 1` \
             with a {} ms limit, on a connection of its own) {:.0}/s{}: {:.2}× the rate without.\n",
            w.primaries,
            w.replicas,
            w.primaries,
            w.tasks,
            w.without.jobs_per_sec,
            lat(&w.without),
            w.wait_timeout_ms,
            w.with.jobs_per_sec,
            lat(&w.with),
            w.ratio
        );
    }
    o
}

/// The ordering error across shards.
fn ordering_markdown(runs: &[OrderingFacts]) -> String {
    let mut o = String::new();
    let first = &runs[0];
    let _ = writeln!(
        o,
        "**Order across shards**: within a shard claims follow (band, enqueue time) exactly; \
         across shards a claim takes the better of two random shards' heads, so it can start a \
         task while a better one waits in a shard it did not look at. Measured on the single \
         server of this run: {} tasks of the four bands mixed (a fixed pseudo-random pattern), \
         enqueued 100 a call, each call a millisecond after the last, into a queue of S shards, \
         then claimed by one consumer, {} a claim, and each claim checked against the tasks \
         still waiting at that moment: *out of order* when any waiting task comes strictly \
         before it in (band, enqueue time); *band inversion* when a waiting task has a \
         strictly higher band (a lower band started before a waiting higher one); \
         *displacement*, how many waiting tasks came strictly before it. With S = 1 all three \
         are 0.\n",
        first.tasks, first.claim_batch
    );
    o.push_str(
        "| shards | tasks | claims out of order | band inversions | displacement, mean / max |\n",
    );
    o.push_str("|---:|---:|---:|---:|---:|\n");
    for r in runs {
        let _ = writeln!(
            o,
            "| {} | {} | {:.2}% | {:.2}% | {:.1} / {} |",
            r.shards,
            r.tasks,
            r.out_of_order * 100.0,
            r.band_inversions * 100.0,
            r.displacement_mean,
            r.displacement_max
        );
    }
    o.push('\n');
    o
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
