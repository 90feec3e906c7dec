//! The floor: the least Redis itself can spend on the same work on this machine, driven by
//! `redis-benchmark` (C clients, no client of ours), in the same run as the ceiling.
//!
//! The goals are ratios to `EVALSHA` of `return 1`, a call that writes nothing. A task, though,
//! has to be written: its hash of fields and its place in a queue. These runs do only that, in
//! the cheapest form Redis offers, with the bench's own tasks (the same fields, values and id
//! lengths as the library writes), so a goal can be read against what any queue storing the
//! same task could reach here:
//! - enqueue floor: a script that writes each task's hash (`HSET` of the fields `enqueue.lua`
//!   writes for it) and adds the call's ids to a queue in one `ZADD`: nothing else (no
//!   idempotency, quota, account index, counters, event or wake-up);
//! - the same from one client, one task a call: the floor of one call at a time;
//! - `HSET` of the same fields alone, pipelined, no script: the cheapest way to store the hashes;
//! - drain floor: a script that claims `claim_batch` ids from that queue under a lease
//!   (`ZPOPMIN`, a deadline in a lease set, the hash marked running) and completes as many
//!   leased ones (the hash marked completed with a result and a time, a completed set), as the
//!   worker's fused complete-and-claim does: no attempt count, fence, counters or event.

use std::sync::Arc;

use taskfleet::broker::enqueue::ScriptCall;
use taskfleet::{Clock, RedisClock};

use anyhow::{ensure, Result};

use crate::ceiling::{self, CeilingArgs};
use crate::core::bench_task;
use crate::report::{Floors, ScriptRun};
use crate::server::Server;

/// Writes each task's hash and queues the call's ids. KEYS: the queue, the task key prefix.
/// ARGV[1] task type, ARGV[2] created_at, then 6 values a task: id, priority, max_attempts,
/// request, account_id, user_id.
pub const ENQUEUE_FLOOR: &str = r#"
local ready = {}
for i = 3, #ARGV, 6 do
  local id = ARGV[i]
  redis.call('HSET', KEYS[2] .. id, 'id', id, 'task_type', ARGV[1], 'priority', ARGV[i + 1],
    'request', ARGV[i + 3], 'attempts', '0', 'max_attempts', ARGV[i + 2],
    'created_at', ARGV[2], 'status', 'queued', 'account_id', ARGV[i + 4], 'user_id', ARGV[i + 5])
  ready[#ready + 1] = ARGV[2]
  ready[#ready + 1] = id
end
redis.call('ZADD', KEYS[1], unpack(ready))
return #ready / 2
"#;

/// A claim and a completion under a lease, fused as the worker's complete-and-claim is: pops
/// up to ARGV[1] ids from the queue and leases them (a deadline in a lease set, the hash
/// marked running), then completes as many of the oldest leases (the hash marked completed
/// with a result and a time, the id added to a completed set). KEYS: the queue, the task key
/// prefix, the completed set, the lease set. ARGV[2] the result, ARGV[3] the time, ARGV[4]
/// the lease deadline.
pub const DRAIN_FLOOR: &str = r#"
local popped = redis.call('ZPOPMIN', KEYS[1], ARGV[1])
local leased = {}
for i = 1, #popped, 2 do
  local id = popped[i]
  redis.call('HSET', KEYS[2] .. id, 'status', 'running', 'lease', ARGV[4])
  leased[#leased + 1] = ARGV[4]
  leased[#leased + 1] = id
end
if #leased > 0 then
  redis.call('ZADD', KEYS[4], unpack(leased))
end
local ended = redis.call('ZPOPMIN', KEYS[4], ARGV[1])
local done = {}
for i = 1, #ended, 2 do
  local id = ended[i]
  redis.call('HSET', KEYS[2] .. id, 'status', 'completed', 'result', ARGV[2],
    'finished_at', ARGV[3])
  done[#done + 1] = ARGV[3]
  done[#done + 1] = id
end
if #done > 0 then
  redis.call('ZADD', KEYS[3], unpack(done))
end
return #done / 2
"#;

/// Keys of the floor runs (flushed after).
pub const QUEUE: &str = "bF:queued";
pub const TASK_PREFIX: &str = "bF:task:";
pub const COMPLETED: &str = "bF:completed";
pub const LEASES: &str = "bF:leases";

/// One task's values for the floor, taken from the library's own enqueue call.
#[derive(Debug, Clone)]
pub struct FloorTask {
    pub id: String,
    pub priority: String,
    pub max_attempts: String,
    pub request: String,
    pub account_id: String,
    pub user_id: String,
}

impl FloorTask {
    /// Its 6 values in [`ENQUEUE_FLOOR`]'s order.
    pub fn args(&self) -> [String; 6] {
        [
            self.id.clone(),
            self.priority.clone(),
            self.max_attempts.clone(),
            self.request.clone(),
            self.account_id.clone(),
            self.user_id.clone(),
        ]
    }
}

/// The task type and each task's values of the library's own enqueue call (`enqueue.lua`'s
/// ARGV: the type second, then 13 values a task from the 9th), ids as given.
pub fn floor_tasks(call: &ScriptCall) -> Result<(String, Vec<FloorTask>)> {
    const FIRST: usize = 8;
    const STRIDE: usize = 13;
    ensure!(
        call.args.len() > FIRST && (call.args.len() - FIRST).is_multiple_of(STRIDE),
        "enqueue.lua's arguments changed: the floor reads 13 a task from the 9th"
    );
    let tasks = call.args[FIRST..]
        .chunks(STRIDE)
        .map(|a| FloorTask {
            id: a[0].clone(),
            priority: a[2].clone(),
            max_attempts: a[4].clone(),
            request: a[5].clone(),
            account_id: a[6].clone(),
            user_id: a[7].clone(),
        })
        .collect();
    Ok((call.args[1].clone(), tasks))
}

/// How much each floor run does.
#[derive(Debug, Clone, Copy)]
pub struct FloorArgs {
    /// Tasks of the batched enqueue floor, the drain floor and the pipelined HSET.
    pub tasks: usize,
    /// Tasks a call of the batched enqueue floor (the pipeline depth of the HSET run).
    pub batch: usize,
    /// Ids the drain floor pops a call.
    pub claim_batch: usize,
    /// Accounts the tasks are spread over (as the library cases).
    pub accounts: usize,
    /// Calls of the one-client run.
    pub one_client_requests: usize,
}

/// Runs the four floor runs on `server` (flushing the keyspace after), with redis-benchmark
/// as `ceiling_args` says (its clients; the requests follow `a`).
pub async fn measure(
    server: &mut Server,
    ceiling_args: &CeilingArgs,
    clock: &Arc<RedisClock>,
    a: FloorArgs,
) -> Result<Floors> {
    let FloorArgs {
        tasks,
        batch,
        claim_batch,
        accounts,
        one_client_requests,
    } = a;
    let claim_batch = claim_batch.max(1);
    let b = crate::core::broker(&server.url(), "bF", "bench-floor")?;
    let template: Vec<_> = (0..batch.max(1)).map(|i| bench_task(i, accounts)).collect();
    let call = b.enqueue_script_call(&template, clock.now_ms())?;
    let created = clock.now_ms().to_string();
    let (task_type, mut floor_tasks) = floor_tasks(&call)?;
    for t in &mut floor_tasks {
        t.id = random_id(&t.id);
    }

    let enqueue_sha = server.script_load(ENQUEUE_FLOOR).await?;
    let drain_sha = server.script_load(DRAIN_FLOOR).await?;
    let enqueue_words = |tasks: &[FloorTask]| {
        let mut w: Vec<String> = vec![
            "-r".into(),
            "1000000000".into(),
            "EVALSHA".into(),
            enqueue_sha.clone(),
            "2".into(),
            QUEUE.into(),
            TASK_PREFIX.into(),
            task_type.clone(),
            created.clone(),
        ];
        for t in tasks {
            w.extend(t.args());
        }
        w
    };

    // Batched, 50 clients: the queue it fills (with a tenth more than the drain takes, so
    // that every drain call pops a full batch) is the drain floor's.
    let per_call = floor_tasks.len();
    let calls = (tasks + tasks / 10)
        .div_ceil(per_call)
        .max(ceiling_args.clients);
    let run_args = CeilingArgs {
        requests: calls,
        ..ceiling_args.clone()
    };
    let words = enqueue_words(&floor_tasks);
    let c = run(server, &run_args, &words).await?;
    let enqueue_batched = ScriptRun::of(
        format!(
            "floor: HSET of each task + 1 ZADD a call, {per_call} per call, {} clients",
            run_args.clients
        ),
        per_call,
        &c,
    );

    let drain_calls = tasks.div_ceil(claim_batch).max(ceiling_args.clients);
    let run_args = CeilingArgs {
        requests: drain_calls,
        ..ceiling_args.clone()
    };
    let batch_arg = claim_batch.to_string();
    let deadline = (clock.now_ms() + 60_000).to_string();
    let words: Vec<String> = [
        "EVALSHA",
        &drain_sha,
        "4",
        QUEUE,
        TASK_PREFIX,
        COMPLETED,
        LEASES,
        &batch_arg,
        r#"{"ok":true}"#,
        &created,
        &deadline,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let c = run(server, &run_args, &words).await?;
    let drain = ScriptRun::of(
        format!(
            "floor: claim {claim_batch} under a lease + complete {claim_batch}, 1 script, {} clients",
            run_args.clients
        ),
        claim_batch,
        &c,
    );
    server.flush().await?;

    // One task a call from one client: the floor of one call at a time.
    let one = ceiling_args.one_client(one_client_requests);
    let words = enqueue_words(&floor_tasks[..1]);
    let c = run(server, &one, &words).await?;
    let enqueue_one_client = ScriptRun::of(
        "floor: HSET of a task + ZADD, 1 per call, 1 client".into(),
        1,
        &c,
    );
    server.flush().await?;

    // The hashes alone, pipelined as deep as a batch: no script at all.
    let t = &floor_tasks[0];
    let mut words: Vec<String> = vec![
        "-r".into(),
        "1000000000".into(),
        "-P".into(),
        per_call.to_string(),
        "HSET".into(),
        format!("{TASK_PREFIX}{}", t.id),
    ];
    for (f, v) in [
        ("id", t.id.as_str()),
        ("task_type", task_type.as_str()),
        ("priority", t.priority.as_str()),
        ("request", t.request.as_str()),
        ("attempts", "0"),
        ("max_attempts", t.max_attempts.as_str()),
        ("created_at", created.as_str()),
        ("status", "queued"),
        ("account_id", t.account_id.as_str()),
        ("user_id", t.user_id.as_str()),
    ] {
        words.extend([f.to_string(), v.to_string()]);
    }
    let run_args = CeilingArgs {
        requests: tasks.max(ceiling_args.clients),
        ..ceiling_args.clone()
    };
    let c = run(server, &run_args, &words).await?;
    let hset_pipelined = ScriptRun::of(
        format!(
            "floor: HSET of a task, no script, pipelined {per_call} deep, {} clients",
            run_args.clients
        ),
        1,
        &c,
    );
    server.flush().await?;

    Ok(Floors {
        enqueue_batched,
        enqueue_one_client,
        hset_pipelined,
        drain,
    })
}

async fn run(
    server: &mut Server,
    args: &CeilingArgs,
    words: &[String],
) -> Result<ceiling::Ceiling> {
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    ceiling::run_measured(server, args, &words).await
}

/// The library's id with its last 12 characters (a uuid's last group) made random per
/// request by redis-benchmark (`__rand_int__` is 12 digits): ids of the real length.
pub fn random_id(id: &str) -> String {
    let keep = id.len().saturating_sub(12);
    format!("{}__rand_int__", &id[..keep])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_random_id_keeps_the_length_redis_benchmark_gives_it() {
        let id = "bench.0.0190d3e1-7c4f-7a2b-9e0d-0123456789ab";
        let r = random_id(id);
        assert_eq!(r, "bench.0.0190d3e1-7c4f-7a2b-9e0d-__rand_int__");
        // redis-benchmark writes 12 digits for __rand_int__.
        assert_eq!(r.replace("__rand_int__", "000000000042").len(), id.len());
    }
}
