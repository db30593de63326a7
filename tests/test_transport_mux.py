"""The multiplexed transport answers exactly what the unary RPCs answer (kernel/transport/mux*.py).

Each case makes the same call twice against one running secure suite over real sockets:
once as a unary RPC, once through :class:`MuxChannel` (carried on a ``MuxService.Multiplex``
stream to the same port), and compares the outcome: the reply, or the status code, message
and ``google.rpc.Status`` details. Then what only a shared stream has: authentication once
per stream, a call failing alone, cancellation, bounded in-flight with per-tenant fairness,
coalesced writes, reconnect after a restart. The Agent's own behaviour over mux is
tests/agent (every suite test runs per transport, ``mux`` included).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from loomflow.kernel.auth import Role
from loomflow.kernel.transport import mux_server
from loomflow.kernel.transport.mux_client import MuxChannel, MuxSettings
from loomflow.policy.servicer import PolicyServicer
from loomflow.testing.suite import RunningSuite, running_suite
from loomflow.v1 import (
    audit_pb2,
    audit_pb2_grpc,
    budget_pb2,
    budget_pb2_grpc,
    memory_pb2,
    memory_pb2_grpc,
    mux_pb2,
    policy_pb2,
    policy_pb2_grpc,
    tenancy_pb2,
)
from tests.agent.conftest import audit_keys
from tests.test_transport_inprocess import SLEEPY, Outcome, meta, outcome, scope, slow_get_policy


def agent() -> tuple[tuple[str, str], ...]:
    """The Agent's service token, minted per call: one minted at import expires (600 s) before a full run gets here."""
    return meta("loomflow-agent")


@dataclass
class Both:
    suite: RunningSuite
    mux: MuxChannel
    cancelled: list[bool]

    def channels(self) -> dict[str, Any]:
        return {"grpc": self.suite.channel, "mux": self.mux.as_channel()}


@pytest.fixture
async def both(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Both]:
    cancelled: list[bool] = []
    monkeypatch.setattr(PolicyServicer, "GetPolicy", slow_get_policy(cancelled))  # before it is registered
    overrides: dict[str, dict[str, Any]] = {"": {"rate_limit_per_user": 0.01, "rate_burst": 1}, "audit": audit_keys()}
    async with running_suite(tmp_path / "data", insecure=False, overrides=overrides) as suite:
        mux = MuxChannel(suite.channel, MuxSettings(streams=2, max_in_flight=8))
        yield Both(suite, mux, cancelled)
        await mux.close()


async def same(both: Both, make: Callable[[Any], Awaitable[Any]]) -> Outcome:
    got = {name: await outcome(make(channel)) for name, channel in both.channels().items()}
    assert got["mux"] == got["grpc"], got
    return got["grpc"]


def get_policy(user: str, timeout: float = 5, metadata: Any = None) -> Callable[[Any], Awaitable[Any]]:
    return lambda ch: policy_pb2_grpc.PolicyServiceStub(ch).GetPolicy(
        policy_pb2.GetPolicyRequest(scope=scope(user)),
        metadata=agent() if metadata is None else metadata,
        timeout=timeout,
    )


async def test_a_reply_is_the_same(both: Both) -> None:
    code, reply, _, _ = await same(both, get_policy("alice"))
    assert code == "OK"
    assert reply is not None


async def test_invalid_arguments_carry_the_same_field_violations(both: Both) -> None:
    code, _, message, details = await same(
        both,
        lambda ch: memory_pb2_grpc.MemoryServiceStub(ch).Recall(
            memory_pb2.RecallRequest(scope=scope(" alice"), query="x", limit=-1), metadata=agent(), timeout=5
        ),
    )
    assert code == "INVALID_ARGUMENT", message
    assert details


async def test_a_missing_or_end_user_credential_is_refused_when_the_stream_opens(both: Both) -> None:
    for metadata, code in (((), "UNAUTHENTICATED"), (meta("alice", Role.USER), "PERMISSION_DENIED")):
        got = {name: await outcome(get_policy("alice", metadata=metadata)(ch)) for name, ch in both.channels().items()}
        assert got["grpc"][0] == got["mux"][0] == code, got
    # The refusal came from the stream, not from a carried call: raw, a user token cannot open one.
    stream = both.suite.channel.stream_stream(
        "/loomflow.v1.MuxService/Multiplex",
        request_serializer=mux_pb2.MultiplexRequest.SerializeToString,
        response_deserializer=mux_pb2.MultiplexResponse.FromString,
    )(metadata=meta("alice", Role.USER))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stream.read()
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "end-user credentials cannot open a multiplexed stream" in (refused.value.details() or "")


async def test_another_tenants_record_is_not_found_alike(both: Both) -> None:
    code, _, _, _ = await same(
        both,
        lambda ch: policy_pb2_grpc.PolicyServiceStub(ch).GetApproval(
            policy_pb2.GetApprovalRequest(scope=scope(f"u-{uuid.uuid4().hex[:8]}"), approval_id="a-1"),
            metadata=agent(),
            timeout=5,
        ),
    )
    assert code == "NOT_FOUND"


async def test_a_call_the_principal_may_not_make_fails_alone_and_the_stream_survives(both: Both) -> None:
    """Tenant checks are per message: a service may not act for all tenants; its other calls go on."""
    audit = audit_pb2_grpc.AuditServiceStub(both.mux.as_channel())
    everyone = tenancy_pb2.UserScope(all_tenants=tenancy_pb2.AllTenants())
    refused, fine, sentinel = await asyncio.gather(
        outcome(audit.Query(audit_pb2.QueryRequest(scope=everyone), metadata=agent(), timeout=5)),
        outcome(get_policy("alice")(both.mux.as_channel())),
        outcome(get_policy("__jeeves_anon_user__")(both.mux.as_channel())),
    )
    unary = await outcome(
        audit_pb2_grpc.AuditServiceStub(both.suite.channel).Query(
            audit_pb2.QueryRequest(scope=everyone), metadata=agent(), timeout=5
        )
    )
    assert refused == unary
    assert refused[0] == "PERMISSION_DENIED"
    assert sentinel[0] == "INVALID_ARGUMENT"
    assert fine[0] == "OK"
    assert (await outcome(get_policy("bob")(both.mux.as_channel())))[0] == "OK", "the stream is still open"
    assert not any(s is None or s.broken for s in both.mux._streams[:1])


async def test_a_deadline_ends_the_call_and_its_handler_alike(both: Both) -> None:
    code, _, message, _ = await same(both, get_policy(SLEEPY, timeout=0.3))  # the caller gives up first
    assert (code, message) == ("DEADLINE_EXCEEDED", "Deadline Exceeded")
    await asyncio.sleep(0.2)
    assert both.cancelled == [True, True], "the handler saw the deadline and was cancelled, per transport"


async def test_the_server_enforces_the_carried_deadline(both: Both) -> None:
    """A caller that never gives up locally still gets DEADLINE_EXCEEDED: the server ran out the clock."""
    call = mux_pb2.MuxCall(id=1, timeout_us=200_000)
    call.policy_get_policy.CopyFrom(policy_pb2.GetPolicyRequest(scope=scope(SLEEPY)))
    replies = await raw_exchange(both, [mux_pb2.MultiplexRequest(calls=[call])], expect=1)
    assert replies[0].error.code == grpc.StatusCode.DEADLINE_EXCEEDED.value[0]
    assert both.cancelled == [True]


async def test_cancelling_the_call_cancels_the_handler(both: Both) -> None:
    call: Any = get_policy(SLEEPY)(both.mux.as_channel())
    await asyncio.sleep(0.2)
    assert isinstance(call, asyncio.Task)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    for _ in range(50):
        if both.cancelled:
            break
        await asyncio.sleep(0.02)
    assert both.cancelled == [False], "the handler was cancelled (before its 5 s deadline)"
    assert (await outcome(get_policy("alice")(both.mux.as_channel())))[0] == "OK"


async def test_an_unknown_method_goes_unary(both: Both) -> None:
    call = both.mux.unary_unary(
        "/loomflow.v1.MemoryService/NoSuchRpc",
        request_serializer=memory_pb2.RecallRequest.SerializeToString,
        response_deserializer=memory_pb2.RecallResponse.FromString,
    )(memory_pb2.RecallRequest(), metadata=agent(), timeout=5)
    assert (await outcome(call))[:3] == ("UNIMPLEMENTED", None, "Method not found!")


async def test_a_server_stream_travels_unary(both: Both) -> None:
    stream = policy_pb2_grpc.PolicyServiceStub(both.mux.as_channel()).WatchApprovals(
        policy_pb2.WatchApprovalsRequest(scope=scope("alice")), metadata=agent(), timeout=0.3
    )
    assert isinstance(stream, grpc.aio.UnaryStreamCall)
    assert (await outcome(stream.read()))[0] == "DEADLINE_EXCEEDED"


async def test_in_flight_calls_are_bounded_and_a_flooding_tenant_cannot_starve_others(both: Both) -> None:
    """16 slots (2 streams × 8), a quarter per tenant: a flood of one tenant's slow calls holds 4,
    and another tenant's call still goes through at once instead of queueing behind the flood."""
    channel = both.mux.as_channel()
    flood: list[Any] = [get_policy(SLEEPY)(channel) for _ in range(40)]
    await asyncio.sleep(0.3)
    assert sum(s.in_flight for s in both.mux._streams if s is not None) == 4, "the flood holds its share only"
    assert len(both.mux._waiting) == 36, "the rest wait in the caller, not in an unbounded queue"
    assert (await outcome(get_policy("alice", timeout=2)(channel)))[0] == "OK"
    for call in flood:
        call.cancel()
    await asyncio.gather(*flood, return_exceptions=True)
    assert sum(s.in_flight for s in both.mux._streams if s is not None) == 0
    assert not both.mux._waiting


async def test_pending_calls_are_coalesced_into_one_write(both: Both) -> None:
    writes: list[int] = []
    channel = both.mux.as_channel()
    await outcome(get_policy("warm")(channel))  # opens the streams
    for stream in both.mux._streams:
        assert stream is not None
        original = stream._call.write

        async def counting(batch: Any, original: Any = original) -> None:
            writes.append(len(batch.calls))
            await original(batch)

        stream._call.write = counting  # type: ignore[method-assign,assignment]
    got = await asyncio.gather(*(outcome(get_policy(f"t{i}")(channel)) for i in range(8)))
    assert {g[0] for g in got} == {"OK"}
    assert sum(writes) == 8
    assert max(writes) > 1, f"eight calls made at once went out in {len(writes)} writes"


async def test_a_restarted_server_fails_the_calls_in_flight_unavailable_and_the_next_calls_reconnect(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(PolicyServicer, "GetPolicy", slow_get_policy([]))
    async with running_suite(tmp_path / "one", insecure=False, overrides={"audit": audit_keys()}) as first:
        port = int(first.address.rsplit(":", 1)[1])
        target = f"127.0.0.1:{port}"
        channel = grpc.aio.insecure_channel(
            target, options=[("grpc.initial_reconnect_backoff_ms", 100), ("grpc.max_reconnect_backoff_ms", 500)]
        )
        mux = MuxChannel(channel)
        budget = budget_pb2_grpc.BudgetServiceStub(mux.as_channel())
        status = budget_pb2.GetStatusRequest(scope=scope("alice"))
        assert (await outcome(budget.GetStatus(status, metadata=agent(), timeout=5)))[0] == "OK"
        in_flight = asyncio.ensure_future(outcome(get_policy(SLEEPY, timeout=30)(mux.as_channel())))
        await asyncio.sleep(0.2)
        await first.server.stop(0)
    assert (await in_flight)[0] == "UNAVAILABLE", "the call in flight when the server went away"
    overrides: dict[str, dict[str, Any]] = {"": {"port": port}, "audit": audit_keys()}
    async with running_suite(tmp_path / "two", insecure=False, overrides=overrides) as second:
        assert second.address.endswith(f":{port}")
        got: Outcome = ("", None, "", [])
        for _ in range(40):
            got = await outcome(budget.GetStatus(status, metadata=agent(), timeout=5))
            if got[0] == "OK":
                break
            assert got[0] == "UNAVAILABLE", got
            await asyncio.sleep(0.1)
        assert got[0] == "OK", "the next calls reconnected"
    await mux.close()
    await channel.close()


async def raw_exchange(both: Both, batches: list[mux_pb2.MultiplexRequest], expect: int) -> list[mux_pb2.MuxReply]:
    stream = both.suite.channel.stream_stream(
        "/loomflow.v1.MuxService/Multiplex",
        request_serializer=mux_pb2.MultiplexRequest.SerializeToString,
        response_deserializer=mux_pb2.MultiplexResponse.FromString,
    )(metadata=agent())
    for batch in batches:
        await stream.write(batch)
    replies: list[mux_pb2.MuxReply] = []
    while len(replies) < expect:
        got = await stream.read()
        assert isinstance(got, mux_pb2.MultiplexResponse)
        replies.extend(got.replies)
    await stream.done_writing()
    return replies


async def test_a_stream_runs_at_most_its_bound_of_calls(both: Both, monkeypatch: pytest.MonkeyPatch) -> None:
    """The server's own bound: a client past it gets RESOURCE_EXHAUSTED for the extra calls alone."""
    monkeypatch.setattr(mux_server, "MAX_IN_FLIGHT", 2)
    calls = []
    for i in range(3):
        call = mux_pb2.MuxCall(id=i + 1, timeout_us=300_000)
        call.policy_get_policy.CopyFrom(policy_pb2.GetPolicyRequest(scope=scope(SLEEPY)))
        calls.append(call)
    replies = await raw_exchange(both, [mux_pb2.MultiplexRequest(calls=calls)], expect=3)
    codes = sorted(grpc.StatusCode(_code(r.error.code)).name for r in replies)
    assert codes == ["DEADLINE_EXCEEDED", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED"], codes


def _code(value: int) -> grpc.StatusCode:
    return next(code for code in grpc.StatusCode if code.value[0] == value)


async def test_a_stopping_server_ends_its_streams_once_answered_instead_of_holding_the_grace(
    tmp_path: Path,
) -> None:
    """A long-lived stream would keep a graceful stop waiting its whole grace: draining ends it."""
    async with running_suite(tmp_path / "data", insecure=False, overrides={"audit": audit_keys()}) as suite:
        mux = MuxChannel(suite.channel)
        budget = budget_pb2_grpc.BudgetServiceStub(mux.as_channel())
        status = budget_pb2.GetStatusRequest(scope=scope("alice"))
        assert (await outcome(budget.GetStatus(status, metadata=agent(), timeout=5)))[0] == "OK"  # streams open
        started = asyncio.get_running_loop().time()
        await suite.server.stop(grace=30)
        stopped_in = asyncio.get_running_loop().time() - started
        assert stopped_in < 15, f"the open streams held the stop for {stopped_in:.1f} s of its 30 s grace"
        assert (await outcome(budget.GetStatus(status, metadata=agent(), timeout=5)))[0] == "UNAVAILABLE"
        await mux.close()


async def test_a_new_credential_opens_fresh_streams_and_the_old_ones_close(both: Both) -> None:
    """A re-minted token is checked when its stream opens; the streams of the old one end once answered."""
    channel = both.mux.as_channel()
    first, second = meta("loomflow-agent"), meta("loomflow-agent-2")
    assert (await outcome(get_policy("alice", metadata=first)(channel)))[0] == "OK"
    old = [s for s in both.mux._streams if s is not None]
    assert old
    assert all(s.auth == first for s in old)
    assert (await outcome(get_policy("alice", metadata=second)(channel)))[0] == "OK"
    assert all(s is not None and s.auth == second for s in both.mux._streams)
    assert all(s.broken for s in old), "the old credential's streams closed (no call was left on them)"
