"""The audit log's contract, on every sink: group commit, chains that survive restarts,
scoped queries, crypto-shredding, checkpoints and key checks."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import cast

import pytest

from loomflow.audit.core import FORGET_ACTION, AuditLog
from loomflow.audit.keys import AuditKeys
from loomflow.audit.models import Batch, Checkpoint, Draft, QueryFilter
from loomflow.audit.sink import Sink, open_sink
from loomflow.kernel.config import ConfigError
from loomflow.kernel.errors import FailedPrecondition, Unavailable
from tests.audit.conftest import KeyTexts, fresh_key_texts, make_log


class CountingSink:
    """A real sink that also records the size of every batch it is asked to make durable,
    and can be told to fail the next write (as a full disk or a lost connection would)."""

    def __init__(self, inner: Sink) -> None:
        self.inner = inner
        self.batches: list[int] = []
        self.fail_next_write = False

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    async def write_batch(self, batch: Batch) -> None:
        self.batches.append(len(batch.entries))
        if self.fail_next_write:
            self.fail_next_write = False
            raise OSError(28, "No space left on device")
        await self.inner.write_batch(batch)


def counting_log(dsn: str, keys: AuditKeys) -> tuple[AuditLog, CountingSink]:
    sink = CountingSink(open_sink(dsn))
    return AuditLog(cast(Sink, sink), keys, checkpoint_interval=0), sink


def draft(tenant: str, n: int = 0, **fields: str) -> Draft:
    return Draft(tenant, actor="agent", action=fields.pop("action", "tool_call"), payload=b"p%d" % n, **fields)


async def test_concurrent_appends_get_contiguous_seqs_and_share_fsyncs(dsn: str, keys: AuditKeys) -> None:
    log, sink = counting_log(dsn, keys)
    await log.start()
    try:
        appended = await asyncio.gather(*(log.append(draft(f"user-{i % 4}", i)) for i in range(400)))
        report = await log.verify(None)
    finally:
        await log.stop()
    by_tenant: dict[str, list[int]] = {}
    for i, result in enumerate(appended):
        by_tenant.setdefault(f"user-{i % 4}", []).append(result.seq)
    for tenant, seqs in by_tenant.items():
        assert sorted(seqs) == list(range(1, 101)), f"{tenant}'s seqs are not exactly 1..100"
    assert report.ok
    assert len(sink.batches) <= 10, f"400 concurrent appends took {len(sink.batches)} durable writes: no group commit"


async def test_chains_continue_across_restarts(dsn: str, keys: AuditKeys) -> None:
    for round_ in range(3):
        log = make_log(dsn, keys)
        await log.start()
        try:
            results = [await log.append(draft("alice", n)) for n in range(5)]
        finally:
            await log.stop()
        assert [r.seq for r in results] == list(range(round_ * 5 + 1, round_ * 5 + 6))
    log = make_log(dsn, keys)
    await log.start()
    try:
        report = await log.verify("alice")
        payloads = [item.payload for item in await log.query(QueryFilter("alice", limit=100))]
    finally:
        await log.stop()
    assert report.ok
    assert report.chains[0].entries_checked == 15
    assert payloads == [b"p%d" % n for _ in range(3) for n in range(5)]


async def test_query_is_scoped_filtered_and_paged(audit_log: AuditLog) -> None:
    for n in range(6):
        await audit_log.append(draft("alice", n, session_id=f"s{n % 2}", action="tool_call" if n < 4 else "reply"))
        await audit_log.append(draft("bob", 100 + n, session_id=f"s{n % 2}"))

    alice = await audit_log.query(QueryFilter("alice", limit=100))
    assert [i.entry.user_id for i in alice] == ["alice"] * 6, "Alice's query returned another tenant's entry"
    assert [i.payload for i in alice] == [b"p%d" % n for n in range(6)]

    session = await audit_log.query(QueryFilter("alice", session_id="s1", limit=100))
    assert [i.entry.seq for i in session] == [2, 4, 6]
    replies = await audit_log.query(QueryFilter("alice", action="reply", limit=100))
    assert [i.entry.seq for i in replies] == [5, 6]
    page = await audit_log.query(QueryFilter("alice", after_seq=2, limit=3))
    assert [i.entry.seq for i in page] == [3, 4, 5]

    everyone = await audit_log.query(QueryFilter(None, limit=100))
    assert [(i.entry.user_id, i.entry.seq) for i in everyone] == [("alice", n) for n in range(1, 7)] + [
        ("bob", n) for n in range(1, 7)
    ]


async def test_export_streams_only_that_tenants_entries_decrypted(audit_log: AuditLog) -> None:
    for n in range(3):
        await audit_log.append(draft("alice", n))
    for n in range(2):
        await audit_log.append(Draft("bob", actor="agent", action="tool_call", payload=b"alice? no, bob %d" % n))
    exported = [item async for item in audit_log.export("alice")]
    assert [(i.entry.user_id, i.entry.seq, i.payload) for i in exported] == [
        ("alice", n + 1, b"p%d" % n) for n in range(3)
    ]


async def test_export_pages_through_long_chains(audit_log: AuditLog) -> None:
    await asyncio.gather(*(audit_log.append(draft("alice", n)) for n in range(1201)))
    exported = [item.entry.seq async for item in audit_log.export("alice")]
    assert exported == list(range(1, 1202))


async def test_forget_shreds_payloads_and_the_chain_still_verifies(dsn: str, keys: AuditKeys) -> None:
    log = make_log(dsn, keys)
    await log.start()
    try:
        for n in range(4):
            await log.append(draft("alice", n))
            await log.append(draft("bob", n))
        await log.append(Draft("alice", actor="agent", action="no_payload"))
        shredded = await log.forget("alice", actor="operator-1")
        after = await log.query(QueryFilter("alice", limit=100))
        bob = await log.query(QueryFilter("bob", limit=100))
        report = await log.verify(None)
        later = await log.append(draft("alice", 99))
        fresh = await log.query(QueryFilter("alice", after_seq=later.seq - 1, limit=1))
    finally:
        await log.stop()

    assert shredded == 4
    assert [(i.shredded, i.payload) for i in after[:4]] == [(True, b"")] * 4, "payloads readable after Forget"
    assert (after[4].shredded, after[4].payload) == (False, b""), "an entry without payload has nothing to shred"
    assert (after[5].entry.action, after[5].entry.actor) == (FORGET_ACTION, "operator-1"), "Forget is not recorded"
    assert [i.payload for i in bob] == [b"p%d" % n for n in range(4)], "Forget touched another tenant"
    assert report.ok, [c.reason for c in report.chains]
    assert fresh[0].payload == b"p99", "entries appended after Forget must be readable under a new key"

    reopened = make_log(dsn, keys)  # the key is gone from storage, not only from memory
    await reopened.start()
    try:
        again = await reopened.query(QueryFilter("alice", limit=4))
        assert all(i.shredded for i in again), "a restart brought a forgotten key back"
        assert (await reopened.verify("alice")).ok
    finally:
        await reopened.stop()


async def test_a_failed_write_acknowledges_nothing_and_the_chain_stays_whole(dsn: str, keys: AuditKeys) -> None:
    log, sink = counting_log(dsn, keys)
    await log.start()
    try:
        await log.append(draft("alice", 0))
        sink.fail_next_write = True
        failed = await asyncio.gather(*(log.append(draft("alice", n)) for n in range(1, 4)), return_exceptions=True)
        after = await log.append(draft("alice", 4))
        report = await log.verify("alice")
        stored = await log.query(QueryFilter("alice", limit=100))
    finally:
        await log.stop()
    assert all(isinstance(f, Unavailable) for f in failed), failed
    assert after.seq == 2, "the failed batch's seqs must be reused, not skipped"
    assert [i.payload for i in stored] == [b"p0", b"p4"]
    assert report.ok


async def test_checkpoints_are_signed_periodically_only_when_a_head_moved(dsn: str, keys: AuditKeys) -> None:
    log = make_log(dsn, keys, checkpoint_interval=0.05)
    await log.start()
    try:
        await log.append(draft("alice"))
        first = await _wait_for_checkpoint(log, None)
        await asyncio.sleep(0.3)
        assert (await log.sink.latest_checkpoint()) == first, "re-signed although no head moved"
        await log.append(draft("alice", 1))
        second = await _wait_for_checkpoint(log, first.checkpoint_id)
    finally:
        await log.stop()
    assert [h.seq for h in first.heads] == [1]
    assert [h.seq for h in second.heads] == [2]
    assert second.public_key == keys.public_key


async def _wait_for_checkpoint(log: AuditLog, previous: str | None) -> Checkpoint:
    for _ in range(100):
        latest = await log.sink.latest_checkpoint()
        if latest is not None and latest.checkpoint_id != previous:
            return latest
        await asyncio.sleep(0.02)
    raise AssertionError("no periodic checkpoint was signed")


async def test_a_forged_checkpoint_is_reported_not_trusted(dsn: str, keys: AuditKeys) -> None:
    log = make_log(dsn, keys)
    await log.start()
    try:
        await log.append(draft("alice"))
        signed = await log.checkpoint(create=True)
        forged = dataclasses.replace(
            signed, checkpoint_id="ckpt-forged", created_us=signed.created_us + 1, signature=bytes(64)
        )
        await log.sink.save_checkpoint(forged)
        report = await log.verify("alice")
    finally:
        await log.stop()
    assert not report.ok
    assert report.checkpoint_error == "checkpoint signature is invalid"


async def test_signing_is_suspended_when_the_log_no_longer_reaches_the_last_checkpoint(
    dsn: str, keys: AuditKeys
) -> None:
    from tests.audit.raw import raw_store

    log = make_log(dsn, keys)
    await log.start()
    for n in range(3):
        await log.append(draft("alice", n))
    await log.checkpoint(create=True)
    await log.stop()
    store = raw_store(dsn)
    await store.overwrite([e for e in await store.entries() if e.seq < 3])

    log = make_log(dsn, keys)
    await log.start()
    try:
        with pytest.raises(FailedPrecondition, match="suspended"):
            await log.checkpoint(create=True)
        assert not (await log.verify("alice")).ok
    finally:
        await log.stop()


@pytest.mark.parametrize("which", ["hmac_key", "payload_key"])
async def test_reopening_with_another_key_refuses_to_start(dsn: str, key_texts: KeyTexts, which: str) -> None:
    log = make_log(dsn, key_texts.load())
    await log.start()
    await log.append(draft("alice"))
    await log.stop()
    other = dataclasses.replace(key_texts, **{which: getattr(fresh_key_texts(), which)})
    with pytest.raises(ConfigError, match=f"LOOMFLOW_AUDIT_{which.upper()} is not the key"):
        await make_log(dsn, other.load()).start()
