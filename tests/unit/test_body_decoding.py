"""The fast path (`command_api.decoding`, msgspec) against the Pydantic models: on every row of
the validation table and on generated bodies, whatever the fast path takes, the models take
too, with the same command; everything the models refuse, the fast path refuses (and the
models answer). The fast path takes every valid form the table has but one."""

from __future__ import annotations

import json
from datetime import UTC, timedelta, timezone

import pytest
from fastapi.exceptions import RequestValidationError
from hypothesis import given
from hypothesis import strategies as st

from command_api import decoding
from command_api.decoding import MalformedJsonError, fast_batch, fast_transaction
from command_api.models import ValidationContext
from command_api.services import RecordTransaction, TransactionBatch
from tests.unit.command_kit import NOW
from tests.unit.test_command_validation import ROWS, TS, Row

CONTEXT = ValidationContext(now=NOW, max_clock_skew=timedelta(seconds=5))
# Valid forms the fast path leaves to the models: rare enough not to be worth a second parser.
LEFT_TO_THE_MODELS = {"lower-case t and z"}


def by_models(body: bytes) -> RecordTransaction | None:
    try:
        return decoding.transaction_by_models(body, CONTEXT)
    except (MalformedJsonError, RequestValidationError):
        return None


def batch_by_models(body: bytes) -> TransactionBatch | None:
    try:
        return decoding.batch_by_models(body, CONTEXT)
    except (MalformedJsonError, RequestValidationError):
        return None


def assert_same(fast: RecordTransaction, models: RecordTransaction | None) -> None:
    assert models is not None, "the fast path took a body the models refuse"
    assert fast == models
    assert str(fast.amount) == str(models.amount)  # 1.10, not 1.1
    assert fast.occurred_at.tzinfo is models.occurred_at.tzinfo


def assert_same_batch(fast: TransactionBatch, models: TransactionBatch | None) -> None:
    """Column by column: the same two-decimal amounts (1.10, not 1.1), the same instants in
    UTC, the same ids."""
    assert models is not None, "the fast path took a batch the models refuse"
    assert fast == models
    assert {at.tzinfo for at in fast.occurred_at} == {UTC}


def test_a_batch_by_the_models_has_the_amounts_the_single_path_has() -> None:
    """The batch's amount text is the event's (`serialize`) for every valid row."""
    for row in ROWS.values():
        command = by_models(row.body.encode())
        if command is not None and row.amount is not None:
            assert TransactionBatch.of([command]).amounts == [row.amount]


def as_batch(*items: str) -> bytes:
    return f'{{"transactions": [{", ".join(items)}]}}'.encode()


@pytest.mark.parametrize("row", ROWS.values(), ids=ROWS.keys())
def test_the_fast_path_takes_exactly_what_the_models_take(row: Row) -> None:
    body = row.body.encode()
    fast, models = fast_transaction(body, CONTEXT), by_models(body)

    assert (models is not None) == (row.status == 201)
    if fast is not None:
        assert_same(fast, models)
    else:
        assert models is None or row in (ROWS[name] for name in LEFT_TO_THE_MODELS)


@pytest.mark.parametrize("row", ROWS.values(), ids=ROWS.keys())
def test_the_fast_path_of_a_batch_takes_exactly_what_the_models_take(row: Row) -> None:
    other = f'{{"amount": 5, "timestamp": {TS}, "transaction_id": "other"}}'
    body = as_batch(other, row.body)
    fast, models = fast_batch(body, CONTEXT), batch_by_models(body)

    if models is None or row in (ROWS[name] for name in LEFT_TO_THE_MODELS):
        assert fast is None
        return
    assert fast is not None
    assert len(fast.amounts) == 2
    assert_same_batch(fast, models)


ITEM = f'{{"amount": 1, "timestamp": {TS}, "transaction_id": "a"}}'


@pytest.mark.parametrize(
    "body",
    [
        as_batch(ITEM, ITEM.replace("1", "2", 1)),  # the same id twice
        as_batch(),
        as_batch(*[ITEM.replace('"a"', f'"a{i}"') for i in range(1001)]),
        f'{{"transactions": [{ITEM}], "transactions": [{ITEM}]}}'.encode(),
        f'{{"transactions": [{ITEM}], "extra": 1}}'.encode(),
        ITEM.encode(),
        # columns are checked joined by line feeds: one inside a value must not pass as two
        as_batch(ITEM.replace('"a"', '"a\\nb"')),
        as_batch(ITEM.replace(TS, TS.replace('Z"', 'Z\\n2026-11-26T11:00:00Z"'))),
    ],
    ids=[
        "repeated id",
        "no item",
        "1001 items",
        "repeated key",
        "unknown key",
        "not a batch",
        "line feed in an id",
        "line feed in a timestamp",
    ],
)
def test_the_fast_path_leaves_every_invalid_batch_to_the_models(body: bytes) -> None:
    assert batch_by_models(body) is None
    assert fast_batch(body, CONTEXT) is None


def test_a_batch_of_1000_takes_the_fast_path() -> None:
    body = as_batch(*[ITEM.replace('"a"', f'"a{i}"') for i in range(1000)])
    fast = fast_batch(body, CONTEXT)
    assert fast is not None
    assert fast == batch_by_models(body)


# Pieces of bodies, half of them valid, for generated bodies.
CENTS = st.decimals(min_value=0, max_value=10**12 + 1, allow_nan=False, places=2)
AMOUNTS = st.one_of(
    st.one_of(CENTS.map(str), CENTS.map(lambda value: f'"{value}"')),
    st.one_of(
        st.decimals(min_value=-1, max_value=10**13, allow_nan=False, places=3).map(str),
        st.sampled_from(["1e2", "1E-2", "0.1e1", "-0", '"1e2"', '"01"', '" 1"', "true", "null"]),
        st.sampled_from(['"\\u0031"', "[1]", '{"a": 1}', "1e400", '"1e-400"', "100.000"]),
    ),
)
OFFSETS = st.integers(-24 * 60 + 1, 24 * 60 - 1).map(lambda minutes: timedelta(minutes=minutes))
MOMENTS = st.datetimes(max_value=NOW.replace(tzinfo=None), timezones=OFFSETS.map(timezone)).map(
    lambda moment: moment.isoformat()
)
TIMESTAMPS = st.one_of(
    st.one_of(
        MOMENTS.map(json.dumps),
        MOMENTS.map(lambda text: json.dumps(text.replace("+00:00", "Z"))),
    ),
    st.one_of(
        st.datetimes(timezones=st.timezones()).map(lambda moment: json.dumps(moment.isoformat())),
        st.sampled_from(['"2026-11-26T12:00:05Z"', '"2026-11-26T12:00:05.000001Z"', "1"]),
        st.sampled_from(['"2026-11-26T11:00:00.1234567Z"', '"2026-11-26T11:00:00+24:00"']),
        st.sampled_from(['"0001-01-01T00:00:00+00:01"', '"9999-12-31T23:59:59-00:01"', "null"]),
    ),
)
IDS = st.one_of(
    st.text(alphabet="ab9._:-", min_size=1, max_size=64).map(json.dumps),
    st.text(alphabet="ab9._:- /\n\"\\'", min_size=0, max_size=66).map(json.dumps),
    st.sampled_from(["null", "1", '"\\u0061"', f'"{"x" * 64}"', f'"{"x" * 65}"']),
)
KEYS = st.sampled_from(["amount", "timestamp", "transaction_id", "\\u0061mount", "other"])


@st.composite
def bodies(draw: st.DrawFn) -> str:
    members = [f'"amount": {draw(AMOUNTS)}', f'"timestamp": {draw(TIMESTAMPS)}']
    if draw(st.booleans()):
        members.append(f'"transaction_id": {draw(IDS)}')
    if draw(st.integers(0, 7)) == 0:  # a repeated or unknown key
        members.append(f'"{draw(KEYS)}": {draw(st.sampled_from([AMOUNTS, TIMESTAMPS, IDS]))}')
    order = draw(st.permutations(members))
    return "{" + ", ".join(order) + "}"


@given(body=bodies())
def test_whatever_the_fast_path_takes_the_models_take_alike(body: str) -> None:
    fast = fast_transaction(body.encode(), CONTEXT)
    if fast is not None:
        assert_same(fast, by_models(body.encode()))


@given(items=st.lists(bodies(), min_size=1, max_size=5))
def test_whatever_the_fast_path_takes_in_a_batch_the_models_take_alike(items: list[str]) -> None:
    body = as_batch(*items)
    fast = fast_batch(body, CONTEXT)
    if fast is not None:
        assert_same_batch(fast, batch_by_models(body))
