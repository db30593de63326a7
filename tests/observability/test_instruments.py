"""loomflow's own instruments: what they expose to Prometheus, exactly."""

from __future__ import annotations

import threading

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from loomflow.kernel.instruments import Meter, _Instruments, exported_name
from tests.observability.prometheus import parse, select


def _meter() -> tuple[Meter, CollectorRegistry]:
    instruments = _Instruments()
    registry = CollectorRegistry()
    registry.register(instruments)
    return Meter(instruments), registry


def test_names_follow_the_opentelemetry_prometheus_conventions() -> None:
    assert exported_name("loomflow_rpc_duration", "ms") == "loomflow_rpc_duration_milliseconds"
    assert exported_name("x_milliseconds", "ms") == "x_milliseconds"
    assert exported_name("loomflow_budget_tokens_charged", "{token}") == "loomflow_budget_tokens_charged"
    with pytest.raises(ValueError, match="unit"):
        exported_name("x", "furlongs")


def test_counters_sum_per_label_set_whatever_the_attribute_order() -> None:
    meter, registry = _meter()
    counter = meter.create_counter("demo_calls", unit="{call}", description="calls")
    counter.add(1, {"user_id": "alice", "code": "OK"})
    counter.add(2, {"code": "OK", "user_id": "alice"})
    counter.add(1, {"user_id": "bob", "code": "NOT_FOUND"})
    samples = parse(generate_latest(registry).decode())
    assert [s.value for s in select(samples, "demo_calls_total", user_id="alice", code="OK")] == [3.0]
    assert [s.value for s in select(samples, "demo_calls_total", user_id="bob", code="NOT_FOUND")] == [1.0]
    with pytest.raises(ValueError, match="only goes up"):
        counter.add(-1, {"user_id": "alice"})


def test_up_down_counters_are_gauges() -> None:
    meter, registry = _meter()
    pending = meter.create_up_down_counter("demo_pending", unit="{approval}")
    pending.add(1, {"user_id": "alice"})
    pending.add(1, {"user_id": "alice"})
    pending.add(-1, {"user_id": "alice"})
    samples = parse(generate_latest(registry).decode())
    assert [s.value for s in select(samples, "demo_pending", user_id="alice")] == [1.0]


def test_histogram_buckets_are_cumulative_with_inclusive_upper_bounds() -> None:
    meter, registry = _meter()
    latency = meter.create_histogram("demo_latency", unit="ms", explicit_bucket_boundaries_advisory=(1.0, 5.0))
    for value in (0.5, 1.0, 3.0, 5.0, 7.0):
        latency.record(value, {"user_id": "alice"})
    samples = parse(generate_latest(registry).decode())
    buckets = {s.labels["le"]: s.value for s in select(samples, "demo_latency_milliseconds_bucket", user_id="alice")}
    assert buckets == {"1.0": 2.0, "5.0": 4.0, "+Inf": 5.0}
    assert [s.value for s in select(samples, "demo_latency_milliseconds_count", user_id="alice")] == [5.0]
    assert [s.value for s in select(samples, "demo_latency_milliseconds_sum", user_id="alice")] == [16.5]


def test_asking_twice_for_an_instrument_returns_the_first_and_a_kind_clash_is_refused() -> None:
    meter, _ = _meter()
    first = meter.create_counter("demo_twice")
    assert meter.create_counter("demo_twice") is first
    with pytest.raises(ValueError, match="already a Counter"):
        meter.create_up_down_counter("demo_twice")


def test_concurrent_recording_loses_no_point() -> None:
    meter, registry = _meter()
    counter = meter.create_counter("demo_threads")

    def hammer() -> None:
        for _ in range(20_000):
            counter.add(1, {"user_id": "alice"})

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    samples = parse(generate_latest(registry).decode())
    assert [s.value for s in select(samples, "demo_threads_total", user_id="alice")] == [80_000.0]


def test_series_share_their_label_pairs() -> None:
    """A tenant's ("user_id", …) pair and a service's ("service", …) pair exist once, whatever the series."""
    meter, _ = _meter()
    calls = meter.create_counter("demo_shared_calls", unit="{call}", description="calls")
    latency = meter.create_histogram(
        "demo_shared_latency", unit="s", description="latency", explicit_bucket_boundaries_advisory=(0.1, 1.0)
    )
    calls.add(1, {"service": "memory", "user_id": "".join(["ali", "ce"])})
    calls.add(1, {"service": "budget", "user_id": "".join(["al", "ice"])})
    latency.record(0.5, {"service": "memory", "user_id": "a" + "lice"})
    keys = [*calls._series, *latency._series]
    user_pairs = {id(pair) for key in keys for pair in key if pair[0] == "user_id"}
    memory_pairs = {id(pair) for key in keys for pair in key if pair == ("service", "memory")}
    assert len(keys) == 3
    assert len(user_pairs) == 1
    assert len(memory_pairs) == 1
