"""The hexagon's rules, read from the imports themselves: drivers only at the edges, imports
that point one way, and no test code in the production packages."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("command_api", "projector", "query_api")
DRIVERS = ("aiokafka", "asyncpg")
# shared's own infrastructure: the pool and migrations, the topic; used by the edges only
SHARED_INFRASTRUCTURE = ("shared.database", "shared.topic")


def imports_of(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def is_edge(path: Path) -> bool:
    """Adapters and composition roots may use drivers."""
    relative = path.relative_to(ROOT)
    return "adapters" in relative.parts or relative.name == "main.py"


def modules(*packages: str) -> list[Path]:
    return sorted(p for package in packages for p in (ROOT / package).rglob("*.py"))


def names(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(ROOT)) for p in paths]


CORE = [p for p in modules(*SERVICES) if not is_edge(p)]


@pytest.mark.parametrize("path", CORE, ids=names(CORE))
def test_the_core_of_each_service_imports_no_driver(path: Path) -> None:
    used = {name for name in imports_of(path) if name.split(".")[0] in DRIVERS}
    used |= {name for name in imports_of(path) if name in SHARED_INFRASTRUCTURE}
    assert not used, f"{path.relative_to(ROOT)} imports {sorted(used)}: move it to an adapter"


def test_the_rule_covers_the_fold_loop_and_the_rebuild() -> None:
    assert {"projector/loop.py", "projector/rebuild.py"} <= set(names(CORE))


@pytest.mark.parametrize("path", modules(*SERVICES), ids=names(modules(*SERVICES)))
def test_services_import_shared_never_each_other(path: Path) -> None:
    own = path.relative_to(ROOT).parts[0]
    others = {name for name in imports_of(path) if name.split(".")[0] in set(SERVICES) - {own}}
    assert not others, f"{path.relative_to(ROOT)} imports {sorted(others)}"


# The query API's feature folders stand on its top-level modules (ports, adapters, deps, the
# rules they share) and never on one another: main.py, the composition root, is the one place
# where they meet.
QUERY_FEATURES = ("stats", "stream", "transactions")
QUERY_MODULES = [p for p in modules("query_api") if p.name != "main.py"]


def feature_of(module: str) -> str | None:
    package, _, rest = module.partition(".")
    feature = rest.split(".")[0]
    return feature if package == "query_api" and feature in QUERY_FEATURES else None


@pytest.mark.parametrize("path", QUERY_MODULES, ids=names(QUERY_MODULES))
def test_a_query_feature_is_imported_only_by_itself_and_the_composition_root(path: Path) -> None:
    own = feature_of(".".join(path.relative_to(ROOT).with_suffix("").parts))
    others = {name for name in imports_of(path) if feature_of(name) not in {None, own}}
    assert not others, (
        f"{path.relative_to(ROOT)} imports {sorted(others)}: "
        "what features share lives at query_api's top level"
    )


def test_the_rule_knows_every_query_feature_folder() -> None:
    folders = {p.parent.name for p in (ROOT / "query_api").glob("*/__init__.py")}
    assert folders - {"adapters"} == set(QUERY_FEATURES)


SHARED = [p for p in modules("shared") if p.stem not in {"database", "topic"}]


@pytest.mark.parametrize("path", SHARED, ids=names(SHARED))
def test_shared_imports_no_service_and_no_driver(path: Path) -> None:
    used = {name for name in imports_of(path) if name.split(".")[0] in (*SERVICES, *DRIVERS)}
    assert not used, f"{path.relative_to(ROOT)} imports {sorted(used)}"


PRODUCTION = modules(*SERVICES, "shared")


@pytest.mark.parametrize("path", PRODUCTION, ids=names(PRODUCTION))
def test_production_code_imports_no_test_code(path: Path) -> None:
    """The in-memory doubles live in tests/doubles; no service selects them at run time."""
    used = {name for name in imports_of(path) if name.split(".")[0] == "tests"}
    assert not used, f"{path.relative_to(ROOT)} imports {sorted(used)}"


CLIENT = modules("client")


@pytest.mark.parametrize("path", CLIENT, ids=names(CLIENT))
def test_the_client_is_its_own_package(path: Path) -> None:
    """`client/` installs alone (client/pyproject.toml): it imports no service, not `shared`."""
    used = {
        name for name in imports_of(path) if name.split(".")[0] in (*SERVICES, "shared", "tests")
    }
    assert not used, f"{path.relative_to(ROOT)} imports {sorted(used)}"
