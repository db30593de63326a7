"""ForgetUser, GetErasure and ExportUser: one erase and one export of a user across the whole suite.

Every service is real (SQLite/file state under the test's folder); the split topology
puts Budget + Policy in a server of their own, so it can be stopped mid-erase and
brought back on the same port and data.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from loomflow.kernel.auth import Role
from loomflow.testing.suite import RunningSuite, running_suite
from loomflow.v1 import agent_pb2, agent_pb2_grpc, audit_pb2, audit_pb2_grpc, policy_pb2, policy_pb2_grpc, tenancy_pb2
from tests.agent.conftest import Tenancy, audit_keys, secure_suite, token, write_script
from tests.agent.test_caller_tools import limited, raw_run, reserved
from tests.support import backends
from tests.support.status import bad_request_fields

DONE, PENDING = agent_pb2.ERASURE_STATE_DONE, agent_pb2.ERASURE_STATE_PENDING
FILES = ("agent.jsonl", "audit.jsonl", "budget.jsonl", "manifest.json", "memory.jsonl", "policy.jsonl")


def auth(subject: str, role: Role = Role.USER) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token(subject, role)}"),)


def operator() -> tuple[tuple[str, str], ...]:
    """Minted per use: a token minted at import expires before a long full run reaches these tests."""
    return auth("ops", Role.OPERATOR)


def scope(user: str) -> tenancy_pb2.UserScope:
    return tenancy_pb2.UserScope(user_id=user)


async def seed(tenancy: Tenancy, stub: agent_pb2_grpc.AgentServiceAsyncStub, user: str) -> None:
    """A finished run (episode, usage, audit entries), a paused one (a held reservation), a policy, an approval."""
    await tenancy.agent(user).run(f"remember that {user} likes green tea", user_id=user, session_id="s1")
    paused = await stub.Run(raw_run(tenancy, user), metadata=auth(user))
    assert paused.status == agent_pb2.RUN_STATUS_REQUIRES_ACTION
    policy = policy_pb2_grpc.PolicyServiceStub(tenancy.suite.channel)
    await policy.PutPolicy(
        policy_pb2.PutPolicyRequest(scope=scope(user), policy=policy_pb2.Policy(mode=policy_pb2.MODE_PLAN)),
        metadata=operator(),
    )
    await policy.RequestApproval(
        policy_pb2.RequestApprovalRequest(scope=scope(user), tool_name="delete_file", run_id="r1"),
        metadata=operator(),
    )


async def export(stub: agent_pb2_grpc.AgentServiceAsyncStub, user: str, metadata: Any) -> dict[str, list[Any]]:
    """ExportUser's archive, unpacked: file name → its JSON records (the manifest as one record)."""
    data = b"".join(
        [c.chunk async for c in stub.ExportUser(agent_pb2.ExportUserRequest(scope=scope(user)), metadata=metadata)]
    )
    files: dict[str, list[Any]] = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar.getmembers():
            text = tar.extractfile(member).read().decode()  # type: ignore[union-attr]
            if member.name == "manifest.json":
                files[member.name] = [json.loads(text)]
            else:
                files[member.name] = [json.loads(line) for line in text.splitlines()]
    return files


async def forget(stub: agent_pb2_grpc.AgentServiceAsyncStub, user: str, request_id: str = "") -> agent_pb2.Erasure:
    request = agent_pb2.ForgetUserRequest(scope=scope(user), request_id=request_id)
    return (await stub.ForgetUser(request, metadata=operator())).erasure


def counts(erasure: agent_pb2.Erasure) -> dict[str, dict[str, int]]:
    return {s.service: dict(s.counts) for s in erasure.steps}


@pytest.fixture(
    params=[
        pytest.param("embedded", id="embedded"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
async def suite(
    request: pytest.FixtureRequest, tmp_path: Path, unique: str
) -> AsyncIterator[tuple[Tenancy, agent_pb2_grpc.AgentServiceAsyncStub]]:
    """Every service on its embedded default, or every durable one on the real Postgres (one schema)."""
    async with contextlib.AsyncExitStack() as stack:
        agent: dict[str, Any] = {}
        overrides: dict[str, dict[str, Any]] = {}
        if request.param == "postgres":
            dsn = await stack.enter_async_context(backends.postgres_schema(f"erasure_{unique}"))
            agent = {"store_dsn": dsn}
            overrides = {name: {"dsn": dsn} for name in ("memory", "budget", "policy", "audit")}
        tenancy = await stack.enter_async_context(secure_suite(tmp_path, agent=agent, overrides=overrides))
        await limited(tenancy)
        stub: agent_pb2_grpc.AgentServiceAsyncStub = agent_pb2_grpc.AgentServiceStub(tenancy.suite.channel)
        yield tenancy, stub


async def test_export_user_then_forget_user_erases_every_service_and_nothing_of_another_user(
    suite: tuple[Tenancy, agent_pb2_grpc.AgentServiceAsyncStub],
) -> None:
    tenancy, stub = suite
    for user in ("alice", "bob"):
        await seed(tenancy, stub, user)
    bob_before = await export(stub, "bob", operator())

    # The user exports their own data with their own token.
    archive = await export(stub, "alice", auth("alice"))
    assert sorted(archive) == list(FILES)
    manifest = archive["manifest.json"][0]
    assert manifest["format"] == "loomflow-export/1"
    assert manifest["user_id"] == "alice"
    for name in ("agent.jsonl", "memory.jsonl", "budget.jsonl", "policy.jsonl", "audit.jsonl"):
        assert archive[name], f"{name} is empty before the erase"
        assert manifest["files"][name] == len(archive[name])
    assert any("green tea" in json.dumps(r) for r in archive["memory.jsonl"])
    assert any(r.get("approval", {}).get("tool_name") == "delete_file" for r in archive["policy.jsonl"])
    assert archive["agent.jsonl"][0]["status"] == "paused"
    assert await reserved(tenancy, "alice") > 0, "the paused run holds budget"

    erasure = await forget(stub, "alice", "ticket-1")
    assert erasure.state == DONE, erasure
    assert [s.service for s in erasure.steps] == ["agent", "memory", "budget", "policy", "audit"]
    receipt = counts(erasure)
    assert receipt["agent"]["paused_runs_deleted"] == 1
    assert receipt["memory"]["episodes_deleted"] >= 1
    assert receipt["budget"]["usage_windows_deleted"] >= 1
    assert receipt["policy"] == {
        "policy_removed": 1,
        "approvals_deleted": 1,
        "pending_approvals_deleted": 1,
        "remembered_deleted": 0,
    }
    assert receipt["audit"]["entries_shredded"] >= 1
    assert await reserved(tenancy, "alice") == 0, "the paused run's hold went back"

    after = await export(stub, "alice", operator())
    for name in ("agent.jsonl", "memory.jsonl", "budget.jsonl", "policy.jsonl"):
        assert after[name] == [], f"{name} still holds alice's data after ForgetUser"
    assert "green tea" not in json.dumps(after["audit.jsonl"]), "an audit payload survived the shred"
    actions = [r["entry"]["action"] for r in after["audit.jsonl"]]
    assert "user.erased" in actions, "the erasure itself is on alice's audit record"
    verified = await audit_pb2_grpc.AuditServiceStub(tenancy.suite.channel).Verify(
        audit_pb2.VerifyRequest(scope=scope("alice"), all_tenants=True), metadata=operator()
    )
    assert verified.ok, "the audit chains must still verify after the shred"

    assert await export(stub, "bob", operator()) == {
        **bob_before,
        "manifest.json": (await export(stub, "bob", operator()))["manifest.json"],
    }
    # Idempotent: the same request answers the same erasure; reading it back answers the receipt.
    again = await forget(stub, "alice", "ticket-1")
    assert again.erasure_id == erasure.erasure_id
    assert counts(again) == receipt
    got = await stub.GetErasure(
        agent_pb2.GetErasureRequest(scope=scope("alice"), erasure_id=erasure.erasure_id), metadata=operator()
    )
    assert got.erasure == again
    # A new erasure of an erased user finds nothing more.
    fresh = await forget(stub, "alice")
    assert fresh.state == DONE
    assert counts(fresh)["memory"] == {"episodes_deleted": 0, "blocks_deleted": 0, "facts_deleted": 0}


async def test_who_may_erase_and_export_and_bad_requests(
    suite: tuple[Tenancy, agent_pb2_grpc.AgentServiceAsyncStub],
) -> None:
    _, stub = suite

    async def code_of(call: Any) -> grpc.StatusCode:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        return caught.value.code()

    denied = grpc.StatusCode.PERMISSION_DENIED
    request = agent_pb2.ForgetUserRequest(scope=scope("alice"))
    assert await code_of(stub.ForgetUser(request, metadata=auth("alice"))) == denied, "a user cannot erase"
    assert await code_of(stub.ForgetUser(request, metadata=auth("agent", Role.SERVICE))) == denied
    assert await code_of(export(stub, "alice", auth("bob"))) == denied, "a user exports only themself"
    assert await code_of(export(stub, "alice", auth("agent", Role.SERVICE))) == denied

    bad_id = agent_pb2.ForgetUserRequest(scope=scope("alice"), request_id="a\x00b")
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await stub.ForgetUser(bad_id, metadata=operator())
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_fields(bad.value) == ["request_id"]
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await stub.ForgetUser(agent_pb2.ForgetUserRequest(), metadata=operator())
    assert missing.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    erasure = await forget(stub, "alice")
    for user, erasure_id in (("alice", "era_unknown"), ("bob", erasure.erasure_id)):
        unknown = agent_pb2.GetErasureRequest(scope=scope(user), erasure_id=erasure_id)
        get = stub.GetErasure(unknown, metadata=operator())
        assert await code_of(get) == grpc.StatusCode.NOT_FOUND, "unknown, or another user's, erasure"


# -- a service down mid-erase ---------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def budget_policy(data_dir: Path, port: int = 0) -> AsyncIterator[RunningSuite]:
    async with running_suite(data_dir, "budget,policy", insecure=False, overrides={"": {"port": port}}) as running:
        yield running


async def test_a_service_down_mid_erase_leaves_the_erasure_pending_until_it_returns(tmp_path: Path) -> None:
    async with contextlib.AsyncExitStack() as stack:
        memory_audit = await stack.enter_async_context(
            running_suite(tmp_path / "ma", "memory,audit", insecure=False, overrides={"audit": audit_keys()})
        )
        first_served = budget_policy(tmp_path / "bp")  # held: an unreferenced context manager would be collected
        first = await first_served.__aenter__()
        port = int(first.address.rsplit(":", 1)[1])
        addresses = {
            "memory_address": memory_audit.address,
            "audit_address": memory_audit.address,
            "budget_address": first.address,
            "policy_address": first.address,
            "erasure_retry_ms": 100,
            "erasure_retry_max_ms": 300,
            "call_timeout_ms": 1000,
        }
        tenancy = await stack.enter_async_context(secure_suite(tmp_path / "agent", agent=addresses, services="agent"))
        stub: agent_pb2_grpc.AgentServiceAsyncStub = agent_pb2_grpc.AgentServiceStub(tenancy.suite.channel)
        await tenancy.agent("alice").run("alice likes green tea", user_id="alice")

        await policy_pb2_grpc.PolicyServiceStub(first.channel).PutPolicy(
            policy_pb2.PutPolicyRequest(scope=scope("alice"), policy=policy_pb2.Policy(mode=policy_pb2.MODE_PLAN)),
            metadata=operator(),
        )
        await first_served.__aexit__(None, None, None)  # Budget and Policy go down
        erasure = await forget(stub, "alice")
        assert erasure.state == PENDING
        states = {s.service: s.state for s in erasure.steps}
        assert states == {"agent": DONE, "memory": DONE, "budget": PENDING, "policy": PENDING, "audit": PENDING}
        assert "UNAVAILABLE" in next(s.last_error for s in erasure.steps if s.service == "budget")
        assert erasure.HasField("next_attempt_at")

        async def state() -> agent_pb2.Erasure:
            request = agent_pb2.GetErasureRequest(scope=scope("alice"), erasure_id=erasure.erasure_id)
            return (await stub.GetErasure(request, metadata=operator())).erasure

        await asyncio.sleep(0.5)
        assert (await state()).state == PENDING, "nothing can complete while Budget and Policy are down"
        async with budget_policy(tmp_path / "bp", port):  # back, same port and data
            for _ in range(100):
                if (done := await state()).state == DONE:
                    break
                await asyncio.sleep(0.1)
            assert done.state == DONE, done
            # Policy's state is durable (SQLite under its data dir): the retried step erased alice's policy.
            assert counts(done)["policy"]["policy_removed"] == 1
            assert "budget" in counts(done)
            assert all(s.attempts >= 1 and not s.last_error for s in done.steps)


async def test_a_run_in_flight_during_the_erase_does_not_store_a_paused_run_afterwards(tmp_path: Path) -> None:
    slow_tool_call = {"delay_ms": 1500, "tool_calls": [{"name": "lookup_order", "arguments": {"order_id": "42"}}]}
    script = write_script(tmp_path / "script.json", [{"when": "slowly", "turns": [slow_tool_call]}])
    async with secure_suite(tmp_path / "suite", agent={"script_file": script, "model": "scripted"}) as tenancy:
        await limited(tenancy)
        stub: agent_pb2_grpc.AgentServiceAsyncStub = agent_pb2_grpc.AgentServiceStub(tenancy.suite.channel)
        run = asyncio.ensure_future(stub.Run(raw_run(tenancy, "alice", "look it up slowly"), metadata=auth("alice")))
        for _ in range(100):
            if await reserved(tenancy, "alice") > 0:
                break
            await asyncio.sleep(0.02)
        assert await reserved(tenancy, "alice") > 0, "the run is in flight, holding budget"
        assert (await forget(stub, "alice")).state == DONE
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await run  # it started before the erase: it may not pause (and store the conversation) after it
        # Budget's erase took its reservation (NOT_FOUND at the next commit); had it not, the pause would be ABORTED.
        assert refused.value.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.ABORTED)
        assert (await export(stub, "alice", operator()))["agent.jsonl"] == [], "a paused run outlived ForgetUser"
        assert await reserved(tenancy, "alice") == 0
