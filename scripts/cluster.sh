#!/usr/bin/env bash
# A local Redis Cluster on loopback for development: 3 primaries (and, with --replicas 1, a
# replica each) on ports 7100.. (each also binds its port + 10000, the cluster bus), data and
# logs under .dev/cluster/. Prints the seed nodes for TASKFLEET__REDIS__CLUSTER_NODES.
#
#   scripts/cluster.sh                    # start 3 primaries (or reuse a running cluster)
#   scripts/cluster.sh --replicas 1       # 3 primaries + 3 replicas
#   scripts/cluster.sh --primaries 2      # 2 primaries
#   scripts/cluster.sh stop               # stop the nodes this script started (by pid file)
#   CLUSTER_BASE_PORT=7200 scripts/cluster.sh
#
# The nodes run in the background (daemonized, pid files under .dev/cluster/<port>/); stop them
# with `scripts/cluster.sh stop`. scripts/dev.sh --cluster starts and stops them itself.
set -euo pipefail
cd "$(dirname "$0")/.."

BASE_PORT="${CLUSTER_BASE_PORT:-7100}"
PRIMARIES=3
REPLICAS=0
ACTION=start
while [ $# -gt 0 ]; do
  case "$1" in
    --replicas) REPLICAS="$2"; shift 2 ;;
    --primaries) PRIMARIES="$2"; shift 2 ;;
    stop) ACTION=stop; shift ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$PRIMARIES" in ''|*[!0-9]*) echo "--primaries takes a number" >&2; exit 2 ;; esac
case "$REPLICAS" in ''|*[!0-9]*) echo "--replicas takes a number" >&2; exit 2 ;; esac
if [ "$PRIMARIES" -lt 1 ]; then
  echo "--primaries must be at least 1" >&2
  exit 2
fi
DIR="$PWD/.dev/cluster"
NODES=$((PRIMARIES * (1 + REPLICAS)))
ports=()
for i in $(seq 0 $((NODES - 1))); do
  p=$((BASE_PORT + i))
  if [ "$p" = 6379 ] || [ $((p + 10000)) -gt 65535 ]; then
    echo "port $p cannot be used (6379 is someone else's; the bus port must fit)" >&2
    exit 2
  fi
  ports+=("$p")
done

stop_nodes() {
  local stopped=0 f pid
  for f in "$DIR"/*/redis.pid; do
    [ -f "$f" ] || continue
    pid="$(cat "$f")"
    # Only a redis-server this script started (its pid file, its command line).
    if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q redis-server; then
      kill -TERM "$pid" 2>/dev/null && stopped=$((stopped + 1))
    fi
    rm -f "$f"
  done
  echo "stopped $stopped node(s)"
}

if [ "$ACTION" = stop ]; then
  stop_nodes
  exit 0
fi

need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-cli >/dev/null || need+=(redis-tools)
# shellcheck source=scripts/lib/install-missing.sh
source scripts/lib/install-missing.sh
install_missing "${need[@]}"

seeds="$(printf '127.0.0.1:%s,' "${ports[@]}")"
seeds="${seeds%,}"
cluster_ok() {
  local p
  for p in "${ports[@]}"; do
    redis-cli -p "$p" cluster info 2>/dev/null | grep -q 'cluster_state:ok' || return 1
  done
}
if cluster_ok; then
  echo "a cluster already answers on ${ports[*]}: using it" >&2
  echo "$seeds"
  exit 0
fi

mkdir -p "$DIR"
for p in "${ports[@]}"; do
  if redis-cli -p "$p" ping >/dev/null 2>&1; then
    echo "port $p already answers but is not part of a healthy cluster: stop it first (scripts/cluster.sh stop)" >&2
    exit 1
  fi
  # A fresh cluster: forget an old one's node ids and slots.
  rm -rf "${DIR:?}/$p"
  mkdir -p "$DIR/$p"
  # noeviction: an evicted lease or task hash would lose a task (DESIGN §6). appendonly: a
  # restarted node keeps what it acknowledged.
  redis-server --port "$p" --bind 127.0.0.1 --dir "$DIR/$p" \
    --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000 \
    --appendonly yes --appendfsync everysec --save '' --maxmemory-policy noeviction \
    --daemonize yes --pidfile "$DIR/$p/redis.pid" --logfile "$DIR/$p/redis.log"
done
for p in "${ports[@]}"; do
  for _ in $(seq 1 100); do
    redis-cli -p "$p" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  redis-cli -p "$p" ping >/dev/null || { echo "node $p did not start; see .dev/cluster/$p/redis.log" >&2; exit 1; }
done
addrs=()
for p in "${ports[@]}"; do addrs+=("127.0.0.1:$p"); done
echo "== forming a cluster of $PRIMARIES primaries and $((PRIMARIES * REPLICAS)) replicas" >&2
if [ "$PRIMARIES" -lt 3 ]; then
  # redis-cli --cluster create wants 3 primaries: assign the slots by hand.
  per=$((16384 / PRIMARIES))
  for i in $(seq 0 $((PRIMARIES - 1))); do
    lo=$((i * per))
    hi=$(( i == PRIMARIES - 1 ? 16383 : (i + 1) * per - 1 ))
    redis-cli -p "${ports[$i]}" cluster addslotsrange "$lo" "$hi" >/dev/null
  done
  for p in "${ports[@]:1}"; do
    redis-cli -p "$p" cluster meet 127.0.0.1 "${ports[0]}" >/dev/null
  done
  if [ "$REPLICAS" -gt 0 ]; then
    sleep 1
    for r in $(seq "$PRIMARIES" $((NODES - 1))); do
      primary="${ports[$(( (r - PRIMARIES) % PRIMARIES ))]}"
      id="$(redis-cli -p "$primary" cluster myid)"
      redis-cli -p "${ports[$r]}" cluster replicate "$id" >/dev/null
    done
  fi
else
  redis-cli --cluster create "${addrs[@]}" --cluster-replicas "$REPLICAS" --cluster-yes >/dev/null
fi
for _ in $(seq 1 150); do
  cluster_ok && break
  sleep 0.2
done
cluster_ok || { echo "the cluster did not reach cluster_state:ok; see .dev/cluster/*/redis.log" >&2; exit 1; }
echo "== cluster ready; stop it with: scripts/cluster.sh stop" >&2
echo "$seeds"
