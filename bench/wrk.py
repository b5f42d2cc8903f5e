"""The HTTP load generator: `wrk` (Debian package, installed on first use), one thread pinned
to the client core, keep-alive connections, results as JSON through a Lua `done()` hook.

The client's own CPU use comes from the kernel's rusage of the finished `wrk` process, so the
table can show that the load generator was not the bottleneck.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.procs import BenchError, CpuMeter, Watched, pinned

logger = logging.getLogger("bench")

MARKER = "BENCH_JSON "

_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('%s{"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f}}\\n',
    "MARKER", summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
"""


def ensure_wrk() -> str:
    """The path of `wrk`; install the Debian package when it is missing (we may be root)."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise BenchError("wrk is not installed: run `sudo apt-get install -y wrk`, then retry")
    logger.info("installing Debian's 'wrk' package system-wide with apt-get (the load generator)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "wrk"]
    if subprocess.run(install, env=env, capture_output=True, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, check=False)
        result = subprocess.run(install, env=env, capture_output=True, check=False)
        if result.returncode != 0:
            tail = result.stderr.decode(errors="replace")[-400:]
            raise BenchError(f"could not install wrk with apt-get: {tail}")
    found = shutil.which("wrk")
    if not found:
        raise BenchError("apt-get installed wrk but it is not on PATH")
    return found


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes | None = None


@dataclass(frozen=True, slots=True)
class LoadResult:
    requests: int
    seconds: float
    errors: dict[str, int]
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    client_cpu: float  # percent of one core
    cpu: dict[str, float]  # percent of one core per watched process

    @property
    def rps(self) -> float:
        """Successful (2xx/3xx) answers per second; wrk counts a 4xx/5xx as a status error."""
        ok = self.requests - self.errors.get("status", 0)
        return ok / self.seconds if self.seconds else 0.0

    @property
    def failed(self) -> int:
        return sum(self.errors.values())


def _script(request: Request, workdir: Path) -> Path:
    lines = [f"wrk.method = {json.dumps(request.method)}"]
    for name, value in request.headers.items():
        lines.append(f"wrk.headers[{json.dumps(name)}] = {json.dumps(value)}")
    if request.body is not None:
        body_path = workdir / "body"
        body_path.write_bytes(request.body)
        lines.append(f'local f = assert(io.open({json.dumps(str(body_path))}, "rb"))')
        lines.append('wrk.body = f:read("*a")')
        lines.append("f:close()")
    script = workdir / "request.lua"
    script.write_text("\n".join(lines) + _DONE.replace("MARKER", MARKER))
    return script


def run_wrk(
    base_url: str,
    request: Request,
    *,
    seconds: float,
    connections: int,
    client_cpus: str | None,
    watch: Sequence[Watched] = (),
) -> LoadResult:
    """Drive `request` at `connections` keep-alive connections for `seconds`."""
    wrk = ensure_wrk()
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        script = _script(request, Path(tmp))
        command = pinned(
            [
                wrk,
                "-t1",
                f"-c{connections}",
                f"-d{max(1, round(seconds))}s",
                "--timeout",
                "10s",
                "-s",
                str(script),
                base_url + request.path,
            ],
            client_cpus,
        )
        out_path, err_path = Path(tmp) / "out", Path(tmp) / "err"
        meter = CpuMeter(watch)
        meter.start()
        with out_path.open("wb") as out, err_path.open("wb") as err:
            process = subprocess.Popen(command, stdout=out, stderr=err)
            # wait4, not wait(): the kernel's rusage of wrk itself (taskset exec()s it).
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)
        shares = meter.stop()
        stdout, stderr = out_path.read_text(errors="replace"), err_path.read_text(errors="replace")
    if process.returncode != 0:
        raise BenchError(f"wrk failed ({process.returncode}): {stderr}")
    data = _parse(stdout)
    client_seconds = usage.ru_utime + usage.ru_stime
    latency = data["latency_us"]
    return LoadResult(
        requests=int(data["requests"]),
        seconds=data["duration_us"] / 1e6,
        errors={k: int(v) for k, v in data["errors"].items()},
        p50_ms=latency["p50"] / 1000,
        p90_ms=latency["p90"] / 1000,
        p99_ms=latency["p99"] / 1000,
        max_ms=latency["max"] / 1000,
        client_cpu=round(100 * client_seconds / max(meter.wall, 1e-9), 1),
        cpu=shares,
    )


def _parse(stdout: str) -> dict[str, Any]:
    for line in stdout.splitlines():
        if line.startswith(MARKER):
            parsed: dict[str, Any] = json.loads(line[len(MARKER) :])
            return parsed
    raise BenchError(f"wrk printed no result line:\n{stdout}")
