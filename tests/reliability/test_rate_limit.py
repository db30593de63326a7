"""Per-tenant rate and concurrency limits: the token bucket itself, and the Agent applying it.

One tenant over its limit gets RESOURCE_EXHAUSTED with a retry hint at once; every
other tenant is untouched; the internal services, whose calls an admitted run
already paid for, are never limited.
"""

from __future__ import annotations

import asyncio
import heapq
from collections import Counter
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from loomflow.kernel.auth import AuthSettings, Role, mint_token
from loomflow.kernel.config import ConfigError
from loomflow.kernel.ratelimit import INFLIGHT_LIMIT, MAX_RETRY_AFTER_S, RATE_LIMIT, RateLimited, TenantLimiter
from loomflow.testing.suite import TEST_JWT_SECRET, running_suite
from loomflow.v1 import agent_pb2, agent_pb2_grpc, memory_pb2, memory_pb2_grpc, tenancy_pb2
from tests.agent.conftest import write_script


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- the limiter ------------------------------------------------------------------------------


def test_a_tenant_gets_its_burst_then_one_call_per_token_with_an_exact_retry_hint() -> None:
    clock = Clock()
    limiter = TenantLimiter(4.0, 3, 0, clock=clock)
    for _ in range(3):
        limiter.enter("alice")
    with pytest.raises(RateLimited) as refused:
        limiter.enter("alice")
    assert refused.value.limit == RATE_LIMIT
    assert refused.value.retry_after_s == pytest.approx(0.25)
    clock.now += 0.25
    limiter.enter("alice")  # exactly the token the hint promised
    with pytest.raises(RateLimited):
        limiter.enter("alice")


def test_refused_callers_of_one_tenant_are_told_distinct_times_one_token_apart() -> None:
    clock = Clock()
    limiter = TenantLimiter(4.0, 1, 0, clock=clock)
    limiter.enter("alice")
    hints = []
    for _ in range(5):
        with pytest.raises(RateLimited) as refused:
            limiter.enter("alice")
        hints.append(refused.value.retry_after_s)
    assert hints == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.25]), "each refused caller gets the next free token"
    limiter.enter("bob")
    with pytest.raises(RateLimited) as other_refused:
        limiter.enter("bob")
    assert other_refused.value.retry_after_s == pytest.approx(0.25), "another tenant's schedule is its own"
    clock.now += 600
    limiter.enter("alice")
    with pytest.raises(RateLimited) as later:
        limiter.enter("alice")
    assert later.value.retry_after_s == pytest.approx(0.25), "an old schedule is forgotten once its times pass"


def test_a_caller_that_never_waits_pushes_only_its_own_tenants_hint_and_never_past_the_cap() -> None:
    clock = Clock()
    limiter = TenantLimiter(10.0, 1, 0, clock=clock)
    limiter.enter("hostile")
    for _ in range(10_000):
        with pytest.raises(RateLimited) as refused:
            limiter.enter("hostile")
    assert refused.value.retry_after_s == pytest.approx(MAX_RETRY_AFTER_S)
    limiter.enter("quiet")  # untouched
    with pytest.raises(RateLimited) as quiet_refused:
        limiter.enter("quiet")
    assert quiet_refused.value.retry_after_s == pytest.approx(0.1)


def polite_flood(limiter: TenantLimiter, clock: Clock, clients: int, seconds: float, run_s: float) -> Counter[str]:
    """Simulates ``clients`` polite callers of one tenant, each sending its next call the moment the last
    one ends (an admitted call takes ``run_s``) and waiting each refusal's hint; counts the outcomes."""
    outcomes: Counter[str] = Counter()
    wake = [(0.0, n, False) for n in range(clients)]  # (time, client, ending an admitted call)
    heapq.heapify(wake)
    start = clock.now
    while wake and wake[0][0] < seconds:
        at, client, ending = heapq.heappop(wake)
        clock.now = start + at
        if ending:
            limiter.leave("noisy")
        try:
            limiter.enter("noisy")
        except RateLimited as refused:
            outcomes["refused"] += 1
            heapq.heappush(wake, (at + refused.retry_after_s, client, False))
            continue
        outcomes["admitted"] += 1
        heapq.heappush(wake, (at + run_s, client, True))
    return outcomes


def test_a_polite_flood_costs_about_one_refusal_per_admitted_call_not_one_per_client_per_token() -> None:
    clock = Clock()
    outcomes = polite_flood(TenantLimiter(10.0, 20, 4, clock=clock), clock, clients=64, seconds=60.0, run_s=0.05)
    # The tenant gets its rate (plus the burst), and is refused about as often as it is admitted:
    # with every client told the same next-token time, 64 clients were refused ~64 times per token.
    assert 600 <= outcomes["admitted"] <= 640, outcomes
    assert outcomes["refused"] <= 2 * outcomes["admitted"], outcomes


def test_the_early_check_refuses_a_tenant_over_its_limit_and_takes_nothing_from_anyone_else() -> None:
    clock = Clock()
    limiter = TenantLimiter(4.0, 2, 3, clock=clock)
    for _ in range(200):
        limiter.refuse_if_over(f"not-yet-validated-{_}")  # unknown tenants pass, and no state is created
    assert limiter.tracked_tenants == 0
    limiter.enter("alice")
    limiter.refuse_if_over("alice")  # one token left: passes, and takes nothing
    limiter.enter("alice")
    with pytest.raises(RateLimited) as refused:
        limiter.refuse_if_over("alice")
    assert refused.value.limit == RATE_LIMIT
    assert refused.value.retry_after_s == pytest.approx(0.25)
    assert limiter.inflight("alice") == 2, "a refusal counts no call in flight"
    clock.now += 0.25
    limiter.enter("alice")  # the token the hint promised is still there


def test_one_tenant_emptying_its_bucket_leaves_every_other_tenant_its_full_burst() -> None:
    limiter = TenantLimiter(1.0, 2, 0, clock=Clock())
    for _ in range(2):
        limiter.enter("noisy")
    with pytest.raises(RateLimited):
        limiter.enter("noisy")
    for tenant in ("quiet-1", "quiet-2"):
        limiter.enter(tenant)
        limiter.enter(tenant)


def test_an_idle_tenant_refills_to_its_burst_and_no_further() -> None:
    clock = Clock()
    limiter = TenantLimiter(10.0, 5, 0, clock=clock)
    for _ in range(5):
        limiter.enter("alice")
    clock.now += 3600
    for _ in range(5):
        limiter.enter("alice")
    with pytest.raises(RateLimited):
        limiter.enter("alice")


def test_the_inflight_cap_refuses_the_next_call_until_one_leaves_and_leaves_no_state_behind() -> None:
    limiter = TenantLimiter(0.0, 0, 2, clock=Clock())
    limiter.enter("alice")
    limiter.enter("alice")
    with pytest.raises(RateLimited) as refused:
        limiter.enter("alice")
    assert refused.value.limit == INFLIGHT_LIMIT
    limiter.enter("bob")
    limiter.leave("alice")
    limiter.enter("alice")
    for tenant in ("alice", "alice", "bob"):
        limiter.leave(tenant)
    assert limiter.inflight("alice") == 0
    assert limiter.tracked_tenants == 0, "no in-flight state is kept for tenants with nothing in flight"


def test_a_refused_call_neither_holds_a_slot_nor_spends_a_token() -> None:
    clock = Clock()
    limiter = TenantLimiter(1.0, 1, 1, clock=clock)
    limiter.enter("alice")
    with pytest.raises(RateLimited):
        limiter.enter("alice")  # refused by the in-flight cap: the bucket is untouched
    limiter.leave("alice")
    clock.now += 1.0
    limiter.enter("alice")
    assert limiter.inflight("alice") == 1


def test_state_is_bounded_by_max_tenants_with_least_recently_seen_evicted() -> None:
    clock = Clock()
    limiter = TenantLimiter(1.0, 1, 0, max_tenants=3, clock=clock)
    for n in range(1000):
        limiter.enter(f"one-shot-{n}")
    assert limiter.tracked_tenants == 3
    limiter.enter("one-shot-0")  # evicted long ago: back with a full bucket, as if idle


def test_zero_means_off_and_negative_settings_are_configuration_errors() -> None:
    assert not TenantLimiter(0.0, 20, 0).enabled
    with pytest.raises(ConfigError, match="LOOMFLOW_RATE_LIMIT_PER_USER"):
        TenantLimiter(-1.0, 20, 0)
    with pytest.raises(ConfigError, match="LOOMFLOW_RATE_LIMIT_MAX_TENANTS"):
        TenantLimiter(1.0, 20, 0, max_tenants=0)


# -- through the Agent ------------------------------------------------------------------------


def run_request(user: str, prompt: str = "hello") -> agent_pb2.RunRequest:
    return agent_pb2.RunRequest(scope=tenancy_pb2.UserScope(user_id=user), options=agent_pb2.RunOptions(prompt=prompt))


def retry_hint(error: grpc.aio.AioRpcError) -> tuple[float, dict[str, str]]:
    raw = next(v for k, v in (error.trailing_metadata() or ()) if k == "grpc-status-details-bin")
    delay, info = -1.0, {}
    for detail in status_pb2.Status.FromString(raw).details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            delay = retry.retry_delay.seconds + retry.retry_delay.nanos / 1e9
        elif detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            error_info = error_details_pb2.ErrorInfo()
            detail.Unpack(error_info)
            info = dict(error_info.metadata) | {"reason": error_info.reason}
    return delay, info


async def test_the_agent_refuses_a_tenant_over_its_rate_with_a_retry_hint_and_serves_the_others(
    tmp_path: Path,
) -> None:
    limits = {"rate_limit_per_user": 0.2, "rate_burst": 3}
    async with running_suite(tmp_path, overrides={"": limits}) as suite:
        agent = agent_pb2_grpc.AgentServiceStub(suite.channel)
        for _ in range(3):
            await agent.Run(run_request("noisy"), timeout=30)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await agent.Run(run_request("noisy"), timeout=30)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        delay, info = retry_hint(refused.value)
        # One token takes 5 s at 0.2/s; the three runs above took some of that time.
        assert 2.0 < delay <= 5.0, delay
        assert info["reason"] == "RATE_LIMITED"
        assert info["limit"] == RATE_LIMIT
        for quiet in ("quiet-1", "quiet-2"):
            reply = await agent.Run(run_request(quiet, "still served"), timeout=30)
            assert reply.output.startswith("still served")
        # The internal services are not limited: each admitted run makes several calls to them.
        memory = memory_pb2_grpc.MemoryServiceStub(suite.channel)
        for _ in range(10):
            await memory.Recall(
                memory_pb2.RecallRequest(scope=tenancy_pb2.UserScope(user_id="noisy"), query="hello"), timeout=10
            )


async def test_a_tenant_over_its_rate_is_refused_before_its_request_is_validated(tmp_path: Path) -> None:
    """Validation is the costliest step of a refusal, so a flooding tenant's calls skip it; a tenant under
    its limit, or a token naming another tenant, still meets validation and authorization first."""
    async with running_suite(tmp_path, overrides={"": {"rate_limit_per_user": 0.2, "rate_burst": 1}}) as suite:
        agent = agent_pb2_grpc.AgentServiceStub(suite.channel)
        token = (
            ("authorization", f"Bearer {mint_token(AuthSettings(jwt_secret=TEST_JWT_SECRET), 'noisy', Role.USER)}"),
        )
        invalid = agent_pb2.RunRequest(scope=tenancy_pb2.UserScope(user_id="noisy"))  # no prompt
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await agent.Run(invalid, metadata=token, timeout=30)
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT, "under its limit: validated as ever"
        await agent.Run(run_request("noisy"), metadata=token, timeout=30)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await agent.Run(invalid, metadata=token, timeout=30)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert retry_hint(refused.value)[1]["limit"] == RATE_LIMIT


async def test_the_agent_caps_a_tenants_runs_in_flight_and_frees_the_slot_when_one_ends(tmp_path: Path) -> None:
    script = write_script(tmp_path / "script.json", [{"when": "slow", "turns": [{"delay_ms": 800, "text": "done"}]}])
    overrides: dict[str, dict[str, Any]] = {
        "": {"max_inflight_per_user": 1},
        "agent": {"script_file": script, "model": "scripted", "models": "echo"},
    }
    async with running_suite(tmp_path / "data", overrides=overrides) as suite:
        agent = agent_pb2_grpc.AgentServiceStub(suite.channel)
        slow = asyncio.ensure_future(agent.Run(run_request("noisy", "slow"), timeout=30))
        await asyncio.sleep(0.3)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await agent.Run(run_request("noisy", "slow"), timeout=30)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert retry_hint(refused.value)[1]["limit"] == INFLIGHT_LIMIT
        # Another tenant runs at the same time, and so does a stream of the other tenant.
        other = await agent.Run(run_request("quiet", "slow"), timeout=30)
        assert other.output == "done"
        assert (await slow).output == "done"
        again = await agent.Run(run_request("noisy", "slow"), timeout=30)
        assert again.output == "done", "the slot was freed when the first run ended"


async def test_a_stream_holds_its_slot_until_it_ends(tmp_path: Path) -> None:
    script = write_script(tmp_path / "script.json", [{"when": "slow", "turns": [{"delay_ms": 600, "text": "done"}]}])
    overrides: dict[str, dict[str, Any]] = {
        "": {"max_inflight_per_user": 1},
        "agent": {"script_file": script, "model": "scripted", "models": "echo"},
    }
    async with running_suite(tmp_path / "data", overrides=overrides) as suite:
        agent = agent_pb2_grpc.AgentServiceStub(suite.channel)
        request = agent_pb2.RunStreamRequest(
            scope=tenancy_pb2.UserScope(user_id="noisy"), options=agent_pb2.RunOptions(prompt="slow")
        )
        stream = agent.RunStream(request, timeout=30)
        first = asyncio.ensure_future(anext(aiter(stream)))
        await asyncio.sleep(0.2)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await agent.Run(run_request("noisy", "slow"), timeout=30)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        await first
        async for _ in stream:
            pass
        assert (await agent.Run(run_request("noisy", "slow"), timeout=30)).output == "done"
