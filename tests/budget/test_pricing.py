"""The price table: longest-prefix matching, cache multipliers, exact micro-USD, loud fallback."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from loomflow.budget.models import Usage
from loomflow.budget.pricing import BUILTIN_PRICES, PriceTable
from loomflow.kernel.config import ConfigError


def test_longest_prefix_wins() -> None:
    table = PriceTable.load()
    assert table.resolve("gpt-4o-mini-2024-07-18").name == "gpt-4o-mini"
    assert table.resolve("gpt-4o-2024-11-20").name == "gpt-4o"
    assert table.resolve("gpt-4.1-nano").name == "gpt-4.1-nano"
    assert table.resolve("claude-opus-4-5-20251101").name == "claude-opus-4-5"
    assert table.resolve("claude-opus-4-20250514").name == "claude-opus-4"
    assert table.resolve("o1-pro").name == "o1-pro", "o1-pro must not be priced as the cheaper o1"
    assert table.resolve("Claude-Sonnet-4-5").name == "claude-sonnet-4", "model names match case-insensitively"


def test_echo_is_free_and_says_so_explicitly() -> None:
    assert BUILTIN_PRICES["echo"] == {"input": "0", "output": "0"}
    table = PriceTable.load()
    charge = table.charge(table.resolve("echo"), Usage(input_tokens=10**6, output_tokens=10**6))
    assert (charge.cost_micros, charge.priced_as) == (0, "echo")


def test_unknown_model_is_charged_the_fallback_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    table = PriceTable.load(fallback_input=20, fallback_output=80)
    with caplog.at_level(logging.WARNING, logger="loomflow.budget.pricing"):
        price = table.resolve("mystery-model-9")
        table.resolve("mystery-model-9")
    charge = table.charge(price, Usage(input_tokens=1_000, output_tokens=1_000))
    assert charge.cost_micros == 1_000 * 20 + 1_000 * 80, "never a silent zero"
    assert charge.priced_as == ""
    warnings = [r for r in caplog.records if "mystery-model-9" in r.getMessage()]
    assert len(warnings) == 1, "warned once per model name, not once per call"


def test_cost_is_rounded_up_to_whole_micro_usd_once_per_call() -> None:
    table = PriceTable.load()
    mini = table.resolve("gpt-4o-mini")  # 0.15 / 0.6 USD per million tokens
    assert table.charge(mini, Usage(input_tokens=1)).cost_micros == 1
    assert table.charge(mini, Usage(input_tokens=20)).cost_micros == 3
    assert table.charge(mini, Usage(input_tokens=21)).cost_micros == 4  # 3.15 -> 4
    assert table.charge(mini, Usage(input_tokens=10**6, output_tokens=10**6)).cost_micros == 750_000


def test_cache_multipliers_price_cached_and_written_tokens() -> None:
    table = PriceTable.load()
    haiku = table.resolve("claude-3-5-haiku")  # 0.8 in, reads 0.1x, writes 1.25x
    usage = Usage(input_tokens=1_000_000, cached_input_tokens=500_000, cache_write_tokens=250_000)
    assert table.charge(haiku, usage).cost_micros == 250_000 * 0.8 + 500_000 * 0.08 + 250_000 * 1.0
    gpt = table.resolve("gpt-4.1")  # 2 in, cached 0.25x, no write surcharge
    usage = Usage(input_tokens=1_000, cached_input_tokens=400, cache_write_tokens=100)
    assert table.charge(gpt, usage).cost_micros == 500 * 2 + 400 * 0.5 + 100 * 2


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_price_file_adds_and_overrides_models(tmp_path: Path, suffix: str) -> None:
    document = {
        "models": {
            "house-model": {"input": 1.5, "output": 6, "cached_input_multiplier": 0.1},
            "gpt-4o": {"input": 1, "output": 2},
        },
        "fallback": {"input": 99, "output": 99},
    }
    path = tmp_path / f"prices{suffix}"
    path.write_text(json.dumps(document))  # JSON is also valid YAML
    table = PriceTable.load(str(path))
    assert table.charge(table.resolve("house-model-v2"), Usage(input_tokens=2, output_tokens=1)).cost_micros == 9
    assert table.charge(table.resolve("gpt-4o"), Usage(input_tokens=1)).cost_micros == 1
    assert table.resolve("claude-3-haiku").name == "claude-3-haiku", "built-in entries stay unless replaced"
    assert table.charge(table.resolve("nobody"), Usage(input_tokens=1)).cost_micros == 99


def test_price_file_can_replace_the_builtin_table(tmp_path: Path) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text("replace_builtin: true\nmodels:\n  only: {input: 1, output: 1}\n")
    assert set(PriceTable.load(str(path)).entries) == {"only"}


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("models:\n  free: {input: 0}\n", "missing output"),
        ("models:\n  neg: {input: -1, output: 1}\n", "non-negative"),
        ("models:\n  'a:b': {input: 1, output: 1}\n", "must match"),
        ("models:\n  m: {input: 1, output: 1, discount: 2}\n", "unknown keys"),
        ("currency: EUR\n", "unknown keys"),
        ("- just\n- a list\n", "mapping"),
    ],
)
def test_bad_price_files_are_refused_with_a_reason(tmp_path: Path, text: str, complaint: str) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=complaint):
        PriceTable.load(str(path))


def test_missing_price_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="price file"):
        PriceTable.load(str(tmp_path / "absent.yaml"))
