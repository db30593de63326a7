"""Checkpoints: an Ed25519 signature over every chain head at one instant.

A chain alone cannot reveal that its tail was cut off: the shorter chain still
links. A checkpoint signs (tenant digest, seq, mac) for every chain, so a later
verification against it detects truncation below the signed head. Heads are
named by a keyed digest of the tenant (:func:`loomflow.audit.chain.tenant_digest`),
so a checkpoint can be handed to an auditor without listing tenant names.

Signed bytes: ``"loomflow.audit.checkpoint.v1\\0" ‖ len(id) ‖ id ‖ created_us (8) ‖
count (4) ‖ for each head sorted by digest: len(digest) ‖ digest ‖ seq (8) ‖ mac (32)``
(lengths and integers big-endian; lengths 4 bytes).

The JSON form is the protobuf JSON of ``loomflow.v1.Checkpoint`` (bytes in
base64, ``created_at`` in RFC 3339), so a checkpoint fetched with grpcurl and
one read from a sink are the same document.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import re
import secrets
import struct
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from loomflow.audit.chain import tenant_digest
from loomflow.audit.models import MAC_SIZE, Checkpoint, Head, SignedHead

log = logging.getLogger("loomflow.audit")

CHECKPOINT_TAG = b"loomflow.audit.checkpoint.v1\x00"


def now_us() -> int:
    return time.time_ns() // 1000


def signed_bytes(checkpoint_id: str, created_us: int, heads: tuple[SignedHead, ...]) -> bytes:
    ident = checkpoint_id.encode()
    parts = [CHECKPOINT_TAG, struct.pack(">I", len(ident)), ident, struct.pack(">QI", created_us, len(heads))]
    for head in sorted(heads, key=lambda h: h.tenant_digest):
        digest = head.tenant_digest.encode()
        parts += [struct.pack(">I", len(digest)), digest, struct.pack(">Q", head.seq), head.mac]
    return b"".join(parts)


def public_bytes(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_key_fingerprint(public: bytes) -> str:
    """The fingerprint an auditor pins: SHA-256 of the raw 32-byte Ed25519 public key, in hex."""
    return hashlib.sha256(public).hexdigest()


def sign(hmac_key: bytes, signing_key: Ed25519PrivateKey, heads: Mapping[str, Head], created_us: int) -> Checkpoint:
    """Signs the heads of the given chains (tenant → head); empty chains are left out."""
    signed = tuple(
        sorted(
            (SignedHead(tenant_digest(hmac_key, tenant), head.seq, head.mac) for tenant, head in heads.items()),
            key=lambda h: h.tenant_digest,
        )
    )
    signed = tuple(h for h in signed if h.seq > 0)
    checkpoint_id = f"ckpt-{created_us}-{secrets.token_hex(4)}"
    signature = signing_key.sign(signed_bytes(checkpoint_id, created_us, signed))
    return Checkpoint(checkpoint_id, created_us, signed, signature, public_bytes(signing_key))


def signature_problem(checkpoint: Checkpoint, trusted: bytes | None) -> str:
    """Empty when the checkpoint is signed by ``trusted`` (or, without one, by its own key)."""
    if trusted is not None and checkpoint.public_key != trusted:
        return "checkpoint is signed by a key other than the trusted public key"
    try:
        public = Ed25519PublicKey.from_public_bytes(checkpoint.public_key)
        public.verify(
            checkpoint.signature, signed_bytes(checkpoint.checkpoint_id, checkpoint.created_us, checkpoint.heads)
        )
    except (InvalidSignature, ValueError):
        return "checkpoint signature is invalid"
    return ""


def same_heads(checkpoint: Checkpoint | None, heads: Mapping[str, Head], hmac_key: bytes) -> bool:
    """Whether a new checkpoint would sign exactly what ``checkpoint`` already signs."""
    if checkpoint is None:
        return not any(h.seq for h in heads.values())
    current = {tenant_digest(hmac_key, t): (h.seq, h.mac) for t, h in heads.items() if h.seq}
    return current == {h.tenant_digest: (h.seq, h.mac) for h in checkpoint.heads}


# -- JSON (the protobuf JSON mapping of loomflow.v1.Checkpoint) ---------------


def _rfc3339(created_us: int) -> str:
    moment = datetime.fromtimestamp(created_us // 1_000_000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{created_us % 1_000_000:06d}Z"


_RFC3339 = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)")


def _parse_rfc3339(text: str) -> int:
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise ValueError(f"created_at {text!r} is not an RFC 3339 time")
    moment = datetime.fromisoformat(match[1] + ("+00:00" if match[3] == "Z" else match[3]))
    return int(moment.timestamp()) * 1_000_000 + int((match[2] or "").ljust(6, "0")[:6])


def to_dict(checkpoint: Checkpoint) -> dict[str, Any]:
    b64 = base64.b64encode
    return {
        "checkpoint_id": checkpoint.checkpoint_id,
        "created_at": _rfc3339(checkpoint.created_us),
        "heads": [
            {"tenant_digest": h.tenant_digest, "seq": str(h.seq), "mac": b64(h.mac).decode()} for h in checkpoint.heads
        ],
        "signature": b64(checkpoint.signature).decode(),
        "public_key": b64(checkpoint.public_key).decode(),
    }


def to_json(checkpoint: Checkpoint) -> str:
    return json.dumps(to_dict(checkpoint), separators=(",", ":"))


def _field(data: Mapping[str, Any], snake: str) -> Any:
    camel = snake.split("_")[0] + "".join(p.title() for p in snake.split("_")[1:])
    return data.get(snake, data.get(camel))


def from_dict(data: Mapping[str, Any]) -> Checkpoint:
    """Reads a checkpoint from its JSON form, snake_case or camelCase, optionally wrapped
    as ``{"checkpoint": …}`` (a GetCheckpoint response). Raises ValueError."""
    if "checkpoint" in data and isinstance(data["checkpoint"], Mapping):
        data = data["checkpoint"]
    try:
        heads = tuple(
            SignedHead(str(_field(h, "tenant_digest")), int(h["seq"]), base64.b64decode(h["mac"]))
            for h in data.get("heads", ())
        )
        checkpoint = Checkpoint(
            checkpoint_id=str(_field(data, "checkpoint_id")),
            created_us=_parse_rfc3339(str(_field(data, "created_at"))),
            heads=heads,
            signature=base64.b64decode(data["signature"]),
            public_key=base64.b64decode(_field(data, "public_key")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a checkpoint: {exc}") from None
    if any(len(h.mac) != MAC_SIZE for h in heads):
        raise ValueError("not a checkpoint: a head's mac is not 32 bytes")
    return checkpoint


def from_json(text: str) -> Checkpoint:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not a checkpoint: {exc}") from None
    if not isinstance(data, Mapping):
        raise ValueError("not a checkpoint: expected a JSON object")
    return from_dict(data)


class Checkpointer:
    """Signs a checkpoint every ``interval`` seconds when any chain head moved, and on demand."""

    def __init__(self, interval: float, create_if_changed: Callable[[], Awaitable[object]]) -> None:
        self._interval = interval
        self._create_if_changed = create_if_changed
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._interval > 0 and self._task is None:
            self._task = asyncio.create_task(self._run(), name="audit-checkpointer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self._create_if_changed()
            except Exception:  # the next tick retries; appends are unaffected
                log.exception("periodic audit checkpoint failed")
