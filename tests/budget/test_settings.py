"""Budget settings: DSN schemes, the warning threshold, limits written from settings."""

from __future__ import annotations

import dataclasses

import pytest

from loomflow.budget.ledger.inprocess import InProcessLedger
from loomflow.budget.models import Dimension, Limit, LimitTarget, Usage, Window
from loomflow.budget.service import Settings, build_budget
from loomflow.kernel.config import ConfigError


def settings(**changes: object) -> Settings:
    return dataclasses.replace(Settings(), **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize("dsn", ["sqlite:///budget.db", "mysql://x", "chroma:///x"])
def test_unsupported_dsn_is_a_configuration_error_naming_the_variable(dsn: str) -> None:
    with pytest.raises(ConfigError, match="LOOMFLOW_BUDGET_DSN"):
        build_budget(settings(dsn=dsn))


@pytest.mark.parametrize("fraction", [-0.1, 1.5])
def test_warn_fraction_outside_zero_to_one_is_refused(fraction: float) -> None:
    with pytest.raises(ConfigError, match="WARN_FRACTION"):
        build_budget(settings(warn_fraction=fraction))


def test_empty_and_memory_dsns_are_the_bounded_in_process_ledger() -> None:
    for dsn in ("", "memory://"):
        ledger = build_budget(settings(dsn=dsn, max_users=7, user_idle_ttl_seconds=60)).ledger
        assert isinstance(ledger, InProcessLedger)
        assert (ledger.max_users, ledger.idle_ttl_ms) == (7, 60_000)


@pytest.mark.parametrize(("fraction", "warned"), [(0.5, True), (0.8, False), (0.0, False)])
async def test_warning_threshold_is_configurable(fraction: float, warned: bool) -> None:
    budget = build_budget(settings(warn_fraction=fraction, user_limits="total_tokens/none=100"))
    result = await budget.reserve("alice", "c1", "echo", Usage(input_tokens=60))
    assert bool(result.warnings) is warned


async def test_limits_from_settings_are_written_before_the_first_operation() -> None:
    budget = build_budget(settings(global_limits="cost_micros/monthly=9", user_limits="input_tokens/daily=5"))
    assert await budget.ledger.get_limits(LimitTarget.GLOBAL, "") == []
    await budget.status("alice")
    assert await budget.ledger.get_limits(LimitTarget.GLOBAL, "") == [Limit(Dimension.COST_MICROS, Window.MONTHLY, 9)]
    assert await budget.ledger.get_limits(LimitTarget.DEFAULT_USER, "") == [
        Limit(Dimension.INPUT_TOKENS, Window.DAILY, 5)
    ]
