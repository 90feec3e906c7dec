#!/usr/bin/env bash
# The benchmark (DESIGN §11): builds taskfleet-bench, taskfleet-worker and taskfleet-api in
# release mode and runs `taskfleet-bench core` on a redis-server it starts itself on a free
# loopback port (never 6379), next to redis-benchmark on the same server: the EVALSHA ceilings
# (50 clients, and 1 client for one call at a time) and the library cases (enqueue one task a
# call with 50 in flight, one call at a time, enqueue_many, the drains) in interleaved rounds on
# fresh keys (--rounds, default 3; each case reported as the median of its rounds with the
# min–max beside it, every ratio over the median ceiling), then once each: one worker process
# draining, enqueue → start latency with idle workers, an idle worker's CPU and HTTP enqueue
# through one API process (50, then 64 connections); the ordering error across shards (S = 1,
# 4, 16; 100,000 tasks of mixed bands, one consumer); and the cluster step: the same queue on
# Redis Clusters of 1, 2 and 3 primaries the run forms on loopback (16 shards; enqueue_many,
# enqueue one a call, a worker draining; each primary's Redis CPU and share), wake-ups and
# idle CPU on the 3-primary cluster, and the cost of wait_replicas=1 on 3 primaries + 3
# replicas; all in one run.
# Prints the figures and writes them into README.md's `## Benchmarks`.
#
#   scripts/bench.sh                   # the default run: 3 rounds, 100,000 tasks a case and round
#   scripts/bench.sh --rounds 5        # more rounds: a steadier median, a longer run
#   scripts/bench.sh --tasks 10000     # any `taskfleet-bench core` flag passes through
#   scripts/bench.sh --skip-fleet      # no worker or API process (the cluster drains by library)
#   scripts/bench.sh --skip-cluster --skip-ordering   # the single server only
#   BENCH_README=0 scripts/bench.sh    # print only, leave README.md as it is
set -euo pipefail
cd "$(dirname "$0")/.."

for bin in redis-server redis-benchmark; do
  command -v "$bin" >/dev/null || {
    echo "missing: $bin; install it (apt-get install redis-server redis-tools) and run again" >&2
    exit 1
  }
done

readme=(--readme README.md)
[ "${BENCH_README:-1}" = 0 ] && readme=()

cargo build -p taskfleet-bench -p taskfleet-worker -p taskfleet-api --release
cargo run -q -p taskfleet-bench --release -- core \
  --command "scripts/bench.sh${*:+ $*}" "${readme[@]}" "$@"
