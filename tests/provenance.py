"""Where a measured figure comes from: when, at which commit, on which machine.

Test and bench support, not service code: every report that publishes figures (the bench,
the capacity inputs, the fault suite) stamps them with this, so a page of figures can say
what produced it."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True, slots=True)
class Machine:
    cpu: str
    cores: int | None
    kernel: str
    python: str

    @classmethod
    def current(cls) -> Machine:
        model = ""
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        return cls(model, os.cpu_count(), platform.release(), platform.python_version())

    @classmethod
    def of(cls, data: dict[str, Any]) -> Machine:
        return cls(
            str(data.get("cpu") or ""),
            data.get("cores"),
            str(data.get("kernel") or ""),
            str(data.get("python") or ""),
        )

    def describe(self) -> str:
        """`AMD EPYC 7B13, 2 cores, Linux 6.18, Python 3.11.7`, leaving out what is unknown."""
        parts = [
            self.cpu or "CPU not recorded",
            f"{self.cores} cores" if self.cores else "",
            f"Linux {self.kernel}" if self.kernel else "",
            f"Python {self.python}" if self.python else "",
        ]
        return ", ".join(part for part in parts if part)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def commit(root: Path = ROOT) -> str:
    """The checked-out commit, short, with `+dirty` when tracked files have changes; `unknown`
    outside a git checkout."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        changes = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}+dirty" if changes else head


def utc_now() -> str:
    """The time to the second, UTC, ISO 8601 (`2026-12-03T10:15:00Z`)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
