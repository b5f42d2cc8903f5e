"""`tail -F .local/logs/*.log | python -m shared.logview`: the services' JSON log lines as
readable text, each prefixed with its service (`make run` and `make logs` on a terminal).
Lines that are not our JSON pass through unchanged."""

from __future__ import annotations

import json
import re
import signal
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

_HEADER = re.compile(r"^==> (.+) <==$")  # tail's header when it switches files
_CORE = ("ts", "level", "logger", "message", "exc_info")


def render(line: str, source: str) -> str:
    try:
        entry = json.loads(line)
    except ValueError:
        return f"{source} | {line}" if source else line
    if not isinstance(entry, dict) or not {"ts", "level", "logger", "message"} <= entry.keys():
        return f"{source} | {line}" if source else line
    ts = str(entry["ts"])[11:23]
    text = f"{ts} {entry['level']:<7} {entry['logger']}: {entry['message']}"
    extras = {k: v for k, v in entry.items() if k not in _CORE}
    if extras:
        text += "  " + " ".join(f"{k}={v}" for k, v in extras.items())
    if entry.get("exc_info"):
        text += "\n" + str(entry["exc_info"])
    return f"{source:<11} | {text}" if source else text


def view(lines: Iterable[str]) -> Iterator[str]:
    source = ""
    for raw in lines:
        line = raw.rstrip("\n")
        header = _HEADER.match(line)
        if header:
            source = Path(header.group(1)).stem
            continue
        if line:
            yield render(line, source)


def main() -> int:
    # Ctrl-C is for the process feeding us: we show its last lines and end at end of input.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for text in view(sys.stdin):
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
