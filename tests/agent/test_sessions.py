"""Conversations continue: a run is seeded with its session's earlier turns, the user's blocks and facts.

Every test runs in both topologies (all services in one process; the Agent in
its own server calling Memory, Budget, Policy and Audit in another) and on
every Memory backend, through real gRPC with real tokens.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from loomflow.client import Agent, MemoryClient
from loomflow.kernel.auth import Role
from loomflow.testing.suite import RunningSuite, running_suite
from tests.agent.conftest import audit_keys, token, write_script
from tests.memory.conftest import BACKENDS, dsn_for

SCRIPT: list[dict[str, Any]] = [
    {"when": "Which city", "turns": [{"from_history": r"flying to (\w+)", "text": "You are flying to {0}."}]},
    {"when": "What do you know", "turns": [{"from_system": r"\[persona\]\n(.+)", "text": "My persona: {0}"}]},
    {"when": "Where does", "turns": [{"from_system": r"- alice lives_in (\w+)", "text": "She lives in {0}."}]},
    {"turns": [{"text": "Noted."}]},
]


@dataclass
class Topology:
    agent_address: str
    services: RunningSuite
    suffix: str
    """Postgres and Redis are shared by every test: user ids are unique to this one."""

    def user(self, name: str) -> str:
        return f"{name}-{self.suffix}"

    def agent(self, name: str) -> Agent:
        return Agent(self.agent_address, token=token(self.user(name)), timeout=30)

    def memory(self) -> MemoryClient:
        return MemoryClient(self.services.channel, token=token("ops", Role.OPERATOR))


@pytest.fixture(params=["one_process", "per_service"])
def topology_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=BACKENDS)
def memory_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def topology(topology_name: str, memory_backend: str, tmp_path: Path, unique: str) -> AsyncIterator[Topology]:
    script = write_script(tmp_path / "script.json", SCRIPT)
    agent_settings = {"model": "scripted", "script_file": script, "call_timeout_ms": 5000}
    services = {"audit": audit_keys(), "memory": {"dsn": dsn_for(memory_backend, tmp_path)}}
    async with contextlib.AsyncExitStack() as stack:
        if topology_name == "one_process":
            suite = await stack.enter_async_context(
                running_suite(tmp_path / "all", insecure=False, overrides={**services, "agent": agent_settings})
            )
            yield Topology(suite.address, suite, unique)
            return
        backing = await stack.enter_async_context(
            running_suite(tmp_path / "svc", "memory,budget,policy,audit", insecure=False, overrides=services)
        )
        addresses = {f"{name}_address": backing.address for name in ("memory", "budget", "policy", "audit")}
        agent = await stack.enter_async_context(
            running_suite(tmp_path / "agent", "agent", insecure=False, overrides={"agent": agent_settings | addresses})
        )
        yield Topology(agent.address, backing, unique)


async def test_the_third_turn_answers_from_the_first(topology: Topology) -> None:
    async with topology.agent("alice") as alice:
        first = await alice.run("I'm flying to Lisbon tomorrow", user_id=topology.user("alice"), session_id="conv_42")
        second = await alice.run("Remind me to pack an umbrella", user_id=topology.user("alice"), session_id="conv_42")
        third = await alice.run(
            "Which city did I say I was going to?", user_id=topology.user("alice"), session_id="conv_42"
        )
    for turn in (first, second):  # an interrupted turn has no answer to give as history
        assert not turn.interrupted, f"precondition: turns 1 and 2 completed, not {turn.interruption_reason!r}"
    assert third.output == "You are flying to Lisbon.", "turn 3 must see turn 1 as conversation history"
    episodes = [e async for e in topology.memory().session_episodes("conv_42", user_id=topology.user("alice"))]
    ids_oldest_first = [e.id for e in reversed(episodes)]
    assert list(third.history_episode_ids) == ids_oldest_first[:2]
    assert [e.run_id for e in reversed(episodes)] == [first.run_id, second.run_id, third.run_id]
    assert third.recalled_episode_ids == (), "the session's own turns come as history, never again as recall"


async def test_alices_history_never_holds_bobs_session_or_her_other_sessions(topology: Topology) -> None:
    async with topology.agent("alice") as alice, topology.agent("bob") as bob:
        await bob.run("I'm flying to Oslo", user_id=topology.user("bob"), session_id="conv_42")
        await alice.run("I'm flying to Rome", user_id=topology.user("alice"), session_id="conv_other")
        asked = await alice.run("Which city am I flying to?", user_id=topology.user("alice"), session_id="conv_42")
        assert asked.history_episode_ids == (), "a new session of alice's starts with no history"
        assert asked.output == "I don't know.", "bob's conv_42 and alice's other session must not be history"
        await alice.run("I'm flying to Lisbon", user_id=topology.user("alice"), session_id="conv_42")
        again = await alice.run("Which city am I flying to?", user_id=topology.user("alice"), session_id="conv_42")
        bobs = await bob.run("Which city am I flying to?", user_id=topology.user("bob"), session_id="conv_42")
    assert again.output == "You are flying to Lisbon."
    assert bobs.output == "You are flying to Oslo.", "bob's session with the same id is his own"
    memory = topology.memory()
    alices = {e.id async for e in memory.session_episodes("conv_42", user_id=topology.user("alice"))}
    assert set(again.history_episode_ids) <= alices
    assert not set(bobs.history_episode_ids) & alices


async def test_working_blocks_and_matching_facts_reach_the_system_context(topology: Topology) -> None:
    memory = topology.memory()
    await memory.put_block("persona", "a patient travel agent", user_id=topology.user("alice"))
    await memory.put_block("persona", "bob's grumpy butler", user_id=topology.user("bob"))
    await memory.assert_fact("alice", "lives_in", "Porto", user_id=topology.user("alice"))
    await memory.assert_fact("alice", "lives_in", "Madrid", user_id=topology.user("bob"))
    async with topology.agent("alice") as alice:
        persona = await alice.run("What do you know about your persona?", user_id=topology.user("alice"))
        fact = await alice.run("Where does alice live?", user_id=topology.user("alice"))
    assert persona.output == "My persona: a patient travel agent"
    assert fact.output == "She lives in Porto.", "only alice's facts, never bob's, are in alice's context"
