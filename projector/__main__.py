"""`python -m projector migrate | run | rebuild | status`."""

from __future__ import annotations

import argparse
import asyncio

from projector.config import ProjectorConfig
from projector.main import run_abort, run_live, run_migrate, run_rebuild, run_status
from projector.rebuild import RebuildOptions, parse_until
from shared.logs import configure_logging
from shared.settings import MigrationSettings

EPILOG = """exit codes of rebuild: 0 done (or verified with --dry-run), 1 verification failed
(nothing swapped), 2 bad arguments (or --accept-difference without legacy ids), 3 another
rebuild is running, 4 failed (error logged; resumable), 5 could not catch up with the live
projection (resumable), 6 the database misses migrations or has newer ones (run `migrate`; every
command but `migrate` exits so), 130 interrupted (resumable)"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m projector", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "migrate",
        help="apply the schema migrations as the schema's owner (MIGRATION_DATABASE_URL) and"
        " grant the projector's and the query API's roles; the others never change the schema",
    )
    commands.add_parser("run", help="fold the event log into the active projection (live)")
    rebuild = commands.add_parser(
        "rebuild",
        help="rebuild the projection from offset 0, verify it, swap it in",
        epilog=EPILOG,
    )
    rebuild.add_argument("--dry-run", action="store_true", help="build and verify; do not swap")
    rebuild.add_argument("--keep-old", action="store_true", help="keep the replaced version")
    rebuild.add_argument(
        "--until",
        help="audit: fold only up to a record time (RFC 3339) or offsets P=O[,P=O...]"
        " (unlisted partitions: to their end); prints the totals, never swaps",
    )
    rebuild.add_argument(
        "--accept-difference",
        action="store_true",
        help="swap even if the totals differ (printed), only when the active version holds"
        " legacy ids (see `status`): ids stored before migration 005 that dropped other"
        " producers' transactions, so no rebuild of it verifies equal",
    )
    rebuild.add_argument(
        "--abort",
        action="store_true",
        help="remove versions a rebuild left: unfinished, or replaced but not dropped",
    )
    commands.add_parser(
        "status", help="active version, versions in progress, offsets and lag (reads only)"
    )
    args = parser.parse_args(argv)
    config = ProjectorConfig.from_environment()
    configure_logging(config.log.log_level, config.log.log_format)
    if args.command == "migrate":
        return asyncio.run(run_migrate(config.database, MigrationSettings()))
    if args.command == "run":
        return asyncio.run(run_live(config))
    if args.command == "status":
        return asyncio.run(run_status(config))
    if args.abort:
        return asyncio.run(run_abort(config))
    if args.until is not None:
        try:
            parse_until(args.until)
        except ValueError as err:
            parser.error(str(err))
    if args.accept_difference and (args.dry_run or args.until is not None):
        parser.error("--accept-difference swaps: not with --dry-run or --until")
    options = RebuildOptions(
        dry_run=args.dry_run,
        keep_old=args.keep_old,
        until=args.until,
        accept_difference=args.accept_difference,
    )
    return asyncio.run(run_rebuild(config, options))


if __name__ == "__main__":
    raise SystemExit(main())
