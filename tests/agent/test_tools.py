"""Tools: the registry, the built-ins, the RunContext they see and the per-tenant cache."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from loomflow.agent.context import RunContext, bound_run_context, get_run_context
from loomflow.agent.tools import TenantCache, ToolArgumentError, ToolRegistry, tool
from loomflow.agent.tools.builtins import BUILTINS, calculator, current_time
from loomflow.kernel.tenancy import ANONYMOUS_SENTINEL, scope_for


@contextmanager
def running_as(tenant: str, run_id: str = "run-1") -> Iterator[RunContext]:
    context = RunContext(tenant, "session-1", run_id, scope_for(tenant), time.monotonic() + 30)
    with bound_run_context(context) as bound:
        yield bound


def test_the_schema_the_model_sees_comes_from_the_signature() -> None:
    @tool(tags=("read_only",))
    def lookup(city: str, days: int = 1, metric: bool = True) -> str:
        """Weather for a city."""
        return city

    assert lookup.spec.description == "Weather for a city."
    assert lookup.spec.input_schema == {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}, "metric": {"type": "boolean"}},
        "required": ["city"],
    }
    assert lookup.tags == frozenset({"read_only"})


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        ({}, "missing required argument 'city'"),
        ({"city": "Paris", "colour": "red"}, "unexpected argument(s) colour"),
        ({"city": 3}, "argument 'city' must be a string"),
        ({"city": "Paris", "days": "two"}, "argument 'days' must be a integer"),
        ({"city": "Paris", "days": True}, "argument 'days' must be a integer"),
    ],
)
def test_arguments_that_do_not_fit_the_signature_are_refused(arguments: dict[str, object], problem: str) -> None:
    @tool
    def lookup(city: str, days: int = 1) -> str:
        return city

    with pytest.raises(ToolArgumentError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        lookup.bind(arguments)


def test_integral_floats_from_json_are_accepted_for_int_parameters() -> None:
    @tool
    def repeat(times: int) -> str:
        return "x" * times

    assert repeat.bind({"times": 3.0}) == {"times": 3}


def test_bad_tool_definitions_fail_when_declared() -> None:
    with pytest.raises(ValueError, match="must match"):
        tool(name="has space")(lambda: "")
    with pytest.raises(ValueError, match="unknown tags"):
        tool(name="ok", tags=("dangerous",))(lambda: "")

    def untyped(x):  # type: ignore[no-untyped-def]
        return x

    with pytest.raises(TypeError, match="needs a type annotation"):
        tool(untyped)


def test_registry_refuses_duplicate_names_and_loads_tools_by_import_path() -> None:
    registry = ToolRegistry(BUILTINS)
    with pytest.raises(ValueError, match="already registered"):
        registry.add(calculator)
    extra = ToolRegistry()
    extra.load("tests.agent.sample_tools:TOOLS")
    extra.load("tests.agent.sample_tools:shout")
    assert sorted(t.name for t in extra) == ["shout", "whoami"]
    with pytest.raises(ValueError, match="module:attribute"):
        extra.load("no_colon_here")


@pytest.mark.parametrize(
    ("expression", "value"),
    [("2+2", "4"), ("(1 + 2) * 3 / 4", "2.25"), ("2 ** 10", "1024"), ("sqrt(16) + abs(-1)", "5.0"), ("-pi", "-3.14")],
)
async def test_calculator_evaluates_arithmetic(expression: str, value: str) -> None:
    result = await calculator.invoke({"expression": expression})
    assert result.startswith(value)


@pytest.mark.parametrize("expression", ["__import__('os').system('true')", "open('/etc/passwd')", "9 ** 99999", "x"])
async def test_calculator_refuses_anything_but_arithmetic(expression: str) -> None:
    with pytest.raises(ValueError, match=r"unsupported expression element|exponent larger"):
        await calculator.invoke({"expression": expression})


@pytest.mark.parametrize(
    "expression",
    [
        "((9**999)**999)**8",
        "(9**999)*(9**999)*(9**999)*(9**999)*(9**999)",
        "round(1, -999999999)",
        "2**999*2**999*2**999*2**999*2**999",
    ],
)
async def test_calculator_refuses_a_step_that_would_outgrow_its_bound_before_computing_it(expression: str) -> None:
    with pytest.raises(ValueError, match=r"larger than 4096 bits|exponent larger|at most 1000 digits"):
        await calculator.invoke({"expression": expression})


async def test_calculator_still_computes_large_but_bounded_results() -> None:
    assert len(await calculator.invoke({"expression": "9**999"})) == 954
    assert await calculator.invoke({"expression": "(4**999)*(4**999)"}) == str(4**1998)


async def test_current_time_honours_the_time_zone() -> None:
    assert (await current_time.invoke({"timezone": "Asia/Tokyo"})).endswith("+09:00")
    with pytest.raises(ValueError, match="unknown time zone"):
        await current_time.invoke({"timezone": "Mars/Olympus"})


async def test_sync_and_async_tools_see_the_run_context() -> None:
    @tool
    def sync_whoami() -> str:
        return get_run_context().run_id

    @tool
    async def async_whoami() -> str:
        return str(get_run_context().user_id)

    with running_as("alice", run_id="r-42"):
        assert await sync_whoami.invoke({}) == "r-42"
        assert await async_whoami.invoke({}) == "alice"


def test_anonymous_runs_have_no_user_id_but_their_own_tenant() -> None:
    with running_as(ANONYMOUS_SENTINEL) as context:
        assert context.user_id is None
        assert context.anonymous
        assert context.tenant == ANONYMOUS_SENTINEL


def test_run_context_is_unavailable_outside_a_run() -> None:
    with pytest.raises(LookupError, match="outside an agent run"):
        get_run_context()


async def test_tenant_cache_never_answers_one_tenant_with_another_tenants_value() -> None:
    cache: TenantCache[str] = TenantCache()
    with running_as("alice"):
        cache.set("weather in Paris", "alice's answer")
    with running_as("bob"):
        assert cache.get("weather in Paris") is None, "bob must not see alice's cached answer"
        assert await cache.get_or_compute("weather in Paris", _const("bob's answer")) == "bob's answer"
    with running_as("alice"):
        assert cache.get("weather in Paris") == "alice's answer"
    with running_as(ANONYMOUS_SENTINEL):
        assert cache.get("weather in Paris") is None


async def test_tenant_cache_is_bounded_and_expires() -> None:
    cache: TenantCache[int] = TenantCache(max_entries=2, ttl_seconds=0.05)
    with running_as("alice"):
        for i in range(3):
            cache.set(i, i)
        assert len(cache) == 2
        assert cache.get(0) is None, "the least recently used entry goes first"
        await asyncio.sleep(0.06)
        assert cache.get(2) is None, "entries expire after the TTL"


async def test_tenant_cache_computes_once_for_concurrent_misses() -> None:
    cache: TenantCache[int] = TenantCache()
    calls = 0

    async def slow() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.02)
        return 7

    with running_as("alice"):
        results = await asyncio.gather(*(cache.get_or_compute("k", slow) for _ in range(5)))
    assert results == [7] * 5
    assert calls == 1


def test_tenant_cache_needs_a_run() -> None:
    with pytest.raises(LookupError):
        TenantCache[int]().get("k")


def _const(value: str):  # type: ignore[no-untyped-def]
    async def compute() -> str:
        return value

    return compute
