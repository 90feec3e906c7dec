#!/usr/bin/env bash
# A local stack for development: Redis on port 6390 (data under .dev/), the API and two
# workers; makes an API key, submits a story and prints where its result is. Ctrl-C stops
# everything this script started (and nothing else).
#
#   scripts/dev.sh                 # API on 127.0.0.1:8080
#   DEV_API_PORT=8081 scripts/dev.sh
#   scripts/dev.sh --cluster       # on a local 3-primary Redis Cluster (scripts/cluster.sh,
#                                  # ports 7100-7102), each task type in 16 shards
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER=0
for arg in "$@"; do
  case "$arg" in
    --cluster) CLUSTER=1 ;;
    *) echo "unknown argument: $arg (scripts/dev.sh [--cluster])" >&2; exit 2 ;;
  esac
done

REDIS_PORT="${DEV_REDIS_PORT:-6390}"
API_PORT="${DEV_API_PORT:-8080}"
DEV="$PWD/.dev"
REDIS_URL="redis://127.0.0.1:${REDIS_PORT}"
BASE="http://127.0.0.1:${API_PORT}"
if [ "$REDIS_PORT" = 6379 ]; then
  echo "refusing port 6379: that Redis is someone else's" >&2
  exit 1
fi

# --- what the stack needs -------------------------------------------------------------------
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-cli >/dev/null || need+=(redis-tools)
command -v ffmpeg >/dev/null || need+=(ffmpeg)
command -v espeak-ng >/dev/null || need+=(espeak-ng)
command -v curl >/dev/null || need+=(curl)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
# shellcheck source=scripts/lib/install-missing.sh
source scripts/lib/install-missing.sh  # the scripts run from the repository root
install_missing "${need[@]}"
command -v cargo >/dev/null || { echo "cargo is missing: install Rust (rustup)" >&2; exit 1; }

mkdir -p "$DEV/redis" "$DEV/artifacts" "$DEV/logs"
# shellcheck source=scripts/lib/stop-processes.sh
source scripts/lib/stop-processes.sh
pids=()
cleanup() {
  trap - INT TERM EXIT
  echo
  echo "== stopping"
  # Workers and API first (SIGTERM: they drain; SIGKILL after 30 s), Redis last (SIGTERM: it
  # shuts down as SHUTDOWN would, the AOF flushed; SIGKILL after 10 s). Only the pids started
  # below: a Redis that was already running is not ours and stays up.
  stop_processes 30 "${pids[@]:-}"
  stop_processes 10 "${redis_pid:-}"
  if [ "${cluster_started:-0}" = 1 ]; then
    scripts/cluster.sh stop
  fi
}
trap cleanup INT TERM EXIT

# --- Redis ------------------------------------------------------------------------------------
if [ "$CLUSTER" = 1 ]; then
  cluster_started=0
  if ! redis-cli -p "${CLUSTER_BASE_PORT:-7100}" cluster info 2>/dev/null | grep -q cluster_state:ok; then
    cluster_started=1
  fi
  echo "== a Redis Cluster on loopback (scripts/cluster.sh; data in .dev/cluster)"
  TASKFLEET__REDIS__CLUSTER_NODES="$(scripts/cluster.sh)"
  export TASKFLEET__REDIS__CLUSTER_NODES
  REDIS_URL=""
elif redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then
  echo "== a Redis already answers on port $REDIS_PORT: using it (not stopping it at the end)"
else
  echo "== starting Redis on 127.0.0.1:$REDIS_PORT (data in .dev/redis)"
  # appendonly: an acknowledged enqueue survives a crash (within a second: everysec);
  # noeviction: Redis must never drop a task or a lease to make room (DESIGN §6).
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$DEV/redis" \
    --appendonly yes --appendfsync everysec --maxmemory-policy noeviction \
    --save '' --logfile "$DEV/logs/redis.log" &
  redis_pid=$!
  for _ in $(seq 1 100); do
    redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  redis-cli -p "$REDIS_PORT" ping >/dev/null || { echo "Redis did not start; see .dev/logs/redis.log" >&2; exit 1; }
fi

# --- build ------------------------------------------------------------------------------------
echo "== building"
cargo build -q -p taskfleet-api -p taskfleet-worker --bins
BIN="$PWD/target/debug"

export TASKFLEET__ARTIFACTS__DIR="$DEV/artifacts"
# A cluster is named by TASKFLEET__REDIS__CLUSTER_NODES (exported above); a single server by
# its URL.
redis_args=()
if [ -n "$REDIS_URL" ]; then
  export REDIS_URL
  redis_args=(--redis-url "$REDIS_URL")
fi

# --- API and workers ----------------------------------------------------------------------------
echo "== starting the API on $BASE (log: .dev/logs/api.log)"
"$BIN/taskfleet-api" --listen "127.0.0.1:${API_PORT}" "${redis_args[@]}" \
  >"$DEV/logs/api.log" 2>&1 &
pids+=($!)
for i in 1 2; do
  echo "== starting worker $i (log: .dev/logs/worker-$i.log)"
  "$BIN/taskfleet-worker" "${redis_args[@]}" >"$DEV/logs/worker-$i.log" 2>&1 &
  pids+=($!)
done
for _ in $(seq 1 100); do
  curl -fsS "$BASE/ready" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "$BASE/ready" >/dev/null || { echo "the API is not ready; see .dev/logs/api.log" >&2; exit 1; }

# --- a key and a first task -----------------------------------------------------------------------
KEY="$("$BIN/taskfleet-api" "${redis_args[@]}" keys create --account dev --user me --name dev.sh)"
echo "== API key (account dev): $KEY"
answer="$(curl -fsS -X POST "$BASE/api/story/generate" \
  -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
  -d '{"prompt": "a lighthouse keeper who befriends a storm", "length": "short"}')"
echo "== enqueued: $answer"
id="$(printf '%s' "$answer" | sed -n 's/.*"task_id":"\([^"]*\)".*/\1/p')"
status=""
for _ in $(seq 1 240); do
  task="$(curl -fsS "$BASE/api/tasks/$id" -H "Authorization: Bearer $KEY")"
  status="$(printf '%s' "$task" | sed -n 's/.*"status":"\([^"]*\)".*/\1/p')"
  case "$status" in completed|failed|cancelled) break ;; esac
  sleep 0.5
done
echo "== task $id: $status"
if [ "$status" = completed ]; then
  echo "result:  curl -H 'Authorization: Bearer $KEY' $BASE/api/tasks/$id/artifacts/story.md"
  echo "task:    curl -H 'Authorization: Bearer $KEY' $BASE/api/tasks/$id"
else
  echo "the story did not complete; see .dev/logs/worker-*.log" >&2
fi
echo
echo "Stack running: API $BASE, Redis ${REDIS_URL:-cluster $TASKFLEET__REDIS__CLUSTER_NODES}. scripts/smoke.sh walks the API:"
echo "  KEY=$KEY BASE=$BASE scripts/smoke.sh"
echo "Ctrl-C stops the API, the workers and Redis."
wait
