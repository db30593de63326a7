"""Audit Query bounded by time (from_us inclusive, to_us exclusive), on every sink."""

from __future__ import annotations

import asyncio

from loomflow.audit.core import AuditLog
from loomflow.audit.models import Draft, QueryFilter


async def test_a_time_range_returns_exactly_the_entries_inside_it_for_one_or_every_tenant(
    audit_log: AuditLog, unique: str
) -> None:
    alice, bob = f"alice-{unique}", f"bob-{unique}"
    stamps: list[int] = []
    for n in range(4):
        for tenant in (alice, bob):
            appended = await audit_log.append(Draft(tenant, actor="agent", action="tool_call", payload=b"p%d" % n))
            stamps.append(appended.ts_us)
        await asyncio.sleep(0.002)  # separate batches: distinct timestamps to cut between
    lo, hi = stamps[2], stamps[6]  # alice's 2nd entry (inclusive) .. alice's 4th (exclusive)

    mine = await audit_log.query(QueryFilter(alice, from_us=lo, to_us=hi))
    assert [e.entry.seq for e in mine] == [2, 3], "the range did not cut at [from, to)"
    assert [e.payload for e in mine] == [b"p1", b"p2"]

    everyone = await audit_log.query(QueryFilter(None, from_us=lo, to_us=hi))
    assert {(e.entry.user_id, e.entry.seq) for e in everyone} == {(alice, 2), (bob, 2), (alice, 3), (bob, 3)}

    open_ended = await audit_log.query(QueryFilter(bob, from_us=stamps[7]))
    assert [e.entry.seq for e in open_ended] == [4]
    until = await audit_log.query(QueryFilter(bob, to_us=stamps[1] + 1))
    assert [e.entry.seq for e in until] == [1]
