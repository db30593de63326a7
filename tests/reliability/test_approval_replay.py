"""Approvals cannot be replayed, and no service credential can give one (issue 19, items 1 and 8).

The attack as it was found: alice runs a destructive tool with deferred approvals, an
operator approves once, and alice then runs the tool again in later runs by passing the
same ``approval_ids``. Now the approval is consumed by the one run that uses it (a
compare-and-set in the Policy store, on SQLite and on Postgres); every later run that
presents it ends with FAILED_PRECONDITION, the tool does not run, and the refusal is in
alice's audit chain and the security log.

Second attack: the Agent's service credential (stolen) resolves a tenant's pending
approval itself. It is PERMISSION_DENIED; only an operator, or the tenant where the rule
allows self-approval, can answer.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from loomflow.client import ApprovalPending, ApprovalRequired, FailedPrecondition
from loomflow.kernel.auth import Role
from loomflow.v1 import policy_pb2, policy_pb2_grpc, tenancy_pb2
from tests.agent.conftest import Tenancy, secure_suite, token
from tests.support import backends

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


@contextlib.asynccontextmanager
async def suite_on(backend: str, tmp_path: Path, **policy: object) -> AsyncIterator[Tenancy]:
    async with contextlib.AsyncExitStack() as stack:
        dsn = await stack.enter_async_context(backends.isolated(backend, tmp_path, f"replay_{tmp_path.name[-20:]}"))
        overrides = {"policy": {"dsn": dsn, **policy}}
        yield await stack.enter_async_context(secure_suite(tmp_path, overrides=overrides))


@pytest.mark.parametrize("backend", BACKENDS)
async def test_an_approval_used_once_cannot_be_replayed_in_later_runs(
    tmp_path: Path, backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with suite_on(backend, tmp_path) as tenancy:
        alice = tenancy.agent("alice")
        with pytest.raises(ApprovalRequired) as caught:
            await alice.run("/call notes_clear {}", user_id="alice", defer_approvals=True)
        approval_id = caught.value.approval_id
        await tenancy.policy().resolve_approval(approval_id, True, user_id="alice")

        resumed = await alice.run("/call notes_clear {}", user_id="alice", approval_ids=[approval_id])
        assert resumed.tool_calls[0].executed, "the approved call runs once"

        with caplog.at_level("WARNING", logger="loomflow.security"):
            for replay in range(3):
                with pytest.raises(FailedPrecondition) as refused:
                    await alice.run("/call notes_clear {}", user_id="alice", approval_ids=[approval_id])
                assert not isinstance(refused.value, ApprovalRequired)
                assert "single-use" in str(refused.value), f"replay {replay}: {refused.value}"
        logged = [r for r in caplog.records if r.getMessage() == "approval_reuse_refused"]
        assert len(logged) == 3
        assert {r.__dict__["why"] for r in logged} == {"already_used"}

        entries = await tenancy.audit().query(user_id="alice", action="approval_reuse_refused")
        assert len(entries) == 3, "every refused reuse is in the tenant's audit chain"
        assert {e.payload["approval_id"] for e in entries} == {approval_id}
        executed = await tenancy.audit().query(user_id="alice", action="tool_call")
        ran = [e for e in executed if e.payload["allowed"] and e.payload["tool"] == "notes_clear"]
        assert len(ran) == 1, f"notes_clear was allowed {len(ran)} times by one approval"
        assert (await tenancy.audit().verify(user_id="alice")).ok


@pytest.mark.parametrize("backend", BACKENDS)
async def test_an_approval_waited_for_is_used_by_its_own_run_only(tmp_path: Path, backend: str) -> None:
    """Approved while the run waited: that run used it, so passing its id to a new run is refused."""
    async with suite_on(backend, tmp_path) as tenancy:
        alice = tenancy.agent("alice")
        policy = tenancy.policy()
        stream = alice.stream("/call notes_clear {}", user_id="alice")
        approval_id = ""
        async for event in stream:
            if isinstance(event, ApprovalPending):
                approval_id = event.approval.approval_id
                await policy.resolve_approval(approval_id, True, user_id="alice")
        assert approval_id
        stored = await policy.get_approval(approval_id, user_id="alice")
        assert stored.consumed_run_id, "the waiting run consumed its approval"
        with pytest.raises(FailedPrecondition):
            await alice.run("/call notes_clear {}", user_id="alice", approval_ids=[approval_id])


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_service_credential_cannot_approve_a_tenants_approval(tmp_path: Path, backend: str) -> None:
    async with suite_on(backend, tmp_path) as tenancy:
        alice = tenancy.agent("alice")
        with pytest.raises(ApprovalRequired) as caught:
            await alice.run("/call notes_clear {}", user_id="alice", defer_approvals=True)
        approval_id = caught.value.approval_id
        stub = policy_pb2_grpc.PolicyServiceStub(tenancy.suite.channel)
        stolen = (("authorization", f"Bearer {token('loomflow-agent', Role.SERVICE)}"),)
        resolve = policy_pb2.ResolveApprovalRequest(
            scope=tenancy_pb2.UserScope(user_id="alice"),
            approval_id=approval_id,
            resolution=policy_pb2.RESOLUTION_APPROVE,
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.ResolveApproval(resolve, metadata=stolen)
        assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
        pending = await tenancy.policy().get_approval(approval_id, user_id="alice")
        assert pending.status == policy_pb2.APPROVAL_STATUS_PENDING
        # Nor can the tenant themself: the default rule for a destructive tool needs an operator.
        own = (("authorization", f"Bearer {token('alice')}"),)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.ResolveApproval(resolve, metadata=own)
        assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(ApprovalRequired):
            await alice.run("/call notes_clear {}", user_id="alice", defer_approvals=True, approval_ids=[approval_id])
