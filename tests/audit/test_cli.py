"""`loomflow audit verify`: an auditor verifies a log offline, on every sink, with the exit
status telling intact (0), tampered (1) and unusable input (2) apart."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import pytest
from google.protobuf import json_format

from loomflow import cli
from loomflow.audit.keys import AuditKeys
from loomflow.audit.models import Checkpoint, Draft
from loomflow.audit.servicer import checkpoint_message
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


def test_an_intact_log_verifies(dsn: str, key_texts: KeyTexts, capsys: pytest.CaptureFixture[str]) -> None:
    asyncio.run(_write(dsn, key_texts.load()))
    status, out = verify(capsys, dsn, "--hmac-key", key_texts.hmac_key)
    assert status == 0, out
    assert "2 chains, 10 entries" in out
    assert "result: OK" in out


def test_a_deleted_entry_fails_with_its_seq(dsn: str, key_texts: KeyTexts, capsys: pytest.CaptureFixture[str]) -> None:
    asyncio.run(_write(dsn, key_texts.load()))
    _drop(dsn, "alice", {3})
    status, out = verify(capsys, dsn, "--hmac-key", key_texts.hmac_key)
    assert status == 1, out
    assert "FAIL user 'alice': first bad seq 3: seq gap" in out
    status, out = verify(capsys, dsn, "--hmac-key", key_texts.hmac_key, "--user-id", "bob", "--json")
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

    status, out = verify(capsys, str(folder), "--hmac-key", key_texts.hmac_key)
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
    status, out = verify(capsys, dsn, "--hmac-key", fresh_key_texts().hmac_key)
    assert status == 2
    assert "not the one this log was written with" in out
    status, out = verify(capsys, str(tmp_path / "nowhere"), "--hmac-key", key_texts.hmac_key)
    assert status == 2
    assert "no audit log" in out
    (tmp_path / "bad.json").write_text("{}")
    status, out = verify(capsys, dsn, "--hmac-key", key_texts.hmac_key, "--checkpoint", str(tmp_path / "bad.json"))
    assert status == 2
    assert "not a checkpoint" in out
