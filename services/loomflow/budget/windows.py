"""Limit windows computed on read, in UTC: there is no reset job that could be missed.

A window is named by a key (``all``, ``d2026-11-24``, ``m2026-11``); usage is
booked under the keys current at the moment of the operation, and a read looks
only at the current keys, so a new day starts from zero the instant it begins.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from loomflow.budget.models import Moment, Window

Clock = Callable[[], int]
"""Milliseconds since the Unix epoch (UTC). Injected so tests can cross midnight instantly."""

_DAY_MS = 86_400_000


def system_clock() -> int:
    return time.time_ns() // 1_000_000


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def bounds(window: Window, now_ms: int) -> tuple[int, int] | None:
    """``[start, end)`` of the window containing ``now_ms`` in ms; None for WINDOW_NONE (all time)."""
    if window is Window.NONE:
        return None
    day_start = now_ms - now_ms % _DAY_MS
    if window is Window.DAILY:
        return day_start, day_start + _DAY_MS
    today = _utc(day_start)
    start = today.replace(day=1)
    end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return _ms(start), _ms(end)


class Calendar:
    """Turns clock readings into :class:`Moment` values, recomputing keys once per day."""

    def __init__(self, clock: Clock = system_clock) -> None:
        self._clock = clock
        self._day_start = -1
        self._day = ""
        self._month = ""

    def now(self) -> Moment:
        return self.at(self._clock())

    def at(self, now_ms: int) -> Moment:
        day_start = now_ms - now_ms % _DAY_MS
        if day_start != self._day_start:
            when = _utc(day_start)
            # One string object per day, shared by every record booked that day.
            self._day = when.strftime("d%Y-%m-%d")
            self._month = when.strftime("m%Y-%m")
            self._day_start = day_start
        return Moment(now_ms, self._day, self._month)


def recent_window_keys(now_ms: int, days: int, months: int) -> list[str]:
    """``all`` plus the keys of the last ``days`` days and ``months`` months up to ``now_ms``.

    For backends whose day and month buckets expire on their own: these are every bucket
    that can still exist, so erasing a tenant can name its keys instead of scanning for them.
    """
    keys = ["all"]
    when = _utc(now_ms - now_ms % _DAY_MS)
    keys += [(when - timedelta(days=n)).strftime("d%Y-%m-%d") for n in range(days)]
    year, month = when.year, when.month
    for _ in range(months):
        keys.append(f"m{year:04d}-{month:02d}")
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
    return keys
