"""Counters, gauges and histograms aggregated in-process and exposed to Prometheus.

Every RPC records three points (requests, latency, errors) and most domain
calls one more, so recording must cost next to nothing: a point here is a dict
lookup and an addition under a lock. The OpenTelemetry SDK's instruments did
the same job at ~40 µs of server CPU per RPC in a grpc.aio server (measured with
ghz on the floor of the cheapest RPC, an authorization check: 240 µs per call with them, 200 µs without), a
sixth of the whole call. Tracing stays on OpenTelemetry.

The exported names follow the OpenTelemetry Prometheus conventions the
dashboards were built on: a ``ms`` unit adds ``_milliseconds``, ``{annotation}``
units add nothing, counters end in ``_total``, up-down counters are gauges.
Each instrument is one family; a point's attributes are its labels.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import TypeVar

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import REGISTRY, Collector

Attributes = Mapping[str, str]
_Key = tuple[tuple[str, str], ...]

_UNIT_SUFFIXES = {"ms": "_milliseconds", "s": "_seconds", "By": "_bytes"}

_pairs: dict[tuple[str, str], tuple[str, str]] = {}
"""One (label, value) tuple per distinct pair, shared by every series that has it."""


def _stored(key: _Key) -> _Key:
    """A new series' key built from shared pairs: a label value common to all tenants once, and a
    tenant's ("user_id", …) once for all its series (~1.4 KB of heap per tenant otherwise)."""
    return tuple(_pairs.setdefault(pair, pair) for pair in key)


def exported_name(name: str, unit: str) -> str:
    """The Prometheus family name of an instrument (without a counter's ``_total``)."""
    if not unit or (unit.startswith("{") and unit.endswith("}")):
        return name
    suffix = _UNIT_SUFFIXES.get(unit)
    if suffix is None:
        raise ValueError(f"{name}: unit {unit!r} has no Prometheus suffix here; use ms, s, By or an {{annotation}}")
    return name if name.endswith(suffix) else name + suffix


class _Instrument:
    """One metric family: its series by label set, guarded by a lock (recorders may be threads)."""

    def __init__(self, name: str, unit: str, description: str) -> None:
        self.name = exported_name(name, unit)
        self.description = description
        self._lock = threading.Lock()

    @staticmethod
    def _labelled(series: Mapping[_Key, list[float]]) -> tuple[list[str], list[tuple[list[str], list[float]]]]:
        """Label names (the union over series) and each series' label values, in that order.

        Call sites may pass the same labels in a different order: those series are merged.
        """
        names = sorted({label for key in series for label, _ in key})
        merged: dict[tuple[str, ...], list[float]] = {}
        for key, values in series.items():
            labels = dict(key)
            row = tuple(labels.get(n, "") for n in names)
            if row in merged:
                merged[row] = [a + b for a, b in zip(merged[row], values, strict=True)]
            else:
                merged[row] = list(values)
        return names, [(list(row), values) for row, values in merged.items()]

    def snapshot(self) -> Metric:
        raise NotImplementedError


class _Sum(_Instrument):
    """A running sum per label set; subclasses say whether it may go down and how it is exported."""

    monotonic = False
    family: type[CounterMetricFamily] | type[GaugeMetricFamily] = GaugeMetricFamily

    def __init__(self, name: str, unit: str = "", description: str = "") -> None:
        super().__init__(name, unit, description)
        self._series: dict[_Key, list[float]] = {}

    def add(self, amount: float, attributes: Attributes | None = None) -> None:
        if self.monotonic and amount < 0:
            raise ValueError(f"{self.name}: a counter only goes up (got {amount})")
        key = tuple(attributes.items()) if attributes else ()
        with self._lock:
            series = self._series.get(key)
            if series is None:
                self._series[_stored(key)] = [amount]
            else:
                series[0] += amount

    def snapshot(self) -> Metric:
        with self._lock:
            series = dict(self._series)
        names, rows = self._labelled(series)
        family = self.family(self.name, self.description, labels=names)
        for labels, values in rows:
            family.add_metric(labels, values[0])
        return family


class Counter(_Sum):
    """A monotonic sum; exported as ``<name>_total``."""

    monotonic = True
    family = CounterMetricFamily


class UpDownCounter(_Sum):
    """A sum that goes both ways (in flight, pending); exported as a gauge."""


class Histogram(_Instrument):
    """Counts per explicit bucket (upper bounds inclusive, as Prometheus' ``le``), plus count and sum."""

    def __init__(
        self,
        name: str,
        unit: str = "",
        description: str = "",
        explicit_bucket_boundaries_advisory: Sequence[float] = (),
    ) -> None:
        super().__init__(name, unit, description)
        bounds = list(explicit_bucket_boundaries_advisory)
        if not bounds or bounds != sorted(set(bounds)):
            raise ValueError(f"{self.name}: bucket bounds must be given, increasing and distinct")
        self._bounds = bounds
        self._series: dict[_Key, list[float]] = {}  # per bucket (the last is +Inf), then the sum

    def record(self, value: float, attributes: Attributes | None = None) -> None:
        key = tuple(attributes.items()) if attributes else ()
        bucket = bisect.bisect_left(self._bounds, value)
        with self._lock:
            series = self._series.get(key)
            if series is None:
                series = self._series[_stored(key)] = [0.0] * (len(self._bounds) + 2)
            series[bucket] += 1
            series[-1] += value

    def snapshot(self) -> Metric:
        with self._lock:
            series = {key: list(values) for key, values in self._series.items()}
        names, rows = self._labelled(series)
        family = HistogramMetricFamily(self.name, self.description, labels=names)
        for labels, values in rows:
            cumulative, buckets = 0.0, []
            for bound, count in zip([*self._bounds, float("inf")], values[:-1], strict=True):
                cumulative += count
                buckets.append(("+Inf" if bound == float("inf") else str(float(bound)), cumulative))
            family.add_metric(labels, buckets, sum_value=values[-1])
        return family


_I = TypeVar("_I", bound=_Instrument)


class Meter:
    """Creates instruments (the subset of OpenTelemetry's ``Meter`` loomflow uses) and registers them."""

    def __init__(self, registry: _Instruments) -> None:
        self._registry = registry

    def create_counter(self, name: str, unit: str = "", description: str = "") -> Counter:
        return self._registry.add(Counter(name, unit, description))

    def create_up_down_counter(self, name: str, unit: str = "", description: str = "") -> UpDownCounter:
        return self._registry.add(UpDownCounter(name, unit, description))

    def create_histogram(
        self,
        name: str,
        unit: str = "",
        description: str = "",
        explicit_bucket_boundaries_advisory: Sequence[float] = (),
    ) -> Histogram:
        return self._registry.add(Histogram(name, unit, description, explicit_bucket_boundaries_advisory))


class _Instruments(Collector):
    """Every instrument of the process, collected by prometheus_client's registry (and its HTTP server)."""

    def __init__(self) -> None:
        self._by_name: dict[str, _Instrument] = {}
        self._lock = threading.Lock()
        self.target_info: dict[str, str] = {}

    def add(self, instrument: _I) -> _I:
        """Registers an instrument; asking twice for one name returns the first (as OpenTelemetry does)."""
        with self._lock:
            existing = self._by_name.get(instrument.name)
            if existing is None:
                self._by_name[instrument.name] = instrument
                return instrument
        if type(existing) is not type(instrument):
            raise ValueError(f"{instrument.name} is already a {type(existing).__name__}")
        return existing  # type: ignore[return-value,unused-ignore]  # same class (checked above); mypy sees prometheus types as Any

    def collect(self) -> Iterator[Metric]:
        if self.target_info:
            info = GaugeMetricFamily("target_info", "Target metadata", labels=sorted(self.target_info))
            info.add_metric([self.target_info[k] for k in sorted(self.target_info)], 1.0)
            yield info
        with self._lock:
            instruments = list(self._by_name.values())
        for instrument in instruments:
            yield instrument.snapshot()


INSTRUMENTS = _Instruments()
REGISTRY.register(INSTRUMENTS)
