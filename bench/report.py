"""Medians and spreads of repeated runs, the Markdown table, the JSON file."""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.procs import ROOT

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

    def machine(self) -> dict[str, Any]:
        model = ""
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        return {
            "cpu": model,
            "cores": os.cpu_count(),
            "kernel": platform.release(),
            "python": platform.python_version(),
        }

    def write(self) -> Path:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self.started))
        document = {
            "started": stamp,
            "seconds": round(time.time() - self.started, 1),
            "machine": self.machine(),
            "table": [asdict(row) for row in self.rows],
            "markdown": self.markdown(),
            "scenarios": self.data,
        }
        path = RESULTS_DIR / f"bench-{stamp}.json"
        text = json.dumps(document, indent=2, default=str)
        path.write_text(text)
        (RESULTS_DIR / "latest.json").write_text(text)
        return path
