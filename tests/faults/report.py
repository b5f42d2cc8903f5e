"""The fault suite's figures: a test that measures something (counts, outage windows, how soon
an abusive request is cut off) adds a row here instead of printing it.

At the end of the session the rows are merged into `.local/reports/faults.json`: a test's new
rows replace its old ones, the rows of tests that did not run stay, each with the time,
commit and machine it was measured on (`make test` and `make test-slow` run different
cases). The merged rows are rendered to `.local/reports/faults.md`, the page `make figures`
publishes as docs/figures/reliability.md. A row is only added after the test's assertions
held, so every row is from a passing test.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests.provenance import ROOT, Machine, commit, utc_now

REPORT_DIR = ROOT / ".local" / "reports"
REPORT_JSON = REPORT_DIR / "faults.json"


@dataclass(frozen=True, slots=True)
class Outcome:
    """A fault under load: what was sent and answered, what the projection counted."""

    fault: str
    sent: int | None  # None: the fault hits the fold or the reads, no POSTs are counted
    acknowledged: int | None
    not_confirmed: str
    counted: str


@dataclass(frozen=True, slots=True)
class Outage:
    """How long a crash kept writes or fresh reads away, from the signal."""

    crash: str
    next_201: str
    every_partition: str
    next_fresh_read: str


@dataclass(frozen=True, slots=True)
class Attack:
    """A hostile request and what it met."""

    attack: str
    result: str


Row = Outcome | Outage | Attack
AddRow = Callable[[Row], None]  # the `report_row` fixture: adds a row under the test's name
KINDS: dict[str, type[Row]] = {"outcome": Outcome, "outage": Outage, "attack": Attack}
_KIND_OF = {kind: name for name, kind in KINDS.items()}


@dataclass(slots=True)
class Collector:
    """The session's rows, by test (pytest node id)."""

    rows: dict[str, list[Row]] = field(default_factory=dict)

    def add(self, test: str, row: Row) -> None:
        self.rows.setdefault(test, []).append(row)

    def entries(self, *, when: str, at: str, machine: Machine) -> list[dict[str, Any]]:
        return [
            {
                "test": test,
                "kind": _KIND_OF[type(row)],
                "row": asdict(row),
                "when": when,
                "commit": at,
                "machine": machine.to_json(),
            }
            for test, rows in self.rows.items()
            for row in rows
        ]

    def write(self, path: Path = REPORT_JSON) -> None:
        """Merge this session's rows into the report at `path` and render it beside it."""
        if not self.rows:
            return
        new = self.entries(when=utc_now(), at=commit(), machine=Machine.current())
        merged = merge(load(path), new)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(merged, indent=2) + "\n")
        path.with_suffix(".md").write_text(render(merged))


def load(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    entries: list[dict[str, Any]] = json.loads(path.read_text())
    return entries


def merge(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The old entries of tests that did not report now, then the new ones; by test id."""
    reported = {entry["test"] for entry in new}
    kept = [entry for entry in old if entry["test"] not in reported]
    return sorted(kept + new, key=lambda entry: str(entry["test"]))


def _cell(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value).replace("|", "\\|")


def _measured(entry: dict[str, Any]) -> str:
    return f"{str(entry['when'])[:10]}, {entry['commit']}"


TABLES = (
    (
        "outcome",
        "Faults under load",
        "",
        ["fault", "sent", "201", "not confirmed", "counted at the end"],
    ),
    (
        "outage",
        "Unavailability per crash",
        "From the signal to the next 201 of a POST sent after it, to every partition "
        "acknowledging again, and to the next fresh read (a `GET /stats` with the consistency "
        "token of a POST sent after the crash answering 200).\n\n",
        ["crash", "next 201", "every partition 201 again", "next fresh read"],
    ),
    ("attack", "Hostile HTTP", "", ["attack", "result"]),
)


def render(entries: list[dict[str, Any]]) -> str:
    """The report as Markdown: one table per kind of row, each row with its test and run."""
    parts = [
        "# Fault suite figures\n\n"
        "Written by the fault suite (`tests/faults/`, run by `make test` and `make test-slow`): "
        "each row is from a test that passed, so its assertions held (nothing acknowledged "
        "lost, nothing counted twice, totals exact). Each row names its test and the date "
        "and commit it was measured at.\n"
    ]
    for kind, title, intro, header in TABLES:
        rows = [entry for entry in entries if entry["kind"] == kind]
        if not rows:
            continue
        lines = [
            f"\n## {title}\n\n{intro}| " + " | ".join([*header, "test", "measured"]) + " |",
            "|" + "---|" * (len(header) + 2),
        ]
        for entry in rows:
            cells = [_cell(value) for value in entry["row"].values()]
            test = str(entry["test"]).removeprefix("tests/faults/")
            lines.append("| " + " | ".join([*cells, f"`{test}`", _measured(entry)]) + " |")
        parts.append("\n".join(lines) + "\n")
    machines = sorted({Machine.of(entry["machine"]).describe() for entry in entries})
    parts.append("\nMachines: " + "; ".join(machines) + ".\n")
    return "".join(parts)
