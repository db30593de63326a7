"""Windows computed on read, in UTC."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from loomflow.budget.core import parse_limit_spec
from loomflow.budget.models import Dimension, Limit, Window
from loomflow.budget.windows import Calendar, bounds
from loomflow.kernel.config import ConfigError


def ms(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> int:
    return int(datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp() * 1000)


def test_keys_change_exactly_at_utc_midnight_and_month_start() -> None:
    calendar = Calendar(lambda: 0)
    before = calendar.at(ms(2025, 12, 31, 23, 59, 59) + 999)
    after = calendar.at(ms(2026, 1, 1))
    assert (before.day, before.month) == ("d2025-12-31", "m2025-12")
    assert (after.day, after.month) == ("d2026-01-01", "m2026-01")


@pytest.mark.parametrize(
    ("window", "now", "expected"),
    [
        (Window.DAILY, ms(2024, 2, 29, 13), (ms(2024, 2, 29), ms(2024, 3, 1))),
        (Window.MONTHLY, ms(2024, 2, 29, 13), (ms(2024, 2, 1), ms(2024, 3, 1))),
        (Window.MONTHLY, ms(2025, 12, 15), (ms(2025, 12, 1), ms(2026, 1, 1))),
        (Window.NONE, ms(2025, 12, 15), None),
    ],
)
def test_window_bounds(window: Window, now: int, expected: tuple[int, int] | None) -> None:
    assert bounds(window, now) == expected


def test_limit_spec_from_settings() -> None:
    assert parse_limit_spec("total_tokens/daily=100, cost_micros/monthly=5000000,wall_clock_ms=9", "opt") == [
        Limit(Dimension.TOTAL_TOKENS, Window.DAILY, 100),
        Limit(Dimension.COST_MICROS, Window.MONTHLY, 5_000_000),
        Limit(Dimension.WALL_CLOCK_MS, Window.NONE, 9),
    ]
    for bad in ["tokens/daily=1", "total_tokens/weekly=1", "total_tokens/daily=x", "input_tokens=1,input_tokens=2"]:
        with pytest.raises(ConfigError):
            parse_limit_spec(bad, "LOOMFLOW_BUDGET_USER_LIMITS")
