"""The tamper suite, on every sink: each edit an attacker with write access to the storage
can make is detected, at the right seq, with the right reason.

Alice has 6 entries and Bob 3; a checkpoint signs both heads; the log is closed,
the storage edited behind the service's back, and the log reopened and verified.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import pytest

from loomflow.audit.keys import AuditKeys
from loomflow.audit.models import Draft, Entry, Problem
from tests.audit.conftest import make_log
from tests.audit.raw import raw_store

ALICE, BOB = "alice", "bob"
ALICE_ENTRIES, BOB_ENTRIES = 6, 3


def _at(entries: list[Entry], tenant: str, seq: int) -> int:
    return next(i for i, e in enumerate(entries) if e.user_id == tenant and e.seq == seq)


def edit_payload(entries: list[Entry]) -> list[Entry]:
    i = _at(entries, ALICE, 3)
    flipped = bytes([entries[i].payload[0]]) + bytes([entries[i].payload[1] ^ 1]) + entries[i].payload[2:]
    entries[i] = replace(entries[i], payload=flipped)
    return entries


def edit_user_id(entries: list[Entry]) -> list[Entry]:
    i = _at(entries, ALICE, 3)
    entries[i] = replace(entries[i], user_id="mallory")  # Alice's action now looks like Mallory's
    return entries


def delete_middle(entries: list[Entry]) -> list[Entry]:
    del entries[_at(entries, ALICE, 3)]
    return entries


def swap_two(entries: list[Entry]) -> list[Entry]:
    """Entries 3 and 4 trade places, renumbered so the seqs still look contiguous."""
    i, j = _at(entries, ALICE, 3), _at(entries, ALICE, 4)
    entries[i], entries[j] = replace(entries[j], seq=3), replace(entries[i], seq=4)
    return entries


def truncate_tail(entries: list[Entry]) -> list[Entry]:
    return [e for e in entries if not (e.user_id == ALICE and e.seq > 4)]


def replay_foreign(entries: list[Entry]) -> list[Entry]:
    """Bob's entry 2 appended to Alice's chain as her entry 7."""
    bobs = entries[_at(entries, BOB, 2)]
    entries.append(replace(bobs, user_id=ALICE, seq=ALICE_ENTRIES + 1))
    return entries


@dataclass(frozen=True)
class Tamper:
    edit: Callable[[list[Entry]], list[Entry]]
    first_bad_seq: int
    problem: Problem


TAMPERS = {
    "edit_payload": Tamper(edit_payload, 3, Problem.MAC_MISMATCH),
    "edit_user_id": Tamper(edit_user_id, 3, Problem.SEQ_GAP),
    "delete_middle_entry": Tamper(delete_middle, 3, Problem.SEQ_GAP),
    "swap_two_entries": Tamper(swap_two, 3, Problem.BROKEN_LINK),
    "truncate_tail": Tamper(truncate_tail, 5, Problem.TRUNCATED),
    "replay_other_tenants_entry": Tamper(replay_foreign, ALICE_ENTRIES + 1, Problem.FOREIGN),
}


async def _write_and_checkpoint(dsn: str, keys: AuditKeys) -> None:
    log = make_log(dsn, keys)
    await log.start()
    for n in range(ALICE_ENTRIES):
        await log.append(Draft(ALICE, actor="agent", action="tool_call", payload=b"alice-secret-%d" % n))
    for n in range(BOB_ENTRIES):
        await log.append(Draft(BOB, actor="agent", action="tool_call", payload=b"bob-secret-%d" % n))
    await log.checkpoint(create=True)
    await log.stop()


async def test_untampered_log_verifies_on_every_sink(dsn: str, keys: AuditKeys) -> None:
    await _write_and_checkpoint(dsn, keys)
    log = make_log(dsn, keys)
    await log.start()
    try:
        report = await log.verify(None)
    finally:
        await log.stop()
    assert report.ok, [c.reason for c in report.chains]
    assert report.checkpoint_id, "the log should have been checked against its checkpoint"
    assert {c.tenant: c.entries_checked for c in report.chains} == {ALICE: ALICE_ENTRIES, BOB: BOB_ENTRIES}


@pytest.mark.parametrize("kind", list(TAMPERS))
async def test_tampering_is_detected_at_the_right_seq(dsn: str, keys: AuditKeys, kind: str) -> None:
    tamper = TAMPERS[kind]
    await _write_and_checkpoint(dsn, keys)
    store = raw_store(dsn)
    await store.overwrite(tamper.edit(await store.entries()))

    log = make_log(dsn, keys)
    await log.start()
    try:
        alone = await log.verify(ALICE)
        everyone = await log.verify(None)
    finally:
        await log.stop()

    for report in (alone, everyone):
        assert not report.ok, f"{kind} went undetected"
        alice = next(c for c in report.chains if c.tenant == ALICE)
        assert (alice.first_bad_seq, alice.problem) == (tamper.first_bad_seq, tamper.problem), (
            f"{kind}: expected {tamper.problem.value} at seq {tamper.first_bad_seq}, got {alice.reason!r} "
            f"at seq {alice.first_bad_seq}"
        )
    bob = next(c for c in everyone.chains if c.tenant == BOB)
    assert bob.ok, f"{kind} on Alice's chain must not implicate Bob's: {bob.reason}"
