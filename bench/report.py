"""Medians and spreads of repeated runs, the Markdown table, the run's files: JSON (every
run's details) and Markdown (the page `make figures` publishes as docs/figures/bench.md)."""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.procs import ROOT
from tests.provenance import Machine, commit

RESULTS_DIR = ROOT / ".local" / "bench"


@dataclass(frozen=True, slots=True)
class Series:
    """One figure measured in several runs."""

    values: tuple[float, ...]

    @classmethod
    def of(cls, values: Sequence[float]) -> Series:
        return cls(tuple(values))

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    @property
    def spread(self) -> float:
        """(max - min) / median, in percent."""
        if len(self.values) < 2 or not self.median:
            return 0.0
        return 100 * (max(self.values) - min(self.values)) / abs(self.median)

    def describe(self, unit: str = "", digits: int = 0) -> str:
        return f"{_num(self.median, digits)}{unit} (±{self.spread / 2:.0f}%)"

    def to_json(self) -> dict[str, Any]:
        return {
            "median": self.median,
            "min": min(self.values, default=None),
            "max": max(self.values, default=None),
            "spread_pct": round(self.spread, 1),
            "runs": list(self.values),
        }


def _num(value: float, digits: int) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value:,.{digits}f}"


def paired_ratio(measured: Sequence[float], baseline: Sequence[float]) -> Series:
    """Ratios of runs made back to back (run i against baseline run i): the noise the two
    share cancels out, which the ratio of two medians would not do."""
    return Series.of([m / b for m, b in zip(measured, baseline, strict=True) if b])


def median_of(rows: Sequence[dict[str, float]], key: str) -> float:
    values = [row[key] for row in rows if key in row]
    return statistics.median(values) if values else 0.0


def cpu_summary(cpu_runs: Sequence[dict[str, float]], order: Sequence[str]) -> str:
    """`client 35% / server 99% / kafka 40% / postgres 20%` (medians, % of one core)."""
    parts = []
    for name in order:
        if any(name in run for run in cpu_runs):
            parts.append(f"{name} {median_of(cpu_runs, name):.0f}%")
    return " / ".join(parts)


@dataclass(slots=True)
class Row:
    scenario: str
    measured: str
    baseline: str
    ratio: str
    target: str
    met: bool | None
    cpu: str
    note: str = ""
    # The row's headline figures by name (medians), for what is derived from a run: the
    # capacity plan reads them (bench/sizing.py), so they are named, not parsed from text.
    key: str = ""
    figures: dict[str, float] = field(default_factory=dict)


@dataclass(slots=True)
class Report:
    rows: list[Row] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.time)

    def add(self, row: Row) -> None:
        self.rows.append(row)

    def markdown(self) -> str:
        header = (
            "| scenario | measured (median, ±half-spread) | baseline in the same run | ratio "
            "| target | met | CPU, % of one core (median) |\n"
            "|---|---|---|---|---|---|---|\n"
        )
        lines = []
        for row in self.rows:
            met = "n/a" if row.met is None else ("yes" if row.met else "**no**")
            scenario = row.scenario + (f" ({row.note})" if row.note else "")
            lines.append(
                f"| {scenario} | {row.measured} | {row.baseline} | {row.ratio} | {row.target} "
                f"| {met} | {row.cpu} |"
            )
        return header + "\n".join(lines) + "\n"

    def write(self) -> Path:
        """`bench-<time>.json` and `.md` in .local/bench/, and the same as `latest.*`."""
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self.started))
        document = {
            "started": stamp,
            "seconds": round(time.time() - self.started, 1),
            "commit": commit(),
            "machine": Machine.current().to_json(),
            "table": [asdict(row) for row in self.rows],
            "markdown": self.markdown(),
            "scenarios": self.data,
        }
        path = RESULTS_DIR / f"bench-{stamp}.json"
        text = json.dumps(document, indent=2, default=str)
        page = render(document)
        for name in (f"bench-{stamp}", "latest"):
            (RESULTS_DIR / f"{name}.json").write_text(text)
            (RESULTS_DIR / f"{name}.md").write_text(page)
        return path


def render(document: dict[str, Any]) -> str:
    """One run as a Markdown page: what ran, where and when, then its table verbatim."""
    settings = (document.get("scenarios") or {}).get("settings") or {}
    lines = [f"Run {document.get('started', '?')} of `make bench`"]
    lines.append(f"at commit {document.get('commit') or 'not recorded'}")
    lines.append(f"on {Machine.of(document.get('machine') or {}).describe()}.")
    if settings.get("layout"):
        layout = str(settings["layout"])
        lines.append(f"{layout[:1].upper()}{layout[1:]}.")
    if settings.get("runs"):
        lines.append(
            f"Each scenario ran {settings['runs']} times, interleaved with its baseline;"
            f" {settings.get('seconds', '?')} s per HTTP run, a"
            f" {settings.get('events', 0):,}-event log"
            + (" (`--quick`)" if settings.get("quick") else "")
            + "."
        )
    if settings.get("scenarios"):
        lines.append(f"Scenarios: {', '.join(settings['scenarios'])}.")
    if document.get("seconds"):
        lines.append(f"Total {document['seconds']:.0f} s.")
    return " ".join(lines) + "\n\n" + str(document.get("markdown", "")).rstrip("\n") + "\n"
