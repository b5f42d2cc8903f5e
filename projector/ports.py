"""The projector's port: where folded totals and consumed offsets are stored together."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from projector.batch import Batch
from projector.conflicts import Conflict
from projector.fold import Totals
from shared.events import TransactionRecorded


@dataclass(frozen=True, slots=True)
class CommitResult:
    folded: tuple[TransactionRecorded, ...]
    duplicates: int
    stale: int
    poison: int
    conflicts: tuple[Conflict, ...] = ()  # repeats with another payload (among `duplicates`)


class ProjectionStore(Protocol):
    async def active_version(self) -> int: ...

    async def stored_offsets(self, version: int, partitions: Sequence[int]) -> dict[int, int]:
        """Next offset to consume per partition (0 for a partition never folded)."""
        ...

    async def totals(self, version: int) -> Totals:
        """All-time totals of a version (merged over its partitions)."""
        ...

    async def commit(self, version: int, batch: Batch, *, live: bool) -> CommitResult:
        """In one transaction: skip records below the stored offsets, dedupe transaction ids
        (storing each counted occurrence; repeats counted on it, conflicts recorded), fold the
        new events, record poison, store the next offsets. With `live`, raise
        `VersionChangedError` when `version` is no longer the active one."""
        ...
