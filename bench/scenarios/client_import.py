"""Import: a 1,000,000-line CSV through the `txstats` CLI (`python -m client import`) against
the command API, its rate against the batch endpoint driven by wrk in the same run (1,000-item
batches), interleaved; and the CLI's own CPU time per transaction, from /proc. The CLI runs
pinned to the client core, as wrk does; the command API to the server core."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.procs import ROOT, BenchError, Service, pinned, running
from bench.report import Row, Series, paired_ratio
from bench.scenarios import CLIENT_CPUS, SERVER_CPUS, Context
from bench.scenarios.ingest import BATCH_ITEMS, batch_body
from bench.wrk import Request, run_wrk

LINES = 1_000_000


def write_csv(path: Path, lines: int) -> None:
    stamp = (datetime.now(UTC) - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    with path.open("w") as out:
        out.write("amount,timestamp\n")
        out.writelines(f"{1 + i % 9999}.{i % 100:02d},{stamp}\n" for i in range(lines))


def import_once(
    ctx: Context, service: Service, data: Path, lines: int, token: str
) -> tuple[float, float]:
    """One full import of the `lines` of `data` (a fresh state file): lines per second and
    CLI CPU µs per line."""
    for leftover in data.parent.glob(data.name + ".*"):
        leftover.unlink()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "TXSTATS_COMMAND_URL": service.url,
        "TXSTATS_TOKEN": token,
    }
    command = pinned([sys.executable, "-m", "client", "import", str(data), "--json"], CLIENT_CPUS)
    started = time.perf_counter()
    with (ctx.log_dir / "client_import.log").open("ab") as log:
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=log)
        _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    output = process.stdout.read().decode() if process.stdout else ""
    if os.waitstatus_to_exitcode(status) != 0 or f'"accepted":{lines},' not in output:
        raise BenchError(f"the import failed: {output[-500:]}")
    return lines / seconds, (usage.ru_utime + usage.ru_stime) / lines * 1e6


async def run(ctx: Context) -> None:
    topic = await ctx.infra.new_topic()
    token = ctx.infra.token()
    env = ctx.infra.service_env(topic=topic.topic)
    api = Service.api("command_api", env=env, cpus=SERVER_CPUS, log_dir=ctx.log_dir)
    lines = LINES if ctx.events >= LINES else ctx.events
    data = ctx.log_dir.parent / "import.csv"
    data.parent.mkdir(parents=True, exist_ok=True)
    ctx.progress(f"import: writing a {lines:,}-line CSV")
    write_csv(data, lines)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    batch = Request("POST", "/transactions/batch", headers, batch_body())
    imported: list[float] = []
    cpu: list[float] = []
    driven: list[float] = []
    with running(api):
        for index in range(ctx.runs):
            ctx.progress(f"import: run {index + 1}/{ctx.runs}")
            steps = ["cli", "wrk"] if index % 2 == 0 else ["wrk", "cli"]
            for step in steps:
                if step == "cli":
                    lines_per_second, per_line = import_once(ctx, api, data, lines, token)
                    imported.append(lines_per_second)
                    cpu.append(per_line)
                else:
                    result = run_wrk(
                        api.url,
                        batch,
                        seconds=ctx.seconds,
                        connections=ctx.batch_connections,
                        client_cpus=CLIENT_CPUS,
                    )
                    driven.append(result.rps * BATCH_ITEMS)
    for written in data.parent.glob(data.name + "*"):  # the CSV, its state and error files
        written.unlink()
    rate, base, per = Series.of(imported), Series.of(driven), Series.of(cpu)
    ratios = paired_ratio(rate.values, base.values)
    ctx.report.data["client_import"] = {
        "lines": lines,
        "cli_rate": rate.to_json(),
        "wrk_batch_rate": base.to_json(),
        "ratio": ratios.to_json(),
        "cli_cpu_us_per_line": per.to_json(),
    }
    ctx.report.add(
        Row(
            scenario=f"CLI import of a {lines:,}-line CSV",
            measured=f"{rate.describe(' tx/s')}",
            baseline=f"wrk on the batch endpoint ({BATCH_ITEMS:,}-item batches, "
            f"{ctx.batch_connections} conns): {base.describe(' tx/s')}",
            ratio=ratios.describe("x", 2),
            target=">= 0.80x",
            met=ratios.median >= 0.80,
            cpu=f"CLI {per.median:.1f} µs CPU/tx",
            key="client_import",
            figures={"rate": rate.median, "ratio": ratios.median, "cpu_us": per.median},
        )
    )
