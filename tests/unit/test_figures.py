"""The generated figure pages: a bench run's page, the capacity plan derived from a bench and a
capacity run, the fault suite's report, and `make figures` publishing them (or refusing to),
all on small sample inputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import figures, sizing
from bench.report import render
from bench.scenarios import SCENARIOS
from tests.faults import report
from tests.provenance import Machine

MACHINE = {"cpu": "Sample CPU", "cores": 2, "kernel": "6.1", "python": "3.11.7"}
TABLE = "| scenario | measured |\n|---|---|\n| fold | 40,000 events/s |\n"


def bench_run(**settings: Any) -> dict[str, Any]:
    rows = {
        "ingest_single": {"rate": 700.0, "cpu_us": 1000.0},
        "ingest_batch": {"rate": 20_000.0, "cpu_us": 40.0},
        "fold": {"rate": 40_000.0, "cpu_us": 25.0, "postgres_pct": 50.0},
        "fold_two": {"rate": 48_000.0, "ratio": 1.2, "busy_pct": 190.0},
        "fold_two_cpu": {"cpu_ratio": 1.1},
        "stats_throughput": {"rate": 4_000.0, "cpu_pct": 100.0},
    }
    return {
        "started": "20261201T120000Z",
        "seconds": 700.0,
        "commit": "abc123",
        "machine": MACHINE,
        "table": [{"key": key, "figures": values} for key, values in rows.items()],
        "markdown": TABLE,
        "scenarios": {
            "settings": {
                "runs": 3,
                "seconds": 10.0,
                "events": 1_000_000,
                "layout": "load generator pinned to CPU 0",
                "scenarios": list(SCENARIOS),
                "quick": False,
                **settings,
            }
        },
    }


def capacity_run() -> dict[str, Any]:
    return {
        "started": "2026-12-01T13:00:00Z",
        "commit": "def456",
        "machine": MACHINE,
        "dedupe_insert": {"batch": 20_000, "cpu_us_per_row": 10.0, "mib_per_million_ids": 200},
        "bucket_upsert": {"batch": 1000, "cpu_us_per_row": 10.0},
        "kafka_log": {"bytes_per_event": 400.0},
    }


def test_a_bench_page_names_its_run_and_holds_its_table_verbatim() -> None:
    page = render(bench_run())
    first, table = page.split("\n\n", 1)
    assert "20261201T120000Z" in first
    assert "commit abc123" in first
    assert "Sample CPU, 2 cores" in first
    assert "ran 3 times" in first
    assert table == TABLE


def test_the_plan_reads_the_named_figures_of_both_runs() -> None:
    inputs = sizing.Inputs.of(bench_run(), capacity_run())
    assert (inputs.single_cpu_us, inputs.batch_cpu_us, inputs.fold_cpu_us) == (1000, 40, 25)
    assert inputs.fold_postgres_us == pytest.approx(12.5)  # 50% of a core at 40,000 events/s
    assert inputs.read_cpu_us == pytest.approx(250)
    assert inputs.bench.commit == "abc123"
    assert inputs.capacity.commit == "def456"


def test_a_run_without_a_figure_is_named_not_guessed() -> None:
    bench = bench_run()
    bench["table"] = [row for row in bench["table"] if row["key"] != "fold_two"]
    with pytest.raises(sizing.MissingFigure, match="fold_two"):
        sizing.Inputs.of(bench, capacity_run())
    capacity = capacity_run()
    del capacity["kafka_log"]
    with pytest.raises(sizing.MissingFigure, match="kafka_log"):
        sizing.Inputs.of(bench_run(), capacity)


def test_the_sizing_arithmetic() -> None:
    # 10,000 tx/s at 1,000 µs each: 10 cores of work, 70% busy at most: 14.3 -> 15
    assert sizing.processes(10_000, 1000) == 15
    assert sizing.processes(10_000, 40) == sizing.MIN_PROCESSES  # 0.6 of a process
    assert sizing.processes(1_000_000, 25) == 36  # 35.7
    assert sizing.partitions(2) == sizing.TODAY_PARTITIONS
    assert sizing.partitions(36) == 72
    assert sizing.cores(1_000_000, 12.5) == pytest.approx(12.5)
    assert sizing.per_day(10_000, 400) == 10_000 * 86_400 * 400


def test_the_capacity_page_states_inputs_assumptions_and_sizing() -> None:
    page = sizing.page(sizing.Inputs.of(bench_run(), capacity_run()))
    rows = {line.split(" | ")[0].strip("| "): line for line in page.splitlines()}
    assert "1,000 requests" in rows["I1"]  # per CPU-second
    assert "1.20x" in rows["I4"]
    assert "95% busy" in rows["I4"]  # 190% of a core on 2 cores: the machine was saturated
    for key, _, _ in sizing.ASSUMPTIONS:
        assert key in rows
    assert "1.10x one's" in rows["I4"]
    assert "measured for two only" in rows["A3"]
    # 25 µs an event, times 1.10 for sharing the log with other projectors, at most 70% busy
    projectors = rows["projectors (I3, I4, A1, A2, A3, A7)"]
    assert projectors.split(" | ")[1:] == ["2", "4", "40 |"]
    assert rows["partitions (A4)"].split(" | ")[1:] == ["6", "8", "80 |"]
    assert "12.5 |" in rows["PostgreSQL cores for the fold (I3), on one primary"]
    assert "1,200 MB/s" in rows["Kafka writes, 3 replicas (I9, A5)"]


def test_an_unsaturated_scaling_run_is_not_called_saturated() -> None:
    bench = bench_run()
    bench["table"][3]["figures"]["busy_pct"] = 120.0
    page = sizing.page(sizing.Inputs.of(bench, capacity_run()))
    assert "busy, so this run cannot tell" not in page


def entry(test: str, row: report.Row, when: str = "2026-12-01T10:00:00Z") -> dict[str, Any]:
    collector = report.Collector()
    collector.add(test, row)
    return collector.entries(when=when, at="abc123", machine=Machine.of(MACHINE))[0]


def test_the_fault_report_keeps_rows_of_tests_that_did_not_run() -> None:
    old = [
        entry("tests/faults/test_a.py::test_a", report.Attack("old a", "413")),
        entry("tests/faults/test_b.py::test_b", report.Attack("old b", "413")),
    ]
    new = [entry("tests/faults/test_a.py::test_a", report.Attack("new a", "413"), "2026-12-02")]
    merged = report.merge(old, new)
    assert [e["row"]["attack"] for e in merged] == ["new a", "old b"]


def test_the_fault_report_renders_one_table_per_kind() -> None:
    entries = [
        entry(
            "tests/faults/test_x.py::test_x",
            report.Outcome(
                "Kafka stopped",
                sent=1200,
                acknowledged=1000,
                not_confirmed="200 x 503",
                counted="1,200",
            ),
        ),
        entry("tests/faults/test_y.py::test_y", report.Outage("kill", "1.00 s", "—", "2.00 s")),
    ]
    page = report.render(entries)
    assert "## Faults under load" in page
    assert "| Kafka stopped | 1,200 | 1,000 | 200 x 503 | 1,200 | `test_x.py::test_x` |" in page
    assert "## Unavailability per crash" in page
    assert "## Hostile HTTP" not in page  # no rows of that kind
    assert "2026-12-01, abc123" in page
    assert "Sample CPU, 2 cores" in page


def test_the_collector_writes_the_report_and_its_page(tmp_path: Path) -> None:
    path = tmp_path / "reports" / "faults.json"
    report.Collector().write(path)
    assert not path.exists()  # nothing measured, nothing written
    collector = report.Collector()
    collector.add("tests/faults/test_z.py::test_z", report.Attack("chunked", "413"))
    collector.write(path)
    saved = report.load(path)
    assert [e["row"] for e in saved] == [{"attack": "chunked", "result": "413"}]
    assert path.with_suffix(".md").read_text() == report.render(saved)


def write(path: Path, document: Any) -> Path:
    path.write_text(json.dumps(document))
    return path


def test_figures_publishes_every_page_from_its_inputs(tmp_path: Path) -> None:
    out = tmp_path / "figures"
    faults_path = write(
        tmp_path / "faults.json", [entry("tests/faults/t.py::t", report.Attack("a", "b"))]
    )
    said: list[str] = []
    fine = figures.publish(
        out,
        bench=write(tmp_path / "bench.json", bench_run()),
        capacity=write(tmp_path / "capacity.json", capacity_run()),
        fault_report=faults_path,
        say=said.append,
    )
    assert fine, said
    bench_page = (out / "bench.md").read_text()
    assert bench_page.endswith(render(bench_run()))  # the run's own page, verbatim
    assert (out / "capacity.md").read_text() == sizing.page(
        sizing.Inputs.of(bench_run(), capacity_run())
    )
    assert (out / "reliability.md").read_text().endswith(report.render(report.load(faults_path)))


def test_figures_writes_placeholders_then_keeps_what_it_has(tmp_path: Path) -> None:
    out = tmp_path / "figures"
    missing = tmp_path / "missing.json"
    said: list[str] = []
    assert figures.publish(
        out, bench=missing, capacity=missing, fault_report=missing, say=said.append
    )
    assert "Not measured yet" in (out / "bench.md").read_text()
    (out / "bench.md").write_text("an earlier run\n")
    figures.publish(out, bench=missing, capacity=missing, fault_report=missing, say=said.append)
    assert (out / "bench.md").read_text() == "an earlier run\n"  # kept, and said so
    assert any("bench.md: kept" in line for line in said)


@pytest.mark.parametrize(
    "settings", [{"quick": True}, {"scenarios": ["stats"]}], ids=["quick", "only"]
)
def test_a_partial_bench_run_is_never_published(tmp_path: Path, settings: Any) -> None:
    out = tmp_path / "figures"
    out.mkdir()
    (out / "bench.md").write_text("the last full run\n")
    said: list[str] = []
    fine = figures.publish(
        out,
        bench=write(tmp_path / "bench.json", bench_run(**settings)),
        capacity=write(tmp_path / "capacity.json", capacity_run()),
        fault_report=tmp_path / "none.json",
        say=said.append,
    )
    assert not fine
    assert (out / "bench.md").read_text() == "the last full run\n"
    assert any("partial" in line for line in said)
