"""`txstats import FILE`: a CSV or NDJSON file of transactions, resumable.

Each data line is `amount,timestamp[,transaction_id]` (CSV, an optional header line
`amount,timestamp[,transaction_id]`) or `{"amount": ..., "timestamp": ..., "transaction_id"?:
...}` (NDJSON). A line without an id gets one derived from the producer, the file and the line:
`f<16 hex>-<line number>`, the hex being the start of SHA-256 over
`txstats-import-v1 NUL <the token's sub> NUL <SHA-256 of the file's bytes>`. The same file
imported again by the same producer sends the same ids, so the server counts nothing twice.

Progress is kept in a state file: the first line whose outcome is not known yet, and the totals
of the lines before it. It only moves past lines that were accepted or refused (in file order,
whatever order batches finish in), after the error file holds their refusals; so an import
stopped anyhow (Ctrl-C, a crash, a lost network) and run again resends only lines whose fate
it did not know, with the same ids, and its totals count each line once.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import hashlib
import itertools
import json
import os
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from enum import IntEnum
from pathlib import Path
from typing import Any, BinaryIO, Literal

import msgspec

from client.ids import WireItem
from client.models import Accepted, GivenUp, Outcome
from client.tokens import TokenTracker

Format = Literal["csv", "ndjson"]
STATE_VERSION = 1
FIRST_REASONS = 5
# The state (and the error file) reach the disk at most this often while lines settle, and at
# every stop: an fsync per batch would hold back the next ones. What a crash loses is resent
# with the same ids.
PERSIST_SECONDS = 0.5
READ_LINES = 5000
# A transaction fits in a few hundred bytes: a longer line is refused, and is never read whole.
MAX_LINE_BYTES = 64 * 1024
READ_BYTES = 1 << 16
_FIELDS = ("amount", "timestamp", "transaction_id")
_ndjson = msgspec.json.Decoder(float_hook=Decimal)


class Exit(IntEnum):
    """The CLI's exit statuses (docs/client.md)."""

    OK = 0
    REFUSED_LINES = 1  # import: some lines refused (see the error file); status: not counted
    USAGE = 2  # bad arguments, an unreadable file, a corrupt state file or one of another file
    UNAVAILABLE = 3  # retries ran out (service down, network lost): run again to resume
    REQUEST_REFUSED = 4  # the request itself was refused (token, scope, ...)
    FAILED = 70  # an unexpected failure (a bug, a full disk); the state file is saved if it can be
    INTERRUPTED = 130  # Ctrl-C; the state file is saved


class UsageError(Exception):
    """The command cannot run as asked (the message says why): exit status `Exit.USAGE`."""


def _take(lines: Iterator[Line], count: int) -> list[Line]:
    return list(itertools.islice(lines, count))


def token_subject(token: str | None) -> str:
    """The `sub` claim of a JWT, read without verifying it (it only namespaces derived ids);
    empty when the token is not a readable JWT."""
    try:
        payload = (token or "").split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return ""
    subject = claims.get("sub") if isinstance(claims, dict) else None
    return subject if isinstance(subject, str) else ""


def file_facts(path: Path) -> tuple[str, int]:
    """SHA-256 of the file's bytes and its number of lines, in one pass."""
    digest, lines, last = hashlib.sha256(), 0, b"\n"
    with path.open("rb") as source:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    return digest.hexdigest(), lines + (last != b"\n")


def namespace_of(producer: str, digest: str) -> str:
    seed = b"txstats-import-v1\0" + producer.encode() + b"\0" + digest.encode()
    return "f" + hashlib.sha256(seed).hexdigest()[:16]


class Line(msgspec.Struct, gc=False):  # gc=False: see the note above client.models.Position
    number: int
    end: int  # byte offset just past the line
    text: str
    item: WireItem | None = None  # as sent, with its id
    problem: str | None = None  # why the client refused it without sending it
    explicit_id: bool = False


Fields = tuple[str, str, str | None]  # amount, timestamp, transaction_id


def parse_line(text: str, fmt: Format) -> tuple[Fields | None, str | None]:
    """The transaction a data line holds, or why it holds none."""
    if fmt == "csv":
        fields = next(csv.reader([text])) if '"' in text else text.split(",")
        if len(fields) not in (2, 3):
            return None, f"expected amount,timestamp[,transaction_id]: {len(fields)} fields"
        return (fields[0], fields[1], fields[2] if len(fields) == 3 and fields[2] else None), None
    try:
        value = _ndjson.decode(text)
    except msgspec.DecodeError as err:
        return None, f"not JSON: {err}"
    except RecursionError:
        return None, "not a transaction: JSON nested too deeply"
    if not isinstance(value, dict):
        return None, "not a JSON object"
    unknown = sorted(set(value) - set(_FIELDS))
    if unknown:
        return None, f"unknown fields {unknown}"
    amount, timestamp, transaction_id = (value.get(name) for name in _FIELDS)
    if isinstance(amount, bool) or not isinstance(amount, int | Decimal | str):
        return None, "amount must be a number or a decimal string"
    if not isinstance(timestamp, str):
        return None, "timestamp must be an RFC 3339 string"
    if transaction_id is not None and not isinstance(transaction_id, str):
        return None, "transaction_id must be a string"
    text_amount = format(amount, "f") if isinstance(amount, Decimal) else str(amount)
    return (text_amount, timestamp, transaction_id), None


def _bounded_lines(source: BinaryIO) -> Iterator[tuple[int, bytes | None]]:
    """Each line's length in bytes (with its newline) and its bytes (without), or None for a
    line longer than `MAX_LINE_BYTES` (read past, never held whole). Read a block at a time:
    a read per line would cost more than parsing it."""
    head = b""  # the start of a line the block before ended in
    dropped = 0  # the length so far of a line too long to hold (0: none)
    while block := source.read(READ_BYTES):
        *complete, rest = block.split(b"\n")
        for raw in complete:
            if dropped:
                yield dropped + len(raw) + 1, None
                dropped = 0
                continue
            line = head + raw if head else raw
            head = b""
            yield len(line) + 1, (line if len(line) <= MAX_LINE_BYTES else None)
        if dropped:
            dropped += len(rest)
        else:
            head += rest
            if len(head) > MAX_LINE_BYTES:
                dropped, head = len(head), b""
    if dropped or head:
        yield dropped or len(head), None if dropped else head


def read_lines(
    path: Path, fmt: Format, start_line: int, start_byte: int, namespace: str
) -> Iterator[Line]:
    """The data lines from line `start_line` (1-based) at byte `start_byte` on; a line without
    an id gets `<namespace>-<line number>`."""
    number, offset = start_line - 1, start_byte
    with path.open("rb") as source:
        source.seek(start_byte)
        for length, raw in _bounded_lines(source):
            number += 1
            offset += length
            if raw is None:
                too_long = f"longer than {MAX_LINE_BYTES:,} bytes"
                yield Line(number, offset, f"<{length:,} bytes>", problem=too_long)
                continue
            # utf-8-sig: a file saved with a byte order mark (Excel) starts with one.
            encoding = "utf-8-sig" if number == 1 else "utf-8"
            text = raw.decode(encoding, errors="replace").rstrip("\r\n")
            if number == 1 and fmt == "csv" and text.split(",")[0].strip().lower() == "amount":
                yield Line(number, offset, text)  # the header: settled as soon as reached
                continue
            if not text.strip():
                yield Line(number, offset, text, problem="empty line")
                continue
            fields, problem = parse_line(text, fmt)
            if fields is None:
                yield Line(number, offset, text, problem=problem)
                continue
            amount, timestamp, transaction_id = fields
            if transaction_id is None:
                item = WireItem(amount, timestamp, f"{namespace}-{number}")
                yield Line(number, offset, text, item)
            else:
                yield Line(
                    number, offset, text, WireItem(amount, timestamp, transaction_id), None, True
                )


@dataclass(slots=True)
class Totals:
    accepted: int = 0
    refused: int = 0  # by the server or by the client (refused_locally of them)
    refused_locally: int = 0
    duplicates: int = 0  # lines repeating an earlier line's id with the same content
    conflicts: int = 0  # lines repeating an earlier line's id with another amount or time
    reasons: list[str] = field(default_factory=list)


@dataclass(slots=True)
class ImportState:
    """What the state file holds."""

    file: str
    digest: str
    lines: int
    producer: str
    namespace: str
    next_line: int = 1
    next_byte: int = 0
    errors_bytes: int = 0
    token: str | None = None
    totals: Totals = field(default_factory=Totals)

    @property
    def done(self) -> bool:
        return self.next_line > self.lines

    def save(self, path: Path) -> None:
        document = msgspec.json.encode({"version": STATE_VERSION, **msgspec.to_builtins(self)})
        temporary = path.with_name(path.name + ".tmp")
        with temporary.open("wb") as out:
            out.write(document)
            out.flush()
            os.fsync(out.fileno())
        temporary.replace(path)

    @classmethod
    def load(cls, path: Path) -> ImportState:
        """The state saved in `path`; `UsageError` when it cannot be read or is not one."""
        not_ours = f"{path} is not a state file of this client (give --restart or another --state)"
        try:
            raw = msgspec.json.decode(path.read_bytes())
            if not isinstance(raw, dict) or raw.pop("version", None) != STATE_VERSION:
                raise UsageError(not_ours)
            return msgspec.convert(raw, cls)
        except OSError as err:
            msg = f"cannot read the state file {path}: {err.strerror or err}"
            raise UsageError(msg) from err
        except (msgspec.DecodeError, msgspec.ValidationError) as err:
            raise UsageError(f"{not_ours}: {err}") from err


class Importer:
    """Settles lines in file order as their outcomes arrive, keeping the totals, the error
    file and the state file."""

    def __init__(
        self, *, path: Path, fmt: Format, state: ImportState, state_path: Path, errors_path: Path
    ) -> None:
        self.path, self.fmt = path, fmt
        self.state, self.state_path = state, state_path
        self.errors_path = errors_path
        self.pending: deque[Line] = deque()
        self.seen: dict[int, int] = {}  # hash of an explicit id -> hash of its content
        self.tracker = TokenTracker()
        if state.token:
            self.tracker.add(state.token)
        self.stopped: Exit | None = None
        self.stop_reason = ""
        try:
            self._errors = errors_path.open("ab")
        except OSError as err:
            msg = f"cannot write the error file {errors_path}: {err.strerror or err}"
            raise UsageError(msg) from err
        self._errors.truncate(state.errors_bytes)
        self._errors.seek(state.errors_bytes)
        self._writer_lines: list[list[str]] = []
        self._persisted = 0.0
        # A Ctrl-C cancels the await of a persist running in a thread, not the thread: the
        # final persist must wait for it, or both write the same rows and the same temp file.
        self._persisting = threading.Lock()
        self._remember_earlier_ids()

    def _remember_earlier_ids(self) -> None:
        """Lines settled by an earlier run count as seen for the repeated-id totals."""
        if self.state.next_line <= 1:
            return
        for line in read_lines(self.path, self.fmt, 1, 0, self.state.namespace):
            if line.number >= self.state.next_line:
                break
            if line.explicit_id and line.item is not None:
                self._seen_before(line.item)

    def _seen_before(self, item: WireItem) -> bool | None:
        """None: a new id; else whether the earlier line had the same content."""
        key = hash(item.transaction_id)
        content = hash((item.amount, item.timestamp))
        earlier = self.seen.get(key)
        if earlier is None:
            self.seen[key] = content
            return None
        return earlier == content

    async def items(self) -> AsyncIterator[list[WireItem]]:
        """The items to send, a chunk of lines at a time (`RecordPipeline.batches`), every
        line read kept in order for `settle`. The file is read in a thread, `READ_LINES` lines
        at a time, so a slow disk never stalls the requests in flight."""
        state = self.state
        lines = read_lines(self.path, self.fmt, state.next_line, state.next_byte, state.namespace)
        while chunk := await asyncio.to_thread(_take, lines, READ_LINES):
            self.pending.extend(chunk)
            yield [line.item for line in chunk if line.item is not None]

    def settle(self, outcomes: list[Outcome]) -> int:
        """Settle the lines these outcomes are for (and unsent lines before them); the number
        of lines settled. Stops at a request refused as a whole or given up."""
        settled = 0
        pending, state, tracker = self.pending, self.state, self.tracker
        for outcome in outcomes:
            if pending and pending[0].item is None:
                settled += self._settle_unsent()
            if isinstance(outcome, Accepted):  # inline: it runs for nearly every line
                line = pending.popleft()
                state.totals.accepted += 1
                tracker.add(outcome.consistency_token)
                if line.explicit_id:
                    self._count_repeat(line)
                state.next_line, state.next_byte = line.number + 1, line.end
            elif isinstance(outcome, GivenUp):
                self.stopped, self.stop_reason = Exit.UNAVAILABLE, outcome.reason
                break
            elif not outcome.for_item:
                self.stopped, self.stop_reason = Exit.REQUEST_REFUSED, outcome.reason()
                break
            else:
                self._refused(pending.popleft(), outcome.reason())
            settled += 1
        else:
            settled += self._settle_unsent()
        return settled

    @property
    def persist_due(self) -> bool:
        return time.monotonic() - self._persisted >= PERSIST_SECONDS

    def finish(self) -> int:
        """At the end of the input: the unsent lines left."""
        return self._settle_unsent()

    def _settle_unsent(self) -> int:
        settled = 0
        while self.pending and self.pending[0].item is None:
            line = self.pending.popleft()
            if line.problem is not None:
                self._refused(line, line.problem)
                self.state.totals.refused_locally += 1
            self._advance(line)
            settled += 1
        return settled

    def _count_repeat(self, line: Line) -> None:
        """An accepted line with its own id: a duplicate or a conflict if an earlier line
        had that id."""
        if line.item is None:
            return
        same = self._seen_before(line.item)
        if same is True:
            self.state.totals.duplicates += 1
        elif same is False:
            self.state.totals.conflicts += 1

    def _refused(self, line: Line, reason: str) -> None:
        totals = self.state.totals
        totals.refused += 1
        if len(totals.reasons) < FIRST_REASONS:
            totals.reasons.append(f"line {line.number}: {reason}")
        self._writer_lines.append([str(line.number), reason, line.text])
        self._advance(line)

    def _advance(self, line: Line) -> None:
        self.state.next_line, self.state.next_byte = line.number + 1, line.end

    def persist(self) -> None:
        """The refused lines first (flushed to disk), then the state that counts them."""
        with self._persisting:
            if self._writer_lines:
                rows = _csv_rows(self._writer_lines)
                self._errors.write(rows)
                self._writer_lines.clear()
            self._errors.flush()
            os.fsync(self._errors.fileno())
            self.state.errors_bytes = self._errors.tell()
            self.state.token = self.tracker.token
            self.state.save(self.state_path)
            self._persisted = time.monotonic()

    def close(self) -> None:
        self._errors.close()
        if self.state.errors_bytes == 0:
            self.errors_path.unlink(missing_ok=True)


class _Rows:
    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> None:
        self.parts.append(text)


def _csv_rows(rows: list[list[str]]) -> bytes:
    sink = _Rows()
    csv.writer(sink, lineterminator="\n").writerows(rows)
    return "".join(sink.parts).encode()


def summary(state: ImportState) -> dict[str, Any]:
    """The totals as the CLI shows them (and `--json` prints them)."""
    totals = state.totals
    return {
        "file": state.file,
        "lines": state.lines,
        "done": state.done,
        "next_line": state.next_line,
        "sent": totals.accepted + totals.refused - totals.refused_locally,
        "accepted": totals.accepted,
        "refused": totals.refused,
        "refused_by_client": totals.refused_locally,
        "duplicates": totals.duplicates,
        "conflicts": totals.conflicts,
        "first_reasons": totals.reasons,
        "consistency_token": state.token,
    }
