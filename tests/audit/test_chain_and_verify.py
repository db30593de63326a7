"""The chain's encoding and the pure verifier, without any storage."""

from __future__ import annotations

import dataclasses
import hmac
import os
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf import json_format

from loomflow.audit import checkpoint as checkpoints
from loomflow.audit.chain import entry_mac, hmac_sha256, seal
from loomflow.audit.keys import AuditKeys
from loomflow.audit.models import Checkpoint, Entry, Head, Problem
from loomflow.audit.servicer import checkpoint_message
from loomflow.audit.verify import verify_chain, verify_entries
from loomflow.v1 import audit_pb2

KEY = os.urandom(32)


@pytest.mark.parametrize("key_size", [0, 1, 32, 63, 64, 65, 200])
@pytest.mark.parametrize("message_size", [0, 1, 55, 64, 280, 5000])
def test_keyed_state_hmac_equals_the_standard_library(key_size: int, message_size: int) -> None:
    # The chain's mac reuses precomputed key pads; it must stay byte-for-byte RFC 2104 HMAC-SHA256,
    # because auditors re-implement it with their own libraries (docs/audit.md).
    key, message = os.urandom(key_size), os.urandom(message_size)
    assert hmac_sha256(key, message) == hmac.digest(key, message, "sha256")
    assert hmac_sha256(key, message) == hmac_sha256(key, message)  # the cached states are copied, never consumed


def chain(tenant: str, count: int, key: bytes = KEY) -> list[Entry]:
    entries: list[Entry] = []
    prev = bytes(32)
    for seq in range(1, count + 1):
        entry = seal(
            key,
            seq=seq,
            ts_us=1_700_000_000_000_000 + seq,
            user_id=tenant,
            session_id="s",
            run_id="r",
            actor="agent",
            action="tool_call",
            payload=b"ciphertext-%d" % seq,
            decision_id="d",
            prev_mac=prev,
        )
        entries.append(entry)
        prev = entry.mac
    return entries


COVERED: dict[str, Any] = {
    "seq": 99,
    "ts_us": 1,
    "user_id": "mallory",
    "session_id": "other",
    "run_id": "other",
    "actor": "operator",
    "action": "delete_everything",
    "payload": b"other ciphertext",
    "decision_id": "forged",
    "prev_mac": b"\x01" * 32,
}


@pytest.mark.parametrize("field", list(COVERED))
def test_the_mac_covers_every_field(field: str) -> None:
    entry = chain("alice", 1)[0]
    edited = dataclasses.replace(entry, **{field: COVERED[field]})
    assert entry_mac(KEY, edited) != entry.mac, f"editing {field} leaves the mac valid"


def test_the_encoding_is_unambiguous_across_field_boundaries() -> None:
    entry = chain("alice", 1)[0]
    shifted = dataclasses.replace(entry, session_id="s" + entry.run_id, run_id="")
    assert entry_mac(KEY, shifted) != entry_mac(KEY, dataclasses.replace(entry, session_id="s", run_id="r"))


def test_an_intact_chain_verifies_and_another_key_does_not() -> None:
    entries = chain("alice", 5)
    report = verify_chain(KEY, "alice", entries)
    assert (report.ok, report.entries_checked, report.head) == (True, 5, Head(5, entries[-1].mac))
    wrong = verify_chain(os.urandom(32), "alice", entries)
    assert (wrong.problem, wrong.first_bad_seq) == (Problem.MAC_MISMATCH, 1)


def test_entries_stored_out_of_order_are_reported_as_reordered() -> None:
    entries = chain("alice", 5)
    entries[2], entries[3] = entries[3], entries[2]  # storage order 1 2 4 3 5, seqs untouched
    report = verify_chain(KEY, "alice", entries)
    assert (report.problem, report.first_bad_seq) == (Problem.REORDERED, 3)


def test_a_repeated_entry_is_reported_where_the_next_was_expected() -> None:
    entries = chain("alice", 3)
    report = verify_chain(KEY, "alice", [*entries, entries[2]])
    assert (report.problem, report.first_bad_seq) == (Problem.DUPLICATE, 4)


def test_an_entry_naming_another_tenant_is_foreign() -> None:
    entries = chain("alice", 3)
    report = verify_chain(KEY, "alice", [*entries[:2], chain("bob", 3)[2]])
    assert (report.problem, report.first_bad_seq) == (Problem.FOREIGN, 3)


def _checkpoint(keys: AuditKeys, heads: dict[str, Head]) -> Checkpoint:
    return checkpoints.sign(KEY, keys.signing_key, heads, 1_700_000_000_123_456)


def test_a_cut_and_rewritten_tail_differs_from_the_checkpoint(keys: AuditKeys) -> None:
    original = chain("alice", 5)
    signed = _checkpoint(keys, {"alice": Head(5, original[-1].mac)})
    rewritten = _relink(original[:3], 2)  # entries 4 and 5 cut, then two others appended
    report = verify_chain(KEY, "alice", rewritten, signed)
    assert (report.problem, report.first_bad_seq) == (Problem.CHECKPOINT_MISMATCH, 5)


def _relink(prefix: list[Entry], extra: int) -> list[Entry]:
    entries = list(prefix)
    for _ in range(extra):
        last = entries[-1]
        entries.append(
            seal(
                KEY,
                seq=last.seq + 1,
                ts_us=last.ts_us + 1000,
                user_id=last.user_id,
                session_id="s",
                run_id="r",
                actor="attacker",
                action="rewrite",
                payload=b"",
                decision_id="",
                prev_mac=last.mac,
            )
        )
    return entries


def test_a_chain_the_log_lost_entirely_is_reported_by_its_digest(keys: AuditKeys) -> None:
    alice, bob = chain("alice", 2), chain("bob", 2)
    signed = _checkpoint(keys, {"alice": Head(2, alice[-1].mac), "bob": Head(2, bob[-1].mac)})
    reports = verify_entries(KEY, alice, signed)
    lost = [r for r in reports if r.tenant is None]
    assert len(lost) == 1
    assert (lost[0].problem, lost[0].first_bad_seq) == (Problem.TRUNCATED, 1)
    assert lost[0].tenant_digest in {h.tenant_digest for h in signed.heads}


def test_a_checkpoint_survives_its_json_and_grpcurl_forms(keys: AuditKeys) -> None:
    signed = _checkpoint(keys, {"alice": Head(2, os.urandom(32)), "bob": Head(7, os.urandom(32))})
    assert checkpoints.from_json(checkpoints.to_json(signed)) == signed
    as_grpcurl_prints_it = json_format.MessageToJson(
        audit_pb2.GetCheckpointResponse(checkpoint=checkpoint_message(signed))
    )
    parsed = checkpoints.from_json(as_grpcurl_prints_it)
    assert parsed == signed
    assert checkpoints.signature_problem(parsed, trusted=keys.public_key) == ""


def test_an_edited_checkpoint_fails_its_signature(keys: AuditKeys) -> None:
    signed = _checkpoint(keys, {"alice": Head(5, os.urandom(32))})
    lowered = dataclasses.replace(signed, heads=(dataclasses.replace(signed.heads[0], seq=3),))
    assert checkpoints.signature_problem(lowered, trusted=None) == "checkpoint signature is invalid"
    other = AuditKeys(KEY, Ed25519PrivateKey.generate(), os.urandom(32))
    assert "other than the trusted" in checkpoints.signature_problem(signed, trusted=other.public_key)
