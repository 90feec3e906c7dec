//! The cluster step's and the ordering runs' figures, computed once for both renderers: one
//! [`ClusterRow`] per case and cluster size, each next to the single-server figure of the same
//! run, the wake-ups on the cluster, the cost of `wait_replicas=1`, and the ordering error.

use crate::cluster::{
    max_deviation, ClusterCase, ClusterReport, ClusterSample, ClusterWake, DrainMode,
};
use crate::ordering::OrderingRun;
use crate::sample::Latency;

use super::{Case, Measurements};

/// One cluster case on one cluster size.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterRow {
    pub primaries: usize,
    pub case: ClusterCase,
    pub name: String,
    pub jobs_per_sec: f64,
    /// Over the single server's figure of the same case in the same run.
    pub x_single: Option<f64>,
    pub x_evalsha: f64,
    pub per_call: Option<Latency>,
    /// Redis CPU µs per job, every primary's together.
    pub redis_us_per_job: f64,
    /// Each primary's CPU µs per job, in port order.
    pub us_each: Vec<f64>,
    pub cpu_shares: Vec<f64>,
    pub command_shares: Vec<f64>,
    /// The largest distance of a primary's CPU share from 1/N, as a share of 1/N.
    pub cpu_deviation: f64,
    pub command_deviation: f64,
}

/// The cost of `wait_replicas=1`.
#[derive(Debug, Clone, PartialEq)]
pub struct WaitFacts {
    pub primaries: usize,
    pub replicas: usize,
    pub tasks: usize,
    pub wait_timeout_ms: u64,
    pub without: ClusterRow,
    pub with: ClusterRow,
    /// With over without, jobs/s.
    pub ratio: f64,
}

/// Everything the cluster sections show.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterFacts {
    pub shards: u16,
    pub tasks: usize,
    pub drain: DrainMode,
    pub rows: Vec<ClusterRow>,
    /// The single server's figure of each case (jobs/s), where the run has it.
    pub single: Vec<(ClusterCase, String, f64)>,
    pub wake: Option<ClusterWake>,
    pub wait: Option<WaitFacts>,
}

/// The single server's figure a cluster case is compared with, and its name.
fn single_figure(m: &Measurements, case: ClusterCase, drain: DrainMode) -> Option<(String, f64)> {
    match case {
        ClusterCase::EnqueueMany => m
            .case(Case::EnqueueMany)
            .map(|c| (c.sample.name.clone(), c.jobs_per_sec.median)),
        ClusterCase::Enqueue => m
            .case(Case::Enqueue)
            .map(|c| (c.sample.name.clone(), c.jobs_per_sec.median)),
        ClusterCase::Drain => match drain {
            DrainMode::Worker => m
                .fleet
                .as_ref()
                .map(|f| (f.drain.name.clone(), f.drain.jobs_per_sec())),
            DrainMode::Library => m
                .case(Case::Drain { consumers: 4 })
                .map(|c| (c.sample.name.clone(), c.jobs_per_sec.median)),
        },
    }
}

fn row(m: &Measurements, primaries: usize, s: &ClusterSample, single: Option<f64>) -> ClusterRow {
    let cpu_shares = s.cpu_shares();
    let command_shares = s.command_shares();
    ClusterRow {
        primaries,
        case: s.case,
        name: s.name.clone(),
        jobs_per_sec: s.jobs_per_sec(),
        x_single: single.map(|x| s.jobs_per_sec() / x.max(1e-9)),
        x_evalsha: m.ratio(s.jobs_per_sec()),
        per_call: (s.latency.calls > 0).then_some(s.latency),
        redis_us_per_job: s.redis_us_per_job(),
        us_each: s.us_per_job_each(),
        cpu_deviation: max_deviation(&cpu_shares),
        command_deviation: max_deviation(&command_shares),
        cpu_shares,
        command_shares,
    }
}

pub fn cluster_facts(m: &Measurements, c: &ClusterReport) -> ClusterFacts {
    let cases = [
        ClusterCase::EnqueueMany,
        ClusterCase::Enqueue,
        ClusterCase::Drain,
    ];
    let single: Vec<(ClusterCase, String, f64)> = cases
        .iter()
        .filter_map(|&k| single_figure(m, k, c.drain).map(|(n, x)| (k, n, x)))
        .collect();
    let single_of = |k: ClusterCase| single.iter().find(|(c, _, _)| *c == k).map(|(_, _, x)| *x);
    let mut rows = Vec::new();
    for run in &c.runs {
        for s in &run.samples {
            rows.push(row(m, run.primaries, s, single_of(s.case)));
        }
    }
    let wait = c.wait.as_ref().map(|w| {
        let single = single_of(ClusterCase::Enqueue);
        let without = row(m, w.primaries, &w.without, single);
        let with = row(m, w.primaries, &w.with, single);
        WaitFacts {
            primaries: w.primaries,
            replicas: w.replicas,
            tasks: w.without.jobs,
            wait_timeout_ms: w.wait_timeout_ms,
            ratio: with.jobs_per_sec / without.jobs_per_sec.max(1e-9),
            without,
            with,
        }
    });
    ClusterFacts {
        shards: c.shards,
        tasks: c.tasks,
        drain: c.drain,
        rows,
        single,
        wake: c.wake.clone(),
        wait,
    }
}

impl ClusterFacts {
    pub fn row(&self, primaries: usize, case: ClusterCase) -> Option<&ClusterRow> {
        self.rows
            .iter()
            .find(|r| r.primaries == primaries && r.case == case)
    }

    /// The largest cluster's rows.
    pub fn largest(&self) -> Vec<&ClusterRow> {
        let n = self.rows.iter().map(|r| r.primaries).max().unwrap_or(0);
        self.rows.iter().filter(|r| r.primaries == n).collect()
    }

    /// For each case, the most Redis CPU per job on a cluster of more than one primary over
    /// its figure on one primary; the largest of those. `None` without both.
    pub fn cpu_growth(&self) -> Option<(f64, String)> {
        let mut worst: Option<(f64, String)> = None;
        for r in self.rows.iter().filter(|r| r.primaries > 1) {
            let Some(one) = self.row(1, r.case) else {
                continue;
            };
            let x = r.redis_us_per_job / one.redis_us_per_job.max(1e-9);
            if worst.as_ref().is_none_or(|(w, _)| x > *w) {
                worst = Some((x, format!("{}, {} primaries", r.name, r.primaries)));
            }
        }
        worst
    }
}

/// One ordering run's line.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderingFacts {
    pub shards: u16,
    pub tasks: usize,
    pub claim_batch: usize,
    pub out_of_order: f64,
    pub band_inversions: f64,
    pub displacement_mean: f64,
    pub displacement_max: u64,
}

pub fn ordering_facts(runs: &[OrderingRun]) -> Vec<OrderingFacts> {
    runs.iter()
        .map(|r| OrderingFacts {
            shards: r.shards,
            tasks: r.tasks,
            claim_batch: r.claim_batch,
            out_of_order: r.error.out_of_order_share(),
            band_inversions: r.error.band_inversion_share(),
            displacement_mean: r.error.displacement_mean(),
            displacement_max: r.error.displacement_max,
        })
        .collect()
}

/// Shares as whole percents, `34/33/33%`.
pub fn percents(shares: &[f64]) -> String {
    let p: Vec<String> = shares.iter().map(|s| format!("{:.0}", s * 100.0)).collect();
    format!("{}%", p.join("/"))
}

/// Per-primary figures, `10.2/9.8/11.0`.
pub fn slashed(values: &[f64]) -> String {
    values
        .iter()
        .map(|v| format!("{v:.1}"))
        .collect::<Vec<_>>()
        .join("/")
}
