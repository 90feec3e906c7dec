# Sourced by the scripts: `stop_processes GRACE_SECS PID...` stops processes this script
# started, by pid: SIGTERM to each (they drain and exit), up to GRACE_SECS for all of them to
# exit, then SIGKILL to any still running, then reaps them. A pid that is not a child of this
# shell (it already exited and the number was reused, or it was never ours) is left alone:
# only what the script itself started is ever signalled. Empty arguments are skipped.
stop_processes() {
  local grace="$1"
  shift
  local ours=() pid
  for pid in "$@"; do
    [ -n "$pid" ] && _stop_processes_is_child "$pid" && ours+=("$pid")
  done
  [ ${#ours[@]} -gt 0 ] || return 0
  for pid in "${ours[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  # Poll every 0.1 s until every one has exited (a zombie counts as exited) or time is up.
  local deadline=$((SECONDS + grace)) alive
  while :; do
    alive=()
    for pid in "${ours[@]}"; do
      _stop_processes_running "$pid" && alive+=("$pid")
    done
    [ ${#alive[@]} -gt 0 ] && [ "$SECONDS" -lt "$deadline" ] || break
    sleep 0.1
  done
  for pid in "${alive[@]}"; do
    echo "pid $pid still running after ${grace}s: SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
  done
  for pid in "${ours[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
}

# True when PID is a process whose parent is this shell ($$, or the subshell running this).
_stop_processes_is_child() {
  local stat ppid
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  # Fields after the ")" that closes the command name: state, then the parent's pid.
  ppid="$(printf '%s' "${stat##*) }" | cut -d' ' -f2)"
  [ "$ppid" = "$$" ] || [ "$ppid" = "${BASHPID:-$$}" ]
}

# True while PID runs (not yet exited; a zombie waiting to be reaped has exited).
_stop_processes_running() {
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  [ "$(printf '%s' "${stat##*) }" | cut -d' ' -f1)" != Z ]
}
