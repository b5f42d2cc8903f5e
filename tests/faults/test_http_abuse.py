"""Hostile HTTP against the real servers (uvicorn + httptools, as the Dockerfiles run them,
access log on): oversized and lying bodies, pathological JSON, wrong media types, abusive
headers and query strings. Each is a clear 4xx problem, fast, never a 500; after each test
both servers are alive and serve a normal request, and their logs hold no stack trace, no
secret and no token (checked by an autouse fixture, so no test depends on the order)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.faults import harness
from tests.faults.harness import PROBLEM_JSON, Deployment, Service, writer_token
from tests.faults.report import AddRow, Attack
from tests.scratch_database import create_database, drop_database

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
FAST = 2.0  # seconds: a refusal must not wait for a body that is never coming
NOW = "2026-01-01T00:00:00Z"


@dataclass
class Servers:
    command: Service
    query: Service
    tokens: list[str]  # every bearer token the module sent (none may reach a log)

    def token(self) -> str:
        value = writer_token()
        self.tokens.append(value)
        return value


@pytest.fixture(scope="module")
async def servers(
    stack: harness.PrivateStack, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Servers]:
    database_url = await create_database(stack.admin_database_url, "faults")
    deployed = Deployment(
        kafka=await harness.create_topic(stack),
        database_url=database_url,
        tmp_path=tmp_path_factory.mktemp("abuse"),
    )
    try:
        command = deployed.command_api(access_log=True, LOG_LEVEL="DEBUG")
        query = deployed.query_api(access_log=True, LOG_LEVEL="DEBUG", STATS_REQUIRE_AUTH="true")
        await command.wait_ready()
        await query.wait_ready()
        yield Servers(command, query, [])
    finally:
        deployed.stop_all()
        await drop_database(stack.admin_database_url, database_url)


@pytest.fixture(autouse=True)
async def still_serving(servers: Servers) -> AsyncIterator[None]:
    """After each hostile test, on its own (no test relies on another having run): both
    servers are alive and serve a normal request, and their logs hold no stack trace, no
    secret and no token."""
    yield
    token = servers.token()
    async with httpx.AsyncClient(timeout=10) as client:
        accepted = await client.post(
            f"{servers.command.url}/transactions",
            content=f'{{"amount": "12.34", "timestamp": "{NOW}"}}'.encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        stats = await client.get(
            f"{servers.query.url}/stats", headers={"Authorization": f"Bearer {token}"}
        )
    assert accepted.status_code == 201, accepted.text
    assert stats.status_code == 200, stats.text
    assert servers.command.alive()
    assert servers.query.alive()
    for service in (servers.command, servers.query):
        assert_clean_log(service.log(), servers.tokens, service.log_path)


# ------------------------------------------------------------------------ raw sockets


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float
    sent: int  # body bytes we managed to send before the answer came


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    body = await reader.readexactly(length)
    return int(status_line.split()[1]), headers, body


async def raw_post(
    port: int, path: str, headers: dict[str, str], chunks: list[bytes], *, chunked: bool = False
) -> RawResponse:
    """Send a request head, then body chunks one by one until the server answers; never
    close our side before the answer (a server waiting for the declared body would hang)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    started = time.monotonic()
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    answer = asyncio.create_task(_read_response(reader))
    sent = 0
    try:
        for chunk in chunks:
            if answer.done():
                break
            writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" if chunked else chunk)
            await writer.drain()
            sent += len(chunk)
            await asyncio.sleep(0.005)
        status, response_headers, body = await asyncio.wait_for(answer, timeout=10)
    except (ConnectionError, asyncio.IncompleteReadError):
        status, response_headers, body = await asyncio.wait_for(answer, timeout=10)
    finally:
        writer.close()
    return RawResponse(status, response_headers, body, time.monotonic() - started, sent)


def assert_problem(status: int, content_type: str | None, expected: int) -> None:
    assert status == expected
    assert content_type == PROBLEM_JSON


# ------------------------------------------------------------------ bodies over 1 MiB


async def test_a_50_mb_content_length_is_refused_before_any_of_it_arrives(
    servers: Servers, report_row: AddRow
) -> None:
    headers = {
        "Authorization": f"Bearer {servers.token()}",
        "Content-Type": "application/json",
        "Content-Length": str(50_000_000),
    }
    response = await raw_post(servers.command.port or 0, "/transactions", headers, [b"{" * 1024])
    assert_problem(response.status, response.headers.get("content-type"), 413)
    assert response.seconds < FAST
    assert response.headers.get("connection") == "close"
    report_row(
        Attack("a declared 50 MB body, 1 KiB sent", f"413 after {response.seconds * 1000:.0f} ms")
    )


async def test_a_chunked_body_is_cut_off_once_it_passes_1_mib(
    servers: Servers, report_row: AddRow
) -> None:
    headers = {
        "Authorization": f"Bearer {servers.token()}",
        "Content-Type": "application/json",
        "Transfer-Encoding": "chunked",
    }
    chunks = [b" " * 65536] * 128  # 8 MiB on offer
    response = await raw_post(
        servers.command.port or 0, "/transactions", headers, chunks, chunked=True
    )
    assert_problem(response.status, response.headers.get("content-type"), 413)
    assert MIB < response.sent < 4 * MIB, response.sent
    report_row(Attack("a chunked 8 MiB body", f"413, cut off after {response.sent / MIB:.2f} MiB"))


async def test_a_query_api_body_over_64_kib_is_refused(servers: Servers) -> None:
    async with httpx.AsyncClient(base_url=servers.query.url) as client:
        response = await client.request("GET", "/stats", content=b"x" * (65 * 1024))
    assert_problem(response.status_code, response.headers.get("content-type"), 413)


# -------------------------------------------------------------- pathological bodies

BODIES: dict[str, tuple[bytes, dict[str, str], int]] = {
    "deeply nested JSON": (b"[" * 500_000 + b"]" * 500_000, {}, 400),
    "deeply nested objects": (b'{"a":' * 150_000 + b"1" + b"}" * 150_000, {}, 400),
    "10,000-digit integer amount": (
        b'{"amount": ' + b"9" * 10_000 + f', "timestamp": "{NOW}"}}'.encode(),
        {},
        422,
    ),
    "10,000-digit fraction": (
        b'{"amount": 1.' + b"3" * 10_000 + f', "timestamp": "{NOW}"}}'.encode(),
        {},
        422,
    ),
    "10,000-digit amount string": (
        b'{"amount": "' + b"7" * 10_000 + f'", "timestamp": "{NOW}"}}'.encode(),
        {},
        422,
    ),
    "exponent beyond any decimal": (
        f'{{"amount": 1e999999999999999999999, "timestamp": "{NOW}"}}'.encode(),
        {},
        400,
    ),
    "exponent beyond any decimal, as a string": (
        f'{{"amount": "1e-999999999999999999999", "timestamp": "{NOW}"}}'.encode(),
        {},
        422,
    ),
    "invalid UTF-8": (f'{{"amount": "\xff", "timestamp": "{NOW}"}}'.encode("latin-1"), {}, 400),
    "UTF-16": (f'{{"amount": 1, "timestamp": "{NOW}"}}'.encode("utf-16"), {}, 400),
    "duplicate keys": (f'{{"amount": 1, "amount": 2, "timestamp": "{NOW}"}}'.encode(), {}, 400),
    "NaN": (f'{{"amount": NaN, "timestamp": "{NOW}"}}'.encode(), {}, 400),
    "text/plain": (b'{"amount": 1}', {"Content-Type": "text/plain"}, 415),
    "form encoded": (b"amount=1", {"Content-Type": "application/x-www-form-urlencoded"}, 415),
    "JSON declared as latin-1": (
        b'{"amount": 1}',
        {"Content-Type": "application/json; charset=latin-1"},
        415,
    ),
    "no content type": (b'{"amount": 1}', {"Content-Type": ""}, 415),
    "a JSON array": (b"[1, 2, 3]", {}, 422),
    "a year-10000 timestamp": (b'{"amount": 1, "timestamp": "10000-01-01T00:00:00Z"}', {}, 422),
    "a timestamp overflowing UTC": (
        b'{"amount": 1, "timestamp": "0001-01-01T00:00:00+14:00"}',
        {},
        422,
    ),
    "a transaction id with NUL": (
        f'{{"amount": 1, "timestamp": "{NOW}", "transaction_id": "a\\u0000b"}}'.encode(),
        {},
        422,
    ),
}


@pytest.mark.parametrize("name", BODIES)
async def test_pathological_bodies_are_a_clear_4xx(servers: Servers, name: str) -> None:
    content, extra, expected = BODIES[name]
    headers = {
        "Authorization": f"Bearer {servers.token()}",
        "Content-Type": "application/json",
        **extra,
    }
    headers = {k: v for k, v in headers.items() if v}
    async with httpx.AsyncClient(base_url=servers.command.url, timeout=10) as client:
        started = time.monotonic()
        for path in ("/transactions", "/transactions/batch"):
            response = await client.post(path, content=content, headers=headers)
            assert response.status_code == expected, (path, response.text[:300])
            assert response.headers["content-type"] == PROBLEM_JSON
            assert response.json()["status"] == expected
    assert time.monotonic() - started < 2 * FAST


# ------------------------------------------------------------ headers and query strings


async def test_a_100_kb_token_header_is_refused(servers: Servers) -> None:
    headers = {"Authorization": "Bearer " + "A" * 100_000, "Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=servers.command.url) as client:
        response = await client.post("/transactions", content=b"{}", headers=headers)
    assert 400 <= response.status_code < 500
    assert response.status_code in {400, 401, 431}


async def test_a_content_length_that_is_not_a_number_is_a_400(servers: Servers) -> None:
    headers = {"Content-Type": "application/json", "Content-Length": "12abc"}
    response = await raw_post(servers.command.port or 0, "/transactions", headers, [b"{}"])
    assert response.status == 400


QUERY_ABUSE: dict[str, tuple[str, int]] = {
    "window of 31 digits": ("/stats?window=" + "9" * 31, 422),
    "window not a number": ("/stats?window=abc", 422),
    "window of 10,000 digits": ("/stats?window=" + "1" * 10_000, 422),
    "wait_ms negative": ("/stats?consistency_token=v1.0-0&wait_ms=-1", 422),
    "token of 20 kB garbage": ("/stats?consistency_token=" + "v1." + "9" * 20_000, 422),
    "token naming 2,000 partitions": (
        "/stats?consistency_token=v1." + ".".join(f"{p}-1" for p in range(2000)),
        422,
    ),
    "token of NULs": ("/stats?consistency_token=%00%00%00", 422),
}


@pytest.mark.parametrize("name", QUERY_ABUSE)
async def test_abusive_query_strings_are_a_422(servers: Servers, name: str) -> None:
    path, expected = QUERY_ABUSE[name]
    headers = {"Authorization": f"Bearer {servers.token()}"}
    async with httpx.AsyncClient(base_url=servers.query.url, timeout=10) as client:
        response = await client.get(path, headers=headers)
    assert response.status_code == expected, response.text[:300]
    assert response.headers["content-type"] == PROBLEM_JSON


async def test_a_token_in_the_query_string_is_not_a_credential(servers: Servers) -> None:
    token = servers.token()
    body = f'{{"amount": 1, "timestamp": "{NOW}"}}'.encode()
    async with httpx.AsyncClient(timeout=10) as client:
        for name in ("access_token", "token", "jwt", "authorization"):
            write = await client.post(
                f"{servers.command.url}/transactions?{name}={token}",
                content=body,
                headers={"Content-Type": "application/json"},
            )
            assert write.status_code == 401
            read = await client.get(f"{servers.query.url}/stats?{name}={token}")
            assert read.status_code == 401


def assert_clean_log(log: str, tokens: list[str], where: Path) -> None:
    assert "Traceback" not in log, where
    assert "unhandled error" not in log, where
    assert harness.JWT_SECRET not in log, where
    leaked = [t for t in tokens if t in log or t.rsplit(".", 1)[1] in log]
    assert not leaked, f"{len(leaked)} token(s) in {where}"
