//! One measured case: how many jobs, how long, each call's latency, and the CPU time the
//! server and this client spent on it (two processes sharing the same few cores).

use std::time::{Duration, Instant};

use anyhow::Result;

use crate::server::{CommandStat, Server};

/// The figures of one case.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub jobs: usize,
    pub elapsed: Duration,
    /// Per call (one enqueue, one batch, one claim + complete round).
    pub latency: Latency,
    /// CPU seconds redis-server used during the case.
    pub server_cpu: f64,
    /// CPU seconds this process (the client) used during the case.
    pub client_cpu: f64,
    /// Where the server's time went: `INFO commandstats` of the case, most time first
    /// (`evalsha` includes the commands its scripts ran, which are listed too).
    pub commands: Vec<CommandStat>,
}

impl Sample {
    pub fn jobs_per_sec(&self) -> f64 {
        self.jobs as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Server CPU microseconds per job: what a job costs Redis, whatever the load.
    pub fn server_us_per_job(&self) -> f64 {
        self.server_cpu * 1e6 / self.jobs.max(1) as f64
    }

    pub fn client_us_per_job(&self) -> f64 {
        self.client_cpu * 1e6 / self.jobs.max(1) as f64
    }

    /// The share of one core redis-server used (its main thread can use at most ~1.0).
    pub fn server_busy(&self) -> f64 {
        self.server_cpu / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// The median of several rounds' figures, with the lowest and highest beside it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Spread {
    /// How many figures (rounds).
    pub n: usize,
    /// The middle figure; with an even count, the mean of the two middle ones.
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    /// The spread of `values` (in any order); all zero for none.
    pub fn of(values: &[f64]) -> Spread {
        if values.is_empty() {
            return Spread::default();
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Spread {
            n,
            median,
            min: v[0],
            max: v[n - 1],
        }
    }

    /// max − min as a share of the median (0 for a single figure).
    pub fn relative(&self) -> f64 {
        (self.max - self.min) / self.median.max(1e-9)
    }
}

/// The index in `values` of the median round: the middle one, or with an even count the
/// lower of the two middle ones (a round that was actually run, for its other columns).
/// `None` for no values.
pub fn median_index(values: &[f64]) -> Option<usize> {
    if values.is_empty() {
        return None;
    }
    let mut idx: Vec<usize> = (0..values.len()).collect();
    idx.sort_by(|&a, &b| values[a].total_cmp(&values[b]).then(a.cmp(&b)));
    Some(idx[(values.len() - 1) / 2])
}

/// Latency percentiles of the calls of a case.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Latency {
    pub calls: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Latency {
    pub fn of(mut calls: Vec<Duration>) -> Latency {
        if calls.is_empty() {
            return Latency::default();
        }
        calls.sort_unstable();
        let at = |q: f64| calls[((calls.len() - 1) as f64 * q).round() as usize];
        Latency {
            calls: calls.len(),
            p50: at(0.50),
            p99: at(0.99),
            max: calls[calls.len() - 1],
        }
    }
}

/// Where a case started: wall clock, server CPU, client CPU.
pub struct Meter {
    start: Instant,
    server_cpu: f64,
    client_cpu: f64,
}

impl Meter {
    pub async fn start(server: &mut Server) -> Result<Meter> {
        server.reset_stats().await?;
        Ok(Meter {
            server_cpu: server.cpu_seconds().await?,
            client_cpu: own_cpu_seconds(),
            start: Instant::now(),
        })
    }

    /// Ends the case: `elapsed` is taken before the INFO round trip.
    pub async fn finish(
        self,
        server: &mut Server,
        name: &str,
        jobs: usize,
        calls: Vec<Duration>,
    ) -> Result<Sample> {
        let elapsed = self.start.elapsed();
        let client_cpu = own_cpu_seconds() - self.client_cpu;
        let server_cpu = server.cpu_seconds().await? - self.server_cpu;
        let mut commands = server.command_stats().await?;
        commands.retain(|c| c.name != "config|resetstat" && c.name != "info");
        commands.sort_by_key(|c| std::cmp::Reverse(c.usec));
        Ok(Sample {
            name: name.to_string(),
            jobs,
            elapsed,
            latency: Latency::of(calls),
            server_cpu,
            client_cpu,
            commands,
        })
    }
}

/// CPU seconds (user + system) this process has used, from `/proc/self/stat`; 0 where there
/// is no procfs.
pub fn own_cpu_seconds() -> f64 {
    self_stat_seconds(false)
}

/// Like [`own_cpu_seconds`], plus the children this process has waited for (redis-benchmark).
pub fn own_and_children_cpu_seconds() -> f64 {
    self_stat_seconds(true)
}

fn self_stat_seconds(children: bool) -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .map(|s| stat_cpu_seconds(&s, children))
        .unwrap_or(0.0)
}

/// CPU seconds (user + system) another process has used, from `/proc/<pid>/stat`; `None`
/// once it is gone or where there is no procfs.
pub fn pid_cpu_seconds(pid: u32) -> Option<f64> {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .map(|s| stat_cpu_seconds(&s, false))
}

/// CPU seconds the live threads of a process have run, to the nanosecond: the first field of
/// each `/proc/<pid>/task/<tid>/schedstat` (finer than `stat`'s 10 ms ticks, for idle
/// processes). `None` once it is gone or where there is no procfs.
pub fn pid_run_seconds(pid: u32) -> Option<f64> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut ns = 0u64;
    for t in dir.flatten() {
        if let Ok(s) = std::fs::read_to_string(t.path().join("schedstat")) {
            ns += schedstat_ns(&s).unwrap_or(0);
        }
    }
    Some(ns as f64 / 1e9)
}

/// The time on CPU, in ns, of a `schedstat` line (`<on cpu ns> <waiting ns> <slices>`).
pub fn schedstat_ns(line: &str) -> Option<u64> {
    line.split_whitespace().next()?.parse().ok()
}

/// utime + stime (and cutime + cstime with `children`) of a `/proc/<pid>/stat` line, in
/// seconds; 0 when the line cannot be read.
pub fn stat_cpu_seconds(stat: &str, children: bool) -> f64 {
    // USER_HZ, the unit of utime and stime, is 100 on every Linux architecture we run on.
    const TICKS_PER_SEC: f64 = 100.0;
    // Fields after the ")" that closes the command name: state is the first (field 3), utime
    // and stime are fields 14 and 15.
    let Some((_, rest)) = stat.rsplit_once(") ") else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // cutime and cstime (fields 16 and 17) count the children that were waited for.
    let extra = if children { ticks(13) + ticks(14) } else { 0.0 };
    (ticks(11) + ticks(12) + extra) / TICKS_PER_SEC
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_sorted_calls() {
        let calls = (1..=100).rev().map(Duration::from_millis).collect();
        let l = Latency::of(calls);
        assert_eq!(l.calls, 100);
        assert_eq!(l.p50, Duration::from_millis(51));
        assert_eq!(l.p99, Duration::from_millis(99));
        assert_eq!(l.max, Duration::from_millis(100));
    }

    #[test]
    fn spread_of_an_odd_count_is_its_middle_figure() {
        let s = Spread::of(&[105.0, 93.0, 97.0]);
        assert_eq!((s.n, s.median, s.min, s.max), (3, 97.0, 93.0, 105.0));
        assert!((s.relative() - 12.0 / 97.0).abs() < 1e-12);
    }

    #[test]
    fn spread_of_an_even_count_averages_the_two_middle_figures() {
        let s = Spread::of(&[4.0, 1.0, 3.0, 2.0]);
        assert_eq!((s.n, s.median, s.min, s.max), (4, 2.5, 1.0, 4.0));
    }

    #[test]
    fn spread_of_one_figure_and_of_none() {
        let one = Spread::of(&[42.0]);
        assert_eq!((one.median, one.min, one.max), (42.0, 42.0, 42.0));
        assert_eq!(one.relative(), 0.0);
        assert_eq!(Spread::of(&[]), Spread::default());
    }

    #[test]
    fn the_median_round_is_one_that_was_run() {
        assert_eq!(median_index(&[105.0, 93.0, 97.0]), Some(2));
        assert_eq!(median_index(&[1.0, 2.0, 3.0]), Some(1));
        // Even count: the lower of the two middle rounds; ties go to the earlier round.
        assert_eq!(median_index(&[4.0, 1.0, 3.0, 2.0]), Some(3));
        assert_eq!(median_index(&[5.0, 5.0, 5.0]), Some(1));
        assert_eq!(median_index(&[7.0]), Some(0));
        assert_eq!(median_index(&[]), None);
    }

    #[test]
    fn no_calls_give_zero_latencies() {
        assert_eq!(Latency::of(Vec::new()), Latency::default());
    }

    #[test]
    fn stat_lines_give_user_plus_system_seconds() {
        // A command name with spaces and a ")" in it, then state and fields 4-17.
        let line = "42 (taskfleet (x) w) S 1 2 3 4 5 6 7 8 9 10 250 50 7 3 20 0";
        assert!((stat_cpu_seconds(line, false) - 3.0).abs() < 1e-9);
        assert!((stat_cpu_seconds(line, true) - 3.1).abs() < 1e-9);
        assert_eq!(stat_cpu_seconds("garbage", false), 0.0);
    }

    #[test]
    fn schedstat_gives_the_time_on_cpu() {
        assert_eq!(schedstat_ns("123456789 5000 42\n"), Some(123_456_789));
        assert_eq!(schedstat_ns(""), None);
        let me = pid_run_seconds(std::process::id()).unwrap();
        assert!(me > 0.0);
    }

    #[test]
    fn own_cpu_time_is_read_and_does_not_go_backwards() {
        let a = own_cpu_seconds();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(own_cpu_seconds() >= a);
    }
}
