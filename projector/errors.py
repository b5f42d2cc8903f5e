"""The projector's errors. Adapters translate their drivers' errors into these, so the fold
loop and the rebuild know no driver."""

from __future__ import annotations


class ProjectionError(Exception):
    """Base of the projector's errors."""


class VersionChangedError(ProjectionError):
    """The active projection version changed (a rebuild swapped it); re-seek and retry."""

    def __init__(self, active: int) -> None:
        super().__init__(f"the active projection version is now {active}")
        self.active = active


class OffsetGapError(ProjectionError):
    """A batch starts past the stored offset: records would be skipped; re-seek and retry."""


class StaleBatchError(ProjectionError):
    """A batch starts below the stored offset (its first records are folded already, e.g. after
    a seek that failed): nothing is committed; re-seek to the stored offsets and go on."""


class RecordRefusedError(ProjectionError):
    """The store refused a value of the batch (a data error, such as a constraint or a value
    out of its range): not transient, one record is the cause; that record becomes poison."""


class StoreUnavailable(ProjectionError):
    """The projection store did not answer or failed transiently; back off and retry."""


class SourceUnavailable(ProjectionError):
    """The event log did not answer or failed transiently; back off and retry."""


class RebuildLockedError(ProjectionError):
    """Another rebuild holds the lock."""
