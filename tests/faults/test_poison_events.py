"""Poison events the projector test (tests/integration/test_projector.py) does not write:
a tombstone, an unknown event type, a too-precise amount, out-of-range values, a timestamp
that overflows when converted to UTC, a transaction id longer than any index entry or holding
a NUL, a producer holding a NUL or longer than its cap (these used to crash the projector or
stall it retrying the batch forever).
Each is skipped, recorded and logged with its offset; the fold goes on, totals stay exact."""

from __future__ import annotations

import json
import random
import string
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from shared.events import serialize
from tests.faults.harness import Deployment, projection, totals_of
from tests.integration.support import event, publish, publish_raw, wait_until

pytestmark = pytest.mark.integration


# Random letters: PostgreSQL cannot compress it below the ~8 kB a btree entry may take.
INCOMPRESSIBLE_ID = "".join(random.Random(8).choices(string.ascii_letters, k=10_000))


def mutated(**changes: Any) -> bytes:
    body = json.loads(serialize(event("1.00")))
    body.update(changes)
    return json.dumps(body).encode()


POISON: dict[str, bytes | None] = {
    "tombstone (null value)": None,
    "unknown event_type": mutated(event_type="TransactionVoided"),
    "too-precise amount": mutated(amount="1.001"),
    "amount as a JSON number": mutated(amount=1.5),
    "amount over 10^12": mutated(amount="1000000000000.01"),
    "schema_version true": mutated(schema_version=True),
    "transaction_id a number": mutated(transaction_id=12345),
    "occurred_at overflows in UTC": mutated(occurred_at="0001-01-01T00:00:00+14:00"),
    "recorded_at overflows in UTC": mutated(recorded_at="9999-12-31T23:59:59-14:00"),
    "transaction_id of 10,000 characters": mutated(transaction_id=INCOMPRESSIBLE_ID),
    "transaction_id with NUL": mutated(transaction_id="a\u0000b"),
    "producer with NUL": mutated(producer="a\u0000b"),
    "producer of 10,000 characters": mutated(producer=INCOMPRESSIBLE_ID),
    "lone surrogate": serialize(event("1.00")).replace(
        b'"producer":"test"', b'"producer":"\\ud800"'
    ),
    "a JSON string": b'"TransactionRecorded"',
    "empty bytes": b"",
}


async def test_uncovered_poison_is_skipped_counted_and_logged(deployment: Deployment) -> None:
    good = [event(f"{i}.{i % 100:02d}") for i in range(1, 101)]
    await publish(deployment.kafka, good[:50])
    await publish_raw(
        deployment.kafka,
        [(f"poison-{i}".encode(), value) for i, value in enumerate(POISON.values())],  # type: ignore[misc]
    )
    await publish(deployment.kafka, good[50:])
    total = len(good) + len(POISON)

    projector = deployment.projector()

    async def consumed_all() -> bool:
        assert projector.alive(), projector.log()[-3000:]
        return (await projection(deployment.database_url)).consumed >= total

    await wait_until(consumed_all, timeout=60)
    totals = await projection(deployment.database_url)
    expected = totals_of({e.transaction_id: e.amount for e in good})
    assert (totals.count, totals.sum, totals.max, totals.min) == expected
    assert totals.sum == Decimal("5050") + sum(Decimal(i % 100) / 100 for i in range(1, 101))
    assert totals.consumed == total

    conn = await asyncpg.connect(deployment.database_url)
    try:
        rows = await conn.fetch('SELECT partition, "offset", reason FROM poison_events')
    finally:
        await conn.close()
    assert len(rows) == len(POISON), [r["reason"] for r in rows]
    log = projector.log()
    assert log.count("skipped a poison event") == len(POISON)
    for row in rows:
        assert f'"partition": {row["partition"]}, "offset": {row["offset"]}' in log
    assert projector.alive()
