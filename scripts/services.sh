#!/usr/bin/env bash
# Our three processes on top of the local infrastructure (scripts/stack.sh).
#
#   scripts/services.sh up     start command API (8000), query API (8001), projector (8002) in
#                              the background; return once every /ready answers 200
#   scripts/services.sh down   stop them (SIGTERM, then SIGKILL after 20 s)
#   scripts/services.sh run    start them in the foreground; Ctrl-C stops them all
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUN="$ROOT/.local/run"
LOGS="$ROOT/.local/logs"
PY="$ROOT/.venv/bin/python"
SERVICES=(command_api query_api projector)

log() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] error: %s\n' "$*" >&2; exit 1; }

service_cmd() {
  local uvicorn=("$PY" -m uvicorn --factory --loop uvloop --http httptools --no-access-log --host 127.0.0.1)
  case "$1" in
    command_api) CMD=("${uvicorn[@]}" --port 8000 command_api.main:create_app) ;;
    query_api) CMD=("${uvicorn[@]}" --port 8001 query_api.main:create_app) ;;
    projector) CMD=("$PY" -m projector run) ;;
  esac
}

service_port() {
  case "$1" in command_api) echo 8000 ;; query_api) echo 8001 ;; projector) echo 8002 ;; esac
}

ready() { # ready <port>: /ready answers 200
  "$PY" - "$1" <<'EOF'
import sys, urllib.request
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/ready", timeout=2) as r:
        sys.exit(0 if r.status == 200 else 1)
except Exception:
    sys.exit(1)
EOF
}

start_all() {
  mkdir -p "$RUN" "$LOGS"
  local name pidfile
  for name in "${SERVICES[@]}"; do
    pidfile="$RUN/$name.pid"
    if [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      log "$name already running (pid $(cat "$pidfile"))"
      continue
    fi
    (exec 3<>"/dev/tcp/127.0.0.1/$(service_port "$name")") 2>/dev/null &&
      die "port $(service_port "$name") for $name is taken by another process"
    service_cmd "$name"
    (cd "$ROOT" && exec "${CMD[@]}") </dev/null >>"$LOGS/$name.log" 2>&1 &
    echo $! >"$pidfile"
    log "started $name (pid $!, log $LOGS/$name.log)"
  done
}

wait_ready() {
  local name deadline=$((SECONDS + 90))
  for name in "${SERVICES[@]}"; do
    until ready "$(service_port "$name")"; do
      kill -0 "$(cat "$RUN/$name.pid")" 2>/dev/null || {
        tail -n 20 "$LOGS/$name.log" >&2
        die "$name exited; see $LOGS/$name.log"
      }
      ((SECONDS < deadline)) || die "$name not ready after 90 s; see $LOGS/$name.log"
      sleep 0.5
    done
    log "$name ready on :$(service_port "$name")"
  done
}

stop_all() {
  local name pidfile pid
  for name in "${SERVICES[@]}"; do
    pidfile="$RUN/$name.pid"
    [[ -f "$pidfile" ]] || continue
    pid="$(cat "$pidfile")"
    if kill -0 "$pid" 2>/dev/null; then
      log "stopping $name (pid $pid)"
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
  done
}

case "${1:-}" in
  up) start_all; wait_ready ;;
  down) stop_all ;;
  run)
    trap 'stop_all; exit 0' INT TERM
    start_all
    wait_ready
    log "all services up; Ctrl-C stops them"
    tail -n 0 -F "$LOGS"/*.log &
    wait -n || true
    stop_all
    ;;
  *) die "usage: $0 {up|down|run}" ;;
esac
