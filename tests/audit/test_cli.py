"""`loomflow audit verify`: an auditor verifies a log offline, on every sink, with the exit
status telling intact (0), tampered (1) and unusable input (2) apart."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf import json_format

from loomflow import cli
from loomflow.audit import checkpoint as checkpoints
from loomflow.audit.keys import AuditKeys
from loomflow.audit.models import Checkpoint, Draft, SignedHead
from loomflow.audit.servicer import checkpoint_message
from loomflow.audit.sink import open_sink
from loomflow.audit.sink.file import CHECKPOINTS
from loomflow.v1 import audit_pb2
from tests.audit.conftest import KeyTexts, fresh_key_texts, make_log
from tests.audit.raw import raw_store


async def _write(dsn: str, keys: AuditKeys, count: int = 5) -> Checkpoint:
    log = make_log(dsn, keys)
    await log.start()
    try:
        for n in range(count):
            await log.append(Draft("alice", actor="agent", action="tool_call", payload=b"%d" % n))
            await log.append(Draft("bob", actor="agent", action="tool_call", payload=b"%d" % n))
        return await log.checkpoint(create=True)
    finally:
        await log.stop()


def _drop(dsn: str, tenant: str, seqs: set[int]) -> None:
    async def drop() -> None:
        store = raw_store(dsn)
        await store.overwrite([e for e in await store.entries() if not (e.user_id == tenant and e.seq in seqs)])

    asyncio.run(drop())


def verify(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    status = cli.main(["audit", "verify", *args])
    captured = capsys.readouterr()
    return status, captured.out + captured.err


def pinned(key_texts: KeyTexts) -> str:
    """The service's public key as an auditor pins it (hex, what `loomflow audit public-key` prints)."""
    return key_texts.load().public_key.hex()


def test_an_intact_log_verifies(dsn: str, key_texts: KeyTexts, capsys: pytest.CaptureFixture[str]) -> None:
    asyncio.run(_write(dsn, key_texts.load()))
    status, out = verify(capsys, dsn, "--hmac-key", key_texts.hmac_key, "--public-key", pinned(key_texts))
    assert status == 0, out
    assert "2 chains, 10 entries" in out
    assert "result: OK" in out


def test_a_deleted_entry_fails_with_its_seq(dsn: str, key_texts: KeyTexts, capsys: pytest.CaptureFixture[str]) -> None:
    asyncio.run(_write(dsn, key_texts.load()))
    _drop(dsn, "alice", {3})
    status, out = verify(capsys, dsn, "--hmac-key", key_texts.hmac_key, "--public-key", pinned(key_texts))
    assert status == 1, out
    assert "FAIL user 'alice': first bad seq 3: seq gap" in out
    args = ("--hmac-key", key_texts.hmac_key, "--public-key", pinned(key_texts), "--user-id", "bob", "--json")
    status, out = verify(capsys, dsn, *args)
    assert status == 0, out
    assert json.loads(out)["chains"][0]["user_id"] == "bob"


def test_truncation_is_caught_by_a_checkpoint_kept_out_of_band(
    tmp_path: Path, key_texts: KeyTexts, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = key_texts.load()
    folder = tmp_path / "audit"
    signed = asyncio.run(_write(str(folder), keys))
    saved = tmp_path / "checkpoint.json"  # what `grpcurl … GetCheckpoint > checkpoint.json` saves
    saved.write_text(json_format.MessageToJson(audit_pb2.GetCheckpointResponse(checkpoint=checkpoint_message(signed))))
    _drop(f"file://{folder}", "alice", {4, 5})
    (folder / CHECKPOINTS).unlink()  # the attacker removes the checkpoints the log kept

    status, out = verify(capsys, str(folder), "--hmac-key", key_texts.hmac_key, "--public-key", pinned(key_texts))
    assert status == 0, "without a checkpoint a cut tail is undetectable; the output must say so"
    assert "checkpoint: none" in out

    public = base64.b64encode(keys.public_key).decode()
    args = ["--hmac-key", key_texts.hmac_key, "--checkpoint", str(saved), "--public-key", public]
    status, out = verify(capsys, str(folder / "entries.jsonl"), *args)
    assert status == 1, out
    assert "FAIL user 'alice': first bad seq 4: truncated below checkpoint" in out
    assert "signature valid under the trusted public key" in out


def test_a_checkpoint_not_signed_by_the_pinned_key_is_not_used(
    dsn: str, key_texts: KeyTexts, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(_write(dsn, key_texts.load()))
    stranger = fresh_key_texts().load().public_key.hex()
    status, out = verify(capsys, dsn, "--hmac-key", key_texts.hmac_key, "--public-key", stranger)
    assert status == 1, out
    assert "NOT USED: checkpoint is signed by a key other than the trusted public key" in out


def test_unusable_input_exits_2_with_the_reason(
    dsn: str, key_texts: KeyTexts, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(_write(dsn, key_texts.load()))
    public = ("--public-key", pinned(key_texts))
    status, out = verify(capsys, dsn, "--hmac-key", fresh_key_texts().hmac_key, *public)
    assert status == 2
    assert "not the one this log was written with" in out
    status, out = verify(capsys, str(tmp_path / "nowhere"), "--hmac-key", key_texts.hmac_key, *public)
    assert status == 2
    assert "no audit log" in out
    (tmp_path / "bad.json").write_text("{}")
    status, out = verify(
        capsys, dsn, "--hmac-key", key_texts.hmac_key, *public, "--checkpoint", str(tmp_path / "bad.json")
    )
    assert status == 2
    assert "not a checkpoint" in out


# -- issue 19, item 7: a forged checkpoint signed with the attacker's own key ----------------


def _cut_and_forge(dsn: str, signed: Checkpoint) -> Ed25519PrivateKey:
    """The attack: cut alice's chain below the checkpoint, then store a checkpoint signed by the attacker's key.

    The attacker has write access to the storage but neither the HMAC key nor the service's signing
    key: alice's head in the old checkpoint is found by its mac (the mac of her stored entry 5), and
    the forged checkpoint signs the heads the cut log now has.
    """
    attacker = Ed25519PrivateKey.generate()

    async def attack() -> None:
        store = raw_store(dsn)
        stored = await store.entries()
        old_tail = next(e for e in stored if e.user_id == "alice" and e.seq == 5)
        new_tail = next(e for e in stored if e.user_id == "alice" and e.seq == 3)
        await store.overwrite([e for e in stored if not (e.user_id == "alice" and e.seq > 3)])
        heads = tuple(
            SignedHead(h.tenant_digest, new_tail.seq, new_tail.mac) if h.mac == old_tail.mac else h
            for h in signed.heads
        )
        created_us = signed.created_us + 1
        checkpoint_id = f"ckpt-{created_us}-f0f0f0f0"
        signature = attacker.sign(checkpoints.signed_bytes(checkpoint_id, created_us, heads))
        forged = Checkpoint(checkpoint_id, created_us, heads, signature, checkpoints.public_bytes(attacker))
        sink = open_sink(dsn)
        await sink.open()
        try:
            await sink.save_checkpoint(forged)
        finally:
            await sink.close()

    asyncio.run(attack())
    return attacker


def test_a_checkpoint_forged_with_the_attackers_key_needs_a_trusted_key_to_verify(
    dsn: str, key_texts: KeyTexts, capsys: pytest.CaptureFixture[str]
) -> None:
    signed = asyncio.run(_write(dsn, key_texts.load()))
    attacker = _cut_and_forge(dsn, signed)

    status, out = verify(capsys, dsn, "--hmac-key", key_texts.hmac_key)
    assert status == 2, f"verify without a trusted key must refuse to answer, not say ok:\n{out}"
    assert "a trusted public key is required" in out
    assert "result: OK" not in out

    status, out = verify(capsys, dsn, "--hmac-key", key_texts.hmac_key, "--public-key", pinned(key_texts))
    assert status == 1, f"the forged checkpoint passed under the pinned key:\n{out}"
    assert "NOT USED: checkpoint is signed by a key other than the trusted public key" in out

    fingerprint = checkpoints.public_key_fingerprint(key_texts.load().public_key)
    status, out = verify(capsys, dsn, "--hmac-key", key_texts.hmac_key, "--public-key-fingerprint", fingerprint)
    assert status == 1, f"the forged checkpoint passed under the pinned fingerprint:\n{out}"
    assert "fingerprint is not the pinned one" in out

    # The attacker's own key, pinned, is what the embedded-key mode amounts to: loudly warned.
    status, out = verify(capsys, dsn, "--hmac-key", key_texts.hmac_key, "--trust-embedded-key")
    assert status == 0, "--trust-embedded-key accepts any signer: that is why it warns"
    assert "WARNING: --trust-embedded-key" in out
    assert "UNTRUSTED" in out
    assert checkpoints.public_bytes(attacker).hex() != pinned(key_texts)


def test_the_genuine_checkpoint_catches_the_cut_under_a_pinned_key_file(
    dsn: str, key_texts: KeyTexts, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    signed = asyncio.run(_write(dsn, key_texts.load()))
    saved = tmp_path / "checkpoint.json"
    saved.write_text(json_format.MessageToJson(audit_pb2.GetCheckpointResponse(checkpoint=checkpoint_message(signed))))
    _cut_and_forge(dsn, signed)
    key_file = tmp_path / "audit-public.key"
    key_file.write_text(pinned(key_texts) + "\n")
    args = ["--hmac-key", key_texts.hmac_key, "--public-key", str(key_file), "--checkpoint", str(saved)]
    status, out = verify(capsys, dsn, *args)
    assert status == 1, out
    assert "FAIL user 'alice': first bad seq 4: truncated below checkpoint" in out
    assert "signature valid under the trusted public key" in out
