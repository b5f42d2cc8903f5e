"""A batch: the records one commit folds, in position order, with where each partition's
records start and end, and their fold (worked out once, ahead of the commit)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from operator import itemgetter

from projector.fold import Fold
from projector.records import ConsumedRecord
from shared.offsets import highest_offsets

_POSITION = itemgetter(0, 1)  # (partition, offset) of a ConsumedRecord, at C speed


@dataclass(slots=True)
class Batch:
    records: list[ConsumedRecord] = field(default_factory=list)
    log_end_offsets: dict[int, int] = field(default_factory=dict)
    _planned: tuple[dict[int, int] | None, Fold] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    _next_offsets: dict[int, int] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    @property
    def partitions(self) -> list[int]:
        return sorted({record.partition for record in self.records})

    def next_offsets(self) -> Mapping[int, int]:
        """Per partition: one past the highest offset in the batch. Computed once (the commit
        and the loop each ask)."""
        if self._next_offsets is None:
            self._next_offsets = highest_offsets((p, offset + 1) for p, offset, _ in self.records)
        return self._next_offsets

    def starts(self) -> dict[int, int] | None:
        """The offset each partition's records start at; None when a partition's records skip
        an offset (committing them would skip records)."""
        return self._plan()[0]

    def fold(self) -> Fold:
        """The fold of every record (see `Fold`)."""
        return self._plan()[1]

    def halves(self) -> tuple[Batch, Batch]:
        """The first and the second half of the records in position order: committed one after
        the other, each starts where the stored offsets stand."""
        records = sorted(self.records, key=_POSITION)
        middle = len(records) // 2
        return (
            Batch(records[:middle], dict(self.log_end_offsets)),
            Batch(records[middle:], dict(self.log_end_offsets)),
        )

    def _plan(self) -> tuple[dict[int, int] | None, Fold]:
        if self._planned is None:
            records = sorted(self.records, key=_POSITION)
            starts: dict[int, int] = {}
            expected: dict[int, int] = {}
            for partition, offset, _ in records:
                if expected.setdefault(partition, offset) != offset:
                    self._planned = None, Fold.of(records)
                    return self._planned
                starts.setdefault(partition, offset)
                expected[partition] = offset + 1
            self._planned = starts, Fold.of(records)
        return self._planned
