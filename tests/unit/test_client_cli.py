"""The `txstats` command's edges, in process and without a network: what it reads from a file
(bounded lines, nesting, a byte order mark), what it takes as arguments, and the exit status and
one-line message of every way it can fail."""

from __future__ import annotations

import functools
import json
import re
import threading
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import pytest

from client import AsyncTxStats, cli
from client.importer import (
    MAX_LINE_BYTES,
    Exit,
    Importer,
    ImportState,
    parse_line,
    read_lines,
)

STAMP = "2026-11-26T11:59:00Z"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """`txstats ARGV`: its exit status and what it wrote on stderr."""
    try:
        status = cli.main(list(argv))
    except SystemExit as exit_:  # argparse
        status = int(exit_.code or 0)
    return status, capsys.readouterr().err


@pytest.mark.parametrize("depth", [1_000, 30_000])
def test_deeply_nested_json_is_a_refused_line(depth: int) -> None:
    text = '{"amount": ' + "[" * depth + "]" * depth + ', "timestamp": "x"}'
    transaction, problem = parse_line(text, "ndjson")
    assert transaction is None
    assert problem is not None
    assert "nested too deeply" in problem


@pytest.mark.parametrize(
    ("amount", "sent"), [("1e3", "1000"), ("1.5E+2", "150"), ("12.50", "12.50")]
)
def test_an_ndjson_amount_in_exponent_form_is_sent_in_fixed_point(amount: str, sent: str) -> None:
    transaction, problem = parse_line(f'{{"amount": {amount}, "timestamp": "x"}}', "ndjson")
    assert problem is None
    assert transaction is not None
    assert transaction[0] == sent


def test_two_persists_never_write_at_once(tmp_path: Path) -> None:
    """A Ctrl-C cancels the await of a persist running in a thread, not the thread: the
    final persist runs while it may still be writing."""
    data = tmp_path / "in.csv"
    data.write_text(f"1.00,{STAMP}\n")
    state = ImportState(file=str(data), digest="d", lines=1, producer="p", namespace="n")
    importer = Importer(
        path=data, fmt="csv", state=state, state_path=tmp_path / "state",
        errors_path=tmp_path / "errors.csv",
    )  # fmt: skip
    inside, release, overlapped = threading.Event(), threading.Event(), threading.Event()
    save = ImportState.save

    def slow_save(self: ImportState, path: Path) -> None:
        if inside.is_set():
            overlapped.set()
        inside.set()
        release.wait(10)
        save(self, path)
        inside.clear()

    with mock.patch.object(ImportState, "save", slow_save):
        first = threading.Thread(target=importer.persist)
        first.start()
        assert inside.wait(10)
        second = threading.Thread(target=importer.persist)
        second.start()
        # the second persist either waits for the first or overlaps it, at once
        overlapped.wait(0.5)
        release.set()
        first.join(10)
        second.join(10)
    importer.close()
    assert not overlapped.is_set()


def test_a_line_longer_than_the_bound_is_refused_and_never_read_whole(tmp_path: Path) -> None:
    data = tmp_path / "long.ndjson"
    good = f'{{"amount": "1.00", "timestamp": "{STAMP}"}}\n'
    long = '{"amount": "' + "9" * (MAX_LINE_BYTES * 3) + '"}\n'
    exact = '{"amount": "2.00", "timestamp": "' + "x" * (MAX_LINE_BYTES - 35) + '"}\n'
    data.write_text(good + long + exact + good.rstrip("\n"))
    assert len(exact.encode()) == MAX_LINE_BYTES + 1  # the longest line allowed, and its \n
    lines = list(read_lines(data, "ndjson", 1, 0, "ns"))
    assert [line.number for line in lines] == [1, 2, 3, 4]
    assert [line.end for line in lines] == [
        len(good),
        len(good + long),
        len(good + long + exact),
        data.stat().st_size,
    ]
    assert lines[1].problem == f"longer than {MAX_LINE_BYTES:,} bytes"
    assert len(lines[1].text) < 100  # the error file gets a placeholder, not the line
    assert lines[2].problem is None  # read whole: its timestamp is for the server to refuse
    assert lines[3].item is not None
    resumed = list(read_lines(data, "ndjson", 3, lines[1].end, "ns"))  # resume after the long line
    assert [(line.number, line.end) for line in resumed] == [
        (line.number, line.end) for line in lines[2:]
    ]


def test_a_csv_with_a_byte_order_mark_has_its_header_recognised(tmp_path: Path) -> None:
    data = tmp_path / "excel.csv"
    data.write_bytes(b"\xef\xbb\xbfamount,timestamp\r\n12.30," + STAMP.encode() + b"\r\n")
    header, line = read_lines(data, "csv", 1, 0, "ns")
    assert (header.item, header.problem) == (None, None)  # settled, not refused
    assert line.item is not None
    assert (line.item.amount, line.item.transaction_id) == ("12.30", "ns-2")


def test_a_byte_order_mark_before_the_first_json_line_is_no_error(tmp_path: Path) -> None:
    data = tmp_path / "bom.ndjson"
    data.write_bytes(b'\xef\xbb\xbf{"amount": "1.00", "timestamp": "' + STAMP.encode() + b'"}\n')
    [line] = read_lines(data, "ndjson", 1, 0, "ns")
    assert line.problem is None


@pytest.mark.parametrize(
    "option",
    [
        ("--batch-size", "0"),
        ("--batch-size", "-1"),
        ("--batch-size", "1001"),
        ("--batch-size", "ten"),
        ("--in-flight", "0"),
        ("--in-flight", "-3"),
        ("--in-flight", "65"),
        ("--give-up-after", "0"),
        ("--give-up-after", "nan"),
        ("--give-up-after", "inf"),
    ],
)
def test_an_out_of_bounds_option_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, option: tuple[str, str]
) -> None:
    status, err = run(capsys, "import", str(tmp_path / "x.csv"), *option)
    assert status == Exit.USAGE
    assert option[0] in err
    assert "Traceback" not in err


def test_a_corrupt_state_file_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = tmp_path / "t.csv"
    data.write_text(f"1.00,{STAMP}\n")
    state = tmp_path / "t.csv.txstats-import.json"
    for corrupt in (b"{not json", b'{"version": 1, "lines": "many"}', b"[]"):
        state.write_bytes(corrupt)
        status, err = run(capsys, "import", str(data))
        assert status == Exit.USAGE, err
        assert err.startswith(f"txstats: {state} is not a state file of this client")
        assert len(err.splitlines()) == 1
    state.unlink()
    state.mkdir()  # unreadable
    status, err = run(capsys, "import", str(data))
    assert status == Exit.USAGE
    assert err.startswith(f"txstats: cannot read the state file {state}")


def test_an_unreadable_input_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    status, err = run(capsys, "import", str(tmp_path / "missing.csv"))
    assert (status, err.strip()) == (
        Exit.USAGE,
        f"txstats: {tmp_path / 'missing.csv'}: no such file",
    )
    data = tmp_path / "t.csv"
    data.write_text(f"1.00,{STAMP}\n")

    def denied(path: Path) -> tuple[str, int]:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(cli, "file_facts", denied)  # the tests run as root: chmod cannot
    status, err = run(capsys, "import", str(data))
    assert (status, err.strip()) == (Exit.USAGE, f"txstats: cannot read {data}: Permission denied")


def test_an_unexpected_failure_has_its_own_status_and_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(args: object) -> Exit:
        raise RuntimeError("a bug")

    monkeypatch.setitem(cli._COMMANDS, "stats", broken)
    status, err = run(capsys, "stats")
    assert status == Exit.FAILED
    assert status not in (Exit.OK, Exit.REFUSED_LINES, Exit.USAGE)
    assert err.strip() == "txstats: unexpected failure: RuntimeError: a bug"


@pytest.fixture
def seen_tokens(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """The Authorization header of each request the CLI makes (answered 401)."""
    seen: list[str | None] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return httpx.Response(401, json={"status": 401, "detail": "no"})

    transport = httpx.MockTransport(answer)
    build: Callable[..., Any] = functools.partial(AsyncTxStats, query_transport=transport)
    monkeypatch.setattr(cli, "AsyncTxStats", build)
    monkeypatch.delenv("TXSTATS_TOKEN", raising=False)
    return seen


def test_the_token_comes_from_a_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, seen_tokens: list[str | None]
) -> None:
    secret = tmp_path / "token"
    secret.write_text("eyJ.file.token\n")
    status, _ = run(capsys, "--token-file", str(secret), "stats")
    assert status == Exit.REQUEST_REFUSED
    assert seen_tokens == ["Bearer eyJ.file.token"]


def test_the_token_comes_from_the_environment(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    seen_tokens: list[str | None],
) -> None:
    monkeypatch.setenv("TXSTATS_TOKEN", "eyJ.env.token")
    run(capsys, "stats")
    assert seen_tokens == ["Bearer eyJ.env.token"]


def test_a_token_file_that_cannot_be_used_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, seen_tokens: list[str | None]
) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    for path, message in (
        (tmp_path / "absent", f"cannot read the token file {tmp_path / 'absent'}"),
        (empty, f"the token file {empty} is empty"),
    ):
        status, err = run(capsys, "--token-file", str(path), "stats")
        assert status == Exit.USAGE
        assert message in err
    status, err = run(capsys, "--token", "a", "--token-file", str(empty), "stats")
    assert status == Exit.USAGE
    assert "not allowed with" in err
    assert seen_tokens == []


def test_the_exit_statuses_are_documented() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "client.md").read_text()
    table = doc.split("### Exit statuses", 1)[1].split("\n## ", 1)[0]
    cells = [row.split("|")[1].strip() for row in table.splitlines() if row.startswith("|")]
    assert {int(cell) for cell in cells if cell.isdigit()} == {int(status) for status in Exit}


def test_the_checkout_and_the_client_package_declare_the_same_command() -> None:
    root = Path(__file__).parents[2]
    scripts = [
        tomllib.loads((where / "pyproject.toml").read_text())["project"]["scripts"]
        for where in (root, root / "client")
    ]
    assert scripts[0] == scripts[1] == {"txstats": "client.cli:main"}


def test_an_import_counts_repeated_ids_and_derives_the_missing_ones(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        items = json.loads(request.content)["transactions"]
        sent.extend(item["transaction_id"] for item in items)
        recorded = [{"position": {"partition": 0, "offset": len(sent)}} for _ in items]
        return httpx.Response(201, json={"transactions": recorded, "consistency_token": "v1.0-9"})

    transport = httpx.MockTransport(answer)
    build: Callable[..., Any] = functools.partial(AsyncTxStats, command_transport=transport)
    monkeypatch.setattr(cli, "AsyncTxStats", build)
    data = tmp_path / "ids.csv"
    data.write_text(
        "amount,timestamp,transaction_id\n"
        f"1.00,{STAMP},a\n"
        f"2.00,{STAMP}\n"  # line 3: an id derived from the file and the line
        f"1.00,{STAMP},a\n"  # a duplicate of line 2
        f"3.00,{STAMP},a\n"  # a conflict with line 2
        "1.00\n"  # refused by the client
        f"4.00,{STAMP},b\n"
    )
    status = cli.main(["import", str(data), "--json", "--batch-size", "2"])
    result = json.loads(capsys.readouterr().out)
    assert status == Exit.REFUSED_LINES
    assert (result["accepted"], result["refused_by_client"]) == (5, 1)
    assert (result["duplicates"], result["conflicts"]) == (1, 1)
    assert [re.sub("^f[0-9a-f]{16}-", "f<hex>-", id_) for id_ in sent] == [
        "a",
        "f<hex>-3",
        "a",
        "a",
        "b",
    ]
