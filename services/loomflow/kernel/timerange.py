"""A request's optional [from, to) pair of ``google.protobuf.Timestamp`` fields, checked once.

Times before 1970 or after 9999-12-31 (the Timestamp type's own limit) are INVALID_ARGUMENT: the
stores keep Unix times in 64-bit integers, and a time past that would overflow them (an INTERNAL
error instead of a field violation).
"""

from __future__ import annotations

from typing import Any

from loomflow.kernel.errors import InvalidArgument

MAX_SECONDS = 253_402_300_799
"""9999-12-31T23:59:59Z, the last second a google.protobuf.Timestamp may hold."""


def time_range(message: Any, low: str, high: str, per_second: int) -> tuple[int, int]:
    """``(low, high)`` of ``message`` in units of ``1/per_second`` s (1000: ms, 1_000_000: µs);
    0 for a field that is not set (unbounded). ``high`` must be after ``low`` when both are set."""
    bounds: list[int] = []
    for name in (low, high):
        if not message.HasField(name):
            bounds.append(0)
            continue
        stamp = getattr(message, name)
        if not (0 <= stamp.seconds <= MAX_SECONDS and 0 <= stamp.nanos < 1_000_000_000):
            raise InvalidArgument.field(name, "must be a time from 1970-01-01 to 9999-12-31", f"{name}.in_range")
        bounds.append(stamp.seconds * per_second + stamp.nanos * per_second // 1_000_000_000)
    start, end = bounds
    if start and end and end <= start:
        raise InvalidArgument.field(high, f"must be after {low}", f"{high}.after_{low}")
    return start, end
