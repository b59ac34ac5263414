# shellcheck shell=bash
# Daemons of hack/lab and hack/node: each started detached, its output in $DAEMONS/logs/NAME.log and
# its PID in $DAEMONS/pids/NAME.pid. Sourced; the caller sets DAEMONS and defines die.

# Starts a command as daemon NAME, unless it runs already.
start_daemon() {
  local name=$1; shift
  if [ -f "$DAEMONS/pids/$name.pid" ] && kill -0 "$(cat "$DAEMONS/pids/$name.pid")" 2>/dev/null; then return; fi
  mkdir -p "$DAEMONS/logs" "$DAEMONS/pids"
  setsid "$@" >"$DAEMONS/logs/$name.log" 2>&1 < /dev/null &
  echo $! > "$DAEMONS/pids/$name.pid"
}

# Waits until the command succeeds; with --unless-gone NAME, returns 1 as soon as the daemon started
# as NAME is gone.
wait_for() {
  local what=$1 daemon=""; shift
  if [ "$1" = --unless-gone ]; then daemon=$2; shift 2; fi
  for _ in $(seq 1 300); do
    "$@" >/dev/null 2>&1 && return 0
    [ -z "$daemon" ] || kill -0 "$(cat "$DAEMONS/pids/$daemon.pid")" 2>/dev/null || return 1
    sleep 0.2
  done
  die "timed out waiting for $what (logs in $DAEMONS/logs)"
}

# TERM to these daemons at once, KILL to what is left after 10 s.
stop_daemons() {
  local name pids=()
  for name in "$@"; do
    [ -f "$DAEMONS/pids/$name.pid" ] && pids+=("$(cat "$DAEMONS/pids/$name.pid")")
  done
  if [ ${#pids[@]} -gt 0 ]; then
    kill -TERM "${pids[@]}" 2>/dev/null || true
    # kill -0 with several PIDs succeeds while any of them lives
    for _ in $(seq 1 100); do kill -0 "${pids[@]}" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "${pids[@]}" 2>/dev/null || true
  fi
  for name in "$@"; do rm -f "$DAEMONS/pids/$name.pid"; done
}
