"""Audit payloads past retention are crypto-shredded by the retention sweeper, on every sink:
each tenant's payloads are encrypted under a key of their UTC day, and the sweeper destroys the
day keys whose whole day is older than the tenant's limit. Entries and chains stay and verify."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from loomflow import retention
from loomflow.audit import crypto
from loomflow.audit.core import AuditLog
from loomflow.audit.crypto import DAY_US
from loomflow.audit.keys import AuditKeys
from loomflow.audit.models import Draft, QueryFilter, WrappedKey
from loomflow.audit.sink import open_sink
from tests.test_retention_service import swept_rows

START_US = 20_000 * DAY_US + DAY_US // 2  # noon, UTC, of an arbitrary day


def payload_retention(audit_log: AuditLog, default_days: float, overrides: dict[str, float]) -> retention.SweptKind:
    async def tenants_before(cutoff_ms: int, after: str, limit: int) -> list[str]:
        return await audit_log.tenants_with_payloads_before(cutoff_ms * 1000, after, limit)

    async def shred_before(tenant: str, cutoff_ms: int, limit: int) -> int:
        return await audit_log.shred_payloads_before(tenant, cutoff_ms * 1000, limit)

    kept = retention.Retention(
        int(default_days * retention.DAY_MS), {t: int(d * retention.DAY_MS) for t, d in overrides.items()}
    )
    return retention.SweptKind("audit_payloads", kept, tenants_before, shred_before)


async def payloads(audit_log: AuditLog, tenant: str) -> list[bytes | None]:
    return [None if e.shredded else e.payload for e in await audit_log.query(QueryFilter(tenant))]


async def test_payloads_past_the_tenants_retention_are_shredded_and_the_chains_still_verify(
    dsn: str, keys: AuditKeys, unique: str
) -> None:
    now = [START_US]
    audit_log = AuditLog(open_sink(dsn), keys, checkpoint_interval=0.0, clock=lambda: now[0])
    alice, bob, keeper, carol = (f"{name}-{unique}" for name in ("alice", "bob", "keeper", "carol"))
    await audit_log.start()
    try:
        for tenant in (alice, bob, keeper, carol):
            await audit_log.append(Draft(tenant, actor="agent", action="tool_call", payload=b"old " + tenant.encode()))
        now[0] += 7 * DAY_US
        await audit_log.append(Draft(carol, actor="agent", action="tool_call", payload=b"middle"))
        now[0] += 3 * DAY_US  # ten days after the first entries, three after carol's middle one
        await audit_log.append(Draft(alice, actor="agent", action="tool_call", payload=b"new"))

        kind = payload_retention(audit_log, 5, {bob: 30, keeper: 0})
        settings = retention.Settings(sweep_seconds=0)
        sweeper = retention.Sweeper("audit", [kind], settings, clock=lambda: now[0] // 1000)
        before = swept_rows("audit_payloads", "audit")
        assert (await sweeper.sweep_once()) == {"audit_payloads": 2}, "alice's and carol's old day keys"
        assert swept_rows("audit_payloads", "audit") == before + 2, "the shredded keys were not counted"

        assert await payloads(audit_log, alice) == [None, b"new"], "only the payload past retention goes"
        assert await payloads(audit_log, carol) == [None, b"middle"], "a payload inside retention was shredded"
        assert await payloads(audit_log, bob) == [b"old " + bob.encode()], "bob's longer override was ignored"
        assert await payloads(audit_log, keeper) == [b"old " + keeper.encode()], "keep-forever was ignored"
        report = await audit_log.verify(None)
        assert report.ok, report

        assert (await sweeper.sweep_once()) == {"audit_payloads": 0}, "a second pass must find nothing left"
        now[0] += 3 * DAY_US  # the whole of carol's middle day is now past the 5 days as well
        assert (await sweeper.sweep_once()) == {"audit_payloads": 1}
        assert await payloads(audit_log, carol) == [None, None]
        assert await payloads(audit_log, alice) == [None, b"new"]
        await audit_log.append(Draft(carol, actor="agent", action="tool_call", payload=b"today"))
        assert await payloads(audit_log, carol) == [None, None, b"today"], "writing after a sweep must work"
        assert (await audit_log.verify(None)).ok
    finally:
        await audit_log.stop()


async def test_a_payload_shredded_by_retention_reads_as_shredded_after_a_restart(
    dsn: str, keys: AuditKeys, unique: str
) -> None:
    now = [START_US]
    tenant = f"alice-{unique}"
    first = AuditLog(open_sink(dsn), keys, checkpoint_interval=0.0, clock=lambda: now[0])
    await first.start()
    try:
        await first.append(Draft(tenant, actor="agent", action="tool_call", payload=b"old"))
        now[0] += 2 * DAY_US
        await first.append(Draft(tenant, actor="agent", action="tool_call", payload=b"new"))
        assert await first.shred_payloads_before(tenant, now[0] - DAY_US, 10) == 1
    finally:
        await first.stop()
    second = AuditLog(open_sink(dsn), keys, checkpoint_interval=0.0, clock=lambda: now[0])
    await second.start()
    try:
        assert await payloads(second, tenant) == [None, b"new"], "the destroyed key was not durable"
        assert (await second.verify(tenant)).ok
    finally:
        await second.stop()


def test_a_payload_written_before_day_keys_still_decrypts_and_its_key_is_never_taken_for_a_day() -> None:
    # The layout every log written before day keys holds: 0x01 ‖ random key id (8) ‖ nonce ‖ AES-GCM.
    master, raw, key_id, nonce = os.urandom(32), AESGCM.generate_key(bit_length=256), os.urandom(8), os.urandom(12)
    wrap_nonce = os.urandom(12)
    wrapped = wrap_nonce + AESGCM(master).encrypt(wrap_nonce, raw, crypto._wrap_aad("alice", key_id))
    old = b"\x01" + key_id + nonce + AESGCM(raw).encrypt(nonce, b"before", crypto._PAYLOAD_AAD + b"alice")
    keyring = crypto.Keyring(master)
    keyring.install("alice", [WrappedKey("alice", key_id, wrapped)])
    assert keyring.decrypt("alice", old) == b"before"
    assert crypto.period_of(key_id) is None, "a random key id must never read as a day"
    assert crypto.period_of(crypto.period_key_id(20_000)) == 20_000


def test_ready_ciphers_are_bounded_and_a_forget_leaves_none_of_the_tenants_behind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A cipher holds ~1.9 KB of OpenSSL state; one kept per tenant grew the audit process by that per tenant.
    monkeypatch.setattr(crypto, "CIPHERS_CACHED", 8)
    keyring, day = crypto.Keyring(os.urandom(32)), 20_000
    tenants = [f"t{n}" for n in range(50)]
    sealed = {}
    for tenant in tenants:
        keyring.create(tenant, day)
        sealed[tenant] = keyring.encrypt(tenant, f"secret of {tenant}".encode(), day)
    assert len(keyring._ciphers) == 8
    for tenant in tenants:  # every key still works once its cipher was dropped
        assert keyring.decrypt(tenant, sealed[tenant]) == f"secret of {tenant}".encode()
    keyring.forget("t49")
    assert keyring.decrypt("t49", sealed["t49"]) is None
    assert len(keyring._ciphers) == 7, "the forgotten tenant's cipher outlived its key"
