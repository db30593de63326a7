"""A log damaged in many ways at once: every chain's first problem is reported, on every sink,
and intact chains beside them stay intact."""

from __future__ import annotations

import dataclasses

from loomflow.audit.keys import AuditKeys
from loomflow.audit.models import Checkpoint, Draft
from tests.audit.conftest import make_log
from tests.audit.raw import raw_store

TENANTS = [f"user-{n}" for n in range(12)]


async def _tampered_log(dsn: str, keys: AuditKeys) -> Checkpoint:
    log = make_log(dsn, keys)
    await log.start()
    for round_ in range(4):
        for tenant in TENANTS:
            await log.append(Draft(tenant, actor="agent", action="x", payload=b"%d" % round_))
    signed = await log.checkpoint(create=True)
    await log.stop()
    store = raw_store(dsn)
    entries = await store.entries()
    edited = []
    for entry in entries:
        if entry.user_id == "user-0" and entry.seq == 2:
            continue  # deleted
        if entry.user_id == "user-1" and entry.seq == 3:
            entry = dataclasses.replace(entry, action="y")  # altered
        if entry.user_id == "user-2" and entry.seq == 4:
            continue  # tail cut below the checkpoint
        if entry.user_id == "user-3":
            continue  # a whole chain gone
        edited.append(entry)
    replayed = next(e for e in entries if e.user_id == "user-5" and e.seq == 1)
    edited.append(dataclasses.replace(replayed, user_id="user-4", seq=5))
    await store.overwrite(edited)
    return signed


async def test_every_damaged_chain_reports_its_own_first_problem(dsn: str, keys: AuditKeys) -> None:
    await _tampered_log(dsn, keys)
    log = make_log(dsn, keys)
    await log.start()
    try:
        report = await log.verify(None)
    finally:
        await log.stop()
    failing = {(r.tenant, r.problem.value if r.problem else None, r.first_bad_seq) for r in report.chains if not r.ok}
    assert failing == {
        ("user-0", "seq gap", 2),
        ("user-1", "mac mismatch", 3),
        ("user-2", "truncated below checkpoint", 4),
        (None, "truncated below checkpoint", 1),
        ("user-4", "foreign entry", 5),
    }
    intact = {r.tenant for r in report.chains if r.ok}
    assert intact == {f"user-{n}" for n in range(5, 12)}
