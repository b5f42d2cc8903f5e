"""Where the fold stands: the version it folds into and the next offset of each partition,
which come from the store only. Seeking puts the source there; a batch read before a seek is
never committed after it (the generation tells)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from projector.ports import ProjectionStore, RecordSource
from shared.offsets import highest_offsets

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FoldTarget:
    """Which version to fold into. `live`: the active version, following swaps; otherwise a
    fixed (building) version."""

    live: bool
    version: int


class Positions:
    def __init__(self, *, source: RecordSource, store: ProjectionStore, target: FoldTarget) -> None:
        self._source = source
        self._store = store
        self.live = target.live
        self.version = target.version
        self.next_offsets: dict[int, int] = {}
        self.generation = 0  # bumped by every seek

    async def seek_to_stored(self, partitions: Sequence[int]) -> None:
        """Seek the source to the offsets stored for `partitions` (live: in the version that
        is active now). Raises what the store raises."""
        if not partitions:
            return
        if self.live:
            self.version = await self._store.active_version()
        stored = await self._store.stored_offsets(self.version, partitions)
        self.generation += 1
        for partition in partitions:
            self._source.seek(partition, stored[partition])
            self.next_offsets[partition] = stored[partition]
        logger.info(
            "positioned at stored offsets",
            extra={"version": self.version, "offsets": {str(p): o for p, o in stored.items()}},
        )

    def advance(self, reached: Mapping[int, int]) -> None:
        """A batch reaching these next offsets was committed."""
        highest_offsets(reached.items(), self.next_offsets)

    def assigned_offsets(self) -> dict[int, int]:
        """The next offsets of the partitions the source reads now."""
        assigned = self._source.assignment()
        return {p: o for p, o in self.next_offsets.items() if p in assigned}


def reaches(offsets: Mapping[int, int], until: Mapping[int, int] | None) -> bool:
    """With `until`: every partition of it is reached by `offsets`."""
    if until is None:
        return False
    return all(offsets.get(p, 0) >= offset for p, offset in until.items())
