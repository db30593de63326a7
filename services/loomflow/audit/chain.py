"""The chain: a canonical byte encoding of an entry and its HMAC-SHA256 link.

``mac = HMAC-SHA256(key, prev_mac ‖ canonical(entry))``, where ``canonical``
covers every field except the mac itself: seq, ts, user_id, session_id, run_id,
actor, action, the *encrypted* payload bytes (so crypto-shredding the payload
key leaves the chain verifiable), decision_id and prev_mac.

The encoding is versioned and unambiguous: a domain tag, seq and ts as 8-byte
big-endian integers, then every text and byte field as a 4-byte big-endian
length followed by its bytes (text is UTF-8), and prev_mac as 32 raw bytes.
An auditor can re-implement it from this paragraph alone (see docs/audit.md).
"""

from __future__ import annotations

import hmac
import struct

from loomflow.audit.models import GENESIS_MAC, MAC_SIZE, Entry

ENTRY_TAG = b"loomflow.audit.entry.v1\x00"
TENANT_DIGEST_TAG = b"loomflow.audit.tenant-digest.v1\x00"
FINGERPRINT_TAG = b"loomflow.audit.key-fingerprint.v1\x00"

_pack_ints = struct.Struct(">QQ").pack
_pack_len = struct.Struct(">I").pack


def canonical(
    seq: int,
    ts_us: int,
    user_id: str,
    session_id: str,
    run_id: str,
    actor: str,
    action: str,
    payload: bytes,
    decision_id: str,
    prev_mac: bytes,
) -> bytes:
    """The bytes the mac covers (besides the leading prev_mac). Keep in step with docs/audit.md."""
    if len(prev_mac) != MAC_SIZE:
        raise ValueError(f"prev_mac must be {MAC_SIZE} bytes, got {len(prev_mac)}")
    user = user_id.encode()
    session = session_id.encode()
    run = run_id.encode()
    who = actor.encode()
    what = action.encode()
    decision = decision_id.encode()
    return b"".join(
        (
            ENTRY_TAG,
            _pack_ints(seq, ts_us),
            _pack_len(len(user)),
            user,
            _pack_len(len(session)),
            session,
            _pack_len(len(run)),
            run,
            _pack_len(len(who)),
            who,
            _pack_len(len(what)),
            what,
            _pack_len(len(payload)),
            payload,
            _pack_len(len(decision)),
            decision,
            prev_mac,
        )
    )


def link_mac(
    key: bytes,
    seq: int,
    ts_us: int,
    user_id: str,
    session_id: str,
    run_id: str,
    actor: str,
    action: str,
    payload: bytes,
    decision_id: str,
    prev_mac: bytes,
) -> bytes:
    """HMAC-SHA256(key, prev_mac ‖ canonical(...))."""
    body = canonical(seq, ts_us, user_id, session_id, run_id, actor, action, payload, decision_id, prev_mac)
    return hmac.digest(key, prev_mac + body, "sha256")


def entry_mac(key: bytes, entry: Entry) -> bytes:
    """The mac an entry should carry, recomputed from its other fields."""
    return link_mac(
        key,
        entry.seq,
        entry.ts_us,
        entry.user_id,
        entry.session_id,
        entry.run_id,
        entry.actor,
        entry.action,
        entry.payload,
        entry.decision_id,
        entry.prev_mac,
    )


def seal(
    key: bytes,
    *,
    seq: int,
    ts_us: int,
    user_id: str,
    session_id: str,
    run_id: str,
    actor: str,
    action: str,
    payload: bytes,
    decision_id: str,
    prev_mac: bytes = GENESIS_MAC,
) -> Entry:
    """A new entry linked to ``prev_mac``, with its mac computed."""
    mac = link_mac(key, seq, ts_us, user_id, session_id, run_id, actor, action, payload, decision_id, prev_mac)
    return Entry(seq, ts_us, user_id, session_id, run_id, actor, action, payload, decision_id, prev_mac, mac)


def tenant_digest(key: bytes, tenant: str) -> str:
    """How a checkpoint names a tenant: a keyed digest, so a checkpoint leaks no tenant names."""
    return hmac.digest(key, TENANT_DIGEST_TAG + tenant.encode(), "sha256").hex()


def key_fingerprint(key: bytes) -> str:
    """A short public fingerprint of a secret key: tells a wrong key apart without revealing it."""
    return hmac.digest(key, FINGERPRINT_TAG, "sha256")[:16].hex()
