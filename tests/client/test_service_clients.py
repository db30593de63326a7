"""The typed clients of Memory, Budget, Policy and Audit against a live suite (insecure: operator)."""

from __future__ import annotations

import asyncio
import datetime

import pytest

from loomflow.client import (
    AuditClient,
    BudgetClient,
    BudgetExceeded,
    Conflict,
    Connection,
    MemoryClient,
    NotFound,
    PolicyClient,
    limit,
    usage,
)
from loomflow.testing.suite import RunningSuite
from loomflow.v1 import policy_pb2


async def test_memory_client_covers_episodes_blocks_facts_forget_and_export(suite: RunningSuite) -> None:
    async with MemoryClient(suite.address) as memory:
        episode = await memory.remember("the sky is green here", "noted", user_id="alice", session_id="s1")
        assert episode.scope.user_id == "alice"
        assert (await memory.get_episode(episode.id, user_id="alice")).input == "the sky is green here"
        with pytest.raises(NotFound):
            await memory.get_episode(episode.id, user_id="bob")
        hits = await memory.recall("sky colour green", user_id="alice", limit=3)
        assert [h.episode.id for h in hits] == [episode.id]

        block = await memory.put_block("todo", "one", user_id="alice", expected_version=0)
        with pytest.raises(Conflict):
            await memory.put_block("todo", "stale", user_id="alice", expected_version=0)
        assert (await memory.get_block("todo", user_id="alice")).content == "one"
        assert [b.label for b in await memory.list_blocks(user_id="alice")] == ["todo"]
        assert await memory.delete_block("todo", user_id="alice", expected_version=block.version) == block.version

        lived = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
        fact = (await memory.assert_fact("alice", "lives_in", "Lyon", user_id="alice", valid_from=lived)).fact
        facts = await memory.query_facts(user_id="alice", subject="alice")
        assert [f.object for f in facts] == ["Lyon"]
        context = await memory.get_context(
            user_id="alice", session_id="s1", recall_query="green sky", recall_limit=3, facts_page_size=10
        )
        assert [h.episode.id for h in context.recall_hits] == [episode.id]
        assert [f.object for f in context.facts] == ["Lyon"]
        assert list(context.history) == [], "the history part was not asked for"
        assert (await memory.retract_fact(fact.id, user_id="alice")).HasField("retracted_at")

        exported = [r.WhichOneof("record") async for r in memory.export(user_id="alice")]
        assert "episode" in exported
        forgotten = await memory.forget(user_id="alice")
        assert forgotten.episodes_deleted == 1


async def test_budget_client_reserves_commits_releases_and_sets_limits(suite: RunningSuite) -> None:
    async with BudgetClient(suite.address) as budget:
        await budget.set_limits([limit("total_tokens", 100)], target="user", user_id="alice")
        held = await budget.reserve("call-1", usage(input_tokens=40, output_tokens=20), user_id="alice", model="echo")
        again = await budget.reserve("call-1", usage(input_tokens=40, output_tokens=20), user_id="alice")
        assert again.replayed
        assert again.reservation_id == held.reservation_id
        with pytest.raises(BudgetExceeded) as caught:
            await budget.reserve("call-2", usage(input_tokens=50), user_id="alice")
        assert caught.value.limit
        charged = await budget.commit(held.reservation_id, usage(input_tokens=10, output_tokens=5), user_id="alice")
        assert charged.charged.total_tokens == 15
        spare = await budget.reserve("call-3", usage(input_tokens=5), user_id="alice")
        assert await budget.release(spare.reservation_id, user_id="alice")
        status = await budget.get_status(user_id="alice")
        assert status.total.total_tokens == 15
        assert [u.reserved for u in status.limits] == [0]
    with pytest.raises(ValueError, match="unknown"):
        limit("tokens", 1)


async def test_policy_client_checks_asks_and_watches_approvals(suite: RunningSuite) -> None:
    async with PolicyClient(suite.address) as policy:
        rule = policy_pb2.Rule(id="r1", tool="rm_*", decision=policy_pb2.DECISION_ASK, reason="careful")
        stored = await policy.put_policy(policy_pb2.Policy(rules=[rule]), user_id="alice")
        assert stored.version >= 1
        assert not (await policy.get_policy(user_id="alice")).is_default
        check = await policy.check("rm_rf", {"path": "/"}, user_id="alice")
        assert check.decision == policy_pb2.DECISION_ASK
        assert check.matched_rule == "r1"

        watched: list[policy_pb2.Approval] = []

        async def watch() -> None:
            async for approval in policy.watch_approvals(user_id="alice", include_resolved=True):
                watched.append(approval)
                if approval.status == policy_pb2.APPROVAL_STATUS_APPROVED:
                    return

        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0.1)
        approval = await policy.request_approval("rm_rf", {"path": "/"}, user_id="alice", decision_id=check.decision_id)
        resolved = await policy.resolve_approval(approval.approval_id, True, user_id="alice", note="fine")
        assert resolved.status == policy_pb2.APPROVAL_STATUS_APPROVED
        assert (await policy.get_approval(approval.approval_id, user_id="alice")).note == "fine"
        await asyncio.wait_for(watcher, 5)
        assert [a.status for a in watched] == [policy_pb2.APPROVAL_STATUS_PENDING, policy_pb2.APPROVAL_STATUS_APPROVED]
        with pytest.raises(NotFound):
            await policy.get_approval(approval.approval_id, user_id="bob")


async def test_audit_client_appends_queries_verifies_exports_and_forgets(suite: RunningSuite) -> None:
    connection = Connection(suite.address)  # several clients may share one connection
    audit = AuditClient(connection)
    appended = await audit.append("agent", "tool_call", {"tool": "x"}, user_id="alice", run_id="r1")
    assert appended.seq == 1
    entries = await audit.query(user_id="alice", run_id="r1")
    assert [e.action for e in entries] == ["tool_call"]
    assert (await audit.verify(user_id="alice")).ok
    assert (await audit.get_checkpoint(anonymous=True, create=True)).signature
    assert [e.seq async for e in audit.export(user_id="alice")] == [1]
    assert await audit.forget(user_id="alice") == 1
    await audit.close()  # the shared connection stays open for its owner
    assert await MemoryClient(connection).recall("x", user_id="alice") == []
    await connection.close()
