"""Response DTOs of `GET /transactions/{transaction_id}`. Money is a decimal string."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from query_api.as_of import AsOf
from query_api.transactions.service import TransactionView
from shared.money import to_cents_string
from shared.projection import Occurrence


class OccurrenceOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    amount: str = Field(examples=["99.99"])
    occurred_at: datetime
    partition: int
    offset: int
    recorded_at: datetime
    producer: str

    @classmethod
    def of(cls, occurrence: Occurrence) -> OccurrenceOut:
        return cls(
            amount=to_cents_string(occurrence.amount),
            occurred_at=occurrence.occurred_at,
            partition=occurrence.partition,
            offset=occurrence.offset,
            recorded_at=occurrence.recorded_at,
            producer=occurrence.producer,
        )


class TransactionResponse(BaseModel):
    model_config = ConfigDict(frozen=True)

    transaction_id: str
    state: Literal["counted"] = Field(
        description="The first occurrence of this id in the log is counted in the statistics"
    )
    amount: str | None = Field(
        examples=["10.00"], description="null only for ids folded before payloads were kept"
    )
    occurred_at: datetime | None
    partition: int | None
    offset: int | None
    recorded_at: datetime | None
    producer: str | None
    duplicates: int = Field(description="Later occurrences of this id, none of them counted")
    conflicts: int = Field(
        description="Of the duplicates, those whose amount or occurred_at differ"
    )
    conflicting: list[OccurrenceOut] = Field(
        description="The conflicting occurrences in log order (at most the first 100)"
    )
    as_of: AsOf

    @classmethod
    def from_view(cls, view: TransactionView) -> TransactionResponse:
        record = view.record
        assert record is not None
        counted = None if record.counted is None else OccurrenceOut.of(record.counted)
        return cls(
            transaction_id=view.transaction_id,
            state="counted",
            amount=None if counted is None else counted.amount,
            occurred_at=None if counted is None else counted.occurred_at,
            partition=None if counted is None else counted.partition,
            offset=None if counted is None else counted.offset,
            recorded_at=None if counted is None else counted.recorded_at,
            producer=None if counted is None else counted.producer,
            duplicates=record.duplicates,
            conflicts=record.conflict_count,
            conflicting=[OccurrenceOut.of(o) for o in record.conflicts],
            as_of=AsOf.of(view.version, view.positions, view.read_at),
        )
