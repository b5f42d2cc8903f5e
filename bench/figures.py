"""`python -m bench.figures` (`make figures`): publish the latest measured figures as the
generated pages under docs/figures/, which the docs link instead of copying figures by hand.

- docs/figures/bench.md: the latest full `make bench` run (`.local/bench/latest.json`), its
  page as the run wrote it (`.local/bench/latest.md`);
- docs/figures/capacity.md: the capacity plan derived (bench/sizing.py) from that run and
  the latest `python -m bench.capacity` run (`.local/bench/capacity-latest.json`);
- docs/figures/reliability.md: the fault suite's report (`.local/reports/faults.json`), as
  the suite renders it (`.local/reports/faults.md`).

A page whose inputs are missing is left as it is (a placeholder naming the commands when
there is none yet). A partial bench run (`--quick`, `--only`) is never published: the page
would mix a short run's figures with the plan's. Exit status 1 when a page was refused.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import sizing
from bench.procs import ROOT
from bench.report import RESULTS_DIR, render
from bench.scenarios import SCENARIOS
from tests.faults import report as faults

FIGURES = ROOT / "docs" / "figures"
BENCH_JSON = RESULTS_DIR / "latest.json"
CAPACITY_JSON = RESULTS_DIR / "capacity-latest.json"

PLACEHOLDERS = {
    "bench.md": "# Benchmark figures\n\nNot measured yet: run `make bench`, then `make figures`.\n",
    "capacity.md": "# Capacity figures\n\nNot measured yet: run `make bench` and "
    "`.venv/bin/python -m bench.capacity`, then `make figures`.\n",
    "reliability.md": "# Fault suite figures\n\nNot measured yet: run `make test` and "
    "`make test-slow`, then `make figures`.\n",
}


class Refused(Exception):
    """The inputs exist but must not be published."""


def _json(path: Path) -> Any:
    return json.loads(path.read_text())


def partial(document: dict[str, Any]) -> str:
    """Why a bench run is not a full one (empty when it is)."""
    settings = (document.get("scenarios") or {}).get("settings") or {}
    if settings.get("quick"):
        return "it ran with --quick"
    ran = settings.get("scenarios")
    if ran is not None and set(ran) != set(SCENARIOS):
        return f"it ran only {', '.join(ran)}"
    return ""


def bench_page(document: dict[str, Any]) -> str:
    why = partial(document)
    if why:
        raise Refused(f"the latest `make bench` run is partial ({why}): run `make bench`")
    return (
        "# Benchmark figures\n\n"
        "Published by `make figures` from the latest full run of `make bench` "
        "(`.local/bench/latest.json`); do not edit. What each scenario measures, against "
        "which baseline and target: [performance](../performance.md).\n\n" + render(document)
    )


def capacity_page(bench: dict[str, Any], capacity: dict[str, Any]) -> str:
    why = partial(bench)
    if why:
        raise Refused(f"the latest `make bench` run is partial ({why}): run `make bench`")
    try:
        return sizing.page(sizing.Inputs.of(bench, capacity))
    except sizing.MissingFigure as err:
        raise Refused(str(err)) from err


def reliability_page(entries: list[dict[str, Any]]) -> str:
    return (
        "<!-- Published by `make figures` from .local/reports/faults.json: the fault suite's "
        "report as it renders it (.local/reports/faults.md); do not edit. -->\n"
        + faults.render(entries)
    )


def publish(
    out: Path, *, bench: Path, capacity: Path, fault_report: Path, say: Callable[[str], None]
) -> bool:
    """Write every page whose inputs exist; True when none was refused."""
    out.mkdir(parents=True, exist_ok=True)
    pages: dict[str, tuple[Callable[[], str], list[Path]]] = {
        "bench.md": (lambda: bench_page(_json(bench)), [bench]),
        "capacity.md": (lambda: capacity_page(_json(bench), _json(capacity)), [bench, capacity]),
        "reliability.md": (lambda: reliability_page(faults.load(fault_report)), [fault_report]),
    }
    fine = True
    for name, (make, inputs) in pages.items():
        target = out / name
        missing = [str(path) for path in inputs if not path.exists()]
        if missing:
            if not target.exists():
                target.write_text(PLACEHOLDERS[name])
            say(f"{name}: kept as it was (no {', '.join(missing)})")
            continue
        try:
            target.write_text(make())
        except Refused as err:
            say(f"{name}: not published: {err}")
            fine = False
            continue
        say(f"{name}: published")
    return fine


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.figures", description=__doc__)
    parser.add_argument("--bench", type=Path, default=BENCH_JSON, help="a make bench JSON")
    parser.add_argument("--capacity", type=Path, default=CAPACITY_JSON)
    parser.add_argument("--faults", type=Path, default=faults.REPORT_JSON)
    parser.add_argument("--out", type=Path, default=FIGURES)
    args = parser.parse_args(argv)

    def say(message: str) -> None:
        sys.stderr.write(f"[figures] {message}\n")

    fine = publish(
        args.out, bench=args.bench, capacity=args.capacity, fault_report=args.faults, say=say
    )
    return 0 if fine else 1


if __name__ == "__main__":
    raise SystemExit(main())
