"""The commit of one batch: the projector's one use case, sequenced here once over the steps a
`ProjectionTransaction` offers (the store records; this module decides what).

In one transaction: hold the active version (live), lock the batch's partitions and check that
the batch starts exactly at their stored offsets, store the first occurrence of every key and
learn which keys were stored before (almost always none: the fold of them all was worked out
ahead), else fold only the new ones, classify the repeats against what was counted and record
them; apply the delta with the next offsets, log ends and poison, and notify readers. Commit
makes all of it visible at once, or none of it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from projector.batch import Batch
from projector.conflicts import Conflict, classify_repeats
from projector.errors import (
    OffsetGapError,
    RecordRefusedError,
    StaleBatchError,
    StoreUnavailable,
    VersionChangedError,
)
from projector.ports import ProjectionStore, ProjectionTransaction
from projector.records import ConsumedRecord, Poison
from shared.events import TransactionRecorded, serialize

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CommitResult:
    folded: tuple[TransactionRecorded, ...] = ()
    duplicates: int = 0
    poison: tuple[tuple[int, int, Poison], ...] = ()  # (partition, offset, why)
    conflicts: tuple[Conflict, ...] = ()  # repeats with another payload (among `duplicates`)
    refused: int = 0  # records the store refused, stored as poison (among `poison`)

    def merge(self, other: CommitResult) -> CommitResult:
        return CommitResult(
            self.folded + other.folded,
            self.duplicates + other.duplicates,
            self.poison + other.poison,
            self.conflicts + other.conflicts,
            self.refused + other.refused,
        )


async def commit(store: ProjectionStore, batch: Batch, *, version: int, live: bool) -> CommitResult:
    """Commit `batch` into `version` in one transaction (`live`: only while it is the active
    version). A value the store refuses stalls nothing: the batch is committed in halves, down
    to the record the store refuses, which is committed as poison with the store's reason,
    together with the rest of the batch. A second refused record in that rest is no record's
    doing any more but the store's (a schema drift, a bug of ours): `StoreUnavailable`, logged
    as an error, and the poison is not stored: the loop retries, nothing is undercounted."""
    done = CommitResult()
    parts = [batch]
    refused: Batch | None = None  # the refused record, as poison, and every record after it
    while parts:
        part = parts.pop()
        try:
            async with store.transaction(version) as tx:
                result = await commit_batch(tx, part, version=version, live=live)
            done = done.merge(result if part is not refused else replace(result, refused=1))
        except RecordRefusedError as err:
            if part is refused:
                msg = (
                    f"the store refuses more than one record of a batch (or a poison record): {err}"
                )
                logger.error("%s; the rest of the batch is retried, none stored as poison", msg)
                raise StoreUnavailable(msg) from err
            if len(part.records) > 1:
                first, second = part.halves()
                parts += [second, first]  # the first half next
                continue
            [(partition, offset, item)] = part.records
            if isinstance(item, Poison):  # refused even as poison: not this record's doing
                msg = f"the store refuses to store a poison record: {err}"
                logger.error("%s; the batch is retried", msg)
                raise StoreUnavailable(msg) from err
            poison = Poison(f"refused by the store: {err}", serialize(item))
            rest = [record for later in reversed(parts) for record in later.records]
            refused = Batch(
                [ConsumedRecord(partition, offset, poison), *rest], batch.log_end_offsets
            )
            parts = [refused]
    return done


async def commit_batch(
    tx: ProjectionTransaction, batch: Batch, *, version: int, live: bool
) -> CommitResult:
    """The steps of one batch's commit, in order, inside `tx`."""
    starts = batch.starts()
    fold = batch.fold()
    next_offsets = batch.next_offsets()
    if live:
        active = await tx.active_version()
        if active != version:
            raise VersionChangedError(active)
    locked = await tx.lock_partitions(batch.partitions)
    stored = locked.offsets
    # The batch must start exactly at the stored offsets: past them it would skip records,
    # below them fold some again (a re-delivery, a zombie member after a rebalance, a seek that
    # failed); either way the consumer re-seeks.
    if starts is None or any(start > stored[p] for p, start in starts.items()):
        msg = f"the batch starts past the stored offsets {stored}"
        raise OffsetGapError(msg)
    if starts != stored:
        msg = f"the batch starts below the stored offsets {stored}"
        raise StaleBatchError(msg)
    stored_before = (
        await tx.insert_first_occurrences(fold.first, legacy_ids=locked.legacy_ids)
        if fold.first is not None
        else set()
    )
    conflicts: tuple[Conflict, ...] = ()
    if fold.all_new is not None and not stored_before:
        delta, folded = fold.all_new  # every key new, the usual case: worked out ahead
    else:  # keys stored before, or repeated within the batch: classify every repeat
        new = set(fold.keys()) - stored_before
        repeated = sorted(stored_before)
        counted = await tx.counted_occurrences(repeated) if repeated else {}
        repeats = classify_repeats(fold.records, new, counted)
        delta, folded = fold.fold_new(new)
        conflicts = tuple(repeats.conflicts)
        await tx.record_repeats(repeats)
    await tx.apply(
        delta, next_offsets=next_offsets, log_end=batch.log_end_offsets, poison=fold.poison
    )
    if live:  # readers only read the active version
        await tx.notify(next_offsets)
    return CommitResult(folded, len(fold.events) - len(folded), tuple(fold.poison), conflicts)
