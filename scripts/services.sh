#!/usr/bin/env bash
# Our three processes on top of the local infrastructure (scripts/stack.sh).
#
#   scripts/services.sh up     start command API (8000), query API (8001), projector (8002) in
#                              the background; return once every /ready answers 200
#   scripts/services.sh down   stop them (SIGTERM, then SIGKILL after 20 s)
#   scripts/services.sh run    start Kafka and PostgreSQL (scripts/stack.sh infra-up), then the
#                              three in the foreground, showing their logs; however it ends
#                              (Ctrl-C, a service exiting, a port taken, a service not ready in
#                              90 s) it stops the services, Kafka and PostgreSQL it started
#   scripts/services.sh status one line per service: pid, port, /ready
#   scripts/services.sh migrate  only the schema step (`up` and `run` do it first)
#   scripts/services.sh rebuild [ARGS]  `python -m projector rebuild` as the projector's role
#   scripts/services.sh projection-status  `python -m projector status` as the query API's
#                              (read-only) role
#   scripts/services.sh logs   follow every log under .local/logs/ (Ctrl-C ends)
#
# Ports: COMMAND_API_PORT, QUERY_API_PORT, PROJECTOR_HTTP_PORT (8000, 8001, 8002); pid files
# and logs under SERVICES_DIR (.local/).
#
# PostgreSQL: before the services start, `python -m projector migrate` runs as the schema's
# owner (MIGRATION_DATABASE_URL, else DATABASE_URL); then the projector connects as
# txstats_projector and the query API as txstats_query (the roles scripts/stack.sh creates), on
# the owner's URL with the user swapped, unless PROJECTOR_DATABASE_URL / QUERY_DATABASE_URL say
# otherwise. The command API gets no database URL. The rebuild writes what the projector
# writes, so it gets the projector's role; `status` only reads, so it gets the query API's.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# SERVICES_DIR: where pid files and logs go (a test runs a second set of services elsewhere).
RUN="${SERVICES_DIR:-$ROOT/.local}/run"
LOGS="${SERVICES_DIR:-$ROOT/.local}/logs"
PY="$ROOT/.venv/bin/python"
SERVICES=(command_api query_api projector)
COMMAND_API_PORT="${COMMAND_API_PORT:-8000}"
QUERY_API_PORT="${QUERY_API_PORT:-8001}"
export PROJECTOR_HTTP_PORT="${PROJECTOR_HTTP_PORT:-8002}" # read by the projector's settings
PG_PORT="${PG_PORT:-5433}"
OWNER_DATABASE_URL="${MIGRATION_DATABASE_URL:-${DATABASE_URL:-postgresql://txstats@127.0.0.1:$PG_PORT/txstats}}"

as_role() { # as_role <url> <role>: the URL with its user (and password) replaced by <role>
  sed -E "s#^(postgres(ql)?://)([^@/]*@)?#\1$2@#" <<<"$1"
}

PROJECTOR_DATABASE_URL="${PROJECTOR_DATABASE_URL:-$(as_role "$OWNER_DATABASE_URL" "${MIGRATION_PROJECTOR_ROLE:-txstats_projector}")}"
QUERY_DATABASE_URL="${QUERY_DATABASE_URL:-$(as_role "$OWNER_DATABASE_URL" "${MIGRATION_QUERY_ROLE:-txstats_query}")}"

log() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] error: %s\n' "$*" >&2; exit 1; }

service_cmd() { # each service with its own database role (the command API with none)
  local uvicorn=("$PY" -m uvicorn --factory --loop uvloop --http httptools --no-access-log --host 127.0.0.1)
  case "$1" in
    command_api) CMD=(env -u DATABASE_URL "${uvicorn[@]}" --port "$COMMAND_API_PORT" command_api.main:create_app) ;;
    query_api) CMD=(env "DATABASE_URL=$QUERY_DATABASE_URL" "${uvicorn[@]}" --no-proxy-headers --port "$QUERY_API_PORT" query_api.main:create_app) ;;
    projector) CMD=(env "DATABASE_URL=$PROJECTOR_DATABASE_URL" "$PY" -m projector run) ;;
  esac
}

migrate() { # the one-shot schema step, as the owner, before any service starts
  log "migrating the schema (python -m projector migrate)"
  (cd "$ROOT" && DATABASE_URL="$OWNER_DATABASE_URL" "$PY" -m projector migrate >/dev/null) ||
    die "python -m projector migrate failed (see above)"
}

service_port() {
  case "$1" in
    command_api) echo "$COMMAND_API_PORT" ;;
    query_api) echo "$QUERY_API_PORT" ;;
    projector) echo "$PROJECTOR_HTTP_PORT" ;;
  esac
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
  migrate
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

status() {
  local name pidfile port state
  for name in "${SERVICES[@]}"; do
    pidfile="$RUN/$name.pid" port="$(service_port "$name")"
    if [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      if ready "$port"; then state="ready"; else state="NOT READY"; fi
      printf '%-10s running (pid %s, port %s), /ready: %s\n' "$name:" "$(cat "$pidfile")" "$port" "$state"
    else
      printf '%-10s stopped\n' "$name:"
    fi
  done
}

follow_logs() {
  mkdir -p "$LOGS"
  shopt -s nullglob
  local files=("$LOGS"/*.log)
  ((${#files[@]})) || die "no logs yet in $LOGS (make up or make run first)"
  if [[ -t 1 ]]; then
    tail -n "${LOG_LINES:-20}" -F "${files[@]}" | logview
  else
    exec tail -n "${LOG_LINES:-20}" -F "${files[@]}"
  fi
}

# On a terminal, the services' JSON lines are shown as text (shared/logview.py).
logview() { (cd "$ROOT" && exec "$PY" -m shared.logview); }

# `make run`: everything it started stops however it ends, through the EXIT trap (Ctrl-C and
# SIGTERM exit through it too, and so does every `die`).
TAIL_PID=""
STOPPED=""
stop_everything() {
  [[ -z "$STOPPED" ]] || return 0
  STOPPED=1
  trap '' INT TERM
  set +e # stop as much as can be stopped
  if [[ -n "$TAIL_PID" ]]; then
    kill "$TAIL_PID" 2>/dev/null
    wait "$TAIL_PID" 2>/dev/null
  fi
  stop_all
  "$ROOT/scripts/stack.sh" infra-down
  log "stopped: the three services, Kafka and PostgreSQL (data stays in ${STACK_DIR:-$ROOT/.local}/)"
}

run_foreground() {
  local name
  for name in "${SERVICES[@]}"; do
    [[ -f "$RUN/$name.pid" ]] && kill -0 "$(cat "$RUN/$name.pid")" 2>/dev/null &&
      die "$name is already running in the background (make up): make logs follows it, make down stops it"
  done
  trap stop_everything EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  "$ROOT/scripts/stack.sh" infra-up
  start_all
  wait_ready
  log "all services up; Ctrl-C stops them, Kafka and PostgreSQL"
  if [[ -t 1 ]]; then
    tail -n 0 -F "$LOGS"/*.log > >(logview) &
  else
    tail -n 0 -F "$LOGS"/*.log &
  fi
  TAIL_PID=$!
  # Ctrl-C reaches the services too; they exit 0 and bash may then not run the INT trap (it
  # takes the signal as handled by the child): an exit status of 0 is that Ctrl-C.
  local pids=() exited status=0
  for name in "${SERVICES[@]}"; do pids+=("$(cat "$RUN/$name.pid")"); done
  wait -n -p exited "${pids[@]}" || status=$?
  if ((status == 0)); then
    log "interrupted: stopping everything"
  else
    log "pid $exited exited with status $status: stopping everything (see $LOGS/)"
  fi
  ((status == 0)) || exit 1
}

projector_cli() { # projector_cli <database URL> <args>: `python -m projector <args>` as that role
  local url="$1"
  shift
  cd "$ROOT" && exec env "DATABASE_URL=$url" "$PY" -m projector "$@"
}

case "${1:-}" in
  up) start_all; wait_ready ;;
  migrate) migrate ;;
  rebuild) shift; projector_cli "$PROJECTOR_DATABASE_URL" rebuild "$@" ;;
  projection-status) projector_cli "$QUERY_DATABASE_URL" status ;;
  down) stop_all ;;
  run) run_foreground ;;
  status) status ;;
  logs) follow_logs ;;
  *) die "usage: $0 {up|down|run|status|logs|migrate|rebuild [ARGS]|projection-status}" ;;
esac
