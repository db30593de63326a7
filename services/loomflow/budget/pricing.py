"""The per-model price table: longest-prefix matching, cache multipliers, integral micro-USD.

Prices are in USD per million tokens, which is exactly micro-USD per token. The
cost of a call is computed in integer pico-USD and rounded *up* once, to whole
micro-USD, so the ledger never under-charges and every total is exact.

A model the table does not know is priced at the configurable fallback (by default
as expensive as the most expensive common model), with a logged warning and
``priced_as = ""`` on the charge: never a silent zero. A price of zero is legitimate
(the ``echo`` model) but must be written in the table explicitly.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from loomflow.budget.models import Charge, Usage
from loomflow.kernel.config import ConfigError

log = logging.getLogger("loomflow.budget.pricing")

_PICO_PER_MICRO = 1_000_000
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
"""Entry names travel inside reservation ids, so they keep to a small, delimiter-free alphabet."""

_ANTHROPIC = {"cached_input_multiplier": "0.1", "cache_write_multiplier": "1.25"}

# USD per million tokens, as the providers list them. Check current prices and
# override with a price file (`--budget-price-file`) when they change.
BUILTIN_PRICES: dict[str, dict[str, str]] = {
    "echo": {"input": "0", "output": "0"},
    # Anthropic: cache reads cost 0.1x the input price, 5-minute cache writes 1.25x.
    "claude-opus-4-5": {"input": "5", "output": "25", **_ANTHROPIC},
    "claude-opus-4-1": {"input": "15", "output": "75", **_ANTHROPIC},
    "claude-opus-4": {"input": "15", "output": "75", **_ANTHROPIC},
    "claude-3-opus": {"input": "15", "output": "75", **_ANTHROPIC},
    "claude-sonnet-4": {"input": "3", "output": "15", **_ANTHROPIC},
    "claude-3-7-sonnet": {"input": "3", "output": "15", **_ANTHROPIC},
    "claude-3-5-sonnet": {"input": "3", "output": "15", **_ANTHROPIC},
    "claude-haiku-4-5": {"input": "1", "output": "5", **_ANTHROPIC},
    "claude-3-5-haiku": {"input": "0.8", "output": "4", **_ANTHROPIC},
    "claude-3-haiku": {"input": "0.25", "output": "1.25", **_ANTHROPIC},
    # OpenAI: cached input is discounted, cache writes cost nothing extra.
    "gpt-5": {"input": "1.25", "output": "10", "cached_input_multiplier": "0.1"},
    "gpt-5-pro": {"input": "15", "output": "120"},
    "gpt-5-mini": {"input": "0.25", "output": "2", "cached_input_multiplier": "0.1"},
    "gpt-5-nano": {"input": "0.05", "output": "0.4", "cached_input_multiplier": "0.1"},
    "gpt-4.5": {"input": "75", "output": "150", "cached_input_multiplier": "0.5"},
    "gpt-4.1": {"input": "2", "output": "8", "cached_input_multiplier": "0.25"},
    "gpt-4.1-mini": {"input": "0.4", "output": "1.6", "cached_input_multiplier": "0.25"},
    "gpt-4.1-nano": {"input": "0.1", "output": "0.4", "cached_input_multiplier": "0.25"},
    "gpt-4o": {"input": "2.5", "output": "10", "cached_input_multiplier": "0.5"},
    "gpt-4o-mini": {"input": "0.15", "output": "0.6", "cached_input_multiplier": "0.5"},
    "gpt-4-turbo": {"input": "10", "output": "30"},
    "gpt-4": {"input": "30", "output": "60"},
    "gpt-3.5-turbo": {"input": "0.5", "output": "1.5"},
    "o1": {"input": "15", "output": "60", "cached_input_multiplier": "0.5"},
    "o1-pro": {"input": "150", "output": "600"},
    "o1-mini": {"input": "1.1", "output": "4.4", "cached_input_multiplier": "0.5"},
    "o3": {"input": "2", "output": "8", "cached_input_multiplier": "0.25"},
    "o3-pro": {"input": "20", "output": "80"},
    "o3-mini": {"input": "1.1", "output": "4.4", "cached_input_multiplier": "0.5"},
    "o4-mini": {"input": "1.1", "output": "4.4", "cached_input_multiplier": "0.25"},
}


def _decimal(value: Any, where: str) -> Decimal:
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise ConfigError(f"{where}: {value!r} is not a number") from None
    if not number.is_finite() or number < 0:
        raise ConfigError(f"{where}: {value!r} must be a non-negative number")
    return number


def _pico(usd_per_mtok: Decimal) -> int:
    """USD per million tokens → integer pico-USD per token, rounded up."""
    scaled = usd_per_mtok * _PICO_PER_MICRO
    whole = int(scaled)
    return whole + (1 if scaled > whole else 0)


@dataclass(frozen=True, slots=True)
class Price:
    """One entry of the table. Rates are pico-USD per token (1 USD/Mtok = 10**6)."""

    name: str
    input: int
    output: int
    cached_input: int
    cache_write: int

    @classmethod
    def parse(cls, name: str, spec: Mapping[str, Any], where: str) -> Price:
        if not isinstance(spec, Mapping):
            raise ConfigError(f"{where}: expected a mapping with input and output prices")
        missing = [key for key in ("input", "output") if key not in spec]
        if missing:
            # A zero price must be explicit: a forgotten key must not mean "free".
            raise ConfigError(f"{where}: missing {', '.join(missing)} (USD per million tokens; write 0 for free)")
        unknown = set(spec) - {"input", "output", "cached_input_multiplier", "cache_write_multiplier"}
        if unknown:
            raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")
        price_in = _decimal(spec["input"], f"{where}.input")
        cached = _decimal(spec.get("cached_input_multiplier", 1), f"{where}.cached_input_multiplier")
        write = _decimal(spec.get("cache_write_multiplier", 1), f"{where}.cache_write_multiplier")
        return cls(
            name=name,
            input=_pico(price_in),
            output=_pico(_decimal(spec["output"], f"{where}.output")),
            cached_input=_pico(price_in * cached),
            cache_write=_pico(price_in * write),
        )

    def cost_micros(self, usage: Usage) -> int:
        uncached = usage.input_tokens - usage.cached_input_tokens - usage.cache_write_tokens
        pico = (
            uncached * self.input
            + usage.cached_input_tokens * self.cached_input
            + usage.cache_write_tokens * self.cache_write
            + usage.output_tokens * self.output
        )
        return -(-pico // _PICO_PER_MICRO)


class PriceTable:
    """Prices models by the longest table entry their (lower-cased) name starts with."""

    def __init__(self, entries: Mapping[str, Price], fallback: Price) -> None:
        self.entries = dict(entries)
        self.fallback = fallback
        # Longest first, so the first prefix that matches is the longest one.
        self._by_length = sorted(self.entries.values(), key=lambda p: len(p.name), reverse=True)
        self._warned: set[str] = set()
        self.lookup = lru_cache(maxsize=4096)(self._lookup)

    def _lookup(self, model: str) -> Price | None:
        lowered = model.lower()
        for price in self._by_length:
            if lowered.startswith(price.name):
                return price
        return None

    def resolve(self, model: str) -> Price:
        """The entry pricing ``model``, or the fallback with a warning (logged once per name)."""
        found = self.lookup(model)
        if found is not None:
            return found
        if model not in self._warned:
            if len(self._warned) >= 1024:  # bounded: a flood of names re-warns instead of growing
                self._warned.clear()
            self._warned.add(model)
            log.warning(
                "model %r is not in the price table: charging the fallback price; add it to the price file",
                model,
                extra={"model": model},
            )
        return self.fallback

    def by_name(self, name: str) -> Price:
        """The entry a reservation was priced with (its ``priced_as``), or the fallback."""
        return self.entries.get(name, self.fallback) if name else self.fallback

    @staticmethod
    def charge(price: Price, usage: Usage, wall_clock_ms: int | None = None) -> Charge:
        return Charge(
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cached_input_tokens=usage.cached_input_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            cost_micros=price.cost_micros(usage),
            wall_clock_ms=usage.wall_clock_ms if wall_clock_ms is None else wall_clock_ms,
            priced_as=price.name,
        )

    @classmethod
    def load(
        cls,
        path: str = "",
        fallback_input: float | str = 15,
        fallback_output: float | str = 75,
    ) -> PriceTable:
        """The built-in table, updated (or replaced) by a YAML/JSON price file when given.

        File format::

            replace_builtin: false        # true: use only the file's models
            fallback: {input: 15, output: 75, cached_input_multiplier: 1, cache_write_multiplier: 1.25}
            models:
              my-model: {input: 1.5, output: 6, cached_input_multiplier: 0.1}
        """
        specs: dict[str, Mapping[str, Any]] = dict(BUILTIN_PRICES)
        fallback_spec: Mapping[str, Any] = {
            "input": str(fallback_input),
            "output": str(fallback_output),
            "cache_write_multiplier": "1.25",
        }
        if path:
            document = _read(Path(path))
            if document.get("replace_builtin", False):
                specs = {}
            models = document.get("models", {})
            if not isinstance(models, Mapping):
                raise ConfigError(f"{path}: models must be a mapping of model prefix to prices")
            specs.update({str(name).lower(): spec for name, spec in models.items()})
            if "fallback" in document:
                fallback_spec = document["fallback"]
        entries: dict[str, Price] = {}
        for name, spec in specs.items():
            if not _NAME.match(name):
                raise ConfigError(f"{path or 'price table'}: model prefix {name!r} must match {_NAME.pattern}")
            entries[name] = Price.parse(name, spec, f"{path or 'price table'}: models.{name}")
        return cls(entries, Price.parse("", fallback_spec, f"{path or 'settings'}: fallback"))


def _read(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"price file {path}: {exc.strerror}") from None
    try:
        document = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"price file {path}: {exc}") from None
    if not isinstance(document, dict):
        raise ConfigError(f"price file {path}: expected a mapping at the top level")
    unknown = set(document) - {"replace_builtin", "fallback", "models"}
    if unknown:
        raise ConfigError(f"price file {path}: unknown keys {sorted(unknown)}")
    return document
