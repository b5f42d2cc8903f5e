#!/usr/bin/env bash
# Smoke test of docker-compose.yml on a Docker host, as CI runs it and as a person can:
#
#   1. build the two images and start the stack (`up --wait`: every healthcheck green);
#   2. check the event log's topic (6 partitions; replication factor 1, or 3 in the cluster);
#   3. POST a transaction through the load balancer and read it back (GET /stats with its
#      consistency token, GET /transactions/{id});
#   4. scale the command API, the query API and the projector to SMOKE_REPLICAS each, and post
#      and read through the load balancer until every API replica has answered some of it;
#   5. check that the projection counts every transaction posted exactly once;
#   6. stop the stack and delete its volumes (also when a step fails, after printing the
#      services' state and logs).
#
#   scripts/compose_smoke.sh [default|cluster]
#     default   docker-compose.yml alone: one Kafka node
#     cluster   with --env-file deploy/cluster.env: three KRaft nodes, replication factor 3
#
# Needs Docker with the Compose v2 plugin (`docker compose`), curl and python3, and host ports
# 8000 and 8001 free (the load balancer publishes them). It runs as its own compose project
# (txstats-smoke-<configuration>) and deletes only that project's containers and volumes.
#   JWT_SECRET, POSTGRES_PASSWORD, PG_OWNER_PASSWORD, PG_PROJECTOR_PASSWORD, PG_QUERY_PASSWORD,
#   GRAFANA_ADMIN_PASSWORD
#                    used when set, else throwaway ones are generated
#   SMOKE_REPLICAS   replicas of each API and of the projector in step 4 (2..9, default 2)
#   SMOKE_KEEP=1     leave the stack running at the end, to look at it
#                    (then: docker compose -p txstats-smoke-<configuration> down -v)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

COMPOSE_FILE_PATH=docker-compose.yml
CLUSTER_ENV=deploy/cluster.env
TOPIC=transactions.v1 # the services' default KAFKA_TOPIC
PARTITIONS=6
COMMAND_URL=http://127.0.0.1:8000
QUERY_URL=http://127.0.0.1:8001
REPLICAS="${SMOKE_REPLICAS:-2}"
SPREAD_SECONDS=180
COUNT_SECONDS=120
# The series each API replica counts its answers in (shared/web.py): a replica that answered
# the smoke test's requests has a non-zero count.
POSTED='http_request_duration_seconds_count{method="POST",route="/transactions",status="201"}'
READ='http_request_duration_seconds_count{method="GET",route="/stats",status="200"}'

log() { printf '[compose-smoke] %s\n' "$*" >&2; }
die() { printf '[compose-smoke] error: %s\n' "$*" >&2; exit 1; }

usage() { die "usage: $0 [default|cluster]"; }

CONFIG="${1:-default}"
(($# <= 1)) || usage
case "$CONFIG" in
  default) ENV_FILE="" REPLICATION=1 WAIT_SECONDS=300 ;;
  cluster) ENV_FILE="$CLUSTER_ENV" REPLICATION=3 WAIT_SECONDS=480 ;;
  *) usage ;;
esac
[[ "$REPLICAS" =~ ^[2-9]$ ]] || die "SMOKE_REPLICAS must be 2..9 (got '$REPLICAS')"
PROJECT="txstats-smoke-$CONFIG"

compose() {
  env -u COMPOSE_FILE -u COMPOSE_PROFILES -u COMPOSE_PROJECT_NAME \
    docker compose --env-file "$ENV_FILE" -f "$COMPOSE_FILE_PATH" -p "$PROJECT" "$@"
}

port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

preflight() {
  local tool
  for tool in docker curl python3; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
  done
  docker compose version >/dev/null 2>&1 ||
    die "the Docker Compose v2 plugin ('docker compose') is missing: it is what runs --wait and exec --index"
  docker info >/dev/null 2>&1 || die "no Docker engine answers (docker info failed)"
  local port
  for port in 8000 8001; do
    port_taken "$port" && die "port $port is taken: the load balancer publishes 8000 and 8001 (stop what holds it, e.g. another compose stack)"
  done
  return 0
}

# ------------------------------------------------------------------ HTTP

json() { # json <key>...: the value at that path in the JSON on stdin
  python3 -c 'import functools, json, sys
print(functools.reduce(lambda value, key: value[key], sys.argv[1:], json.load(sys.stdin)))' "$@"
}

request() { # request <method> <url> <expected status> [JSON body]: the answer goes to $BODY
  local status args=(-sS -o "$BODY" -w '%{http_code}' --max-time 30 -X "$1"
    -H "Authorization: Bearer $TOKEN")
  (($# < 4)) || args+=(-H 'Content-Type: application/json' --data "$4")
  status="$(curl "${args[@]}" "$2")" || die "$1 $2: no answer"
  [[ "$status" == "$3" ]] || die "$1 $2 answered $status, expected $3: $(head -c 600 "$BODY")"
}

POSTED_COUNT=0
post() { # post <transaction id>: 12.34 the first time, then 1.00; TOKEN_OF_LAST = its consistency token
  local amount=1.00 now
  ((POSTED_COUNT > 0)) || amount=12.34
  now="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  request POST "$COMMAND_URL/transactions" 201 \
    "{\"amount\": \"$amount\", \"timestamp\": \"$now\", \"transaction_id\": \"$1\"}"
  TOKEN_OF_LAST="$(json consistency_token <"$BODY")"
  POSTED_COUNT=$((POSTED_COUNT + 1))
}

# ------------------------------------------------------------------ steps

build_and_start() {
  log "building the images (command-api; query-api, which the projector shares)"
  compose build command-api query-api
  log "starting the stack ($CONFIG) and waiting for every healthcheck"
  compose up -d --no-build --wait --wait-timeout "$WAIT_SECONDS"
}

check_topic() {
  local described
  described="$(compose exec -T kafka env KAFKA_HEAP_OPTS=-Xmx128m \
    /opt/kafka/bin/kafka-topics.sh --bootstrap-server localhost:9092 --describe --topic "$TOPIC")" ||
    die "kafka-topics.sh could not describe $TOPIC"
  if ! grep -Eq "PartitionCount: $PARTITIONS\b" <<<"$described" ||
    ! grep -Eq "ReplicationFactor: $REPLICATION\b" <<<"$described"; then
    die "$TOPIC should have $PARTITIONS partitions and replication factor $REPLICATION: $(head -n 1 <<<"$described")"
  fi
  log "topic $TOPIC: $PARTITIONS partitions, replication factor $REPLICATION"
}

mint_token() {
  # The command API's image has the package and the stack's JWT_SECRET: no virtualenv needed here.
  TOKEN="$(compose exec -T command-api python -m shared.devtoken --sub compose-smoke | tail -n 1)"
  [[ -n "$TOKEN" ]] || die "python -m shared.devtoken printed no token"
}

round_trip() {
  local id=smoke-1
  post "$id"
  log "POST /transactions: $(cat "$BODY")"
  request GET "$QUERY_URL/stats?consistency_token=$TOKEN_OF_LAST&wait_ms=10000" 200
  [[ "$(json count <"$BODY")" == 1 && "$(json sum <"$BODY")" == 12.34 ]] ||
    die "GET /stats after the POST: expected count 1 and sum 12.34, got $(cat "$BODY")"
  request GET "$QUERY_URL/transactions/$id?consistency_token=$TOKEN_OF_LAST" 200
  [[ "$(json state <"$BODY")" == counted && "$(json amount <"$BODY")" == 12.34 ]] ||
    die "GET /transactions/$id: expected it counted with amount 12.34, got $(cat "$BODY")"
  log "read back through the load balancer: counted, 12.34"
}

replicas_of() { compose ps -q "$1" | wc -l; }

answered() { # answered <service> <replica index> <port> <series>: that replica's count of it
  compose exec -T --index "$2" "$1" python -c 'import sys, urllib.request
sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' \
    "http://127.0.0.1:$3/metrics" | awk -v series="$4" '$1 == series { n += $2 } END { print n + 0 }'
}

silent_replicas() { # silent_replicas <service> <port> <series>: "<service> #<i> " for each
  local i count counts=() #                               replica that has answered none
  for ((i = 1; i <= REPLICAS; i++)); do
    count="$(answered "$1" "$i" "$2" "$3")"
    counts+=("$count")
    [[ "$count" != 0 ]] || printf '%s #%d ' "$1" "$i"
  done
  log "$1: answers per replica: ${counts[*]}"
}

scale() {
  log "scaling command-api, query-api and projector to $REPLICAS replicas each"
  compose up -d --no-build --wait --wait-timeout "$WAIT_SECONDS" \
    --scale command-api="$REPLICAS" --scale query-api="$REPLICAS" --scale projector="$REPLICAS"
  local service
  for service in command-api query-api projector; do
    [[ "$(replicas_of "$service")" == "$REPLICAS" ]] ||
      die "$service runs $(replicas_of "$service") replicas, expected $REPLICAS"
  done
}

spread() {
  # The load balancer asks Docker's DNS at request time and round-robins over the answers:
  # post and read in rounds until every replica of each API has answered some of it.
  local deadline=$((SECONDS + SPREAD_SECONDS)) i silent
  while :; do
    for ((i = 0; i < 10; i++)); do
      post "smoke-$((POSTED_COUNT + 1))"
      request GET "$QUERY_URL/stats" 200
    done
    silent="$(silent_replicas command-api 8000 "$POSTED")$(silent_replicas query-api 8001 "$READ")"
    [[ -n "$silent" ]] || break
    ((SECONDS < deadline)) ||
      die "after $POSTED_COUNT posts, these replicas have answered none through the load balancer: $silent"
  done
  log "every replica of both APIs answered through the load balancer ($POSTED_COUNT posts)"
}

counted_once() {
  local deadline=$((SECONDS + COUNT_SECONDS)) count
  while :; do
    request GET "$QUERY_URL/stats" 200
    count="$(json count <"$BODY")"
    ((count <= POSTED_COUNT)) || die "the projection counts $count transactions, $POSTED_COUNT were posted: some counted twice"
    ((count < POSTED_COUNT)) || break
    ((SECONDS < deadline)) || die "the projection counts $count of the $POSTED_COUNT transactions posted after ${COUNT_SECONDS} s"
    sleep 1
  done
  log "$REPLICAS projectors count all $POSTED_COUNT transactions, each once"
}

finish() {
  local status=$?
  if ((status != 0)); then
    log "failed: the services' state and their last logs follow"
    compose ps -a >&2 || true
    compose logs --no-color --tail 200 >&2 || true
  fi
  if [[ "${SMOKE_KEEP:-}" == 1 ]]; then
    log "SMOKE_KEEP=1: the stack keeps running (docker compose -p $PROJECT down -v stops it)"
  else
    log "stopping the stack and deleting its volumes"
    compose down -v --remove-orphans >/dev/null 2>&1 || log "docker compose down -v failed"
  fi
  rm -rf "$WORK"
  ((status != 0)) || log "ok ($CONFIG)"
}

preflight
WORK="$(mktemp -d)"
BODY="$WORK/body"
if [[ -z "$ENV_FILE" ]]; then
  # An empty env file: a developer's .env must not change what is tested.
  ENV_FILE="$WORK/empty.env"
  : >"$ENV_FILE"
fi
# Compose has no default secret (deploy/dev.env is the development profile): throwaway ones,
# unless given. The passwords go into URLs: hex, URL-safe.
if [[ -z "${JWT_SECRET:-}" ]]; then
  JWT_SECRET="$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')"
fi
export JWT_SECRET
for secret in POSTGRES_PASSWORD PG_OWNER_PASSWORD PG_PROJECTOR_PASSWORD PG_QUERY_PASSWORD \
  GRAFANA_ADMIN_PASSWORD; do
  [[ -n "${!secret:-}" ]] || printf -v "$secret" '%s' "$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
  export "${secret?}"
done
trap finish EXIT
compose down -v --remove-orphans >/dev/null 2>&1 || true # what an earlier SMOKE_KEEP=1 left
build_and_start
check_topic
mint_token
round_trip
scale
spread
counted_once
