//! What a run measured, as `core` and `fleet` fill it in: the rounds of the ceilings and the
//! library cases, the script runs, the worker and HTTP cases, and the run's shape as plain
//! values. Reads over the rounds (medians, the median round) live here; nothing is formatted.

use crate::ceiling::Ceilings;
use crate::cluster::ClusterReport;
use crate::fleet::FleetReport;
use crate::machine::Machine;
use crate::ordering::OrderingRun;
use crate::sample::{median_index, Sample, Spread};

use super::{DISTURBED_OTHER_LOAD, DISTURBED_SPREAD};

/// The shape of a run, as the prose describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Setup {
    /// The command line to print (scripts/bench.sh passes its own).
    pub command: String,
    /// Tasks per library case and round.
    pub tasks: usize,
    /// Accounts the tasks are spread over.
    pub accounts: usize,
    /// Consumer counts of the drain cases, in order.
    pub consumers: Vec<usize>,
    /// redis-benchmark clients of the ceiling.
    pub ceiling_clients: usize,
    /// Calls in flight of the one-task-a-call enqueue case.
    pub in_flight: usize,
}

/// Which library case a sample is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    /// `enqueue`, one task a call, many calls in flight.
    Enqueue,
    /// `enqueue`, one task a call, one call at a time.
    EnqueueOneAtATime,
    /// `enqueue_many`.
    EnqueueMany,
    /// Claim + complete with this many consumers.
    Drain { consumers: usize },
}

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

/// One round on fresh keys: the ceilings, then the library cases.
#[derive(Debug, Clone)]
pub struct Round {
    pub ceiling: Ceilings,
    /// The library cases, in the order they ran.
    pub samples: Vec<(Case, Sample)>,
    pub memory: Memory,
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
    /// A redis-benchmark run of `per_call` tasks a request, as a row.
    pub fn of(name: String, per_call: usize, c: &crate::ceiling::Ceiling) -> ScriptRun {
        ScriptRun {
            name,
            tasks_per_call: per_call,
            ops_per_sec: c.ops_per_sec,
            server_us_per_job: c.server_us_per_op / per_call.max(1) as f64,
        }
    }

    pub fn jobs_per_sec(&self) -> f64 {
        self.ops_per_sec * self.tasks_per_call as f64
    }
}

/// The floor runs ([`crate::floor`]): the same tasks' writes alone, by redis-benchmark.
#[derive(Debug, Clone, PartialEq)]
pub struct Floors {
    /// Each task's hash and one ZADD a call, a batch a call, as many clients as the ceiling.
    pub enqueue_batched: ScriptRun,
    /// The same, one task a call from one client.
    pub enqueue_one_client: ScriptRun,
    /// HSET of a task's fields alone, no script, pipelined a batch deep.
    pub hset_pipelined: ScriptRun,
    /// ZPOPMIN of a claim's batch, each hash marked completed, one ZADD.
    pub drain: ScriptRun,
}

impl Floors {
    pub fn rows(&self) -> [&ScriptRun; 4] {
        [
            &self.enqueue_batched,
            &self.hset_pipelined,
            &self.enqueue_one_client,
            &self.drain,
        ]
    }
}

/// Everything one `core` run measured.
#[derive(Debug, Clone)]
pub struct Measurements {
    pub setup: Setup,
    /// CPU cores other processes of the machine used on average during the run.
    pub other_load: f64,
    /// The redis-benchmark command lines of the two EVALSHA ceilings (50 clients, 1 client).
    pub ceiling_command: String,
    pub ceiling_one_client_command: String,
    pub machine: Machine,
    pub date: String,
    pub load_before: String,
    pub load_after: String,
    /// The interleaved rounds of the ceilings and the library cases, in order (at least one).
    pub rounds: Vec<Round>,
    /// The enqueue script driven by redis-benchmark: the server's side of the cost alone.
    pub script_runs: Vec<ScriptRun>,
    /// The floor runs (`None` in reports built without them).
    pub floors: Option<Floors>,
    /// The worker and HTTP cases (`None` with `--skip-fleet`), run once.
    pub fleet: Option<FleetReport>,
    /// The ordering error across shards, one run per shard count (empty with
    /// `--skip-ordering`).
    pub ordering: Vec<OrderingRun>,
    /// The cluster step (`None` with `--skip-cluster`).
    pub cluster: Option<ClusterReport>,
}

/// A library case over the rounds: the spread of its jobs/s, and the sample of its median
/// round, whose other columns the table shows.
#[derive(Debug, Clone, Copy)]
pub struct CaseRounds<'a> {
    pub sample: &'a Sample,
    pub jobs_per_sec: Spread,
}

impl Measurements {
    fn ceiling_values(&self, f: fn(&Ceilings) -> f64) -> Vec<f64> {
        self.rounds.iter().map(|r| f(&r.ceiling)).collect()
    }

    /// EVALSHA of `return 1` over the rounds.
    pub fn ceiling_spread(&self) -> Spread {
        Spread::of(&self.ceiling_values(|c| c.evalsha.ops_per_sec))
    }

    /// The same EVALSHA from one client over the rounds.
    pub fn one_client_spread(&self) -> Spread {
        Spread::of(&self.ceiling_values(|c| c.evalsha_one_client.ops_per_sec))
    }

    /// SET over the rounds.
    pub fn set_spread(&self) -> Spread {
        Spread::of(&self.ceiling_values(|c| c.set.ops_per_sec))
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
        median_index(&self.ceiling_values(|c| c.evalsha.ops_per_sec))
            .map_or(0.0, |i| self.rounds[i].ceiling.evalsha.server_us_per_op)
    }

    /// Redis CPU µs per op of the median one-client ceiling round.
    pub fn one_client_us_per_op(&self) -> f64 {
        median_index(&self.ceiling_values(|c| c.evalsha_one_client.ops_per_sec)).map_or(0.0, |i| {
            self.rounds[i].ceiling.evalsha_one_client.server_us_per_op
        })
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

    /// A library case over the rounds; `None` when the run did not have it.
    pub fn case(&self, case: Case) -> Option<CaseRounds<'_>> {
        let samples: Vec<&Sample> = self
            .rounds
            .iter()
            .filter_map(|r| r.samples.iter().find(|(c, _)| *c == case).map(|(_, s)| s))
            .collect();
        let v: Vec<f64> = samples.iter().map(|s| s.jobs_per_sec()).collect();
        Some(CaseRounds {
            sample: samples[median_index(&v)?],
            jobs_per_sec: Spread::of(&v),
        })
    }

    /// The library cases of the first round, in the order they ran.
    pub fn cases(&self) -> Vec<Case> {
        self.rounds
            .first()
            .map_or_else(Vec::new, |r| r.samples.iter().map(|(c, _)| *c).collect())
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

    /// The library's enqueue, one task a call with many in flight: its median jobs/s.
    pub fn library_enqueue(&self) -> f64 {
        self.case(Case::Enqueue)
            .map_or(0.0, |c| c.jobs_per_sec.median)
    }
}
