"""The docs name only what exists, and agree with the code on what it is: every `make` target,
path, link, setting, default, port, benchmark target and example partition that README.md and
docs/*.md name is checked against the Makefile, the tree, shared/settings.py, .env.example,
the scripts and the code. And no page outside docs/figures/ holds a measured figure."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from pydantic_settings import BaseSettings

from shared import settings as settings_module
from shared.partitioner import partition_of

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
IDS = [str(path.relative_to(ROOT)) for path in DOCS]

CODE_BLOCK = re.compile(r"^```[^\n]*\n(.*?)^```", re.M | re.S)
CODE_SPAN = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*$", re.M)
MAKE = re.compile(r"(?:^|[\s;&|(=$])make\s+(?:-[a-zA-Z-]+\s+)*([a-z][a-z0-9-]*)")
SETTING = re.compile(r"^([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)(?:=\S*)?$")
SETTING_WITH_VALUE = re.compile(r"`([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)` \((\d[\w.]*)\)")

# Not files of the repository: created at run time, or outside it.
RUNTIME = (".local/", ".venv/", ".env")
FILE_SUFFIXES = (".py", ".md", ".yml", ".yaml", ".toml", ".txt", ".sql", ".json", ".png")


@dataclass(frozen=True, slots=True)
class Doc:
    path: Path
    text: str

    @property
    def name(self) -> str:
        return str(self.path.relative_to(ROOT))

    @property
    def prose(self) -> str:
        """The text without its fenced code blocks."""
        return CODE_BLOCK.sub("", self.text)

    def code(self) -> Iterator[str]:
        """Every inline code span (outside blocks), then every fenced block."""
        yield from CODE_SPAN.findall(self.prose)
        yield from CODE_BLOCK.findall(self.text)


def doc(path: Path) -> Doc:
    return Doc(path, path.read_text(encoding="utf-8"))


# ------------------------------------------------------------------------ what the code says


def make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([a-z][a-z0-9-]*):", text, re.M))


REQUIRED = object()  # a setting without a default


def settings_classes() -> list[type[BaseSettings]]:
    return [
        value
        for value in vars(settings_module).values()
        if isinstance(value, type) and issubclass(value, BaseSettings) and value is not BaseSettings
    ]


def service_settings() -> dict[str, Any]:
    """Every environment variable shared/settings.py reads, with its default (`REQUIRED` when
    it has none)."""
    found: dict[str, Any] = {}
    for cls in settings_classes():
        prefix = str(cls.model_config.get("env_prefix", ""))
        for name, field in cls.model_fields.items():
            default = REQUIRED if field.is_required() else field.default
            found[f"{prefix}{name}".upper()] = default
    return found


def script_variables() -> dict[str, str]:
    """Variables the stack's scripts, the Makefile and compose read, and those the tests and
    the bench take from the environment, with their defaults where they give one."""
    found: dict[str, str] = {}
    shell = [
        *sorted((ROOT / "scripts").glob("*.sh")),
        *sorted((ROOT / "deploy").glob("*.env")),
        ROOT / "Makefile",
        ROOT / "docker-compose.yml",
    ]
    for path in shell:
        text = path.read_text()
        for name, default in re.findall(r"\$\{([A-Z][A-Z0-9_]+):-([^}]*)\}", text):
            found.setdefault(name, default)
        for name in re.findall(r"\$\{?([A-Z][A-Z0-9_]+)", text):
            found.setdefault(name, "")
        for name in re.findall(r"^(?:export\s+)?([A-Z][A-Z0-9_]+)\s*\??=", text, re.M):
            found.setdefault(name, "")
    code = [ROOT / "tests", ROOT / "bench", ROOT / "client"]
    for path in sorted(p for folder in code for p in folder.rglob("*.py")):
        text = path.read_text()
        for name, default in re.findall(r'environ\.get\(\s*"([A-Z][A-Z0-9_]+)",\s*"([^"]*)"', text):
            found.setdefault(name, default)
        for name in re.findall(r'(?:environ|env)(?:\.get\(|\[|\()\s*"([A-Z][A-Z0-9_]+)"', text):
            found.setdefault(name, "")
    return found


def env_example() -> dict[str, str]:
    """Every variable .env.example lists (`NAME=value`, or commented `# NAME=`)."""
    text = (ROOT / ".env.example").read_text()
    return dict(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=(.*)$", text, re.M))


def same_value(text: str, default: Any) -> bool:
    """Whether a value written in a doc or .env.example is the code's default."""
    text = text.strip().strip("`")
    if default is REQUIRED or default is None:
        return text == ""
    if isinstance(default, SecretStr):
        default = default.get_secret_value()
    if isinstance(default, bool):
        return text.lower() == str(default).lower()
    if isinstance(default, tuple):  # a list setting, written comma-separated
        return text == ",".join(map(str, default))
    if isinstance(default, int | float):
        try:
            return float(text.replace(",", "")) == float(default)
        except ValueError:
            return False
    return text == str(default)


def known_ports() -> set[int]:
    variables = script_variables()
    ports = {int(v) for k, v in variables.items() if k.endswith("_PORT") and v.isdigit()}
    step = int(variables.get("KAFKA_PORT_STEP") or 10)
    nodes = 3  # the cluster mode's nodes: node i listens on the port + step * (i - 1)
    for base in (int(variables["KAFKA_PORT"]), int(variables["KAFKA_CONTROLLER_PORT"])):
        ports |= {base + step * node for node in range(nodes)}
    harness = (ROOT / "tests" / "faults" / "harness.py").read_text()
    for base in map(int, re.findall(r"_PORT\", \"(\d+)\"\)", harness)):
        ports |= {base + step * node for node in range(nodes)}
    compose = (ROOT / "docker-compose.yml").read_text()
    ports |= {int(port) for port in re.findall(r"\"127\.0\.0\.1:(\d+):\d+\"", compose)}
    ports |= {int(port) for port in re.findall(r"^\s+- \"?(\d+):\d+\"?$", compose, re.M)}
    ports.add(int(service_settings()["PROJECTOR_HTTP_PORT"]))
    return ports


def bench_targets() -> set[str]:
    found: set[str] = set()
    for path in (ROOT / "bench" / "scenarios").glob("*.py"):
        found |= set(re.findall(r'target="([^"]+)"', path.read_text()))
    return found


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*_]{2,}|[`*]", "", heading.strip()).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


# ------------------------------------------------------------------------------ the checks


def test_the_make_pattern_finds_the_readme_commands() -> None:
    named = {t for code in doc(ROOT / "README.md").code() for t in MAKE.findall(code)}
    assert {"run", "test", "up", "token", "down"} <= named


@pytest.mark.parametrize("path", DOCS, ids=IDS)
def test_every_make_target_exists(path: Path) -> None:
    page, targets = doc(path), make_targets()
    named = {target for code in page.code() for target in MAKE.findall(code)}
    missing = sorted(named - targets)
    assert not missing, f"{page.name} names make targets the Makefile lacks: {missing}"


def repository_path(token: str) -> str | None:
    """The path a code span names, when it looks like a file or folder of the repository."""
    token = token.strip().rstrip(".,;)")
    if re.search(r"\s|://|[*<>{}$=]|^[~/(]|\.\.\.", token) or token.startswith(RUNTIME):
        return None
    token = re.sub(r":[A-Za-z_][\w.]*$", "", token)  # path.py:function
    first = token.split("/", 1)[0]
    if "/" in token:
        return token if (ROOT / first).exists() or first.startswith(".") else None
    if (ROOT / token).exists():
        return token
    return token if token.endswith(FILE_SUFFIXES) else None


def exists(name: str) -> bool:
    if "/" in name:
        return (ROOT / name.rstrip("/")).exists()
    skip = {".git", ".venv", ".local", "node_modules"}
    return any(not skip & set(p.parts) for p in ROOT.rglob(name))


@pytest.mark.parametrize("path", DOCS, ids=IDS)
def test_every_file_named_exists(path: Path) -> None:
    page = doc(path)
    named = {p for span in CODE_SPAN.findall(page.prose) if (p := repository_path(span))}
    for code in page.code():  # paths inside commands: `scripts/stack.sh status`
        for word in re.split(r"[\s'\"=]+", code):
            if "/" in word and (found := repository_path(word)) and "/" in found:
                named.add(found)
    missing = sorted(name for name in named if not exists(name))
    assert not missing, f"{page.name} names files that do not exist: {missing}"


def anchors_of(path: Path) -> set[str]:
    if path.suffix != ".md":
        return set()
    return {slug(heading) for heading in HEADING.findall(doc(path).prose)}


@pytest.mark.parametrize("path", DOCS, ids=IDS)
def test_every_link_leads_somewhere(path: Path) -> None:
    page = doc(path)
    broken = []
    for match in LINK.finditer(page.prose):
        target = match.group(1) or match.group(2)
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists() or (anchor and anchor not in anchors_of(linked)):
            broken.append(target)
    assert not broken, f"{page.name} links to nothing: {broken}"


@pytest.mark.parametrize("path", DOCS, ids=IDS)
def test_every_setting_named_exists(path: Path) -> None:
    page, services, scripts, listed = (
        doc(path),
        service_settings(),
        script_variables(),
        env_example(),
    )
    problems = []
    for span in CODE_SPAN.findall(page.prose):
        match = SETTING.match(span)
        if not match:
            continue
        name = match.group(1)
        if name in services:
            if name not in listed:
                problems.append(f"{name}: not in .env.example")
        elif name not in scripts:
            problems.append(f"{name}: no such setting (shared/settings.py, scripts/)")
    for name, value in SETTING_WITH_VALUE.findall(page.prose):
        default = services.get(name, scripts.get(name))
        if default is not None and not same_value(value, default):
            problems.append(f"`{name}` ({value}): the default is {default!r}")
    assert not problems, f"{page.name}: {problems}"


def test_the_configuration_table_gives_every_setting_its_default() -> None:
    page, services = doc(ROOT / "docs" / "configuration.md"), service_settings()
    shown: dict[str, str] = {}
    for line in page.prose.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) < 2 or not cells[0].startswith("`"):
            continue
        names = CODE_SPAN.findall(cells[0])
        defaults = [part.strip() for part in cells[1].split("/")] if "/" in cells[1] else [cells[1]]
        if len(defaults) != len(names):
            defaults = [cells[1]] * len(names)
        shown.update(zip(names, defaults, strict=True))
    assert sorted(shown) == sorted(services), "the table lists other settings than the code"
    wrong = []
    for name, cell in shown.items():
        default = services[name]
        if default is REQUIRED:
            ok = "required" in cell
        elif default is None:
            ok = cell == "unset"
        else:
            ok = same_value(cell, default)
        if not ok:
            wrong.append(f"{name}: the table says {cell}, the code {default!r}")
    assert not wrong, wrong


def test_env_example_lists_every_setting_with_its_default() -> None:
    services, listed = service_settings(), env_example()
    assert sorted(listed) == sorted(services), "other variables in .env.example than the code reads"
    wrong = [
        f"{name}={listed[name]} (the code: {default!r})"
        for name, default in services.items()
        if not same_value(listed[name], default)
    ]
    assert not wrong, wrong


PORT_MENTION = re.compile(
    r"(?:localhost|127\.0\.0\.1):(\d{2,5})\b"  # an address
    r"|(?<![\w.])`?:(\d{4,5})/"  # `:8002/metrics`
    r"|\bports?\s+\**(\d{4,5})\b"  # port 5433, ports 19092/...
    r"|\*\*(\d{4,5})\*\*"  # Command API **8000**
    r"|\(controller (\d{4,5})\)"
    r"|(?<=/)(\d{4,5})\b(?=[/ ])"  # 19092/19093/15433
)
LABELLED_PORT = re.compile(
    r"(command API|query API|projector health and metrics|Kafka|PostgreSQL)"
    r"\**\s+(?:\(port\s+)?\**(\d{4,5})\b",
    re.I,
)
PORT_OF = {
    "command api": "COMMAND_API_PORT",
    "query api": "QUERY_API_PORT",
    "projector health and metrics": "PROJECTOR_HTTP_PORT",
    "kafka": "KAFKA_PORT",
    "postgresql": "PG_PORT",
}


@pytest.mark.parametrize("path", DOCS, ids=IDS)
def test_every_port_named_is_a_default(path: Path) -> None:
    page, known, variables = doc(path), known_ports(), script_variables()
    named = {int(p) for match in PORT_MENTION.findall(page.text) for p in match if p}
    unknown = sorted(named - known)
    assert not unknown, f"{page.name} names ports nothing listens on by default: {unknown}"
    wrong = [
        f"{label} {port}"
        for label, port in LABELLED_PORT.findall(page.prose)
        if variables[PORT_OF[label.lower()]] != port
    ]
    assert not wrong, f"{page.name}: {wrong} (the defaults: scripts/services.sh, stack.sh)"


@pytest.mark.parametrize("path", DOCS, ids=IDS)
def test_an_example_transaction_is_on_its_real_partition(path: Path) -> None:
    """A transaction id shown with a partition (in a position, a consistency token, offsets)
    is shown where Kafka's partitioner puts it."""
    partitions = int(service_settings()["KAFKA_PARTITIONS"])
    wrong = []
    for block in CODE_BLOCK.findall(doc(path).text):
        ids = set(re.findall(r'"transaction_id":\s*"([^"]+)"', block))
        if len(ids) != 1:
            continue
        (transaction_id,) = ids
        real = partition_of(transaction_id.encode(), partitions)
        shown = {int(p) for p in re.findall(r'"partition":\s*(\d+)', block)}
        shown |= {int(p) for p in re.findall(r'"v1\.(\d+)-\d+"', block)}
        for mapping in re.findall(r'"(?:offsets|lag)":\s*\{([^}]*)\}', block):
            shown |= {int(p) for p in re.findall(r'"(\d+)":', mapping)}
        wrong += [f"{transaction_id} on {p} (really {real})" for p in sorted(shown - {real})]
    assert not wrong, f"{doc(path).name}: {wrong}"


def test_the_benchmark_targets_are_the_benchmarks_own() -> None:
    page, targets = doc(ROOT / "docs" / "performance.md"), bench_targets()
    rows = [line for line in page.prose.splitlines() if line.startswith("| ") and "---" not in line]
    header = [cell.strip() for cell in rows[0].strip("|").split("|")]
    column = header.index("target")
    shown = [
        CODE_SPAN.findall(row.strip("|").split("|")[column])
        for row in rows[1:]
        if "target" in header
    ]
    named = {target for spans in shown for target in spans}
    assert named, "performance.md shows no targets"
    assert named <= targets, f"targets that bench/scenarios does not use: {named - targets}"


MEASURED = re.compile(
    r"(?<![<>=] )(?<![\d,.])\d[\d,]*(?:\.\d+)?\s?(?:tx/s|events/s|req/s|records/s|rows/s|µs)"
    r"|(?<![<>=] )(?<![\d,.])\d+\.\d+\s?ms\b"  # a latency to a fraction of a millisecond
    r"|(?<![<>=] )(?<![\d,.])\d+\.\d+x\b"  # a ratio
    r"|(?<![\d,.])\d[\d,.]*\s?(?:MB|MiB|GB|GiB) per\b"  # a size per item
)


@pytest.mark.parametrize("path", DOCS, ids=IDS)
def test_no_measured_figure_is_typed_by_hand(path: Path) -> None:
    """Rates, CPU times, latencies, ratios and sizes per item are measured: they live in
    docs/figures/, written by commands. A bound (`>= 0.75x`, `<= 15 µs`) is a target."""
    figures = MEASURED.findall(doc(path).text)
    assert not figures, f"{doc(path).name} holds measured figures: {figures}"
