"""txstats client: a typed Python library and the `txstats` CLI for producers and readers of
the txstats service (docs/client.md).

    async with AsyncTxStats(token=token) as txstats:
        async for outcome in txstats.record_many(transactions):
            ...
        stats = await txstats.stats(consistency_token=token_of_the_writes)

`TxStats` is the same client for synchronous code.
"""

from client.aio import AsyncTxStats, TokenProvider
from client.errors import ApiError, TxStatsError, UnavailableError
from client.models import (
    Accepted,
    AsOf,
    Counted,
    GivenUp,
    NotCounted,
    Occurrence,
    Outcome,
    Position,
    Problem,
    Receipt,
    Refused,
    Stats,
    Transaction,
    TransactionStatus,
)
from client.retry import RetryPolicy
from client.sync import TxStats
from client.tokens import InvalidTokenError, TokenTracker, merge_tokens

__all__ = [
    "Accepted",
    "ApiError",
    "AsOf",
    "AsyncTxStats",
    "Counted",
    "GivenUp",
    "InvalidTokenError",
    "NotCounted",
    "Occurrence",
    "Outcome",
    "Position",
    "Problem",
    "Receipt",
    "Refused",
    "RetryPolicy",
    "Stats",
    "TokenProvider",
    "TokenTracker",
    "Transaction",
    "TransactionStatus",
    "TxStats",
    "TxStatsError",
    "UnavailableError",
    "merge_tokens",
]
