"""PolicyService through a real server with real credentials: routing, decisions, approvals, access."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from loomflow.testing.suite import RunningSuite, running_suite
from loomflow.v1 import policy_pb2
from tests.policy.grpc_support import OPERATOR, SERVICE, Client, client, rule, user
from tests.support.status import bad_request_fields, error_info

ALLOW, DENY, ASK = policy_pb2.DECISION_ALLOW, policy_pb2.DECISION_DENY, policy_pb2.DECISION_ASK
APPROVE, REJECT = policy_pb2.RESOLUTION_APPROVE, policy_pb2.RESOLUTION_DENY


def self_approvable(tool: str) -> policy_pb2.Rule:
    return policy_pb2.Rule(id=f"self-{tool}", tool=tool, decision=ASK, self_approval=True)


FAST_EXPIRY = {"policy": {"expiry_sweep_seconds": 0.05, "refresh_seconds": 0.05}}


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[RunningSuite]:
    async with running_suite(tmp_path, services="policy", insecure=False, overrides=FAST_EXPIRY) as running:
        yield running


@pytest.fixture
def agent(served: RunningSuite) -> Client:
    """The Agent: a service credential acting for whichever tenant it names."""
    return client(served.channel, SERVICE)


@pytest.fixture
def operator(served: RunningSuite) -> Client:
    return client(served.channel, OPERATOR)


# -- routing and decisions ----------------------------------------------------


async def test_a_user_with_a_policy_gets_it_and_everyone_else_the_default(agent: Client, operator: Client) -> None:
    await operator.put_policy("alice", policy_pb2.Policy(rules=[rule("alice-no-shell", "shell", DENY)]))
    await operator.put_policy(
        "any", policy_pb2.Policy(rules=[rule("default-ask-shell", "shell", ASK)]), default_policy=True
    )

    alice = await agent.check("alice", "shell")
    bob = await agent.check("bob", "shell")
    assert (alice.decision, alice.matched_rule) == (DENY, "alice-no-shell")
    assert (bob.decision, bob.matched_rule) == (ASK, "default-ask-shell")
    assert not (await agent.get_policy("alice")).is_default
    bobs = await agent.get_policy("bob")
    assert bobs.is_default
    assert bobs.policy.rules[0].id == "default-ask-shell"


async def test_without_any_policy_destructive_tools_ask_and_others_are_allowed(agent: Client) -> None:
    destructive = await agent.check("carol", "notes_clear", tool_tags=["destructive"])
    harmless = await agent.check("carol", "calculator", tool_tags=["read_only"])
    assert destructive.decision == ASK
    assert destructive.mode == policy_pb2.MODE_DEFAULT
    assert harmless.decision == ALLOW
    assert harmless.matched_rule == ""


async def test_every_decision_has_its_own_unguessable_id(agent: Client) -> None:
    ids = [(await agent.check("alice", "calculator")).decision_id for _ in range(50)]
    assert len(set(ids)) == 50
    assert all(len(i) >= 20 for i in ids), "decision ids must carry enough randomness to be unguessable"


async def test_argument_conditions_apply_to_wire_arguments(agent: Client, operator: Client) -> None:
    condition = policy_pb2.ArgumentCondition(
        argument="path", operator=policy_pb2.CONDITION_OPERATOR_MATCHES, values=["/etc/*"]
    )
    await operator.put_policy("alice", policy_pb2.Policy(rules=[rule("no-etc", "*_file", DENY, condition)]))
    etc = await agent.check("alice", "delete_file", arguments={"path": "/etc/passwd"})
    tmp = await agent.check("alice", "delete_file", arguments={"path": "/tmp/x"})
    assert (etc.decision, etc.matched_rule) == (DENY, "no-etc")
    assert tmp.decision == ALLOW


async def test_policy_changes_apply_to_the_next_check(agent: Client, operator: Client) -> None:
    assert (await agent.check("dave", "shell")).decision == ALLOW
    put = await operator.put_policy("dave", policy_pb2.Policy(mode=policy_pb2.MODE_PLAN))
    assert put.version > 0
    assert (await agent.check("dave", "shell")).decision == DENY
    again = await operator.put_policy("dave", policy_pb2.Policy(mode=policy_pb2.MODE_BYPASS))
    assert again.version > put.version, "policy versions only grow"
    assert (await agent.check("dave", "shell", tool_tags=["destructive"])).decision == ALLOW


async def test_bad_rules_are_invalid_argument_naming_the_field(operator: Client) -> None:
    bad = policy_pb2.Policy(
        rules=[
            rule("same", "*", ALLOW),
            rule(
                "same",
                "*",
                DENY,
                policy_pb2.ArgumentCondition(
                    argument="size", operator=policy_pb2.CONDITION_OPERATOR_LESS_THAN, values=["big"]
                ),
            ),
        ]
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await operator.put_policy("alice", bad)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    fields = bad_request_fields(caught.value)
    assert "policy.rules[1].id" in fields
    assert "policy.rules[1].conditions[0].values[0]" in fields


async def test_a_rule_without_a_decision_is_refused_by_the_contract(operator: Client) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await operator.put_policy("alice", policy_pb2.Policy(rules=[policy_pb2.Rule(id="x", tool="*")]))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert any("decision" in f for f in bad_request_fields(caught.value))


# -- credentials ----------------------------------------------------------------


async def test_only_an_operator_may_put_a_policy(served: RunningSuite) -> None:
    policy = policy_pb2.Policy(mode=policy_pb2.MODE_BYPASS)
    for metadata in (SERVICE, user("alice")):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await client(served.channel, metadata).put_policy("alice", policy)
        assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert (await client(served.channel, OPERATOR).put_policy("alice", policy)).mode == policy_pb2.MODE_BYPASS


async def test_end_user_credentials_cannot_call_policy_even_for_themselves(served: RunningSuite) -> None:
    alice = client(served.channel, user("alice"))
    for call in (
        alice.check("alice", "shell"),
        alice.request_approval("alice", "shell"),
        alice.consume("alice", "apr_x", "shell", run_id="r"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED


async def test_a_service_credential_cannot_resolve_any_approval(agent: Client, operator: Client) -> None:
    await operator.put_policy("alice", policy_pb2.Policy(rules=[self_approvable("shell")]))
    for tool in ("shell", "delete_file"):  # self-approvable or not: never by a service
        approval = await agent.request_approval("alice", tool)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await agent.resolve("alice", approval.approval_id, APPROVE)
        assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
        assert (await agent.get_approval("alice", approval.approval_id)).status == policy_pb2.APPROVAL_STATUS_PENDING


async def test_the_tenant_resolves_its_own_approval_only_where_the_rule_says_so(
    served: RunningSuite, agent: Client, operator: Client
) -> None:
    await operator.put_policy("alice", policy_pb2.Policy(rules=[self_approvable("shell")]))
    alice = client(served.channel, user("alice"))
    own = await agent.request_approval("alice", "shell")
    assert own.self_approval
    resolved = await alice.resolve("alice", own.approval_id, APPROVE)
    assert (resolved.status, resolved.resolved_by) == (policy_pb2.APPROVAL_STATUS_APPROVED, "user:alice")

    operator_only = await agent.request_approval("alice", "delete_file")  # no rule: destructive default
    assert not operator_only.self_approval
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await alice.resolve("alice", operator_only.approval_id, APPROVE)
    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED

    bobs = await agent.request_approval("bob", "shell")
    for target in ("bob", "alice"):  # for bob's scope: token mismatch; in her own: not found
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await alice.resolve(target, bobs.approval_id, APPROVE)
        assert caught.value.code() in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.NOT_FOUND)
    assert (await agent.get_approval("bob", bobs.approval_id)).status == policy_pb2.APPROVAL_STATUS_PENDING


async def test_self_approval_is_refused_on_rules_that_do_not_ask(operator: Client) -> None:
    allow = policy_pb2.Rule(id="r", tool="shell", decision=ALLOW, self_approval=True)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await operator.put_policy("alice", policy_pb2.Policy(rules=[allow]))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_fields(caught.value) == ["policy.rules[0].self_approval"]


async def test_calls_without_a_token_are_unauthenticated(served: RunningSuite) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client(served.channel).check("alice", "shell")
    assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED


# -- approvals ----------------------------------------------------------------


async def test_the_approval_flow_ask_request_resolve(agent: Client, operator: Client) -> None:
    check = await agent.check("alice", "delete_file", tool_tags=["destructive"], run_id="run-1")
    assert check.decision == ASK
    approval = await agent.request_approval(
        "alice",
        "delete_file",
        decision_id=check.decision_id,
        run_id="run-1",
        session_id="s-1",
        arguments={"path": "/tmp/a"},
        reason=check.reason,
    )
    assert approval.status == policy_pb2.APPROVAL_STATUS_PENDING
    assert approval.scope.user_id == "alice"
    assert approval.decision_id == check.decision_id
    assert approval.expires_at.ToMilliseconds() > approval.created_at.ToMilliseconds()

    resolved = await operator.resolve(
        "alice", approval.approval_id, APPROVE, note="fine", edited_arguments={"path": "/tmp/b"}
    )
    assert resolved.status == policy_pb2.APPROVAL_STATUS_APPROVED
    assert dict(resolved.edited_arguments) == {"path": "/tmp/b"}
    assert resolved.resolved_by == "operator:oncall"
    fetched = await agent.get_approval("alice", approval.approval_id)
    assert fetched == resolved


async def test_resolving_twice_with_the_same_answer_is_idempotent_but_not_a_change_of_mind(
    agent: Client, operator: Client
) -> None:
    approval = await agent.request_approval("alice", "shell")
    first = await operator.resolve("alice", approval.approval_id, REJECT)
    assert (await operator.resolve("alice", approval.approval_id, REJECT)) == first
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await operator.resolve("alice", approval.approval_id, APPROVE)
    assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION


async def test_denying_with_edited_arguments_is_invalid(agent: Client, operator: Client) -> None:
    approval = await agent.request_approval("alice", "shell")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await operator.resolve("alice", approval.approval_id, REJECT, edited_arguments={"cmd": "ls"})
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_fields(caught.value) == ["edited_arguments"]


async def test_another_tenants_approval_is_not_found_for_every_read_and_write(agent: Client, operator: Client) -> None:
    approval = await agent.request_approval("alice", "delete_file")
    for caller in (agent, operator):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await caller.get_approval("bob", approval.approval_id)
        assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await operator.resolve("bob", approval.approval_id, APPROVE)
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    assert (await agent.get_approval("alice", approval.approval_id)).status == policy_pb2.APPROVAL_STATUS_PENDING


async def test_an_unresolved_approval_expires_and_counts_as_a_deny(agent: Client, operator: Client) -> None:
    watcher = agent.watch("erin", include_resolved=True)
    await watcher.ready()
    approval = await agent.request_approval("erin", "delete_file", timeout_ms=100)
    await asyncio.sleep(0.2)
    assert (await agent.get_approval("erin", approval.approval_id)).status == policy_pb2.APPROVAL_STATUS_EXPIRED
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await operator.resolve("erin", approval.approval_id, APPROVE)
    assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "counts as denied" in (caught.value.details() or "")
    seen = await watcher.wait_for(2)
    assert [a.status for a in seen] == [policy_pb2.APPROVAL_STATUS_PENDING, policy_pb2.APPROVAL_STATUS_EXPIRED]
    await watcher.close()


async def test_a_remembered_answer_holds_for_that_user_tool_and_run_only(agent: Client, operator: Client) -> None:
    destructive = ["destructive"]
    approval = await agent.request_approval("alice", "delete_file", run_id="run-1")
    await operator.resolve("alice", approval.approval_id, APPROVE, remember=True)

    same = await agent.check("alice", "delete_file", tool_tags=destructive, run_id="run-1")
    assert (same.decision, same.approval_id) == (ALLOW, approval.approval_id)
    for who, tool, run in (
        ("alice", "delete_file", "run-2"),
        ("alice", "shell", "run-1"),
        ("bob", "delete_file", "run-1"),
    ):
        other = await agent.check(who, tool, tool_tags=destructive, run_id=run)
        assert (other.decision, other.approval_id) == (ASK, ""), (who, tool, run)


async def test_a_remembered_denial_denies_the_rest_of_the_run(agent: Client, operator: Client) -> None:
    approval = await agent.request_approval("alice", "shell", run_id="run-9")
    await operator.resolve("alice", approval.approval_id, REJECT, remember=True)
    again = await agent.check("alice", "shell", tool_tags=["destructive"], run_id="run-9")
    assert (again.decision, again.approval_id) == (DENY, approval.approval_id)


async def test_remember_needs_a_run(agent: Client, operator: Client) -> None:
    approval = await agent.request_approval("alice", "shell")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await operator.resolve("alice", approval.approval_id, APPROVE, remember=True)
    assert bad_request_fields(caught.value) == ["remember"]


async def test_a_remembered_approval_never_overrides_a_deny_rule(agent: Client, operator: Client) -> None:
    approval = await agent.request_approval("frank", "shell", run_id="run-1")
    await operator.resolve("frank", approval.approval_id, APPROVE, remember=True)
    await operator.put_policy("frank", policy_pb2.Policy(rules=[rule("no-shell", "shell", DENY)]))
    assert (await agent.check("frank", "shell", run_id="run-1")).decision == DENY


# -- watching -----------------------------------------------------------------


async def test_a_tenants_watch_sees_only_that_tenants_approvals(agent: Client, operator: Client) -> None:
    alice_watch = agent.watch("alice")
    everyone = operator.watch("ops", all_tenants=True)
    await asyncio.gather(alice_watch.ready(), everyone.ready())
    bobs = await agent.request_approval("bob", "shell")
    alices = await agent.request_approval("alice", "shell")
    anonymous = await agent.stub.RequestApproval(
        policy_pb2.RequestApprovalRequest(scope={"anonymous": {}}, tool_name="shell"), metadata=SERVICE
    )

    assert [a.approval_id for a in await alice_watch.wait_for(1)] == [alices.approval_id]
    got = await everyone.wait_for(3)
    assert [a.approval_id for a in got] == [bobs.approval_id, alices.approval_id, anonymous.approval.approval_id]
    assert got[2].scope.HasField("anonymous")
    await asyncio.sleep(0.1)
    assert len(alice_watch.received) == 1, "alice's watch received another tenant's approval"
    await asyncio.gather(alice_watch.close(), everyone.close())


async def test_watching_every_tenant_needs_an_operator(agent: Client) -> None:
    watcher = agent.watch("alice", all_tenants=True)
    error = await watcher.errored()
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED


async def test_replay_pending_then_live_resolutions(agent: Client, operator: Client) -> None:
    old = await agent.request_approval("gina", "shell")
    done = await agent.request_approval("gina", "shell")
    await operator.resolve("gina", done.approval_id, REJECT)
    watcher = agent.watch("gina", replay_pending=True, include_resolved=True)
    first = await watcher.wait_for(1)
    assert [a.approval_id for a in first] == [old.approval_id], "replay must carry only what is still pending"
    await operator.resolve("gina", old.approval_id, APPROVE)
    resolved = (await watcher.wait_for(2))[1]
    assert (resolved.approval_id, resolved.status) == (old.approval_id, policy_pb2.APPROVAL_STATUS_APPROVED)
    await watcher.close()


async def test_a_watch_without_include_resolved_hears_only_new_requests(agent: Client, operator: Client) -> None:
    watcher = agent.watch("hal")
    await watcher.ready()
    first = await agent.request_approval("hal", "shell")
    await operator.resolve("hal", first.approval_id, APPROVE)
    second = await agent.request_approval("hal", "shell")
    got = await watcher.wait_for(2)
    assert [a.approval_id for a in got] == [first.approval_id, second.approval_id]
    assert all(a.status == policy_pb2.APPROVAL_STATUS_PENDING for a in got)
    await watcher.close()


# -- single use (issue 19, item 1) ----------------------------------------------------


def refusal_why(error: grpc.aio.AioRpcError) -> str:
    info = error_info(error)
    assert info is not None, "a refusal carries google.rpc.ErrorInfo"
    assert info.reason == "APPROVAL_NOT_USABLE"
    return str(info.metadata["why"])


async def test_an_approval_lets_exactly_one_tool_call_of_its_run_through(
    agent: Client, operator: Client, caplog: pytest.LogCaptureFixture
) -> None:
    arguments = {"path": "/tmp/a", "force": True}
    approval = await agent.request_approval("alice", "delete_file", arguments=arguments, run_id="run-1")
    assert len(approval.arguments_sha256) == 64
    await operator.resolve("alice", approval.approval_id, APPROVE)
    attempts = {
        "other_tool": dict(tool="shell", arguments=arguments, run_id="run-1"),
        "other_arguments": dict(tool="delete_file", arguments={"path": "/etc"}, run_id="run-1"),
        "other_run": dict(tool="delete_file", arguments=arguments, run_id="run-2"),
    }
    for why, fields in attempts.items():
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await agent.consume("alice", approval.approval_id, **fields)  # type: ignore[arg-type]
        assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert refusal_why(caught.value) == why
    used = await agent.consume("alice", approval.approval_id, "delete_file", arguments=arguments, run_id="run-1")
    assert used.consumed_run_id == "run-1"
    assert used.HasField("consumed_at")
    with caplog.at_level("WARNING", logger="loomflow.security"), pytest.raises(grpc.aio.AioRpcError) as caught:
        await agent.consume("alice", approval.approval_id, "delete_file", arguments=arguments, run_id="run-1")
    assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert refusal_why(caught.value) == "already_used"
    refused = [r for r in caplog.records if r.getMessage() == "approval_reuse_refused"]
    assert refused, "a reuse must reach the security log"
    assert refused[-1].__dict__["why"] == "already_used"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await agent.consume("bob", approval.approval_id, "delete_file", arguments=arguments, run_id="run-1")
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND


async def test_a_pending_or_denied_approval_cannot_be_used(agent: Client, operator: Client) -> None:
    pending = await agent.request_approval("alice", "shell", run_id="run-1")
    denied = await agent.request_approval("alice", "shell", run_id="run-1")
    await operator.resolve("alice", denied.approval_id, REJECT)
    for approval in (pending, denied):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await agent.consume("alice", approval.approval_id, "shell", run_id="run-1")
        assert refusal_why(caught.value) == "not_approved"
