"""The in-process transport answers exactly what the wire answers (kernel/transport/inprocess.py).

Each case makes the same call twice against one running secure suite: once over a
real gRPC channel to its port, once through :class:`InProcessChannel` on the
server's wrapped handlers, and compares the outcome: the reply, or the status
code, message and ``google.rpc.Status`` details of the trailers. The Agent's own
behaviour over both transports is tests/agent (every suite test runs per transport).
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
from google.rpc import error_details_pb2, status_pb2

from loomflow.kernel.auth import AuthSettings, Role, mint_token
from loomflow.kernel.transport.inprocess import InProcessChannel, RequestMutated
from loomflow.policy.servicer import PolicyServicer
from loomflow.testing.suite import TEST_JWT_SECRET, RunningSuite, running_suite
from loomflow.v1 import (
    agent_pb2,
    agent_pb2_grpc,
    budget_pb2,
    budget_pb2_grpc,
    memory_pb2,
    memory_pb2_grpc,
    policy_pb2,
    policy_pb2_grpc,
    tenancy_pb2,
)
from tests.agent.conftest import audit_keys

AUTH = AuthSettings(jwt_secret=TEST_JWT_SECRET)


def meta(subject: str | None, role: Role = Role.SERVICE) -> tuple[tuple[str, str], ...]:
    if subject is None:
        return ()
    return (("authorization", f"Bearer {mint_token(AUTH, subject, role, ttl_seconds=600)}"),)


def scope(user: str) -> tenancy_pb2.UserScope:
    return tenancy_pb2.UserScope(user_id=user)


SLEEPY = "sleepy"  # GetPolicy for this tenant waits until its call is cancelled


@dataclass
class Both:
    suite: RunningSuite
    local: InProcessChannel
    cancelled: list[bool]

    def channels(self) -> dict[str, Any]:
        return {"grpc": self.suite.channel, "inprocess": self.local.as_channel()}


def slow_get_policy(cancelled: list[bool]) -> Callable[..., Awaitable[Any]]:
    """PolicyServicer.GetPolicy, holding the SLEEPY tenant's calls until they are cancelled."""
    original = PolicyServicer.GetPolicy

    async def get_policy(self: PolicyServicer, request: Any, context: Any) -> Any:
        if request.scope.user_id == SLEEPY:
            remaining = context.time_remaining()
            try:
                await asyncio.sleep(5)
            except asyncio.CancelledError:
                cancelled.append(remaining is not None and 0 < remaining <= 0.3)
                raise
        return await original(self, request, context)

    return get_policy


@pytest.fixture
async def both(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Both]:
    cancelled: list[bool] = []
    monkeypatch.setattr(PolicyServicer, "GetPolicy", slow_get_policy(cancelled))  # before it is registered
    overrides: dict[str, dict[str, Any]] = {
        "": {"rate_limit_per_user": 0.01, "rate_burst": 1},
        "audit": audit_keys(),
    }
    async with running_suite(tmp_path / "data", insecure=False, overrides=overrides) as suite:
        yield Both(suite, InProcessChannel(suite.server.local_methods), cancelled)


Outcome = tuple[str, Any, str, list[Any]]


async def outcome(call: Awaitable[Any]) -> Outcome:
    """What the caller can observe: the reply, or the code, message and rich details of the status."""
    try:
        reply = await call
    except grpc.aio.AioRpcError as error:
        raw = dict(error.trailing_metadata() or ()).get("grpc-status-details-bin")
        status = status_pb2.Status.FromString(raw) if raw else status_pb2.Status()
        return (error.code().name, None, error.details() or "", [(d.type_url, d.value) for d in status.details])
    return ("OK", reply, "", [])


async def same(both: Both, make: Callable[[Any], Awaitable[Any]]) -> Outcome:
    got = {name: await outcome(make(channel)) for name, channel in both.channels().items()}
    assert got["inprocess"] == got["grpc"], got
    return got["grpc"]


async def test_a_reply_is_the_same(both: Both) -> None:
    code, reply, _, _ = await same(
        both,
        lambda ch: policy_pb2_grpc.PolicyServiceStub(ch).GetPolicy(
            policy_pb2.GetPolicyRequest(scope=scope("alice")), metadata=meta("loomflow-agent"), timeout=5
        ),
    )
    assert code == "OK"
    assert reply is not None


async def test_invalid_arguments_carry_the_same_field_violations(both: Both) -> None:
    code, _, message, details = await same(
        both,
        lambda ch: memory_pb2_grpc.MemoryServiceStub(ch).Recall(
            memory_pb2.RecallRequest(scope=scope(" alice"), query="x", limit=-1),
            metadata=meta("loomflow-agent"),
            timeout=5,
        ),
    )
    assert code == "INVALID_ARGUMENT", message
    assert details


async def test_a_missing_or_end_user_credential_is_refused_alike(both: Both) -> None:
    def recall(metadata: tuple[tuple[str, str], ...]) -> Callable[[Any], Awaitable[Any]]:
        return lambda ch: memory_pb2_grpc.MemoryServiceStub(ch).Recall(
            memory_pb2.RecallRequest(scope=scope("alice"), query="x", limit=1), metadata=metadata, timeout=5
        )

    assert (await same(both, recall(())))[0] == "UNAUTHENTICATED"
    assert (await same(both, recall(meta("alice", Role.USER))))[0] == "PERMISSION_DENIED"


async def test_a_token_naming_another_tenant_is_refused_alike(both: Both) -> None:
    code, _, message, _ = await same(
        both,
        lambda ch: agent_pb2_grpc.AgentServiceStub(ch).GetAgent(
            agent_pb2.GetAgentRequest(scope=scope("bob"), name="x"), metadata=meta("alice", Role.USER), timeout=5
        ),
    )
    assert code == "PERMISSION_DENIED", message


async def test_another_tenants_record_is_not_found_alike(both: Both) -> None:
    # GetApproval accepts end users, so the suite's rate limit (one call) applies: one tenant per call.
    code, _, _, _ = await same(
        both,
        lambda ch: policy_pb2_grpc.PolicyServiceStub(ch).GetApproval(
            policy_pb2.GetApprovalRequest(scope=scope(f"u-{uuid.uuid4().hex[:8]}"), approval_id="a-1"),
            metadata=meta("loomflow-agent"),
            timeout=5,
        ),
    )
    assert code == "NOT_FOUND"


async def test_a_deadline_ends_the_call_and_its_handler_alike(both: Both) -> None:
    """A handler still working at the caller's deadline: DEADLINE_EXCEEDED, and the handler is cancelled."""
    code, _, message, _ = await same(
        both,
        lambda ch: policy_pb2_grpc.PolicyServiceStub(ch).GetPolicy(
            policy_pb2.GetPolicyRequest(scope=scope(SLEEPY)), metadata=meta("loomflow-agent"), timeout=0.3
        ),
    )
    assert (code, message) == ("DEADLINE_EXCEEDED", "Deadline Exceeded")
    await asyncio.sleep(0.2)
    assert both.cancelled == [True, True], "the handler saw the deadline and was cancelled, per transport"


async def test_a_server_stream_ends_at_its_deadline(both: Both) -> None:
    async def watch(ch: Any) -> list[Any]:
        stream = policy_pb2_grpc.PolicyServiceStub(ch).WatchApprovals(
            policy_pb2.WatchApprovalsRequest(scope=scope("alice")), metadata=meta("loomflow-agent"), timeout=0.3
        )
        return [event async for event in stream]

    got = {name: await outcome(watch(ch)) for name, ch in both.channels().items()}
    # The code and details are the same; the wire's message is grpc core's text, which says
    # "Stream removed (Deadline Exceeded)" once the stream had sent its headers.
    assert got["inprocess"][0] == got["grpc"][0] == "DEADLINE_EXCEEDED"
    assert got["inprocess"][3] == got["grpc"][3] == []
    assert all("Deadline Exceeded" in outcome[2] for outcome in got.values()), got


async def test_a_rate_limited_tenant_gets_the_same_refusal(both: Both) -> None:
    async def twice(ch: Any, user: str) -> Any:
        stub = agent_pb2_grpc.AgentServiceStub(ch)
        request = agent_pb2.GetAgentRequest(scope=scope(user), name="none")
        first = await outcome(stub.GetAgent(request, metadata=meta(user, Role.USER), timeout=5))
        assert first[0] != "RESOURCE_EXHAUSTED"
        return await stub.GetAgent(request, metadata=meta(user, Role.USER), timeout=5)

    got = {name: await outcome(twice(ch, f"limited-{name}")) for name, ch in both.channels().items()}
    assert got["inprocess"][0] == got["grpc"][0] == "RESOURCE_EXHAUSTED"
    assert got["inprocess"][2].rsplit(" ", 2)[0] == got["grpc"][2].rsplit(" ", 2)[0]  # "... retry in <ms> ms"

    def info(details: list[Any]) -> list[tuple[str, str, dict[str, str]]]:
        """The ErrorInfo of each transport, less the retry hint that counts down between the calls."""
        found = []
        for type_url, value in details:
            assert type_url.endswith("google.rpc.ErrorInfo") or type_url.endswith("google.rpc.RetryInfo")
            if type_url.endswith("ErrorInfo"):
                parsed = error_details_pb2.ErrorInfo.FromString(value)
                found.append((parsed.reason, parsed.domain, {"limit": parsed.metadata["limit"]}))
        return found

    assert (
        info(got["inprocess"][3])
        == info(got["grpc"][3])
        == [("RATE_LIMITED", "loomflow", {"limit": "rate_limit_per_user"})]
    )
    assert [t for t, _ in got["inprocess"][3]] == [t for t, _ in got["grpc"][3]]


async def test_cancelling_the_call_cancels_the_handler(both: Both) -> None:
    stub = policy_pb2_grpc.PolicyServiceStub(both.local.as_channel())
    stream = stub.WatchApprovals(
        policy_pb2.WatchApprovalsRequest(scope=scope("alice")), metadata=meta("loomflow-agent"), timeout=5
    )
    reader = asyncio.ensure_future(stream.read())
    await asyncio.sleep(0.1)
    assert stream.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    await asyncio.sleep(0)
    assert stream.done()


async def test_an_unknown_method_is_unimplemented(both: Both) -> None:
    call = both.local.unary_unary("/loomflow.v1.MemoryService/NoSuchRpc")(
        memory_pb2.RecallRequest(), metadata=meta("loomflow-agent"), timeout=5
    )
    assert (await outcome(call))[:3] == ("UNIMPLEMENTED", None, "Method not found!")


async def test_a_handler_that_changes_its_request_is_caught(both: Both) -> None:
    """The tests run with CHECK_REQUESTS: a handler mutating what the caller still holds fails the call."""
    handler = both.suite.server.local_methods.get("/loomflow.v1.BudgetService/GetStatus")
    assert handler is not None
    assert handler.unary_unary is not None
    original: Callable[[Any, Any], Awaitable[Any]] = handler.unary_unary

    async def mutating(request: Any, context: Any) -> Any:
        reply = await original(request, context)
        request.scope.user_id = "mallory"
        return reply

    mutated: grpc.RpcMethodHandler[Any, Any] = grpc.unary_unary_rpc_method_handler(mutating)
    both.suite.server.local_methods.add("loomflow.v1.BudgetService", {"GetStatus": mutated})
    with pytest.raises(RequestMutated):
        await budget_pb2_grpc.BudgetServiceStub(both.local.as_channel()).GetStatus(
            budget_pb2.GetStatusRequest(scope=scope("alice")), metadata=meta("loomflow-agent"), timeout=5
        )
