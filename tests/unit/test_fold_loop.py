"""The fold loop over the in-memory source and store: every path that decides what is
counted, with no sockets and no sleeps."""

from __future__ import annotations

import asyncio
import copy
from decimal import Decimal

from shared.totals import Totals
from tests.unit.projector_kit import event_bytes, make_rig, running, settle


async def test_every_record_is_folded_once_and_its_offset_stored() -> None:
    rig = make_rig()
    for i in range(5):
        rig.source.append(i % 2, event_bytes(f"{i + 1}.00"))
    rig.source.append(0, event_bytes("9.99", transaction_id="retried"))
    rig.source.append(1, event_bytes("9.99", transaction_id="retried"))
    async with running(rig):
        await settle(rig, 7)
    totals = await rig.store.totals(1)
    assert (totals.count, totals.sum) == (6, Decimal("24.99"))
    assert rig.store.versions[1].offsets == {0: 4, 1: 3}
    assert rig.metrics.duplicates._value.get() == 1


async def test_poison_records_are_stored_and_skipped() -> None:
    rig = make_rig()
    rig.source.append(0, b"\x00 not json")
    rig.source.append(0, None)
    rig.source.append(0, event_bytes("4.20"))
    async with running(rig):
        await settle(rig, 3)
    assert (await rig.store.totals(1)).count == 1
    assert set(rig.store.versions[1].poison) == {(0, 0), (0, 1)}
    assert rig.metrics.poison._value.get() == 2


async def test_the_next_batch_is_fetched_while_a_commit_runs() -> None:
    rig = make_rig(poll_timeout_ms=10_000)
    rig.write(0, 3)
    rig.store.hold_commits()
    async with running(rig):
        await rig.store.commit_waiting()
        rig.write(0, 3)
        await rig.until(lambda: rig.source.positions[0] == 6)
        assert rig.store.commits_started == 1  # the second batch was read during the first
        rig.store.release_commits()
        await settle(rig, 6)
    assert (await rig.store.totals(1)).count == 6


async def test_a_batch_gathers_what_has_arrived_over_several_fetches() -> None:
    rig = make_rig(max_batch=20_000)
    rig.write(0, 1500)
    rig.write(1, 1100)
    async with running(rig):
        await settle(rig, 2600)
    assert rig.store.commits_started == 1
    assert rig.source.fetches >= 3  # slices of FETCH_SLICE, each decoded as it arrives


async def test_a_batch_stops_at_max_batch() -> None:
    rig = make_rig(max_batch=1200)
    rig.write(0, 2000)
    async with running(rig):
        await settle(rig, 2000)
    assert rig.store.commits_started == 2
    assert rig.metrics.batch_size._sum.get() == 2000


async def test_a_fetch_failing_while_a_batch_is_gathered_ends_it_with_what_it_has() -> None:
    rig = make_rig(max_batch=20_000)
    rig.write(0, 2500)
    rig.source.fail_next_fetches(1, after=1)  # the second fetch of the first batch
    async with running(rig):
        await settle(rig, 2500)
    assert rig.store.commits_started == 2  # 1,000 records, then the other 1,500
    assert rig.retries("OffsetGapError") == 0  # nothing fetched was dropped
    assert (await rig.store.totals(1)).count == 2500


async def test_a_gap_re_seeks_to_the_stored_offset() -> None:
    rig = make_rig()
    rig.write(0, 5)
    async with running(rig):
        await settle(rig, 5)
        rig.source.move(0, 8)  # a position the store never gave: offsets 5-7 would be skipped
        rig.write(0, 5)
        await settle(rig, 10)
    assert (await rig.store.totals(1)).count == 10
    assert rig.retries("OffsetGapError") == 1
    assert (0, 5) in rig.source.seeks


async def test_a_stale_batch_re_seeks_at_once() -> None:
    rig = make_rig(max_batch=2)
    rig.write(0, 5)
    async with running(rig):
        await settle(rig, 5)
        commits = rig.store.commits_started
        rig.source.move(0, 0)  # behind the stored offset: offsets 0-4 were folded
        rig.source.append(0, event_bytes("2.00"))
        await settle(rig, 6)
    # one stale batch (offsets 0-1), then straight to offset 5: not 2-3 and 4 first
    assert rig.store.commits_started - commits == 2
    assert rig.retries("stale") == 1
    assert (await rig.store.totals(1)).count == 6


async def test_a_version_swap_mid_run_moves_the_fold_to_the_new_version() -> None:
    rig = make_rig()
    rig.write(0, 3)
    async with running(rig):
        await settle(rig, 3)
        rig.store.versions[2] = copy.deepcopy(rig.store.versions[1])  # a rebuild, caught up
        rig.store.active = 2
        rig.source.append(0, event_bytes("5.00"))
        rig.source.append(1, event_bytes("7.00"))
        await settle(rig, 5)
    assert (await rig.store.totals(1)).count == 3
    assert await rig.store.totals(2) == Totals(5, Decimal("15.00"), Decimal("7.00"), Decimal(1))
    assert rig.retries("VersionChangedError") == 1
    assert rig.loop.positions.version == 2


async def test_until_stops_at_exactly_the_given_offsets() -> None:
    rig = make_rig(live=False, version=2)
    rig.store.versions[2] = copy.deepcopy(rig.store.versions[1])
    for i in range(10):
        rig.source.append(0, event_bytes("1.00"))
        rig.source.append(1, event_bytes(f"{i + 1}.00"))
    rig.source.assign([0, 1])
    await rig.loop.positions.seek_to_stored([0, 1])
    await rig.loop.run(rig.stop, until={0: 4, 1: 7})  # returns by itself
    assert rig.store.versions[2].offsets == {0: 4, 1: 7}
    totals = await rig.store.totals(2)
    assert (totals.count, totals.sum) == (11, Decimal("4.00") + sum(map(Decimal, range(1, 8))))
    assert rig.source.committed == {}  # a rebuild reports nothing to the group


async def test_transient_errors_back_off_and_resume_from_the_stored_offsets() -> None:
    rig = make_rig()
    for i in range(10):
        rig.source.append(i % 2, event_bytes("1.00"))
    rig.source.fail_next_fetches(3)
    rig.store.fail_next_commits(2)
    async with running(rig):
        await settle(rig, 10)
    assert rig.pauses.seconds == [0.1, 0.2, 0.4, 0.8, 1.6]  # doubling, reset by a success
    assert (await rig.store.totals(1)).count == 10
    assert rig.metrics.events_folded._value.get() == 10
    assert rig.retries("SourceUnavailable") == 3
    assert rig.retries("StoreUnavailable") == 2


async def test_revocation_waits_for_the_batch_in_flight() -> None:
    rig = make_rig(poll_timeout_ms=10_000)
    rig.write(0, 3)
    rig.store.hold_commits()
    async with running(rig):
        await rig.store.commit_waiting()
        rig.source.rebalance([1])  # partition 0 moves to another member
        for _ in range(20):  # the waiting fetch wakes and starts the rebalance
            await asyncio.sleep(0)
        assert ("revoked", [0, 1]) not in rig.source.rebalances
        rig.store.release_commits()
        await rig.until(lambda: ("revoked", [0, 1]) in rig.source.rebalances)
        assert rig.store.versions[1].offsets == {0: 3}  # committed before the hand-over
    assert (await rig.store.totals(1)).count == 3


async def test_live_offsets_are_reported_to_the_source_after_each_commit() -> None:
    rig = make_rig()
    for i in range(6):
        rig.source.append(i % 2, event_bytes("1.00"))
    async with running(rig):
        await settle(rig, 6)
        await rig.until(lambda: rig.source.committed == {0: 3, 1: 3})
        rig.source.committed = {0: 100, 1: 100}  # what the log says is never read back
        rig.source.rebalance([0, 1])
        await rig.until(lambda: rig.source.rebalances.count(("assigned", [0, 1])) == 2)
    assert rig.source.seeks[-2:] == [(0, 3), (1, 3)]


async def test_a_failed_seek_on_assignment_still_folds_and_reports_what_it_knows() -> None:
    rig = make_rig()
    rig.write(0, 3)
    rig.store.fail_next_reads(1)  # the seek on assignment fails: default positions are used
    async with running(rig) as task:
        await settle(rig, 3)
        await rig.until(lambda: rig.source.committed == {0: 3})  # partition 1: nothing known
        assert not task.done()
    assert (await rig.store.totals(1)).count == 3


async def test_the_same_id_from_two_producers_is_two_transactions() -> None:
    rig = make_rig()
    rig.source.append(0, event_bytes("1.00", transaction_id="order-1", producer="shop-a"))
    rig.source.append(0, event_bytes("2.00", transaction_id="order-1", producer="shop-b"))
    rig.source.append(0, event_bytes("1.00", transaction_id="order-1", producer="shop-a"))
    async with running(rig):
        await settle(rig, 3)
    totals = await rig.store.totals(1)
    assert (totals.count, totals.sum) == (2, Decimal("3.00"))
    assert rig.metrics.duplicates._value.get() == 1


async def test_the_latest_offsets_are_reported_after_a_burst_and_a_quiet_period() -> None:
    rig = make_rig(max_batch=2)
    rig.source.hold_offset_reports()  # the first report stays in flight through the burst
    rig.write(0, 6)
    async with running(rig):
        await settle(rig, 6)
        rig.source.release_offset_reports()  # then all is quiet: no batch reports again
        stored = await rig.store.stored_offsets(1, [0, 1])
        await rig.until(lambda: rig.source.committed == stored)
    assert stored == {0: 6, 1: 0}


async def test_a_record_the_store_refuses_is_stored_as_poison_and_the_fold_goes_on() -> None:
    rig = make_rig()
    rig.store.refuse(lambda occurrence: occurrence.amount == Decimal("13.13"))
    rig.write(0, 3)
    rig.source.append(0, event_bytes("13.13"))
    rig.write(0, 3)
    async with running(rig):
        await settle(rig, 7)
    assert (await rig.store.totals(1)).count == 6
    [(position, reason)] = rig.store.versions[1].poison.items()
    assert position == (0, 3)
    assert reason.startswith("refused by the store:")
    assert (rig.metrics.poison._value.get(), rig.metrics.refused._value.get()) == (1, 1)
    assert rig.retries("StoreUnavailable") == 0
