#!/usr/bin/env bash
# Fuzzes the REST API from its own OpenAPI document with Schemathesis: every operation gets
# generated valid and invalid requests; the run fails on any 5xx or any answer that breaks the
# document (status, content type, body schema). Starts its own redis-server and API on free
# loopback ports and stops them afterwards; bounded to a couple of minutes.
#
#   scripts/fuzz-api.sh                 # FUZZ_EXAMPLES=25 FUZZ_MAX_TIME=75 by default
set -euo pipefail
cd "$(dirname "$0")/.."

EXAMPLES="${FUZZ_EXAMPLES:-25}"
MAX_TIME="${FUZZ_MAX_TIME:-75}"
VENV="$PWD/.dev/fuzz-venv"

need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-cli >/dev/null || need+=(redis-tools)
command -v curl >/dev/null || need+=(curl)
command -v python3 >/dev/null || need+=(python3)
# Debian's own python3 makes virtualenvs only with python3-venv (ensurepip).
python3 -c 'import ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
# shellcheck source=scripts/lib/install-missing.sh
source scripts/lib/install-missing.sh  # the scripts run from the repository root
install_missing "${need[@]}"

# --- Schemathesis in a virtualenv of our own ---------------------------------------------------
if [ ! -x "$VENV/bin/st" ]; then
  echo "== installing schemathesis into .dev/fuzz-venv"
  mkdir -p "$PWD/.dev"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip >/dev/null
  "$VENV/bin/pip" install -q 'schemathesis==4.32.5'
fi

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]:-}"; do
    [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]:-}"; do
    [ -n "$pid" ] && wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

# --- Redis and the API ----------------------------------------------------------------------------
REDIS_PORT="$(free_port)"
while [ "$REDIS_PORT" = 6379 ]; do REDIS_PORT="$(free_port)"; done
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$work" --save '' --appendonly no \
  --maxmemory-policy noeviction --logfile "$work/redis.log" &
pids+=($!)
for _ in $(seq 1 100); do
  redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
  sleep 0.1
done

echo "== building the API"
cargo build -q --workspace --bins --all-features  # the build scripts/test.sh makes: nothing rebuilt
API_PORT="$(free_port)"
ADMIN_KEY="fuzz-$(python3 -c 'import secrets; print(secrets.token_hex(24))')"
BASE="http://127.0.0.1:${API_PORT}"
TASKFLEET__AUTH__ADMIN_KEY="$ADMIN_KEY" TASKFLEET__REDIS__PREFIX=fuzz \
  TASKFLEET__ARTIFACTS__DIR="$work/artifacts" RUST_LOG=warn \
  target/debug/taskfleet-api --listen "127.0.0.1:${API_PORT}" \
  --redis-url "redis://127.0.0.1:${REDIS_PORT}" --test-processors 2>"$work/api.log" &
pids+=($!)
for _ in $(seq 1 100); do
  curl -fsS "$BASE/ready" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "$BASE/ready" >/dev/null || { cat "$work/api.log" >&2; exit 1; }

# --- fuzz ------------------------------------------------------------------------------------------
# An admin key, so admin operations are reached too. No stateful phase: it could open the event
# stream of a live task, which by design stays open until the task ends. The queue's live status
# (GET /api/tasks/queue/events) is left out for the same reason: it streams for as long as the
# client stays (up to an hour), so every call would end in the fuzzer's timeout; api/tests/live.rs
# tests it. One worker: with two,
# Hypothesis 6 sometimes trips over itself describing a strategy (a runtime error in the tool,
# not a finding). Schemathesis is pinned so a new release cannot change the verdict unseen.
echo "== schemathesis against $BASE/openapi.json ($EXAMPLES examples per operation, at most ${MAX_TIME}s)"
status=0
# From the scratch directory: Schemathesis leaves its own files (.schemathesis/) where it runs.
(cd "$work" && "$VENV/bin/st" run "$BASE/openapi.json" \
  --header "Authorization: Bearer $ADMIN_KEY" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --phases examples,coverage,fuzzing \
  --max-examples "$EXAMPLES" \
  --max-time "$MAX_TIME" \
  --request-timeout 10 \
  --generation-database none \
  --exclude-path /api/tasks/queue/events \
  --workers 1 \
  --no-color) || status=$?
if grep -q "panicked" "$work/api.log"; then
  echo "the API panicked:" >&2
  grep -A3 "panicked" "$work/api.log" >&2
  status=1
fi
exit "$status"
