"""A commit far above its reservation: charged (the usage happened), but flagged, never silent.

And the Agent itself never reserves less than what its model may read and write in a turn, so
its own commits never overrun: a run with recalled memories and a tool call is the case that
used to (the memories' header and the tool call's name were left out of the estimate).
The ledger's side is checked on every backend by tests/budget/test_ledger_conformance.py.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from loomflow.kernel.instruments import INSTRUMENTS
from loomflow.testing.suite import RunningSuite, running_suite
from loomflow.v1 import (
    agent_pb2,
    agent_pb2_grpc,
    budget_pb2,
    budget_pb2_grpc,
    memory_pb2,
    memory_pb2_grpc,
    tenancy_pb2,
)

TOTAL = budget_pb2.DIMENSION_TOTAL_TOKENS


@pytest.fixture
async def suite(tmp_path: Path) -> AsyncIterator[RunningSuite]:
    async with running_suite(tmp_path, overrides={"agent": {"recall_min_similarity": 0.0}}) as running:
        yield running


def overrun_commits(user_id: str) -> float:
    """``loomflow_budget_overruns_total`` summed over dimensions, for one tenant, in this process."""
    return sum(
        sample.value
        for family in INSTRUMENTS.collect()
        for sample in family.samples
        if sample.name == "loomflow_budget_overruns_total" and sample.labels.get("user_id") == user_id
    )


async def test_a_commit_far_above_its_reservation_is_charged_and_flagged(suite: RunningSuite) -> None:
    budget = budget_pb2_grpc.BudgetServiceStub(suite.channel)
    scope = tenancy_pb2.UserScope(user_id=f"greedy-{uuid.uuid4().hex[:8]}")
    limit = budget_pb2.Limit(dimension=TOTAL, window=budget_pb2.WINDOW_NONE, max=100)
    target = budget_pb2.LIMIT_TARGET_USER
    await budget.SetLimits(budget_pb2.SetLimitsRequest(scope=scope, target=target, limits=[limit]))
    held = await budget.Reserve(
        budget_pb2.ReserveRequest(scope=scope, call_id="c1", model="echo", estimate=budget_pb2.Usage(input_tokens=1))
    )
    before = overrun_commits(scope.user_id)

    reply = await budget.Commit(
        budget_pb2.CommitRequest(
            scope=scope, reservation_id=held.reservation_id, actual=budget_pb2.Usage(input_tokens=1_000_000)
        )
    )

    assert reply.charged.total_tokens == 1_000_000, "the usage happened: it is charged in full"
    flagged = {o.dimension: (o.reserved, o.charged, o.excess) for o in reply.overruns}
    assert flagged.get(TOTAL) == (1, 1_000_000, 999_999), f"the overrun is silent: {reply}"
    assert overrun_commits(scope.user_id) - before >= 1, "no metric counted the overrun"
    status = await budget.GetStatus(budget_pb2.GetStatusRequest(scope=scope))
    assert status.total.total_tokens == 1_000_000


async def test_the_agent_reserves_at_least_what_its_model_reads_and_writes_each_turn(suite: RunningSuite) -> None:
    memory = memory_pb2_grpc.MemoryServiceStub(suite.channel)
    agent = agent_pb2_grpc.AgentServiceStub(suite.channel)
    scope = tenancy_pb2.UserScope(user_id=f"frugal-{uuid.uuid4().hex[:8]}")
    for n in range(3):  # memories the run recalls: their header and line prefixes are input too
        await memory.Remember(
            memory_pb2.RememberRequest(scope=scope, input=f"the answer is {n} apples", output=f"noted {n} apples")
        )
    before = overrun_commits(scope.user_id)

    reply = await agent.Run(
        agent_pb2.RunRequest(
            scope=scope,
            options=agent_pb2.RunOptions(prompt='how many apples?\n/call calculator {"expression": "6*7"}'),
        )
    )

    assert reply.turns == 2, f"expected a tool turn and an answer: {reply}"
    assert reply.recalled_episode_ids, "the run should have recalled the tenant's memories"
    assert overrun_commits(scope.user_id) == before, "a turn used more than the Agent reserved for it"
