"""The seed's promises, end to end: the Agent and the four real services over real gRPC, real tokens.

Alice's memory never surfaces in Bob's run; Alice's tokens count against Alice's budget;
audit entries land with Alice's user_id and verify; permissions check against Alice's policy;
approvals reach the right user; a tool sees its run's RunContext.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from loomflow.client import (
    ApprovalPending,
    ApprovalRequired,
    ApprovalResolved,
    BudgetExceeded,
    BudgetWarningEvent,
    Completed,
    InvalidArgument,
    TextDelta,
    ToolCallEvent,
    limit,
)
from loomflow.kernel.auth import Role
from loomflow.v1 import policy_pb2
from tests.agent.conftest import Tenancy, approver, secure_suite
from tests.support import backends as support_backends

SECRET = "alpha-7731-zulu"


async def test_alices_memory_never_surfaces_in_bobs_run_even_when_more_similar(tenancy: Tenancy) -> None:
    alice, bob = tenancy.agent("alice"), tenancy.agent("bob")
    question = "what is the launch code for project orion"
    told = await alice.run(f"the launch code for project orion is {SECRET}", user_id="alice", session_id="a1")
    await bob.run("bob likes tea", user_id="bob", session_id="b1")

    bobs = await bob.run(question, user_id="bob", session_id="b2")
    assert told.run_id not in bobs.recalled_episode_ids
    assert SECRET not in bobs.output, "bob's run must never see alice's episode, however similar"
    hits = await tenancy.memory().recall(question, user_id="bob", limit=50)
    assert all(SECRET not in h.episode.input for h in hits)

    alices = await alice.run(question, user_id="alice", session_id="a2")
    assert SECRET in alices.output, "alice's own earlier turn is recalled (the check above is not vacuous)"
    assert len(alices.recalled_episode_ids) == 1


async def test_tokens_count_against_the_callers_budget_and_totals_equal_the_charged_calls(
    tenancy: Tenancy,
) -> None:
    alice, bob = tenancy.agent("alice"), tenancy.agent("bob")
    budget = tenancy.budget()
    await budget.set_limits([limit("total_tokens", 10_000_000)], target="default_user", anonymous=True)
    charged: dict[str, list[int]] = {"alice": [0, 0, 0, 0], "bob": [0, 0, 0, 0]}
    runs = [("alice", "one two three"), ("alice", '/call calculator {"expression": "6*7"}'), ("bob", "hello")]
    runs += [("alice", "a much longer prompt " * 20)]
    for user, prompt in runs:
        client = alice if user == "alice" else bob
        result = await client.run(prompt, user_id=user)
        assert result.usage.total_tokens == result.usage.input_tokens + result.usage.output_tokens > 0
        for i, value in enumerate(
            (result.usage.input_tokens, result.usage.output_tokens, result.usage.total_tokens, result.usage.cost_micros)
        ):
            charged[user][i] += value
    for user in ("alice", "bob"):
        status = await budget.get_status(user_id=user)
        total = status.total
        assert [total.input_tokens, total.output_tokens, total.total_tokens, total.cost_micros] == charged[user], (
            f"{user}'s ledger must equal the sum of what their runs were charged"
        )
        assert all(u.reserved == 0 for u in status.limits), "no hold may outlive its run"


async def test_audit_entries_land_with_the_users_id_and_verify(tenancy: Tenancy) -> None:
    alice, bob = tenancy.agent("alice"), tenancy.agent("bob")
    result = await alice.run('note this\n/call calculator {"expression": "1+1"}', user_id="alice", session_id="s1")
    await bob.run("bob was here", user_id="bob")
    audit = tenancy.audit()
    entries = await audit.query(user_id="alice", run_id=result.run_id)
    assert {e.action for e in entries} == {"tool_call", "model_call"}
    assert all(e.scope.user_id == "alice" and e.session_id == "s1" for e in entries)
    tool_entry = next(e for e in entries if e.action == "tool_call")
    assert tool_entry.decision_id == result.tool_calls[0].decision_id != ""
    assert not [e for e in await audit.query(user_id="bob") if e.run_id == result.run_id]
    verified = await audit.verify(user_id="alice")
    assert verified.ok
    assert verified.chains[0].entries_checked >= len(entries)


async def test_permissions_check_against_the_runs_own_policy(tenancy: Tenancy) -> None:
    deny = policy_pb2.Rule(id="no-math", tool="calculator", decision=policy_pb2.DECISION_DENY, reason="no maths")
    await tenancy.policy().put_policy(policy_pb2.Policy(rules=[deny]), user_id="alice")
    prompt = '/call calculator {"expression": "2+3"}'

    alices = await tenancy.agent("alice").run(prompt, user_id="alice")
    assert alices.interrupted
    assert alices.interruption_reason.startswith("denied: calculator")
    assert alices.tool_calls[0].decision == "deny"
    assert not alices.tool_calls[0].executed

    bobs = await tenancy.agent("bob").run(prompt, user_id="bob")
    assert not bobs.interrupted
    assert bobs.tool_calls[0].executed
    assert bobs.tool_calls[0].result == "5"
    assert "[calculator] 5" in bobs.output


async def test_approvals_reach_the_right_user_and_an_approved_tool_runs(tenancy: Tenancy) -> None:
    alice = tenancy.agent("alice")
    await alice.run('/call notes_append {"text": "buy milk"}', user_id="alice")
    async with approver(tenancy) as approvals:
        result = await alice.run("/call notes_clear {}", user_id="alice", session_id="s9")
    assert [(a.user_id, a.tool_name, a.session_id, a.run_id) for a in approvals] == [
        ("alice", "notes_clear", "s9", result.run_id)
    ]
    call = result.tool_calls[0]
    assert (call.decision, call.executed, call.result) == ("allow", True, "notes cleared")
    assert call.approval_id == approvals[0].approval_id


async def test_a_denied_approval_stops_the_run_and_the_tool_never_runs(tenancy: Tenancy) -> None:
    alice = tenancy.agent("alice")
    await alice.run('/call notes_append {"text": "keep me"}', user_id="alice")
    async with approver(tenancy, decide=lambda _: False):
        result = await alice.run("/call notes_clear {}", user_id="alice")
    assert result.interrupted
    assert "denied" in result.interruption_reason
    assert not result.tool_calls[0].executed
    block = await tenancy.memory().get_block("notes", user_id="alice")
    assert block.content == "keep me"


async def test_no_answer_to_an_approval_means_deny(tmp_path: Path) -> None:
    async with secure_suite(tmp_path, agent={"approval_timeout_ms": 300}) as tenancy:
        result = await tenancy.agent("alice").run("/call notes_clear {}", user_id="alice")
    assert result.interrupted
    # Whichever comes first, the Agent's wait ending or Policy expiring the approval, it is a deny.
    assert result.interruption_reason in (
        "denied: notes_clear: approval timed out",
        "denied: notes_clear: approval expired",
    )
    assert not result.tool_calls[0].executed


async def test_a_deferred_approval_is_raised_then_resumed_with_the_approval(tenancy: Tenancy) -> None:
    alice = tenancy.agent("alice")
    await alice.run('/call notes_append {"text": "old"}', user_id="alice")
    with pytest.raises(ApprovalRequired) as caught:
        await alice.run("/call notes_clear {}", user_id="alice", defer_approvals=True)
    approval_id = caught.value.approval_id
    assert approval_id
    policy = tenancy.policy()
    pending = await policy.get_approval(approval_id, user_id="alice")
    assert pending.status == policy_pb2.APPROVAL_STATUS_PENDING
    await policy.resolve_approval(approval_id, True, user_id="alice")
    # bob cannot use alice's approval: it is NOT_FOUND in his partition, so his call asks again.
    with pytest.raises(ApprovalRequired):
        await tenancy.agent("bob").run(
            "/call notes_clear {}", user_id="bob", defer_approvals=True, approval_ids=[approval_id]
        )
    resumed = await alice.run("/call notes_clear {}", user_id="alice", approval_ids=[approval_id])
    assert resumed.tool_calls[0].executed
    assert resumed.tool_calls[0].approval_id == approval_id


async def test_a_tool_sees_the_run_context_of_its_run(tmp_path: Path) -> None:
    async with secure_suite(tmp_path, agent={"tools": "tests.agent.sample_tools:TOOLS"}) as tenancy:
        alice = tenancy.agent("alice")
        result = await alice.run("/call whoami {}", user_id="alice", session_id="conv_42")
        operator = tenancy.agent("ops", role=Role.OPERATOR)  # end users cannot act for the anonymous partition
        anonymous = await operator.run("/call whoami {}", anonymous=True)
    assert result.tool_calls[0].result == f"user=alice session=conv_42 run={result.run_id}"
    assert anonymous.tool_calls[0].result == f"user=None session= run={anonymous.run_id}"


async def test_stream_reports_text_tool_calls_approvals_and_ends_with_the_result(tenancy: Tenancy) -> None:
    alice = tenancy.agent("alice")
    async with approver(tenancy):
        events = [e async for e in alice.stream("clean up\n/call notes_clear {}", user_id="alice")]
    kinds = [type(e).__name__ for e in events]
    assert kinds.index("ApprovalPending") < kinds.index("ApprovalResolved") < kinds.index("ToolCallEvent")
    assert isinstance(events[-1], Completed)
    result = events[-1].result
    texts = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert texts == result.output == "clean up\n[notes_clear] there were no notes"
    pending = next(e for e in events if isinstance(e, ApprovalPending))
    resolved = next(e for e in events if isinstance(e, ApprovalResolved))
    assert pending.approval.user_id == resolved.approval.user_id == "alice"
    assert resolved.approval.status == "approved"
    assert next(e for e in events if isinstance(e, ToolCallEvent)).call.executed


async def test_a_small_budget_interrupts_a_run_and_then_refuses_the_next(tenancy: Tenancy) -> None:
    alice = tenancy.agent("alice")
    budget = tenancy.budget()
    await alice.run("/call current_time {}", user_id="alice")
    spent = (await budget.get_status(user_id="alice")).total.output_tokens
    # Each model turn holds max_output_tokens (1024) of output: room for one more turn, not two.
    allowed = spent + 1024
    await budget.set_limits([limit("output_tokens", allowed)], target="user", user_id="alice")
    second = await alice.run("/call current_time {}", user_id="alice")
    assert second.interrupted
    assert second.interruption_reason.startswith("budget:")
    assert second.turns == 1
    assert second.tool_calls[0].executed, "the first turn ran in full before the budget stopped the run"
    with pytest.raises(BudgetExceeded) as caught:
        await alice.run("anything at all", user_id="alice")
    assert "output_tokens" in caught.value.limit
    status = await budget.get_status(user_id="alice")
    assert status.total.output_tokens <= allowed, "the ledger never goes past the limit"
    assert all(u.reserved == 0 for u in status.limits)


async def test_budget_warnings_reach_the_caller_once_a_limit_is_mostly_used(tenancy: Tenancy) -> None:
    # Each turn holds max_output_tokens (1024) of output: 85 % of this limit while the model runs.
    await tenancy.budget().set_limits([limit("output_tokens", 1200)], target="user", user_id="alice")
    alice = tenancy.agent("alice")
    result = await alice.run("hello", user_id="alice")
    assert not result.interrupted
    assert [(w.dimension, w.applies_to) for w in result.warnings] == [("output_tokens", "user")]
    assert result.warnings[0].fraction >= 0.8
    events = [e async for e in alice.stream("hello again", user_id="alice")]
    warnings = [e.warning for e in events if isinstance(e, BudgetWarningEvent)]
    assert [w.dimension for w in warnings] == ["output_tokens"], "each warning is reported once per run"


async def test_bad_requests_name_the_field(tenancy: Tenancy) -> None:
    alice = tenancy.agent("alice")
    with pytest.raises(InvalidArgument) as caught:
        await alice.run("hi", user_id="alice", model="mystery-model")
    assert caught.value.fields == ["options.model"]
    with pytest.raises(InvalidArgument) as empty:
        await alice.run("", user_id="alice")
    assert empty.value.fields == ["options.prompt"]
    with pytest.raises(InvalidArgument) as nul:
        await alice.run("a\x00b", user_id="alice", metadata={"k": "v"})
    assert nul.value.fields == ["options.prompt"]
    with pytest.raises(InvalidArgument) as meta:
        await alice.run("fine", user_id="alice", metadata={"k": "v\x00"})
    assert meta.value.fields == ["options.metadata['k']"]


@pytest.mark.postgres
@pytest.mark.redis
async def test_the_seed_promises_hold_on_postgres_and_redis_backends(
    tmp_path: Path, postgres_dsn: str, redis_url: str, unique: str
) -> None:
    """Production backends: Memory, Policy and Audit on Postgres, Budget on Redis."""
    alice, bob = f"alice-{unique}", f"bob-{unique}"
    # A schema of its own: the audit log pins the keys that wrote it, and this suite's keys are fresh.
    async with support_backends.postgres_schema(f"agent_e2e_{unique}") as database:
        overrides = {
            "memory": {"dsn": database},
            "policy": {"dsn": database},
            "audit": {"dsn": database},
            "budget": {"dsn": redis_url},
        }
        await _seed_promises_hold(tmp_path, overrides, alice, bob)


async def _seed_promises_hold(tmp_path: Path, overrides: dict[str, dict[str, str]], alice: str, bob: str) -> None:
    async with secure_suite(tmp_path, overrides=overrides) as tenancy:
        told = await tenancy.agent(alice).run(f"the vault code for project lyra is {SECRET}", user_id=alice)
        bobs = await tenancy.agent(bob).run("what is the vault code for project lyra", user_id=bob)
        alices = await tenancy.agent(alice).run("what is the vault code for project lyra", user_id=alice)
        assert SECRET not in bobs.output
        assert SECRET in alices.output
        status = await tenancy.budget().get_status(user_id=alice)
        assert status.total.total_tokens == told.usage.total_tokens + alices.usage.total_tokens
        entries = await tenancy.audit().query(user_id=alice)
        assert {e.run_id for e in entries} == {told.run_id, alices.run_id}
        assert (await tenancy.audit().verify(user_id=alice)).ok
