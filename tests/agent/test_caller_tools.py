"""Tools the caller runs: gated like server tools, the run pauses durably, the client runs them and continues."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
import pytest

from loomflow.client import Agent, Approval, ApprovalAnswer, FailedPrecondition, NotFound, get_run_context, limit, tool
from loomflow.v1 import agent_pb2, agent_pb2_grpc, policy_pb2, tenancy_pb2
from tests.agent.conftest import Tenancy, approver, secure_suite, token

PROMPT = 'where is my order?\n/call lookup_order {"order_id": "42"}'
calls: list[dict[str, Any]] = []


@tool
async def lookup_order(order_id: str, include_items: bool = False) -> str:
    """Looks an order up by its id."""
    ctx = get_run_context()
    calls.append({"order_id": order_id, "user_id": ctx.user_id, "session_id": ctx.session_id, "run_id": ctx.run_id})
    return f"order {order_id} shipped to {ctx.user_id}"


def test_tool_derives_the_json_schema_from_type_hints() -> None:
    assert lookup_order.parameters == {
        "type": "object",
        "properties": {"order_id": {"type": "string"}, "include_items": {"type": "boolean"}},
        "required": ["order_id"],
    }
    assert lookup_order.description == "Looks an order up by its id."


async def reserved(tenancy: Tenancy, user: str) -> int:
    status = await tenancy.budget().get_status(user_id=user)
    return sum(u.reserved for u in status.limits)


async def limited(tenancy: Tenancy) -> None:
    await tenancy.budget().set_limits([limit("total_tokens", 10**9)], target="default_user", anonymous=True)


def raw_run(tenancy: Tenancy, user: str, prompt: str = PROMPT) -> agent_pb2.RunRequest:
    options = agent_pb2.RunOptions(prompt=prompt, session_id="conv_7", caller_tools=[lookup_order.declaration()])
    return agent_pb2.RunRequest(scope=tenancy_pb2.UserScope(user_id=user), options=options)


async def test_an_allowed_caller_tool_is_audited_run_by_the_client_and_its_result_reaches_the_model(
    tenancy: Tenancy,
) -> None:
    await limited(tenancy)
    calls.clear()
    agent = Agent(tenancy.address, token=token("alice"), tools=[lookup_order])
    tenancy.clients.append(agent)
    result = await agent.run(PROMPT, user_id="alice", session_id="conv_7")
    assert result.status == "completed"
    assert "[lookup_order] order 42 shipped to alice" in result.output, "the model reads the caller's result"
    assert calls == [{"order_id": "42", "user_id": "alice", "session_id": "conv_7", "run_id": result.run_id}]
    gated = await tenancy.audit().query(user_id="alice", run_id=result.run_id, action="tool_call")
    assert len(gated) == 1, "the call is audited (write-ahead) before it is handed to the caller"
    assert gated[0].decision_id
    assert await reserved(tenancy, "alice") == 0, "no hold outlives the run"


async def test_a_caller_tool_the_policy_denies_is_never_handed_out(tenancy: Tenancy) -> None:
    deny = policy_pb2.Rule(id="no-orders", tool="lookup_*", decision=policy_pb2.DECISION_DENY, reason="nope")
    await tenancy.policy().put_policy(policy_pb2.Policy(rules=[deny]), user_id="alice")
    calls.clear()
    agent = Agent(tenancy.address, token=token("alice"), tools=[lookup_order])
    tenancy.clients.append(agent)
    result = await agent.run(PROMPT, user_id="alice")
    assert result.interrupted
    assert "denied" in result.interruption_reason
    assert calls == []
    assert result.pending_tool_calls == ()


async def test_a_caller_tool_that_asks_waits_for_the_approval_then_pauses(tenancy: Tenancy) -> None:
    ask = policy_pb2.Rule(id="ask-orders", tool="lookup_order", decision=policy_pb2.DECISION_ASK)
    await tenancy.policy().put_policy(policy_pb2.Policy(rules=[ask]), user_id="alice")
    calls.clear()
    agent = Agent(tenancy.address, token=token("alice"), tools=[lookup_order])
    tenancy.clients.append(agent)
    async with approver(tenancy, lambda a: a.user_id == "alice") as seen:
        result = await agent.run(PROMPT, user_id="alice")
    assert [a.tool_name for a in seen] == ["lookup_order"]
    assert result.status == "completed"
    assert len(calls) == 1
    assert result.tool_calls[0].approval_id == seen[0].approval_id


async def test_a_paused_run_survives_an_agent_restart_and_holds_its_budget_meanwhile(tmp_path: Path) -> None:
    """The Agent alone restarts (its durable store under its data dir); the other services keep running."""
    async with secure_suite(tmp_path / "svc", services="memory,budget,policy,audit") as backing:
        await limited(backing)
        addresses = {f"{n}_address": backing.address for n in ("memory", "budget", "policy", "audit")}
        async with secure_suite(tmp_path / "agent", agent=addresses, services="agent") as first:
            stub = agent_pb2_grpc.AgentServiceStub(first.suite.channel)
            paused = await stub.Run(raw_run(first, "alice"), metadata=(("authorization", f"Bearer {token('alice')}"),))
        assert paused.status == agent_pb2.RUN_STATUS_REQUIRES_ACTION
        assert [p.tool_name for p in paused.pending_tool_calls] == ["lookup_order"]
        assert paused.turns == 1
        held = await reserved(backing, "alice")
        assert held > 0, "the paused run keeps its reservation while no Agent runs"
        async with secure_suite(tmp_path / "agent", agent=addresses, services="agent") as restarted:
            agent = restarted.agent("alice")
            result = await agent.continue_run(
                paused.run_id,
                [agent_pb2.ToolResult(call_id=paused.pending_tool_calls[0].call_id, output="order 42: delivered")],
                user_id="alice",
            )
            assert result.status == "completed"
            assert result.run_id == paused.run_id
            assert result.turns == 2, "the turn count goes on from where the run paused"
            assert "[lookup_order] order 42: delivered" in result.output
            assert result.usage.input_tokens > paused.usage.input_tokens, "the result counts as input tokens"
            assert await reserved(backing, "alice") == 0
            with pytest.raises(NotFound):
                await agent.continue_run(
                    paused.run_id, [agent_pb2.ToolResult(call_id=paused.pending_tool_calls[0].call_id)], user_id="alice"
                )


async def test_the_pause_ttl_releases_the_hold_and_a_late_result_is_failed_precondition(tmp_path: Path) -> None:
    async with secure_suite(tmp_path, agent={"pause_ttl_ms": 1000, "pause_sweep_ms": 100}) as tenancy:
        await limited(tenancy)
        stub = agent_pb2_grpc.AgentServiceStub(tenancy.suite.channel)
        paused = await stub.Run(raw_run(tenancy, "alice"), metadata=(("authorization", f"Bearer {token('alice')}"),))
        assert await reserved(tenancy, "alice") > 0
        for _ in range(100):
            if await reserved(tenancy, "alice") == 0:
                break
            await asyncio.sleep(0.1)
        assert await reserved(tenancy, "alice") == 0, "the expired pause's hold is released"
        # The sweeper releases the hold and audits the expiry concurrently: no order between them.
        for _ in range(50):
            expired = await tenancy.audit().query(user_id="alice", run_id=paused.run_id, action="run_expired")
            if expired:
                break
            await asyncio.sleep(0.1)
        assert len(expired) == 1
        with pytest.raises(FailedPrecondition):
            await tenancy.agent("alice").continue_run(
                paused.run_id,
                [agent_pb2.ToolResult(call_id=paused.pending_tool_calls[0].call_id, output="late")],
                user_id="alice",
            )


async def test_a_tenants_retention_override_shortens_its_paused_runs_only(tmp_path: Path) -> None:
    """Paused runs' retention: deployment-wide --agent-pause-ttl-ms, per tenant `agent_paused_runs_days`."""
    overrides = tmp_path / "retention.yaml"
    overrides.write_text("tenants:\n  alice: {agent_paused_runs_days: 0.00001}\n")  # 0.864 s
    async with secure_suite(
        tmp_path,
        agent={"pause_ttl_ms": 600_000, "pause_sweep_ms": 100},
        overrides={"retention": {"file": str(overrides)}},
    ) as tenancy:
        await limited(tenancy)
        stub = agent_pb2_grpc.AgentServiceStub(tenancy.suite.channel)
        alice = await stub.Run(raw_run(tenancy, "alice"), metadata=(("authorization", f"Bearer {token('alice')}"),))
        await stub.Run(raw_run(tenancy, "bob"), metadata=(("authorization", f"Bearer {token('bob')}"),))
        bob_held = await reserved(tenancy, "bob")
        assert bob_held > 0
        for _ in range(100):
            if await reserved(tenancy, "alice") == 0:
                break
            await asyncio.sleep(0.1)
        assert await reserved(tenancy, "alice") == 0, "alice's paused run expired at her override"
        expired = await tenancy.audit().query(user_id="alice", run_id=alice.run_id, action="run_expired")
        assert len(expired) == 1
        assert await reserved(tenancy, "bob") == bob_held, "bob keeps the deployment's 10-minute TTL"


async def test_paused_runs_per_user_are_capped(tmp_path: Path) -> None:
    async with secure_suite(tmp_path, agent={"max_paused_runs": 1}) as tenancy:
        await limited(tenancy)
        stub = agent_pb2_grpc.AgentServiceStub(tenancy.suite.channel)
        metadata = (("authorization", f"Bearer {token('alice')}"),)
        await stub.Run(raw_run(tenancy, "alice"), metadata=metadata)
        held = await reserved(tenancy, "alice")
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.Run(raw_run(tenancy, "alice"), metadata=metadata)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert await reserved(tenancy, "alice") == held, "the refused pause keeps no hold"
        bob = await stub.Run(raw_run(tenancy, "bob"), metadata=(("authorization", f"Bearer {token('bob')}"),))
        assert bob.status == agent_pb2.RUN_STATUS_REQUIRES_ACTION, "the cap is per user"


async def test_run_stream_streams_the_pause_and_continue_run_stream_the_resume(tenancy: Tenancy) -> None:
    await limited(tenancy)
    stub = agent_pb2_grpc.AgentServiceStub(tenancy.suite.channel)
    metadata = (("authorization", f"Bearer {token('alice')}"),)
    request = raw_run(tenancy, "alice")
    events = [
        e
        async for e in stub.RunStream(
            agent_pb2.RunStreamRequest(scope=request.scope, options=request.options), metadata=metadata
        )
    ]
    assert [e.WhichOneof("event") for e in events][-2:] == ["tool_call", "result"]
    paused = events[-1].result
    assert paused.status == agent_pb2.RUN_STATUS_REQUIRES_ACTION
    resume = agent_pb2.ContinueRunStreamRequest(
        scope=request.scope,
        run_id=paused.run_id,
        results=[agent_pb2.ToolResult(call_id=paused.pending_tool_calls[0].call_id, output="on its way")],
    )
    resumed = [e.event async for e in stub.ContinueRunStream(resume, metadata=metadata)]
    kinds = [e.WhichOneof("event") for e in resumed]
    assert kinds[0] == "tool_call"
    assert kinds[-1] == "result"
    assert "text" in kinds
    assert resumed[-1].result.status == agent_pb2.RUN_STATUS_COMPLETED
    assert "[lookup_order] on its way" in resumed[-1].result.output


async def test_the_approval_handler_answers_with_the_live_user_id_and_may_edit_the_arguments(
    tenancy: Tenancy,
) -> None:
    ask = policy_pb2.Rule(id="ask-orders", tool="lookup_order", decision=policy_pb2.DECISION_ASK)
    await tenancy.policy().put_policy(policy_pb2.Policy(rules=[ask]), user_id="alice")
    asked: list[Approval] = []

    async def on_approval(approval: Approval) -> ApprovalAnswer:
        asked.append(approval)
        return ApprovalAnswer.edit({"order_id": "99"}, note="checked by the help desk")

    calls.clear()
    approver = tenancy.policy()
    agent = Agent(
        tenancy.address, token=token("alice"), tools=[lookup_order], approval_handler=on_approval, approver=approver
    )
    tenancy.clients.append(agent)
    result = await agent.run(PROMPT, user_id="alice")
    await approver.close()
    assert [(a.user_id, a.tool_name, a.arguments) for a in asked] == [("alice", "lookup_order", {"order_id": "42"})]
    assert result.status == "completed"
    assert [c["order_id"] for c in calls] == ["99"], "the caller tool ran with the arguments the handler edited"

    deny = Agent(
        tenancy.address,
        token=token("alice"),
        tools=[lookup_order],
        approval_handler=lambda _: ApprovalAnswer.deny("no"),
        approver=tenancy.policy(),
    )
    tenancy.clients.append(deny)
    denied = await deny.run(PROMPT, user_id="alice")
    assert denied.interrupted
    assert denied.interruption_reason.startswith("denied")
    assert len(calls) == 1


async def test_user_id_none_runs_in_the_anonymous_partition(tenancy: Tenancy) -> None:
    calls.clear()
    agent = Agent(tenancy.address, token=tenancy.operator, tools=[lookup_order])
    tenancy.clients.append(agent)
    result = await agent.run(PROMPT)
    assert result.status == "completed"
    assert calls[0]["user_id"] is None, "get_run_context().user_id is None for the anonymous partition"
    gated = await tenancy.audit().query(anonymous=True, run_id=result.run_id, action="tool_call")
    assert len(gated) == 1
