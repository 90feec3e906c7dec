#!/usr/bin/env bash
# Walks the API's main flows with curl against a running stack (scripts/dev.sh starts one) and
# fails on the first answer that is not what the API promises.
#
#   KEY=<user key> [ADMIN_KEY=<admin key>] [BASE=http://127.0.0.1:8080] scripts/smoke.sh
set -euo pipefail

BASE="${BASE:-http://127.0.0.1:8080}"
KEY="${KEY:?set KEY to an API key (taskfleet-api keys create --account A --user U)}"
ADMIN_KEY="${ADMIN_KEY:-}"
pass=0
body="$(mktemp)"
trap 'rm -f "$body"' EXIT

# call NAME EXPECTED_STATUS METHOD PATH [KEY] [JSON]
call() {
  local name="$1" want="$2" method="$3" path="$4" key="${5:-}" json="${6:-}"
  local args=(-sS -o "$body" -w '%{http_code}' -X "$method" "$BASE$path")
  [ -n "$key" ] && args+=(-H "Authorization: Bearer $key")
  [ -n "$json" ] && args+=(-H 'Content-Type: application/json' -d "$json")
  local got
  got="$(curl "${args[@]}")"
  if [ "$got" != "$want" ]; then
    echo "FAIL $name: $method $path answered $got, expected $want" >&2
    cat "$body" >&2
    echo >&2
    exit 1
  fi
  pass=$((pass + 1))
  echo "ok   $name ($got)"
}
field() { sed -n "s/.*\"$1\":\"\\{0,1\\}\\([^\",}]*\\)\"\\{0,1\\}.*/\\1/p" "$body" | head -1; }

call "health" 200 GET /health
call "ready" 200 GET /ready
call "metrics" 200 GET /metrics
call "openapi" 200 GET /openapi.json
call "no key is 401" 401 GET /api/tasks
call "task types" 200 GET /api/tasks/types "$KEY"

call "typed enqueue (story)" 202 POST /api/story/generate "$KEY" \
  '{"prompt": "a robot learns to paint", "length": "short"}'
story="$(field task_id)"
call "generic enqueue (quiz)" 202 POST /api/tasks "$KEY" \
  '{"task_type": "quiz", "request": {"source_text": "Paris is the capital of France.", "num_questions": 2}}'
call "unknown field is 422" 422 POST /api/image/generate "$KEY" '{"prompt": "x", "colour": "red"}'
call "out of range is 400" 400 POST /api/image/generate "$KEY" '{"prompt": "x", "width": 9999}'
call "unknown type is 422" 422 POST /api/tasks "$KEY" '{"task_type": "podcast", "request": {}}'
call "malformed JSON is 400" 400 POST /api/tasks "$KEY" '{"task_type":'

call "one task" 200 GET "/api/tasks/$story" "$KEY"
call "malformed id is 400" 400 GET /api/tasks/not.an.id "$KEY"
call "missing task is 404" 404 GET /api/tasks/0190f3c2-0000-7000-8000-000000000000 "$KEY"
call "own tasks" 200 GET "/api/tasks?limit=5" "$KEY"
call "queue status" 200 GET /api/tasks/queue/status "$KEY"
call "queue list" 200 GET /api/tasks/queue/list "$KEY"

call "scheduled enqueue" 202 POST /api/voice-generation/generate "$KEY" \
  '{"text": "later", "delay_seconds": 3600}'
later="$(field task_id)"
call "cancel a waiting task" 200 POST "/api/tasks/$later/cancel" "$KEY"
call "cancel again is 409" 409 POST "/api/tasks/$later/cancel" "$KEY"

echo "--   events of the story until it ends (at most 120 s):"
curl -sS -N --max-time 120 "$BASE/api/tasks/$story/events" -H "Authorization: Bearer $KEY" \
  | grep '^event:' | sed 's/^/     /'
call "story after its events" 200 GET "/api/tasks/$story" "$KEY"
status="$(field status)"
echo "     story status: $status"
if [ "$status" = completed ]; then
  call "story artifact" 200 GET "/api/tasks/$story/artifacts/story.md" "$KEY"
fi

echo "--   one task of each of the eight types, run to the end, every artifact downloaded:"
slides='[{"title": "Tides", "text": "The moon pulls the sea twice a day."}]'
declare -A requests=(
  [story]='{"prompt": "a fox and a lantern", "length": "short"}'
  [image]='{"prompt": "a red kite over hills", "width": 320, "height": 200}'
  [voice-generation]='{"text": "Hello from taskfleet.", "speed": 170}'
  [documentation]='{"source": "/// Adds two numbers.\npub fn add(a: i32, b: i32) -> i32 { a + b }"}'
  [quiz]='{"source_text": "Paris is the capital of France. The Seine flows through Paris.", "num_questions": 2}'
  [video]="{\"title\": \"Sea\", \"slides\": $slides}"
  [animated-lesson]='{"title": "Leaves", "steps": [{"text": "Leaves take in light."}, {"text": "They make sugar."}]}'
  [course-video]="{\"title\": \"Water\", \"lessons\": [{\"title\": \"Seas\", \"slides\": $slides}]}"
)
declare -A ids=()
for kind in "${!requests[@]}"; do
  call "enqueue $kind" 202 POST "/api/$kind/generate" "$KEY" "${requests[$kind]}"
  ids[$kind]="$(field task_id)"
done
for kind in "${!ids[@]}"; do
  id="${ids[$kind]}"
  for _ in $(seq 1 300); do
    curl -sS -o "$body" -H "Authorization: Bearer $KEY" "$BASE/api/tasks/$id"
    status="$(field status)"
    case "$status" in completed|failed|cancelled) break ;; esac
    sleep 1
  done
  if [ "$status" != completed ]; then
    echo "FAIL $kind ended $status:" >&2
    cat "$body" >&2
    exit 1
  fi
  names="$(grep -o '"artifacts":\[[^]]*\]' "$body" | grep -o '"name":"[^"]*"' | cut -d'"' -f4)"
  for name in $names; do
    call "$kind: artifact $name" 200 GET "/api/tasks/$id/artifacts/$name" "$KEY"
  done
done

if [ -n "$ADMIN_KEY" ]; then
  call "user cannot stop the queue" 403 POST /api/tasks/queue/stop "$KEY"
  call "admin stops quiz" 200 POST /api/tasks/queue/stop "$ADMIN_KEY" '{"task_type": "quiz"}'
  call "admin starts every type" 200 POST /api/tasks/queue/start "$ADMIN_KEY"
  call "admin cleanup" 200 POST /api/tasks/queue/cleanup "$ADMIN_KEY" '{"max_processing_time_minutes": 120}'
fi
echo "smoke: $pass checks passed against $BASE"
