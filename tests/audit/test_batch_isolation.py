"""One tenant's unstorable audit entry never fails other tenants' appends in the same group commit (issue 19).

Before the fix, 4 writers of ``actor="a\\x00"`` on the Postgres sink made 3,759 of 4,480
other tenants' concurrent appends fail: every append of a batch failed with its worst
entry. The wire now refuses a NUL, so these tests go below it, straight to the audit
log (the writer and the sink), with an entry each sink really cannot store: a NUL
for Postgres, a lone surrogate for the file sink (JSON cannot encode it). The bad
appends fail with INVALID_ARGUMENT, every good one commits, and every chain verifies.
"""

from __future__ import annotations

import asyncio

import pytest

from loomflow.audit.core import AuditLog
from loomflow.audit.models import Draft
from loomflow.kernel.errors import InvalidArgument

GOOD_TENANTS = 40
GOOD_ROUNDS = 8
BAD_WRITERS = 4
UNSTORABLE = {"file": "a\ud800", "postgres": "a\x00"}
"""An actor each sink cannot store (the wire refuses both; the sink is reached directly)."""


async def test_a_bad_entry_fails_alone_and_the_rest_of_its_batch_commits(audit_log: AuditLog, sink_name: str) -> None:
    bad_actor = UNSTORABLE[sink_name]
    stop = asyncio.Event()
    refused = 0

    async def hammer(writer: int) -> None:
        nonlocal refused
        while not stop.is_set():
            with pytest.raises(InvalidArgument):
                await audit_log.append(Draft(f"mallory-{writer}", actor=bad_actor, action="tool_call"))
            refused += 1

    async def good(tenant: int) -> int:
        appended = 0
        for round_ in range(GOOD_ROUNDS):
            await audit_log.append(Draft(f"tenant-{tenant}", actor="agent", action=f"step-{round_}", payload=b"p"))
            appended += 1
        return appended

    hammers = [asyncio.create_task(hammer(w)) for w in range(BAD_WRITERS)]
    await asyncio.sleep(0)  # the bad writers are in the queue before the good ones
    results = await asyncio.gather(*(good(t) for t in range(GOOD_TENANTS)), return_exceptions=True)
    stop.set()
    await asyncio.gather(*hammers)

    failures = [r for r in results if isinstance(r, BaseException)]
    assert not failures, f"{len(failures)} of {GOOD_TENANTS} good tenants failed beside a bad writer: {failures[:3]}"
    assert refused >= BAD_WRITERS, "the bad writers never reached the sink"
    for tenant in range(GOOD_TENANTS):
        report = await audit_log.verify(f"tenant-{tenant}")
        assert report.ok, f"tenant-{tenant}'s chain does not verify: {report}"
        assert sum(c.entries_checked for c in report.chains) == GOOD_ROUNDS
    for writer in range(BAD_WRITERS):
        report = await audit_log.verify(f"mallory-{writer}")
        assert sum(c.entries_checked for c in report.chains) == 0, "an unstorable entry was recorded"
