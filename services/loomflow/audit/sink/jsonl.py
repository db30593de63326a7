"""The JSONL line format of the file sink: one entry per line, ASCII, fixed key order.

``{"seq":3,"ts":1732456789123456,"user_id":"alice","session_id":"s1","run_id":"r1",
"actor":"agent","action":"tool_call","payload":"<base64 ciphertext>","decision_id":"",
"prev_mac":"<64 hex>","mac":"<64 hex>"}``

``ts`` is microseconds since the Unix epoch. The line is only a container: the
mac is computed over the canonical encoding of the fields (chain.py), so an
auditor's tool may re-serialise lines freely without breaking verification.
"""

from __future__ import annotations

import binascii
from collections.abc import Iterator
from json.encoder import encode_basestring_ascii
from typing import Any, BinaryIO

import orjson

from loomflow.audit.models import MAC_SIZE, Entry


def encode(entry: Entry) -> bytes:
    s = encode_basestring_ascii
    return (
        f'{{"seq":{entry.seq},"ts":{entry.ts_us},"user_id":{s(entry.user_id)},'
        f'"session_id":{s(entry.session_id)},"run_id":{s(entry.run_id)},"actor":{s(entry.actor)},'
        f'"action":{s(entry.action)},"payload":"{binascii.b2a_base64(entry.payload, newline=False).decode()}",'
        f'"decision_id":{s(entry.decision_id)},"prev_mac":"{entry.prev_mac.hex()}","mac":"{entry.mac.hex()}"}}\n'
    ).encode()


def decode(raw: bytes) -> Entry:
    """Parses one line; raises ValueError (with what is wrong) for anything but a well-formed entry."""
    try:
        data: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ValueError("not JSON") from None
    if type(data) is not dict:
        raise ValueError("not a JSON object")
    try:
        seq, ts = data["seq"], data["ts"]
        user_id, session_id, run_id = data["user_id"], data["session_id"], data["run_id"]
        actor, action, decision_id = data["actor"], data["action"], data["decision_id"]
        payload = binascii.a2b_base64(data["payload"], strict_mode=True)
        prev_mac = bytes.fromhex(data["prev_mac"])
        mac = bytes.fromhex(data["mac"])
    except KeyError as exc:
        raise ValueError(f"missing field {exc}") from None
    except (TypeError, ValueError, binascii.Error) as exc:
        raise ValueError(f"malformed field ({exc})") from None
    if type(seq) is not int or type(ts) is not int or seq < 1 or ts < 0:
        raise ValueError("seq and ts must be non-negative integers")
    if not (
        type(user_id) is str
        and type(session_id) is str
        and type(run_id) is str
        and type(actor) is str
        and type(action) is str
        and type(decision_id) is str
    ):
        raise ValueError("text fields must be strings")
    if len(prev_mac) != MAC_SIZE or len(mac) != MAC_SIZE:
        raise ValueError("macs must be 32 bytes")
    return Entry(seq, ts, user_id, session_id, run_id, actor, action, payload, decision_id, prev_mac, mac)


def lines(stream: BinaryIO, limit: int | None = None, chunk: int = 8 << 20) -> Iterator[tuple[int, bytes, bool]]:
    """(offset, line without its newline, complete) for each line of a stream, up to ``limit``
    bytes. Only the last line can be incomplete (no newline: a torn write).

    Reads big chunks and splits them in C: verification reads millions of lines."""
    offset = 0
    carry = b""
    remaining = limit
    while True:
        size = chunk if remaining is None else min(chunk, remaining)
        block = stream.read(size) if size > 0 else b""
        if remaining is not None:
            remaining -= len(block)
        if not block:
            if carry:
                yield offset, carry, False
            return
        parts = (carry + block).split(b"\n")
        carry = parts.pop()
        for part in parts:
            yield offset, part, True
            offset += len(part) + 1
