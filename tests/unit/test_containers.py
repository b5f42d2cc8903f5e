"""The container files: docker-compose.yml, both Dockerfiles, .dockerignore, and CI (the GitHub
workflow, and scripts/compose_smoke.sh that it runs on a Docker host).

No Docker engine is needed: the files are parsed and checked for the properties that the stack
relies on. `scripts/docker_lint.sh` adds hadolint and Compose's own parser on top of this.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import json
import re
import shlex
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration import infra

ROOT = Path(__file__).resolve().parents[2]

SERVICES = frozenset(
    {
        "kafka",
        "kafka-2",
        "kafka-3",
        "postgres",
        "migrate",
        "command-api",
        "projector",
        "query-api",
        "lb",
    }
)
ONE_SHOT = {"migrate"}  # runs to completion; the others wait for its success
CLUSTER_NODES = {"kafka": 1, "kafka-2": 2, "kafka-3": 3}
# service -> (what it must wait for, the port its healthcheck probes)
APP_DEPENDENCIES = {
    "command-api": ({"kafka"}, 8000),
    "projector": ({"kafka", "migrate"}, 8002),
    "query-api": ({"migrate"}, 8001),
}
# service -> (its PostgreSQL role, the variable holding that role's password)
DATABASE_ROLES = {
    "projector": ("txstats_projector", "PG_PROJECTOR_PASSWORD"),
    "query-api": ("txstats_query", "PG_QUERY_PASSWORD"),
}
# network -> the services on it (docs/docker.md): the front is the only one with a way out
NETWORKS = {
    "front": {"lb", "command-api", "query-api", "prometheus", "grafana"},
    "events": {"kafka", "kafka-2", "kafka-3", "command-api", "projector"},
    "projection": {"postgres", "migrate", "projector", "query-api"},
    "monitoring": {"projector", "prometheus"},
}
PUBLISHED_PORTS = {"command-api": 8000, "query-api": 8001}

# Dockerfile -> (the ASGI app factory its CMD serves, the port)
DOCKERFILES = {
    "Dockerfile.command": ("command_api.main:create_app", 8000),
    "Dockerfile.query": ("query_api.main:create_app", 8001),
}
PINNED_PYTHON = re.compile(r"^python:3\.12\.\d+-slim-[a-z]+$")
VENV = "/opt/venv"


# ---------------------------------------------------------------- Dockerfile parsing


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


@dataclass(frozen=True)
class Stage:
    image: str
    name: str | None
    instructions: tuple[Instruction, ...]

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def parse_dockerfile(text: str) -> list[Stage]:
    """Split a Dockerfile into stages of instructions (continuations joined, comments dropped)."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "the Dockerfile ends inside a line continuation"

    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        instruction = Instruction(keyword.upper(), args.strip())
        if instruction.keyword == "FROM":
            words = [w for w in instruction.args.split() if not w.startswith("--")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name, ()))
        else:
            assert stages, f"{line!r} comes before the first FROM"
            last = stages[-1]
            stages[-1] = Stage(last.image, last.name, (*last.instructions, instruction))
    return stages


@cache
def dockerfile(name: str) -> list[Stage]:
    return parse_dockerfile((ROOT / name).read_text(encoding="utf-8"))


def env_of(stage: Stage) -> dict[str, str]:
    values: dict[str, str] = {}
    for instruction in stage.all("ENV"):
        words = shlex.split(instruction.args)
        if "=" not in words[0]:  # legacy `ENV KEY value`
            values[words[0]] = " ".join(words[1:])
            continue
        for word in words:
            key, _, value = word.partition("=")
            values[key] = value
    return values


def flag_value(args: list[str], flag: str) -> str:
    assert flag in args, f"{flag} missing from {args}"
    index = args.index(flag)
    assert index + 1 < len(args), f"{flag} has no value in {args}"
    return args[index + 1]


# ---------------------------------------------------------------- Dockerfiles


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_dockerfile_is_multi_stage_on_a_pinned_python_slim_image(name: str) -> None:
    stages = dockerfile(name)
    assert len(stages) >= 2, "a builder stage and a runtime stage"
    assert stages[0].name == "builder"
    for stage in stages:
        assert ":" in stage.image, f"{stage.image}: no tag"
        assert not stage.image.endswith(":latest"), f"{stage.image}: unpinned"
        assert PINNED_PYTHON.match(stage.image), f"{stage.image}: want python:3.12.N-slim-<debian>"
    assert len({s.image for s in stages}) == 1, "builder and runtime must use the same base"


def test_both_dockerfiles_use_the_same_base_image() -> None:
    bases = {name: dockerfile(name)[-1].image for name in DOCKERFILES}
    assert len(set(bases.values())) == 1, bases


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_builder_installs_pinned_requirements_then_the_package_into_the_venv(name: str) -> None:
    runs = [i.args for i in dockerfile(name)[0].all("RUN")]

    def first(pattern: str, what: str) -> int:
        found = [n for n, run in enumerate(runs) if re.search(pattern, run)]
        assert found, f"the builder must {what}"
        return found[0]

    venv = first(rf"-m venv {VENV}\b", f"create the virtualenv at {VENV}")
    requirements = first(r"pip install .*-r requirements\.txt", "install requirements.txt")
    package = first(r"pip install .*--no-deps \.(\s|$)", "install our package with --no-deps")
    assert venv < requirements < package
    assert f"PATH={VENV}/bin:$PATH" in [f"{k}={v}" for k, v in env_of(dockerfile(name)[0]).items()]


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_final_stage_copies_only_the_virtualenv_and_installs_nothing(name: str) -> None:
    stages = dockerfile(name)
    final = stages[-1]
    earlier = {s.name for s in stages[:-1]}
    copies = final.all("COPY") + final.all("ADD")
    assert copies, "the final stage must copy the virtualenv"
    for copy in copies:
        words = copy.args.split()
        sources = [w for w in words if w.startswith("--from=")]
        assert sources, f"COPY {copy.args}: the final stage copies from the builder only"
        assert sources[0].removeprefix("--from=") in earlier
        assert [w for w in words if not w.startswith("--")] == [VENV, VENV]
    for run in final.all("RUN"):
        assert not re.search(r"\b(apt-get|apt|apk|pip|gcc|make|curl|wget)\b", run.args), run.args


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_final_stage_environment(name: str) -> None:
    env = env_of(dockerfile(name)[-1])
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1"
    assert env.get("PYTHONUNBUFFERED") == "1"
    assert env.get("PATH") == f"{VENV}/bin:$PATH"


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_final_stage_runs_as_a_fixed_non_root_uid(name: str) -> None:
    users = dockerfile(name)[-1].all("USER")
    assert users, "the final stage must switch to a non-root USER"
    user = users[-1].args.split(":")[0]
    assert user.isdigit(), f"USER {user}: use a numeric uid (runAsNonRoot can verify it)"
    assert int(user) != 0


@pytest.mark.parametrize(("name", "app", "port"), [(n, *v) for n, v in sorted(DOCKERFILES.items())])
def test_cmd_is_exec_form_uvicorn_with_uvloop_and_httptools(name: str, app: str, port: int) -> None:
    cmds = dockerfile(name)[-1].all("CMD")
    assert cmds, "the final stage needs a CMD"
    args = json.loads(cmds[-1].args)  # shell form is not JSON: this raises
    assert isinstance(args, list)
    assert all(isinstance(a, str) for a in args)
    assert args[:2] == ["uvicorn", app]
    assert "--factory" in args
    assert ipaddress.ip_address(flag_value(args, "--host")).is_unspecified, "listen on all"
    assert flag_value(args, "--port") == str(port)
    assert flag_value(args, "--loop") == "uvloop"
    assert flag_value(args, "--http") == "httptools"


@pytest.mark.parametrize(("name", "port"), [(n, v[1]) for n, v in sorted(DOCKERFILES.items())])
def test_healthcheck_and_expose(name: str, port: int) -> None:
    final = dockerfile(name)[-1]
    checks = final.all("HEALTHCHECK")
    assert checks, "the final stage needs a HEALTHCHECK"
    check = checks[-1].args
    assert "CMD" in check
    assert "urllib.request" in check, "slim images have no curl: probe with Python's urllib"
    assert f"127.0.0.1:{port}/health" in check
    exposed = {p.split("/")[0] for e in final.all("EXPOSE") for p in e.args.split()}
    assert str(port) in exposed


# ---------------------------------------------------------------- .dockerignore

KEPT_OUT_OF_THE_CONTEXT = (
    ".local/kafka/data",
    ".venv/bin/python",
    ".git/HEAD",
    "tests/unit/test_x.py",
    ".env",
    "shared/__pycache__/x.pyc",
    ".pytest_cache/v",
    ".mypy_cache/x",
    ".ruff_cache/x",
)
NEEDED_IN_THE_CONTEXT = (
    "requirements.txt",
    "pyproject.toml",
    "README.md",
    "command_api/main.py",
    "projector/__main__.py",
    "query_api/main.py",
    "shared/migrations/001_projection.sql",
)


def docker_ignored(path: str, patterns: list[str]) -> bool:
    """Approximates Docker's rule: the last matching pattern wins; `!` re-includes."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        glob = pattern.removeprefix("!").strip("/")
        candidates = {glob, glob.removeprefix("**/")}
        parts = path.split("/")
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        if any(fnmatch.fnmatchcase(p, g) for p in prefixes for g in candidates):
            ignored = not negate
    return ignored


def test_dockerignore_keeps_local_state_tests_and_secrets_out() -> None:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    patterns = [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
    for path in KEPT_OUT_OF_THE_CONTEXT:
        assert docker_ignored(path, patterns), f"{path} would be sent to the Docker daemon"
    for path in NEEDED_IN_THE_CONTEXT:
        assert (ROOT / path).is_file(), f"{path} is named here but does not exist"
        assert not docker_ignored(path, patterns), f"the image build needs {path}"


# ---------------------------------------------------------------- docker-compose.yml


def as_mapping(value: object, what: str) -> dict[str, Any]:
    assert isinstance(value, dict), f"{what} must be a mapping, got {value!r}"
    return value


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return as_mapping(yaml.safe_load((ROOT / "docker-compose.yml").read_text("utf-8")), "compose")


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    raw = as_mapping(compose.get("services"), "services")
    return {name: as_mapping(spec, name) for name, spec in raw.items()}


def environment(service: dict[str, Any]) -> dict[str, str | None]:
    env = service.get("environment", {})
    if isinstance(env, list):  # ["KEY=value", "KEY"]
        return {k: (v if sep else None) for k, sep, v in (str(e).partition("=") for e in env)}
    return {str(k): None if v is None else str(v) for k, v in as_mapping(env, "env").items()}


def published_ports(service: dict[str, Any]) -> set[tuple[str, str]]:
    """{(host port, container port)} from short ("8000:8000") or long port syntax."""
    pairs: set[tuple[str, str]] = set()
    for port in service.get("ports", []):
        if isinstance(port, dict):
            pairs.add((str(port.get("published")), str(port.get("target"))))
            continue
        parts = str(port).split("/")[0].split(":")
        if len(parts) >= 2:
            pairs.add((parts[-2], parts[-1]))
    return pairs


def test_compose_defines_exactly_these_services(services: dict[str, Any]) -> None:
    """Besides these, services behind the `observability` profile start only on request."""
    observability = {
        n for n, spec in services.items() if "observability" in spec.get("profiles", [])
    }
    assert set(services) - observability == SERVICES


def test_every_service_has_a_healthcheck(services: dict[str, dict[str, Any]]) -> None:
    for name, spec in services.items():
        check = as_mapping(spec.get("healthcheck"), f"{name}.healthcheck")
        if name in ONE_SHOT:  # its exit code is its health
            assert check == {"disable": True}, name
            assert spec.get("restart") == "no", name
            continue
        assert not check.get("disable"), name
        test = check.get("test")
        assert isinstance(test, list), f"{name}: healthcheck.test as a list"
        assert test[0] in {"CMD", "CMD-SHELL"}, name
        assert len(test) >= 2, name


def test_images_are_pinned(services: dict[str, dict[str, Any]]) -> None:
    for name, spec in services.items():
        image = str(spec.get("image", ""))
        assert ":" in image, f"{name}: image {image!r} has no tag"
        assert not image.endswith(":latest"), f"{name}: image {image!r} is not pinned"
    assert re.fullmatch(r"apache/kafka:4\.\d+\.\d+", services["kafka"]["image"])
    assert re.fullmatch(r"postgres:16\.\d+(-[a-z0-9.]+)?", services["postgres"]["image"])
    assert re.fullmatch(r"nginx:1\.\d+\.\d+(-alpine)?", services["lb"]["image"])


def test_kafka_is_a_single_kraft_node_with_a_volume_by_default(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    kafka = services["kafka"]
    assert "profiles" not in kafka, "node 1 always runs"
    env = environment(kafka)
    assert set(str(env.get("KAFKA_PROCESS_ROLES")).split(",")) == {"broker", "controller"}
    assert env.get("CLUSTER_ID"), "KRaft needs a CLUSTER_ID"
    assert env.get("KAFKA_ADVERTISED_LISTENERS") == "PLAINTEXT://kafka:9092"
    assert env.get("KAFKA_CONTROLLER_QUORUM_VOTERS") == "${KAFKA_VOTERS:-1@kafka:9093}"
    for key in ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "KAFKA_DEFAULT_REPLICATION_FACTOR"):
        assert env.get(key) == "${KAFKA_REPLICATION_FACTOR:-1}", key
    assert env.get("KAFKA_MIN_INSYNC_REPLICAS") == "${KAFKA_MIN_INSYNC_REPLICAS:-1}"
    probe = " ".join(kafka["healthcheck"]["test"])
    assert re.search(r"/opt/kafka/bin/kafka-(broker-api-versions|topics)\.sh", probe)
    assert_named_volume(compose, kafka, env.get("KAFKA_LOG_DIRS") or "")


def cluster_env() -> dict[str, str]:
    lines = (ROOT / "deploy" / "cluster.env").read_text("utf-8").splitlines()
    pairs = (line.partition("=") for line in lines if line.strip() and not line.startswith("#"))
    return {key: value for key, _, value in pairs}


def test_cluster_profile_runs_three_kraft_voters_with_replication_factor_3(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    env_file = cluster_env()
    assert env_file["COMPOSE_PROFILES"] == "cluster"
    assert env_file["KAFKA_VOTERS"] == ",".join(
        f"{node}@{name}:9093" for name, node in CLUSTER_NODES.items()
    )
    assert env_file["KAFKA_BOOTSTRAP"] == ",".join(f"{name}:9092" for name in CLUSTER_NODES)
    assert env_file["KAFKA_REPLICATION_FACTOR"] == "3"
    assert env_file["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
    cluster_ids: set[str | None] = set()
    volumes: set[str] = set()
    for name, node in CLUSTER_NODES.items():
        spec = services[name]
        env = environment(spec)
        if node > 1:
            assert spec.get("profiles") == ["cluster"], name
        assert str(env.get("KAFKA_NODE_ID")) == str(node), name
        assert env.get("KAFKA_ADVERTISED_LISTENERS") == f"PLAINTEXT://{name}:9092", name
        assert env.get("KAFKA_CONTROLLER_QUORUM_VOTERS") == "${KAFKA_VOTERS:-1@kafka:9093}"
        assert env.get("KAFKA_BROKER_SESSION_TIMEOUT_MS") == "3000", "failover within ~3 s"
        assert spec.get("image") == services["kafka"]["image"]
        cluster_ids.add(env.get("CLUSTER_ID"))
        assert_named_volume(compose, spec, "/var/lib/kafka/data")
        volumes.update(str(v).partition(":")[0] for v in spec["volumes"])
    assert len(cluster_ids) == 1, "one cluster"
    assert len(volumes) == len(CLUSTER_NODES), "a volume per node"


def test_the_integration_suite_on_testcontainers_runs_the_compose_files_postgres(
    services: dict[str, dict[str, Any]],
) -> None:
    assert services["postgres"]["image"] == infra.POSTGRES_IMAGE
    assert re.fullmatch(r"confluentinc/cp-kafka:\d+\.\d+\.\d+", infra.KAFKA_IMAGE)


def test_postgres_has_a_volume_pg_isready_and_an_env_driven_password(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    postgres = services["postgres"]
    env = environment(postgres)
    for name in ("POSTGRES_PASSWORD", "PG_OWNER_PASSWORD", "PG_PROJECTOR_PASSWORD"):
        # required: no default outside deploy/dev.env
        assert re.fullmatch(rf"\$\{{{name}:\?[^}}]+\}}", str(env.get(name))), name
    assert "POSTGRES_USER" not in env, "the superuser keeps its name; the owner is txstats"
    mounts = [str(v) for v in postgres.get("volumes", [])]
    assert "./deploy/postgres-roles.sql:/docker-entrypoint-initdb.d/10-txstats-roles.sql:ro" in (
        mounts
    )
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert_named_volume(compose, postgres, "/var/lib/postgresql/data")


def assert_named_volume(compose: dict[str, Any], service: dict[str, Any], target: str) -> None:
    declared = set(as_mapping(compose.get("volumes"), "volumes"))
    mounts = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            mounts[str(volume.get("target"))] = str(volume.get("source"))
        else:
            source, _, rest = str(volume).partition(":")
            mounts[rest.split(":")[0]] = source
    assert target in mounts, f"nothing is mounted at {target!r}: {mounts}"
    assert mounts[target] in declared, f"{mounts[target]} is not a named volume"


def test_app_services_wait_for_healthy_infrastructure(services: dict[str, dict[str, Any]]) -> None:
    for name, (needs, _) in APP_DEPENDENCIES.items():
        depends = as_mapping(services[name].get("depends_on"), f"{name}.depends_on")
        assert needs <= set(depends), f"{name} must wait for {needs}"
        for dependency, spec in depends.items():
            condition = as_mapping(spec, f"{name}.depends_on.{dependency}").get("condition")
            expected = (
                "service_completed_successfully" if dependency in ONE_SHOT else "service_healthy"
            )
            assert condition == expected, f"{name} -> {dependency}"


def test_app_healthchecks_probe_their_own_port(services: dict[str, dict[str, Any]]) -> None:
    for name, (_, port) in APP_DEPENDENCIES.items():
        probe = " ".join(services[name]["healthcheck"]["test"])
        assert "urllib.request" in probe, name
        assert re.search(rf"127\.0\.0\.1:{port}/(health|ready)\b", probe), f"{name}: {probe}"


def test_the_apis_require_a_jwt_secret(services: dict[str, dict[str, Any]]) -> None:
    for name in PUBLISHED_PORTS:
        secret = environment(services[name]).get("JWT_SECRET") or ""
        assert re.fullmatch(r"\$\{JWT_SECRET:\?[^}]+\}", secret), f"{name}: {secret!r}"


def dev_env() -> dict[str, str]:
    lines = (ROOT / "deploy" / "dev.env").read_text("utf-8").splitlines()
    return dict(ln.split("=", 1) for ln in lines if ln.strip() and not ln.startswith("#"))


def test_grafana_has_no_default_password_outside_the_development_profile(
    services: dict[str, dict[str, Any]],
) -> None:
    password = environment(services["grafana"]).get("GF_SECURITY_ADMIN_PASSWORD") or ""
    assert re.fullmatch(r"\$\{GRAFANA_ADMIN_PASSWORD:\?[^}]+\}", password), password
    assert dev_env().get("GRAFANA_ADMIN_PASSWORD"), "deploy/dev.env: the development value"
    for script in ("scripts/compose_smoke.sh", "scripts/docker_lint.sh"):
        assert "GRAFANA_ADMIN_PASSWORD" in (ROOT / script).read_text("utf-8"), script


def test_the_query_api_believes_forwarded_headers_from_the_front_network_alone(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    front = as_mapping(as_mapping(compose["networks"], "networks")["front"], "front")
    [pool] = as_mapping(front.get("ipam"), "front.ipam")["config"]
    subnet = str(pool["subnet"])
    trusted = environment(services["query-api"]).get("TRUSTED_PROXIES")
    assert trusted == subnet, f"TRUSTED_PROXIES {trusted!r}, the front network is {subnet!r}"
    default = re.fullmatch(r"\$\{FRONT_SUBNET:-([^}]+)\}", subnet)
    assert default is not None, subnet
    assert ipaddress.ip_network(default.group(1)).is_private


def test_apps_reach_kafka_and_postgres_by_service_name(services: dict[str, dict[str, Any]]) -> None:
    for name, (needs, _) in APP_DEPENDENCIES.items():
        env = environment(services[name])
        if "kafka" in needs:
            assert env.get("KAFKA_BOOTSTRAP_SERVERS") == "${KAFKA_BOOTSTRAP:-kafka:9092}", name
            assert env.get("KAFKA_REPLICATION_FACTOR") == "${KAFKA_REPLICATION_FACTOR:-1}"
        if name in DATABASE_ROLES:
            role, password = DATABASE_ROLES[name]
            url = env.get("DATABASE_URL") or ""
            assert url.startswith(f"postgresql://{role}:${{{password}:?"), f"{name}: {url!r}"
            assert url.endswith("@postgres:5432/txstats"), f"{name}: {url!r}"
        else:
            assert "DATABASE_URL" not in env, f"{name} has no business with PostgreSQL"
    migrate = environment(services["migrate"])
    assert str(migrate.get("MIGRATION_DATABASE_URL")).startswith(
        "postgresql://txstats:${PG_OWNER_PASSWORD:?"
    )
    assert services["migrate"]["command"] == ["python", "-m", "projector", "migrate"]


def test_networks_give_each_service_only_what_it_needs(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    declared = as_mapping(compose.get("networks"), "networks")
    assert set(declared) == set(NETWORKS)
    for network, spec in declared.items():
        internal = bool((spec or {}).get("internal"))
        assert internal == (network != "front"), f"{network}: only the front has a way out"
    for name, spec in services.items():
        joined = set(spec.get("networks", []))
        expected = {network for network, members in NETWORKS.items() if name in members}
        assert joined == expected, f"{name} is on {sorted(joined)}, expected {sorted(expected)}"
        if spec.get("ports"):
            assert "front" in joined, f"{name} publishes a port off the front network"


def test_the_apis_scale_behind_the_load_balancer_on_8000_and_8001(
    services: dict[str, dict[str, Any]],
) -> None:
    lb = services["lb"]
    assert published_ports(lb) == {(str(p), str(p)) for p in PUBLISHED_PORTS.values()}
    depends = as_mapping(lb.get("depends_on"), "lb.depends_on")
    for name, port in PUBLISHED_PORTS.items():
        api = services[name]
        assert not api.get("ports"), f"{name}: a published host port prevents --scale"
        assert "container_name" not in api, f"{name}: a fixed name prevents --scale"
        assert str(port) in [str(p) for p in api.get("expose", [])], name
        assert as_mapping(depends[name], name).get("condition") == "service_healthy"
    mounts = [str(v) for v in lb.get("volumes", [])]
    assert "./deploy/nginx.conf:/etc/nginx/nginx.conf:ro" in mounts
    probe = " ".join(lb["healthcheck"]["test"])
    for port in PUBLISHED_PORTS.values():
        assert f"127.0.0.1:{port}/" in probe


def test_nginx_spreads_each_port_over_every_replica_of_its_api() -> None:
    conf = (ROOT / "deploy" / "nginx.conf").read_text("utf-8")
    # Docker's DNS, asked at request time: replicas added by --scale are found.
    assert re.search(r"^\s*resolver 127\.0\.0\.11 valid=\d+s", conf, re.MULTILINE)
    blocks = re.split(r"^\s*server \{", conf, flags=re.MULTILINE)[1:]
    targets = set()
    for block in blocks:
        [port] = re.findall(r"listen (\d+);", block)
        for variable, host, target in re.findall(r"set \$(\w+) ([\w-]+):(\d+);", block):
            targets.add((port, host, target))
            assert f"proxy_pass http://${variable};" in block
    assert targets == {(str(port), name, str(port)) for name, port in PUBLISHED_PORTS.items()}
    # A POST that reached a replica is never re-sent by the balancer (no non_idempotent).
    assert "non_idempotent" not in conf


def test_nginx_limits_each_client_address_and_names_it_alone() -> None:
    conf = (ROOT / "deploy" / "nginx.conf").read_text("utf-8")
    # The APIs trust X-Forwarded-For from nginx: it must hold the peer, never the client's own.
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in conf
    assert "$proxy_add_x_forwarded_for" not in conf
    stream = re.search(r"location = /stats/stream \{(.*?)\}", conf, re.S)
    assert stream is not None
    assert re.search(r"limit_conn \w+ \d+;", stream.group(1))
    assert "limit_req_status 429;" in conf
    assert "limit_conn_status 429;" in conf
    assert conf.count("default_type application/problem+json;") == len(PUBLISHED_PORTS)


def server_blocks(conf: str) -> dict[int, str]:
    blocks = re.split(r"^\s*server \{", conf, flags=re.MULTILINE)[1:]
    return {int(re.findall(r"listen (\d+);", block)[0]): block for block in blocks}


def test_nginx_holds_reads_to_a_reader_rate_and_writes_to_a_producer_rate() -> None:
    """Each port its own zone: a producer POSTing one transaction at a time from one host is not
    held to the 20 requests a second that bound a reader's polls and streams."""
    conf = (ROOT / "deploy" / "nginx.conf").read_text("utf-8")
    zones = {
        name: int(rate)
        for name, rate in re.findall(
            r"limit_req_zone \$binary_remote_addr zone=(\w+):\w+ rate=(\d+)r/s;", conf
        )
    }
    http_level = re.split(r"^\s*server \{", conf, flags=re.MULTILINE)[0]
    assert not re.search(r"^\s*limit_req ", http_level, re.MULTILINE), "one zone per port"
    rates = {}
    for port, block in server_blocks(conf).items():
        [zone] = re.findall(r"^\s*limit_req zone=(\w+) burst=\d+", block, re.MULTILINE)
        rates[port] = zones[zone]
    reads, writes = rates[PUBLISHED_PORTS["query-api"]], rates[PUBLISHED_PORTS["command-api"]]
    assert reads <= 20
    assert writes >= 50 * reads, f"writes capped at {writes} req/s per address"


def test_nginx_tells_the_apis_the_scheme_the_client_used() -> None:
    conf = (ROOT / "deploy" / "nginx.conf").read_text("utf-8")
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in conf


def test_projector_runs_from_the_query_image_and_can_scale(
    services: dict[str, dict[str, Any]],
) -> None:
    projector, query = services["projector"], services["query-api"]
    assert projector.get("command") == ["python", "-m", "projector", "run"]
    assert "container_name" not in projector, "a fixed name prevents --scale"
    assert not projector.get("ports"), "a published host port prevents --scale"
    assert projector.get("image") == query.get("image")
    for spec in (projector, query):
        assert as_mapping(spec.get("build"), "build").get("dockerfile") == "Dockerfile.query"
    command = as_mapping(services["command-api"].get("build"), "build")
    assert command.get("dockerfile") == "Dockerfile.command"


def test_compose_dollars_are_variables_or_escaped() -> None:
    """Compose v2 rejects a `$` that starts no variable, even inside ${VAR:?message}."""
    for number, line in enumerate((ROOT / "docker-compose.yml").read_text("utf-8").splitlines(), 1):
        if line.lstrip().startswith("#"):
            continue
        stray = re.search(r"\$(?![{A-Za-z_])", line.replace("$$", ""))
        assert stray is None, f"docker-compose.yml:{number}: write a literal '$' as '$$': {line}"


# ---------------------------------------------------------------- CI workflow

SMOKE = "scripts/compose_smoke.sh"


@pytest.fixture(scope="module")
def jobs() -> dict[str, dict[str, Any]]:
    workflow = as_mapping(
        yaml.safe_load((ROOT / ".github/workflows/ci.yml").read_text("utf-8")), "workflow"
    )
    raw = as_mapping(workflow.get("jobs"), "jobs")
    return {name: as_mapping(spec, name) for name, spec in raw.items()}


def runs(job: dict[str, Any]) -> list[str]:
    return [str(step["run"]) for step in job.get("steps", []) if "run" in step]


def test_ci_workflow_has_a_job_for_each_path_of_the_tests(jobs: dict[str, dict[str, Any]]) -> None:
    assert set(jobs) == {"lint", "test", "test-slow", "integration-testcontainers", "compose-smoke"}
    assert runs(jobs["lint"])[0] == "make lint"
    assert any(r.startswith("go run github.com/rhysd/actionlint/") for r in runs(jobs["lint"]))
    # .ci/run's two commands, each a job, on the local stack as .ci/run runs them
    ci_run = (ROOT / ".ci" / "run").read_text("utf-8").splitlines()
    for command in ("make test", "make test-slow"):
        assert command in ci_run
        job = jobs[command.removeprefix("make ")]
        assert runs(job) == [command]
        assert job["env"]["TXSTATS_TEST_INFRA"] == "local"
    # the browser test runs there: a missing browser fails the job instead of skipping the test
    assert jobs["test"]["env"]["TXSTATS_REQUIRE_BROWSER"] == "1"
    assert "TXSTATS_REQUIRE_BROWSER" in (ROOT / "scripts" / "browser.sh").read_text("utf-8")
    containers = jobs["integration-testcontainers"]
    assert containers["env"]["TXSTATS_TEST_INFRA"] == "testcontainers"
    assert runs(containers) == ["make test TEST_PATHS=tests/integration TEST_MARKERS="]


def test_ci_workflow_smoke_tests_both_compose_configurations(
    jobs: dict[str, dict[str, Any]],
) -> None:
    smoke = jobs["compose-smoke"]
    assert smoke["strategy"]["matrix"]["configuration"] == ["default", "cluster"]
    assert runs(smoke) == [f"{SMOKE} ${{{{ matrix.configuration }}}}"]


def test_every_make_target_and_script_the_workflow_runs_exists(
    jobs: dict[str, dict[str, Any]],
) -> None:
    makefile = (ROOT / "Makefile").read_text("utf-8")
    targets = set(re.findall(r"^([a-z][a-z-]*):", makefile, re.MULTILINE))
    variables = set(re.findall(r"^([A-Z_]+) \?=", makefile, re.MULTILINE))
    for job in jobs.values():
        for run in runs(job):
            words = run.split()
            if words[0] == "make":
                assert words[1] in targets, run
                for word in words[2:]:
                    assert word.partition("=")[0] in variables, f"{run}: {word}"
            elif words[0].startswith("scripts/"):
                script = ROOT / words[0]
                assert script.is_file(), run
                assert script.stat().st_mode & 0o111, f"{words[0]} is not executable"


def test_the_smoke_test_drives_the_compose_files_services_and_ports(
    services: dict[str, dict[str, Any]],
) -> None:
    script = (ROOT / SMOKE).read_text("utf-8")
    named = set(re.findall(r"--scale ([\w-]+)=", script))
    named |= set(re.findall(r"exec -T (?:--index \S+ )?([a-z][\w-]*)", script))
    assert named >= {"command-api", "query-api", "projector", "kafka"}
    assert named <= set(services), named - set(services)
    published = {int(port) for port, _ in published_ports(services["lb"])}
    assert {
        int(port) for port in re.findall(r"_URL=http://127\.0\.0\.1:(\d+)", script)
    } == published
    assert "CLUSTER_ENV=deploy/cluster.env" in script
    assert "down -v" in script
