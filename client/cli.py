"""The `txstats` command (also `python -m client`): import, stats, status, watch.

Settings come from options or the environment: `--command-url` / `TXSTATS_COMMAND_URL`,
`--query-url` / `TXSTATS_QUERY_URL`, `--token-file` or `TXSTATS_TOKEN` (or `--token`, which
every user of the machine can read in `ps`). Human output goes to the terminal (progress on
stderr); `--json` prints JSON documents on stdout for scripts. Exit statuses:
`client.importer.Exit`.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec
from rich.console import Console
from rich.live import Live
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from client.aio import AsyncTxStats
from client.batching import MAX_BATCH_SIZE, RecordPipeline
from client.errors import ApiError, UnavailableError
from client.importer import (
    Exit,
    Format,
    Importer,
    ImportState,
    UsageError,
    file_facts,
    namespace_of,
    summary,
    token_subject,
)
from client.models import Counted, Stats
from client.retry import RetryPolicy

# Batches out at once: each holds a connection and up to a batch of outcomes in memory.
MAX_IN_FLIGHT = 64
_console = Console()
_errors = Console(stderr=True)


class _Rate(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.0f} lines/s")


def _whole(low: int, high: int | None) -> Callable[[str], int]:
    """An argparse type: a whole number in low..high (no upper bound when `high` is None)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            msg = f"not a whole number: {text!r}"
            raise argparse.ArgumentTypeError(msg) from None
        if value < low or (high is not None and value > high):
            msg = f"{value} is not in {low}..{high}" if high else f"{value} is less than {low}"
            raise argparse.ArgumentTypeError(msg)
        return value

    return parse


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        msg = f"not a positive number of seconds: {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def read_token(path: Path) -> str:
    """The token held in `path` (surrounding blanks and the final newline taken off)."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as err:
        msg = f"cannot read the token file {path}: {getattr(err, 'strerror', None) or err}"
        raise UsageError(msg) from err
    if not token:
        msg = f"the token file {path} is empty"
        raise UsageError(msg)
    return token


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="txstats", description=__doc__)
    env = os.environ.get
    parser.add_argument(
        "--command-url", default=env("TXSTATS_COMMAND_URL", "http://127.0.0.1:8000")
    )
    parser.add_argument("--query-url", default=env("TXSTATS_QUERY_URL", "http://127.0.0.1:8001"))
    token = parser.add_mutually_exclusive_group()
    token.add_argument(
        "--token",
        default=env("TXSTATS_TOKEN"),
        help="bearer JWT (default: $TXSTATS_TOKEN); shows in ps: prefer --token-file",
    )
    token.add_argument("--token-file", type=Path, help="a file holding the bearer JWT")
    commands = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="JSON on stdout, for scripts")
    common.add_argument(
        "--give-up-after",
        type=_seconds,
        default=120.0,
        metavar="SECONDS",
        help="stop retrying one request after this long (default 120)",
    )

    imports = commands.add_parser(
        "import", help="import a CSV or NDJSON file, resumable", parents=[common]
    )
    imports.add_argument("file", type=Path)
    imports.add_argument("--format", choices=["csv", "ndjson"], help="default: by extension")
    imports.add_argument("--errors", type=Path, help="refused lines (default FILE.errors.csv)")
    imports.add_argument("--state", type=Path, help="progress (default FILE.txstats-import.json)")
    imports.add_argument("--restart", action="store_true", help="ignore the saved progress")
    imports.add_argument(
        "--batch-size",
        type=_whole(1, MAX_BATCH_SIZE),
        default=MAX_BATCH_SIZE,
        help=f"lines per request, 1..{MAX_BATCH_SIZE} (default {MAX_BATCH_SIZE})",
    )
    imports.add_argument(
        "--in-flight",
        type=_whole(1, MAX_IN_FLIGHT),
        default=8,
        help=f"requests out at once, 1..{MAX_IN_FLIGHT} (default 8)",
    )
    imports.add_argument("--no-progress", action="store_true")

    stats = commands.add_parser(
        "stats", help="the statistics, all-time or over a window", parents=[common]
    )
    stats.add_argument("--window", type=int, metavar="SECONDS")
    stats.add_argument("--wait-for", metavar="TOKEN", help="answer once this token is covered")

    status = commands.add_parser(
        "status", help="whether one transaction was counted", parents=[common]
    )
    status.add_argument("transaction_id")
    status.add_argument("--wait-for", metavar="TOKEN", help="answer once this token is covered")

    watch = commands.add_parser("watch", help="live statistics from the stream", parents=[common])
    watch.add_argument("--window", type=int, action="append", default=[], metavar="SECONDS")
    watch.add_argument("--count", type=_whole(1, None), help="stop after this many updates")
    return parser


def _client(args: argparse.Namespace) -> AsyncTxStats:
    return AsyncTxStats(
        command_url=args.command_url,
        query_url=args.query_url,
        token=args.token,
        retry=RetryPolicy(give_up_after=args.give_up_after),
        max_connections=max(4, getattr(args, "in_flight", 4) + 2),
    )


def _out(document: Any) -> None:
    sys.stdout.write(msgspec.json.encode(document).decode() + "\n")
    sys.stdout.flush()


# ------------------------------------------------------------------------------ import


def _format_of(path: Path, chosen: str | None) -> Format:
    if chosen in ("csv", "ndjson"):
        return chosen  # type: ignore[return-value]
    suffix = path.suffix.lower()
    if suffix in (".ndjson", ".jsonl"):
        return "ndjson"
    if suffix == ".csv":
        return "csv"
    msg = f"cannot tell the format of {path.name}: give --format csv or --format ndjson"
    raise UsageError(msg)


def _state_for(args: argparse.Namespace, state_path: Path) -> ImportState:
    path: Path = args.file
    if not path.is_file():
        msg = f"{path}: no such file"
        raise UsageError(msg)
    try:
        digest, lines = file_facts(path)
    except OSError as err:
        msg = f"cannot read {path}: {err.strerror or err}"
        raise UsageError(msg) from err
    producer = token_subject(args.token)
    fresh = ImportState(
        file=str(path.resolve()),
        digest=digest,
        lines=lines,
        producer=producer,
        namespace=namespace_of(producer, digest),
    )
    if args.restart or not state_path.exists():
        return fresh
    saved = ImportState.load(state_path)
    if saved.digest != digest:
        msg = (
            f"{path} changed since {state_path} was written: ids derived from it would "
            "differ. Import the new file with --restart (or another --state)."
        )
        raise UsageError(msg)
    if saved.producer != producer:
        msg = f"{state_path} belongs to producer {saved.producer!r}, the token is {producer!r}"
        raise UsageError(msg)
    return saved


async def _import(args: argparse.Namespace) -> Exit:
    path: Path = args.file
    fmt = _format_of(path, args.format)
    state_path = args.state or path.with_name(path.name + ".txstats-import.json")
    errors_path = args.errors or path.with_name(path.name + ".errors.csv")
    # Reading the whole file (its digest, the ids an earlier run settled) takes a thread: the
    # loop stays free to see Ctrl-C.
    state = await asyncio.to_thread(_state_for, args, state_path)
    importer = await asyncio.to_thread(
        Importer, path=path, fmt=fmt, state=state, state_path=state_path, errors_path=errors_path
    )
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _Rate(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=_errors,
        disable=args.no_progress or args.json,
    )
    interrupted = False
    try:
        with progress:
            task = progress.add_task(path.name, total=state.lines, completed=state.next_line - 1)
            async with _client(args) as client:
                pipeline = RecordPipeline(
                    client, batch_size=args.batch_size, linger=0.05, max_in_flight=args.in_flight
                )
                batches = pipeline.batches(importer.items())
                try:
                    async for outcomes in batches:
                        progress.advance(task, importer.settle(outcomes))
                        if importer.stopped is not None:
                            break
                        if importer.persist_due:
                            await asyncio.to_thread(importer.persist)
                    else:
                        progress.advance(task, importer.finish())
                finally:
                    await batches.aclose()
    except (KeyboardInterrupt, asyncio.CancelledError):
        interrupted = True
    finally:
        # Every request is over (the pipeline is closed): blocking here stalls nothing, and
        # an await could be cut short by a second Ctrl-C before the state is saved.
        importer.persist()
        importer.close()
    return _report_import(
        importer, errors_path, state_path, interrupted=interrupted, json=args.json
    )


def _report_import(
    importer: Importer, errors_path: Path, state_path: Path, *, interrupted: bool, json: bool
) -> Exit:
    state = importer.state
    result = summary(state)
    if interrupted:
        status = Exit.INTERRUPTED
    elif importer.stopped is not None:
        status = importer.stopped
    else:
        status = Exit.REFUSED_LINES if state.totals.refused else Exit.OK
    result["exit_status"] = int(status)
    result["stopped_because"] = importer.stop_reason or None
    result["errors_file"] = str(errors_path) if state.totals.refused else None
    if json:
        _out(result)
        return status
    lines = [
        f"[bold]{Path(state.file).name}[/]: {state.next_line - 1:,} of {state.lines:,} lines done"
        + ("" if state.done else f" (state in {state_path}; run again to resume)"),
        f"  sent       {result['sent']:,}",
        f"  accepted   {result['accepted']:,} (durably in the log)",
        f"  refused    {result['refused']:,}"
        + (
            f" ({state.totals.refused_locally:,} by the client)"
            if state.totals.refused_locally
            else ""
        )
        + (f", listed in {errors_path}" if state.totals.refused else ""),
        *(f"             {reason}" for reason in state.totals.reasons),
        f"  repeated ids in this file: {state.totals.duplicates:,} duplicates (counted once), "
        f"{state.totals.conflicts:,} conflicts (not counted)",
    ]
    if importer.stop_reason:
        lines.append(f"[red]stopped[/]: {importer.stop_reason}")
    if interrupted:
        lines.append("[yellow]interrupted[/]: run the same command again to resume")
    if state.token:
        lines.append(f"  consistency token: {state.token}")
    for line in lines:
        _console.print(line, highlight=False, soft_wrap=True)
    return status


# ------------------------------------------------------------------------------ reads


def _stats_table(stats: Stats) -> Table:
    window = stats.as_of.window
    title = f"last {window.seconds} s" if window else "all-time"
    table = Table(title=f"txstats {title}", show_header=True)
    for name in ("count", "sum", "avg", "max", "min", "lag"):
        table.add_column(name, justify="right")
    table.add_row(
        f"{stats.count:,}",
        str(stats.sum),
        *(str(v) if v is not None else "-" for v in (stats.avg, stats.max, stats.min)),
        f"{stats.as_of.total_lag:,}",
    )
    return table


async def _stats(args: argparse.Namespace) -> Exit:
    async with _client(args) as client:
        stats = await client.stats(window=args.window, consistency_token=args.wait_for)
    if args.json:
        _out(stats)
    else:
        _console.print(_stats_table(stats))
    return Exit.OK


async def _status(args: argparse.Namespace) -> Exit:
    async with _client(args) as client:
        found = await client.transaction(args.transaction_id, consistency_token=args.wait_for)
    if args.json:
        _out(
            {
                "state": "counted" if isinstance(found, Counted) else "not_found",
                **msgspec.to_builtins(found),
            }
        )
    elif isinstance(found, Counted):
        _console.print(
            f"{found.transaction_id}: counted, {found.amount} at {found.occurred_at} "
            f"(partition {found.partition}, offset {found.offset}); "
            f"{found.duplicates} duplicates, {found.conflicts} conflicts",
            highlight=False,
        )
    else:
        _console.print(f"{found.transaction_id}: not counted as of {found.as_of.offsets}")
    return Exit.OK if isinstance(found, Counted) else Exit.REFUSED_LINES


async def _watch(args: argparse.Namespace) -> Exit:
    seen = 0
    async with _client(args) as client:
        if args.json:
            async for stats in client.stream(windows=args.window):
                _out(stats)
                seen += 1
                if args.count is not None and seen >= args.count:
                    break
            return Exit.OK
        latest: dict[int | None, Stats] = {}
        with Live(Text("waiting for the stream..."), console=_console) as live:
            async for stats in client.stream(windows=args.window):
                latest[stats.as_of.window.seconds if stats.as_of.window else None] = stats
                grid = Table.grid()
                for each in latest.values():
                    grid.add_row(_stats_table(each))
                live.update(grid)
                seen += 1
                if args.count is not None and seen >= args.count:
                    break
    return Exit.OK


def _fail(message: str) -> None:
    """One line on stderr, as is (a path may hold rich markup; a script reads one line)."""
    _errors.print(message, markup=False, highlight=False, soft_wrap=True)


_COMMANDS = {"import": _import, "stats": _stats, "status": _status, "watch": _watch}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.token_file is not None:
            args.token = read_token(args.token_file)
        return int(asyncio.run(_COMMANDS[args.command](args)))
    except UsageError as err:
        _fail(f"txstats: {err}")
        return Exit.USAGE
    except ApiError as err:
        _fail(f"txstats: refused: {err}")
        return Exit.REQUEST_REFUSED
    except UnavailableError as err:
        _fail(f"txstats: unavailable: {err}")
        return Exit.UNAVAILABLE
    except KeyboardInterrupt:
        return Exit.INTERRUPTED
    except Exception as err:  # noqa: BLE001 - the last resort: one line and a status of its own
        _fail(f"txstats: unexpected failure: {type(err).__name__}: {err}")
        return Exit.FAILED
