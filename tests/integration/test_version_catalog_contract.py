"""One contract, two version catalogs: the in-memory fake and PostgreSQL must behave the same."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg
import pytest

from projector.adapters.postgres_catalog import PostgresVersionCatalog
from projector.adapters.postgres_store import PostgresProjectionStore
from projector.batch import Batch
from projector.commit import commit
from projector.errors import RebuildLockedError, VersionChangedError
from projector.ports import ProjectionStore, VersionCatalog
from projector.records import decode
from shared.events import serialize
from shared.totals import Totals
from tests.doubles.memory_store import InMemoryProjectionStore, InMemoryVersionCatalog
from tests.integration.support import event, wait_until

AT = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)


@dataclass
class Versions:
    catalog: VersionCatalog
    store: ProjectionStore
    pool: asyncpg.Pool | None = None

    async def live_commit_waits(self) -> bool:
        """A live commit is blocked by the hold (in PostgreSQL: waits on a row lock)."""
        if self.pool is None:
            assert isinstance(self.store, InMemoryProjectionStore)
            return self.store.active_lock.locked() and self.store.commits_started > 0
        waiting: int = await self.pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )
        return waiting > 0


@pytest.fixture(params=["memory", "postgres"])
def versions(request: pytest.FixtureRequest) -> Versions:
    if request.param == "memory":
        store = InMemoryProjectionStore()
        return Versions(InMemoryVersionCatalog(store), store)
    pool = request.getfixturevalue("pg_pool")
    return Versions(PostgresVersionCatalog(pool), PostgresProjectionStore(pool), pool)


def batch(partition: int, *amounts: str, first: int = 0) -> Batch:
    values = [serialize(event(a, occurred_at=AT)) for a in amounts]
    return Batch(records=[decode(partition, first + i, v) for i, v in enumerate(values)])


async def test_a_new_version_is_building_and_found_again_by_its_until(versions: Versions) -> None:
    catalog = versions.catalog
    assert await catalog.active() == 1
    assert await catalog.building(None) is None
    new = await catalog.create(None)
    audit = await catalog.create("0=5")
    assert (new, audit) == (2, 3)
    assert await catalog.building(None) == new
    assert await catalog.building("0=5") == audit
    assert await catalog.building("0=6") is None
    await catalog.mark_verified(new)  # a dry run passed: still resumed
    assert await catalog.building(None) == new
    states = {v.version: v.state for v in await catalog.describe()}
    assert states == {1: "active", 2: "verified", 3: "building"}


async def test_one_rebuild_lock_at_a_time(versions: Versions) -> None:
    catalog = versions.catalog
    async with catalog.rebuild_lock():
        with pytest.raises(RebuildLockedError):
            async with catalog.rebuild_lock():
                pass
    async with catalog.rebuild_lock():  # released
        pass


async def test_a_swap_in_a_hold_activates_the_new_version_and_retires_the_old(
    versions: Versions,
) -> None:
    catalog, store = versions.catalog, versions.store
    await commit(store, batch(0, "1.00", "2.00"), version=1, live=True)
    new = await catalog.create(None)
    await commit(store, batch(0, "1.00", "2.00"), version=new, live=False)
    async with catalog.holding_active() as hold:
        assert hold.active == 1
        assert await hold.offsets(1) == await hold.offsets(new) == {0: 2}
        assert await hold.totals(new) == Totals(2, Decimal("3.00"), Decimal(2), Decimal(1))
        await hold.swap(new)
    assert await catalog.active() == new
    states = {v.version: v.state for v in await catalog.describe()}
    assert states == {1: "retired", new: "active"}


async def test_a_hold_without_a_swap_or_with_an_error_changes_nothing(versions: Versions) -> None:
    catalog = versions.catalog
    new = await catalog.create(None)
    async with catalog.holding_active():
        pass

    async def swap_then_fail() -> None:
        async with catalog.holding_active() as hold:
            await hold.swap(new)
            raise RuntimeError("verification failed")

    with pytest.raises(RuntimeError):
        await swap_then_fail()
    assert await catalog.active() == 1


async def test_a_live_commit_waits_for_the_hold_and_then_sees_the_swap(
    versions: Versions,
) -> None:
    catalog, store = versions.catalog, versions.store
    new = await catalog.create(None)
    async with catalog.holding_active() as hold:
        live = asyncio.create_task(commit(store, batch(0, "1.00"), version=1, live=True))
        await wait_until(versions.live_commit_waits, timeout=10)
        assert not live.done()
        await hold.swap(new)
    with pytest.raises(VersionChangedError) as caught:
        await live
    assert caught.value.active == new
    assert (await store.totals(1)).count == 0


async def test_drop_removes_a_version_but_never_the_active_one(versions: Versions) -> None:
    catalog, store = versions.catalog, versions.store
    old = await catalog.create(None)
    await commit(store, batch(1, "5.00"), version=old, live=False)
    assert {v.version: v.count for v in await catalog.describe()} == {1: 0, old: 1}
    await catalog.drop(old)
    assert [v.version for v in await catalog.describe()] == [1]
    assert (await store.totals(old)).count == 0
    with pytest.raises(ValueError, match="active"):
        await catalog.drop(1)


async def test_describe_shows_offsets_log_ends_and_counts(versions: Versions) -> None:
    catalog, store = versions.catalog, versions.store
    await commit(
        store,
        Batch(records=batch(2, "1.00", "2.00").records, log_end_offsets={2: 9}),
        version=1,
        live=True,
    )
    [info] = await catalog.describe()
    assert (info.version, info.state, info.until) == (1, "active", None)
    assert (info.offsets, info.log_end, info.count) == ({2: 2}, {2: 9}, 2)
    assert await catalog.offsets(1) == {2: 2}
