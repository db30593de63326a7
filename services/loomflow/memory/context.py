"""Fitting GetContext's parts into one message together.

Each part of a GetContext answer is built as its own RPC builds it: the same records, in that RPC's
order, at most the part's size. The whole answer must fit one gRPC message, so when the parts
together are larger, each keeps the leading records that fit in its share of the room: parts
smaller than an equal share keep everything and leave the rest to the others (a max-min fair
split), so one part's large records never crowd out a small part.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from google.protobuf.message import Message


def entry_bytes(message: Message) -> int:
    """The encoded size of one entry of a repeated message field numbered 1 to 15: tag, length, body."""
    size = message.ByteSize()
    return 1 + max(1, (size.bit_length() + 6) // 7) + size


def shares(wanted: Sequence[int], room: int) -> list[int]:
    """Bytes each part may keep of ``room`` when the parts want ``wanted`` bytes (max-min fair)."""
    given = [0] * len(wanted)
    left = room
    by_size = sorted(range(len(wanted)), key=lambda i: wanted[i])
    for position, index in enumerate(by_size):
        given[index] = min(wanted[index], left // (len(by_size) - position))
        left -= given[index]
    return given


def leading(sizes: Sequence[int], room: int) -> int:
    """How many of the leading entries (their sizes in bytes) fit in ``room``."""
    used = 0
    for count, size in enumerate(sizes):
        used += size
        if used > room:
            return count
    return len(sizes)


def fit_parts(parts: Sequence[Any], room: int) -> list[int]:
    """Cuts each repeated message field (numbered 1 to 15) to its share of ``room`` from its end;
    returns how many entries each kept."""
    sizes = [[entry_bytes(entry) for entry in part] for part in parts]
    kept: list[int] = []
    for part, entry_sizes, share in zip(parts, sizes, shares([sum(s) for s in sizes], room), strict=True):
        count = leading(entry_sizes, share)
        del part[count:]
        kept.append(count)
    return kept
