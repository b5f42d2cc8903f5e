#!/usr/bin/env bash
# Local infrastructure without Docker: a real Kafka (jars from Maven Central, KRaft, one node or
# KAFKA_NODES=3 for a replicated cluster) and a real PostgreSQL cluster (Debian's server
# binaries), all under .local/.
#
#   scripts/stack.sh infra-up      provision (first time) and start Kafka + PostgreSQL
#   scripts/stack.sh infra-down    stop them (data is kept)
#   scripts/stack.sh kafka-up | kafka-down | pg-up | pg-down
#   scripts/stack.sh status
#   scripts/stack.sh ensure-env    write a random JWT_SECRET to .env when none is configured
#
# Every command is idempotent: a second start finds the process running, a restart keeps data.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# STACK_DIR: where data, logs and pids live; a second stack (e.g. for fault tests) takes
# another directory and other ports. The Kafka jars are shared.
LOCAL="${STACK_DIR:-$ROOT/.local}"
KAFKA_LIBS="$ROOT/.local/kafka-libs"

KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
KAFKA_HEAP="${KAFKA_HEAP:-512m}"
# KAFKA_NODES=3: a KRaft cluster of three nodes (each broker + controller, three voters).
# Node i listens on KAFKA_PORT + KAFKA_PORT_STEP*(i-1) (controller likewise), keeps its data
# and logs in .local/kafka-cluster/node<i>/. KAFKA_NODES=1 (the default) is the single node
# in .local/kafka/.
KAFKA_NODES="${KAFKA_NODES:-1}"
KAFKA_PORT_STEP="${KAFKA_PORT_STEP:-10}"
# A cluster needs its voters up before any node says "started": slow on a loaded machine.
KAFKA_START_SECONDS="${KAFKA_START_SECONDS:-240}"
# Failover: a broker that stops heartbeating (kill -9, a lost host) is fenced after this
# long and its partitions get new leaders (Kafka's default is 9 s).
KAFKA_SESSION_TIMEOUT_MS="${KAFKA_SESSION_TIMEOUT_MS:-3000}"
KAFKA_HEARTBEAT_MS="${KAFKA_HEARTBEAT_MS:-500}"
# KAFKA_SASL_PORT (single node): a second listener there, SASL_PLAINTEXT with the PLAIN
# mechanism, for the users of KAFKA_SASL_USERS ("name=password,name=password"); the test of
# the clients' SASL settings starts such a broker of its own.
KAFKA_SASL_PORT="${KAFKA_SASL_PORT:-}"
KAFKA_SASL_USERS="${KAFKA_SASL_USERS:-}"
KAFKA_CLUSTER_DIR="$LOCAL/kafka-cluster"
KAFKA_DIR="$LOCAL/kafka"
KAFKA_PID="$KAFKA_DIR/kafka.pid"

PG_PORT="${PG_PORT:-5433}"
PG_DB="${PG_DB:-txstats}"
PG_USER="${PG_USER:-txstats}" # owns the database and its schema: `python -m projector migrate`
# The roles the services connect with (docs/operations.md, PostgreSQL roles): the projector's
# changes rows, the query API's reads them; the migrate step grants both.
PG_PROJECTOR_ROLE="${PG_PROJECTOR_ROLE:-txstats_projector}"
PG_QUERY_ROLE="${PG_QUERY_ROLE:-txstats_query}"
PG_DIR="$LOCAL/pg"
[[ -L "$PG_DIR" ]] && PG_DIR="$(readlink -f "$PG_DIR")" # see pg_locate
PG_DATA="$PG_DIR/data"

log() { printf '[stack] %s\n' "$*" >&2; }
die() { printf '[stack] error: %s\n' "$*" >&2; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pid_alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

wait_for() { # wait_for <seconds> <description> <command...>
  local start=$SECONDS deadline=$((SECONDS + $1)) what=$2
  shift 2
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.5
  done
  log "$what (in $((SECONDS - start)) s)"
}

# Progress on long steps: one line saying what starts, one saying how long it took.
step_start() { STEP_T0=$SECONDS; log "$* ..."; }
step_done() { log "$* (in $((SECONDS - STEP_T0)) s)"; }

# ---------------------------------------------------------------- Kafka

kafka_require_tools() {
  command -v java >/dev/null || die "Java is not installed (Kafka needs a JDK 17+: apt-get install openjdk-17-jre-headless)"
  command -v mvn >/dev/null || die "Maven is not installed (it fetches Kafka from Maven Central: apt-get install maven)"
}

kafka_fetch() {
  local stamp="$KAFKA_LIBS/.complete" pom="$ROOT/scripts/kafka/pom.xml"
  if [[ -f "$stamp" && "$stamp" -nt "$pom" ]]; then return; fi
  step_start "fetching the Kafka broker jars from Maven Central with mvn (first run only; ~70 MB)"
  rm -rf "$KAFKA_LIBS"
  mkdir -p "$KAFKA_LIBS"
  mvn -B -q -f "$pom" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$KAFKA_LIBS" >"$KAFKA_LIBS/../mvn.log" 2>&1 ||
    die "mvn could not fetch Kafka; see $ROOT/.local/mvn.log"
  touch "$stamp"
  step_done "Kafka jars fetched into $KAFKA_LIBS"
}

kafka_check_nodes() {
  [[ "$KAFKA_NODES" =~ ^[1-9]$ ]] || die "KAFKA_NODES must be 1..9 (got '$KAFKA_NODES')"
}

kafka_select() { # kafka_select <node>: NODE_ID, NODE_PORT, NODE_CONTROLLER_PORT, KAFKA_DIR, KAFKA_PID
  NODE_ID=$1
  NODE_PORT=$((KAFKA_PORT + KAFKA_PORT_STEP * (NODE_ID - 1)))
  NODE_CONTROLLER_PORT=$((KAFKA_CONTROLLER_PORT + KAFKA_PORT_STEP * (NODE_ID - 1)))
  if ((KAFKA_NODES == 1)); then KAFKA_DIR="$LOCAL/kafka"; else KAFKA_DIR="$KAFKA_CLUSTER_DIR/node$NODE_ID"; fi
  KAFKA_PID="$KAFKA_DIR/kafka.pid"
}

kafka_voters() { # 1@127.0.0.1:9093,2@127.0.0.1:9103,...
  local i voters=""
  for ((i = 1; i <= KAFKA_NODES; i++)); do
    voters+="${voters:+,}$i@127.0.0.1:$((KAFKA_CONTROLLER_PORT + KAFKA_PORT_STEP * (i - 1)))"
  done
  echo "$voters"
}

kafka_sasl_jaas() { # the PLAIN login module with a user_<name>="<password>" per user
  local pair users=()
  IFS=, read -ra users <<<"$KAFKA_SASL_USERS"
  printf 'org.apache.kafka.common.security.plain.PlainLoginModule required'
  for pair in "${users[@]}"; do printf ' user_%s="%s"' "${pair%%=*}" "${pair#*=}"; done
  printf ';'
}

kafka_write_config() {
  local replicas=$((KAFKA_NODES < 3 ? KAFKA_NODES : 3)) quorum
  local insync=$((replicas < 2 ? replicas : 2))
  local listeners="PLAINTEXT://127.0.0.1:$NODE_PORT" protocols="CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
  local sasl=""
  if ((KAFKA_NODES == 1)); then
    quorum="controller.quorum.bootstrap.servers=127.0.0.1:$NODE_CONTROLLER_PORT"
  else
    quorum="controller.quorum.voters=$(kafka_voters)"
  fi
  if [[ -n "$KAFKA_SASL_PORT" ]]; then
    ((KAFKA_NODES == 1)) || die "KAFKA_SASL_PORT is for a single node"
    [[ -n "$KAFKA_SASL_USERS" ]] || die "KAFKA_SASL_PORT needs KAFKA_SASL_USERS (name=password,...)"
    listeners+=",SASL_PLAINTEXT://127.0.0.1:$KAFKA_SASL_PORT"
    protocols+=",SASL_PLAINTEXT:SASL_PLAINTEXT"
    sasl="sasl.enabled.mechanisms=PLAIN
listener.name.sasl_plaintext.plain.sasl.jaas.config=$(kafka_sasl_jaas)"
  fi
  mkdir -p "$KAFKA_DIR/data" "$KAFKA_DIR/logs"
  cat >"$KAFKA_DIR/server.properties" <<EOF
process.roles=broker,controller
node.id=$NODE_ID
$quorum
listeners=$listeners,CONTROLLER://127.0.0.1:$NODE_CONTROLLER_PORT
advertised.listeners=$listeners
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=$protocols
$sasl
log.dirs=$KAFKA_DIR/data
num.partitions=6
default.replication.factor=$replicas
min.insync.replicas=$insync
offsets.topic.replication.factor=$replicas
transaction.state.log.replication.factor=$replicas
transaction.state.log.min.isr=$insync
share.coordinator.state.topic.replication.factor=$replicas
share.coordinator.state.topic.min.isr=$insync
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
broker.session.timeout.ms=$KAFKA_SESSION_TIMEOUT_MS
broker.heartbeat.interval.ms=$KAFKA_HEARTBEAT_MS
EOF
  cat >"$KAFKA_DIR/log4j2.yaml" <<EOF
Configuration:
  Appenders:
    File:
      name: server
      fileName: "$KAFKA_DIR/logs/server.log"
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: INFO
      AppenderRef:
        - ref: server
    Logger:
      - name: kafka.request.logger
        level: WARN
      - name: org.apache.kafka.controller
        level: WARN
EOF
}

kafka_java_args() { # kafka_java_args <heap>: sets JAVA_ARGS for a JVM on Kafka's classpath
  JAVA_ARGS=("-Xms$1" "-Xmx$1" -XX:+UseG1GC -Djava.awt.headless=true
    "-Dkafka.logs.dir=$KAFKA_DIR/logs" "-Dlog4j2.configurationFile=$KAFKA_DIR/log4j2.yaml"
    -cp "$KAFKA_LIBS/*")
}

kafka_tool() { kafka_java_args 256m; java "${JAVA_ARGS[@]}" "$@"; }

kafka_random_id() { # what StorageTool random-uuid prints, without starting a JVM
  python3 -c 'import base64, uuid
while (i := base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")).startswith("-"): pass
print(i)'
}

kafka_cluster_id() { # one id for every node of a cluster, kept next to the nodes
  if ((KAFKA_NODES == 1)); then kafka_random_id; return; fi
  mkdir -p "$KAFKA_CLUSTER_DIR"
  [[ -s "$KAFKA_CLUSTER_DIR/cluster.id" ]] || kafka_random_id >"$KAFKA_CLUSTER_DIR/cluster.id"
  cat "$KAFKA_CLUSTER_DIR/cluster.id"
}

kafka_format_node() { # kafka_format_node <node>: format the storage of a node never started
  kafka_select "$1"
  mkdir -p "$KAFKA_DIR"
  kafka_write_config
  [[ -f "$KAFKA_DIR/data/meta.properties" ]] && return
  local format=(format -t "$(kafka_cluster_id)" -c "$KAFKA_DIR/server.properties")
  ((KAFKA_NODES == 1)) && format+=(--standalone)
  kafka_tool kafka.tools.StorageTool "${format[@]}" >"$KAFKA_DIR/logs/format.log" 2>&1
}

kafka_start_node() { # kafka_start_node <node>: returns 1 when it was already running
  kafka_select "$1"
  if pid_alive "$KAFKA_PID"; then log "Kafka node $NODE_ID already running (pid $(cat "$KAFKA_PID"))"; return 1; fi
  port_open "$NODE_PORT" && die "port $NODE_PORT is taken by another process (set KAFKA_PORT)"
  port_open "$NODE_CONTROLLER_PORT" && die "port $NODE_CONTROLLER_PORT is taken (set KAFKA_CONTROLLER_PORT)"
  log "starting Kafka node $NODE_ID on 127.0.0.1:$NODE_PORT"
  : >"$KAFKA_DIR/logs/server.log"
  kafka_java_args "$KAFKA_HEAP"
  nohup java "${JAVA_ARGS[@]}" kafka.Kafka "$KAFKA_DIR/server.properties" \
    </dev/null >"$KAFKA_DIR/logs/stdout.log" 2>&1 &
  echo $! >"$KAFKA_PID"
}

kafka_up() {
  kafka_check_nodes
  local i started=() formats=()
  kafka_require_tools
  kafka_fetch
  kafka_cluster_id >/dev/null
  for ((i = 1; i <= KAFKA_NODES; i++)); do # new nodes' storage, formatted side by side
    kafka_select "$i"
    pid_alive "$KAFKA_PID" && continue
    [[ -f "$KAFKA_DIR/data/meta.properties" ]] && continue
    ((${#formats[@]})) || step_start "formatting Kafka's storage ($KAFKA_NODES node(s)) under $LOCAL"
    kafka_format_node "$i" &
    formats+=("$i:$!")
  done
  for i in "${formats[@]}"; do
    kafka_select "${i%%:*}"
    wait "${i#*:}" || die "formatting Kafka storage failed; see $KAFKA_DIR/logs/format.log"
  done
  ((${#formats[@]} == 0)) || step_done "Kafka storage formatted"
  for ((i = 1; i <= KAFKA_NODES; i++)); do
    if kafka_start_node "$i"; then started+=("$i"); fi
  done
  ((${#started[@]} == 0)) && return
  step_start "waiting for Kafka (JVM, $KAFKA_HEAP heap per node; 10-30 s)"
  for i in "${started[@]}"; do # the nodes start together: a cluster needs a quorum of voters
    kafka_select "$i"
    wait_for "$KAFKA_START_SECONDS" "Kafka node $NODE_ID ready" kafka_started || {
      tail -n 20 "$KAFKA_DIR/logs/stdout.log" >&2
      die "Kafka node $NODE_ID did not start within $KAFKA_START_SECONDS s; see $KAFKA_DIR/logs/"
    }
  done
  step_done "Kafka ready"
}

kafka_started() {
  pid_alive "$KAFKA_PID" || die "Kafka node $NODE_ID exited during start; see $KAFKA_DIR/logs/"
  grep -q 'Kafka Server started' "$KAFKA_DIR/logs/server.log" 2>/dev/null && port_open "$NODE_PORT"
}

stop_pid() { # stop_pid <pidfile> <name> <seconds>
  local pidfile=$1 name=$2 pid
  if ! pid_alive "$pidfile"; then rm -f "$pidfile"; return; fi
  pid="$(cat "$pidfile")"
  log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  if ! wait_for "$3" "$name stopped" bash -c "! kill -0 $pid 2>/dev/null"; then
    log "$name did not stop in $3 s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

kafka_down() { # every node, whatever KAFKA_NODES says now; brokers first, controllers meanwhile
  local pidfile pids=()
  for pidfile in "$LOCAL/kafka/kafka.pid" "$KAFKA_CLUSTER_DIR"/node*/kafka.pid; do
    [[ -f "$pidfile" ]] && pids+=("$pidfile")
  done
  # Signal them all at once: a cluster node waits for its peers' controlled shutdown.
  for pidfile in "${pids[@]}"; do
    if pid_alive "$pidfile"; then kill -TERM "$(cat "$pidfile")" 2>/dev/null || true; fi
  done
  for pidfile in "${pids[@]}"; do stop_pid "$pidfile" "Kafka ($(basename "$(dirname "$pidfile")"))" 60; done
}

kafka_status() {
  local pidfile
  for pidfile in "$LOCAL/kafka/kafka.pid" "$KAFKA_CLUSTER_DIR"/node*/kafka.pid; do
    [[ -f "$pidfile" ]] || continue
    if pid_alive "$pidfile"; then
      echo "kafka ($(basename "$(dirname "$pidfile")")): running (pid $(cat "$pidfile"))"
    else
      echo "kafka ($(basename "$(dirname "$pidfile")")): stopped"
    fi
  done
}

# ----------------------------------------------------------- PostgreSQL

pg_bindir() {
  local dirs=(/usr/lib/postgresql/*/bin) dir
  dir="$(printf '%s\n' "${dirs[@]}" | sort -V | tail -n 1)"
  [[ -x "$dir/initdb" ]] && echo "$dir"
}

pg_install() {
  pg_bindir >/dev/null && return
  [[ $EUID -eq 0 ]] || die "PostgreSQL server binaries are missing: run 'sudo apt-get install -y postgresql'"
  command -v apt-get >/dev/null || die "PostgreSQL server binaries are missing and apt-get is not available"
  step_start "installing Debian's 'postgresql' package system-wide with apt-get (server binaries are missing; once)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends postgresql >/dev/null
  step_done "postgresql installed"
  # The package may start a default cluster on 5432; ours is separate, so leave it alone.
  pg_bindir >/dev/null || die "PostgreSQL installed but no server binaries found"
}

# initdb and the server refuse to run as root: run them as the postgres user then.
# As root, from / : the clone may be in a folder the postgres user cannot enter (psql would say
# so on every call).
pg_as_owner() {
  if [[ $EUID -eq 0 ]]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

# As root, the server runs as the postgres user, which must reach the cluster's directory. When
# a parent of the clone is not traversable by others (e.g. a 0700 home or mktemp directory), the
# cluster goes to the postgres user's own home instead, linked from .local/pg: no permission
# outside the clone is changed. Not root: the server runs as the invoking user, in .local/pg.
pg_locate() {
  [[ $EUID -eq 0 ]] || return 0
  mkdir -p "$LOCAL"
  if [[ ! -e "$PG_DIR" ]] && ! runuser -u postgres -- test -x "$LOCAL"; then
    local home target
    home="$(getent passwd postgres | cut -d: -f6)"
    target="$home/txstats/$(printf '%s' "$LOCAL" | sha256sum | cut -c1-12)"
    log "the postgres user cannot reach $LOCAL: the cluster goes to $target (linked from $PG_DIR)"
    mkdir -p "$target"
    ln -s "$target" "$PG_DIR"
    PG_DIR=$target
  fi
  PG_DATA="$PG_DIR/data"
}

pg_ctl_cmd() {
  pg_as_owner "$(pg_bindir)/pg_ctl" -D "$PG_DATA" "$@"
}

pg_up() {
  pg_install
  pg_locate
  mkdir -p "$PG_DIR/run" "$PG_DIR/log"
  [[ $EUID -eq 0 ]] && chown -R postgres:postgres "$PG_DIR"
  if pg_ctl_cmd status >/dev/null 2>&1; then
    if ! pg_postmaster_dead; then
      log "PostgreSQL already running"
      pg_ensure_database # a stack made before the roles existed gets them
      return
    fi
    # Killed, but not reaped yet by its (re-)parent: its pid still "exists", and PostgreSQL
    # would refuse to start over a lock file naming a live pid.
    log "PostgreSQL was killed (pid $(pg_postmaster_pid) is a zombie): removing its lock files"
    rm -f "$PG_DATA/postmaster.pid" "$PG_DIR/run/.s.PGSQL.$PG_PORT" "$PG_DIR/run/.s.PGSQL.$PG_PORT.lock"
  fi
  port_open "$PG_PORT" && die "port $PG_PORT is taken by another process (set PG_PORT)"
  if [[ ! -f "$PG_DATA/PG_VERSION" ]]; then
    step_start "initialising a PostgreSQL cluster in $PG_DATA (initdb)"
    pg_as_owner "$(pg_bindir)/initdb" -D "$PG_DATA" -U postgres --auth-local=trust \
      --auth-host=trust -E UTF8 --locale=C.UTF-8 >"$PG_DIR/log/initdb.log" 2>&1 ||
      die "initdb failed; see $PG_DIR/log/initdb.log"
    step_done "PostgreSQL cluster initialised"
  fi
  step_start "starting PostgreSQL on 127.0.0.1:$PG_PORT"
  pg_ctl_cmd -l "$PG_DIR/log/postgres.log" -w -t 60 \
    -o "-p $PG_PORT -k $PG_DIR/run -c listen_addresses=127.0.0.1 -c max_connections=200" \
    start >/dev/null || die "PostgreSQL did not start; see $PG_DIR/log/postgres.log"
  pg_ensure_database
  step_done "PostgreSQL ready"
}

pg_postmaster_pid() { head -n 1 "$PG_DATA/postmaster.pid" 2>/dev/null; }

pg_postmaster_dead() { # the lock file names a zombie (`pg_ctl status` counts those as running)
  local pid state
  pid="$(pg_postmaster_pid)"
  [[ -n "$pid" && -r "/proc/$pid/stat" ]] || return 1
  state="$(sed 's/.*) //' "/proc/$pid/stat" | cut -d' ' -f1)"
  [[ "$state" == Z ]]
}

pg_psql() {
  pg_as_owner "$(pg_bindir)/psql" -v ON_ERROR_STOP=1 -qAt -h 127.0.0.1 -p "$PG_PORT" -U postgres "$@"
}

pg_ensure_role() { # pg_ensure_role <name> <attributes...>
  local role=$1
  shift
  if [[ "$(pg_psql -d postgres -c "SELECT 1 FROM pg_roles WHERE rolname = '$role'")" != 1 ]]; then
    pg_psql -d postgres -c "CREATE ROLE $role $*"
  fi
}

pg_ensure_database() {
  pg_ensure_role "$PG_USER" LOGIN CREATEDB
  pg_ensure_role "$PG_PROJECTOR_ROLE" LOGIN
  pg_ensure_role "$PG_QUERY_ROLE" LOGIN
  # The owner may end the services' sessions (DROP DATABASE ... WITH (FORCE) of a test's
  # database, a test that cuts the services off); it has every privilege they have anyway.
  pg_psql -d postgres -c "GRANT $PG_PROJECTOR_ROLE, $PG_QUERY_ROLE TO $PG_USER" 2>/dev/null
  if [[ "$(pg_psql -d postgres -c "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")" != 1 ]]; then
    pg_psql -d postgres -c "CREATE DATABASE $PG_DB OWNER $PG_USER"
  fi
}

pg_down() {
  pg_bindir >/dev/null || return 0
  [[ -f "$PG_DATA/PG_VERSION" ]] || return 0
  if pg_ctl_cmd status >/dev/null 2>&1; then
    log "stopping PostgreSQL"
    pg_ctl_cmd -m fast -w stop >/dev/null
  fi
}

# ------------------------------------------------------------------ env

ensure_env() {
  if [[ -n "${JWT_SECRET:-}" ]] || grep -qs '^JWT_SECRET=.' "$ROOT/.env"; then return; fi
  log "no JWT_SECRET configured: writing a random one to .env"
  printf 'JWT_SECRET=%s\n' "$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')" >>"$ROOT/.env"
  chmod 600 "$ROOT/.env"
}

status() {
  kafka_status
  if pg_bindir >/dev/null && [[ -f "$PG_DATA/PG_VERSION" ]] && pg_ctl_cmd status >/dev/null 2>&1; then
    echo "postgres: running (port $PG_PORT)"
  else
    echo "postgres: stopped"
  fi
}

case "${1:-}" in
  infra-up) pg_up; kafka_up ;;
  infra-down) kafka_down; pg_down ;;
  kafka-up) kafka_up ;;
  kafka-down) kafka_down ;;
  pg-up) pg_up ;;
  pg-down) pg_down ;;
  status) status ;;
  ensure-env) ensure_env ;;
  *) die "usage: $0 {infra-up|infra-down|kafka-up|kafka-down|pg-up|pg-down|status|ensure-env}" ;;
esac
