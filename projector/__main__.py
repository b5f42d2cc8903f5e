"""`python -m projector run | rebuild | status`."""

from __future__ import annotations

import argparse
import asyncio

from projector.main import run_live
from shared.logs import configure_logging
from shared.settings import LogSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m projector", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="fold the event log into the active projection (live)")
    args = parser.parse_args(argv)
    configure_logging(LogSettings().log_level)
    if args.command == "run":
        asyncio.run(run_live())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
