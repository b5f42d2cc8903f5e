# Everything a user runs. Each target provisions what it needs on a fresh clone.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SERVICE_DIRS := command_api projector query_api shared

# Cluster mode: KAFKA_NODES=3 runs a 3-node KRaft cluster (scripts/stack.sh); the
# services then bootstrap from every node and create the topic with replication factor 3.
# (Single node: nothing is exported, so a KAFKA_REPLICATION_FACTOR in .env still applies.)
export KAFKA_NODES ?= 1
ifneq ($(KAFKA_NODES),1)
export KAFKA_REPLICATION_FACTOR ?= $(shell n=$(KAFKA_NODES); echo $$(( n < 3 ? n : 3 )))
export KAFKA_BOOTSTRAP_SERVERS ?= 127.0.0.1:9092,127.0.0.1:9102,127.0.0.1:9112
endif

# Integration tests use these when set; otherwise the local stack from scripts/stack.sh.
export KAFKA_BOOTSTRAP_SERVERS ?= 127.0.0.1:9092
export DATABASE_URL ?= postgresql://txstats@127.0.0.1:5433/txstats

.PHONY: help venv infra env up down run test test-slow test-unit lint docker-lint token rebuild bench
.PHONY: status logs projector-status figures migrate

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@command -v python3 >/dev/null || { echo "python3 (>= 3.11) is required" >&2; exit 1; }
	@test -x $(PY) || { echo "[venv] creating the virtualenv .venv/"; python3 -m venv $(VENV); }
	@echo "[venv] pip: installing the pinned dependencies (requirements-dev.txt) into .venv/ (1-4 minutes the first time, depending on the load)"; \
	  start=$$SECONDS; \
	  $(PY) -m pip install -q -r requirements-dev.txt && $(PY) -m pip install -q --no-deps -e . && \
	  echo "[venv] pip: done in $$((SECONDS - start)) s"
	@touch $@

venv: $(STAMP) ## create the virtualenv with the pinned dependencies

infra: $(STAMP) ## provision and start Kafka + PostgreSQL under .local/
	scripts/stack.sh infra-up

env:
	@scripts/stack.sh ensure-env

up: infra env ## start everything in the background; returns when every /ready answers 200
	scripts/services.sh up

down: ## stop the services, Kafka and PostgreSQL (data stays in .local/)
	scripts/services.sh down
	scripts/stack.sh infra-down

# `run` starts Kafka and PostgreSQL itself (not through `infra`), so that however it ends it
# stops what it started, the infrastructure included.
run: venv env ## start everything in the foreground; Ctrl-C stops it
	scripts/services.sh run

# The integration tests' Kafka and PostgreSQL: TXSTATS_TEST_INFRA=local (the stack of
# scripts/stack.sh, started here) or =testcontainers (containers on a Docker engine); unset,
# testcontainers when a Docker engine answers, else local. pytest prints which.
# In local mode Kafka and PostgreSQL stay up after the tests (the next `make test` reuses them;
# `make down` stops them), and the last line says so.
# `make test` skips the cases marked `slow` (crash faults on a 3-node cluster, kill -9 loops:
# minutes each); `make test-slow` runs only those; CI (.ci/run) runs both.
# TEST_PATHS narrows the run (the GitHub workflow: TEST_PATHS=tests/integration TEST_MARKERS=).
TEST_MARKERS ?= not slow
TEST_PATHS ?= tests

test: venv ## unit + integration + fault tests against a real Kafka and PostgreSQL (not the slow ones)
	@scripts/browser.sh  # chromium + chromium-driver for the dashboard test ((sudo) apt-get when missing)
	@mode="$${TXSTATS_TEST_INFRA:-}"; \
	if [ -z "$$mode" ]; then \
	  if $(PY) -m tests.integration.infra docker; then mode=testcontainers; else mode=local; fi; \
	fi; \
	case "$$mode" in \
	  local) $(MAKE) --no-print-directory infra || exit 1 ;; \
	  testcontainers) ;; \
	  *) echo "TXSTATS_TEST_INFRA=$$mode: expected local or testcontainers" >&2; exit 2 ;; \
	esac; \
	export TXSTATS_TEST_INFRA=$$mode; \
	echo "make test: Kafka and PostgreSQL from $$mode; tests: $(or $(TEST_MARKERS),all) in $(TEST_PATHS)"; \
	$(PY) -m pytest -q -p no:cacheprovider -m "$(TEST_MARKERS)" $(TEST_PATHS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; rc=1; fi; \
	if [ "$$mode" = local ]; then \
	  echo "make test: Kafka ($$KAFKA_BOOTSTRAP_SERVERS) and PostgreSQL ($$(echo "$$DATABASE_URL" | sed -E 's#.*@([^/?]+).*#\1#')) are still running; 'make down' stops them"; \
	fi; \
	exit $$rc

test-slow: ## only the slow cases (CI runs them after `make test`)
	@$(MAKE) --no-print-directory test TEST_MARKERS=slow

test-unit: venv ## unit tests only (no services needed)
	$(PY) -m pytest -q tests/unit

lint: venv ## ruff + mypy --strict + forbidden calls in service code + shellcheck
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy --strict .
	$(VENV)/bin/shellcheck scripts/*.sh .ci/run
	@if grep -rnE '(^|[^.a-z_])print\(|time\.sleep\(' --include='*.py' $(SERVICE_DIRS); then \
	  echo "print( or time.sleep( in service code (see above)" >&2; exit 1; fi
	$(MAKE) --no-print-directory docker-lint

docker-lint: venv ## hadolint both Dockerfiles, validate docker-compose.yml
	scripts/docker_lint.sh

token: venv env ## print a development JWT (scopes transactions:write stats:read transactions:read; valid 1 h, ARGS="--ttl 86400")
	@$(PY) -m shared.devtoken $(ARGS)

rebuild: infra ## rebuild the projection from the log, verify, swap (ARGS="--dry-run" etc.), as the projector's role
	@scripts/services.sh rebuild $(ARGS)

bench: infra env ## benchmarks against same-run baselines: Markdown table, JSON in .local/bench/
	$(PY) -m bench $(ARGS)

figures: venv ## publish the latest bench, capacity and fault-suite figures to docs/figures/
	$(PY) -m bench.figures $(ARGS)

# ------------------------------------------------------------ operator commands

status: venv ## services, Kafka, PostgreSQL, projection versions and lag, on one screen
	@scripts/services.sh status
	@scripts/stack.sh status
	@if scripts/stack.sh status | grep -q '^postgres: running'; then \
	  scripts/services.sh projection-status; else echo "projection: PostgreSQL is stopped"; fi

logs: ## follow the services' logs (.local/logs/*.log); Ctrl-C ends
	@scripts/services.sh logs

migrate: infra ## apply the schema migrations as the owner and grant the services' roles (make up/run do it first)
	@scripts/services.sh migrate

projector-status: venv ## the projector's `status` CLI (active version, every version, lag), as the read-only query role
	@scripts/services.sh projection-status
