"""Agents defined per application: operator RPCs, a YAML file at start, durable storage, what a run is offered."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from loomflow.agent.definitions import TenantPolicies
from loomflow.agent.dependencies import Addresses, Dependencies, ServiceCredential
from loomflow.client import InvalidArgument, NotFound, PermissionDenied
from loomflow.kernel.auth import AuthSettings, Role
from loomflow.testing.processes import free_port
from loomflow.testing.suite import running_suite
from loomflow.v1 import agent_pb2, policy_pb2, tenancy_pb2
from tests.agent.conftest import Tenancy, audit_keys, secure_suite, write_script

SCRIPT: list[dict[str, Any]] = [
    {"when": "which tools", "turns": [{"list_tools": True}]},
    {"when": "who are you", "turns": [{"from_system": r"^([^\n]+)", "text": "{0}"}]},
    {"turns": [{"text": "ok"}]},
]

SUPPORT = agent_pb2.AgentDefinition(
    name="support",
    system_prompt="You are Ada, the order support agent.",
    model="scripted",
    tools=["notes_*", "calculator"],
    history_turns=5,
    max_turns=3,
)


def scripted(tmp_path: Path) -> dict[str, Any]:
    return {"model": "scripted", "script_file": write_script(tmp_path / "script.json", SCRIPT)}


async def test_operators_manage_agents_and_runs_use_the_named_one(tmp_path: Path) -> None:
    async with secure_suite(tmp_path, agent=scripted(tmp_path)) as tenancy:
        ops = tenancy.agent("ops", Role.OPERATOR)
        stored = await ops.put_agent(SUPPORT)
        assert stored.version == 1
        assert (await ops.put_agent(SUPPORT)).version == 2, "every PutAgent writes a new version"
        assert (await ops.get_agent("support")).system_prompt == SUPPORT.system_prompt

        alice = tenancy.agent("alice")
        ada = await alice.run("who are you?", user_id="alice", agent="support")
        assert ada.output == "You are Ada, the order support agent."
        default = await alice.run("who are you?", user_id="alice")
        assert default.output == "You are a helpful assistant.", "no name: the server's default agent"
        offered = await alice.run("which tools can you use?", user_id="alice", agent="support")
        assert offered.output == "calculator,notes_append,notes_clear,notes_read"
        everything = await alice.run("which tools can you use?", user_id="alice")
        assert "current_time" in everything.output.split(","), "the default agent offers every server tool"

        with pytest.raises(NotFound):
            await alice.run("who are you?", user_id="alice", agent="nobody")
        assert await ops.delete_agent("support") == 2
        with pytest.raises(NotFound):
            await alice.run("who are you?", user_id="alice", agent="support")


async def test_agent_rpcs_are_operator_only(tenancy: Tenancy) -> None:
    alice = tenancy.agent("alice")
    with pytest.raises(PermissionDenied):
        await alice.put_agent(SUPPORT)
    with pytest.raises(PermissionDenied):
        await alice.list_agents()
    with pytest.raises(PermissionDenied):
        await alice.get_agent("support")
    with pytest.raises(PermissionDenied):
        await alice.delete_agent("support")


async def test_bad_definitions_are_invalid_argument_naming_the_field(tenancy: Tenancy) -> None:
    ops = tenancy.agent("ops", Role.OPERATOR)
    with pytest.raises(InvalidArgument) as caught:
        await ops.put_agent(agent_pb2.AgentDefinition(name="Bad Name!"))
    assert "agent.name" in str(caught.value)
    with pytest.raises(InvalidArgument) as caught:
        await ops.put_agent(agent_pb2.AgentDefinition(name="x", model="nobody:model"))
    assert "agent.model" in str(caught.value)
    with pytest.raises(InvalidArgument):
        await ops.put_agent(agent_pb2.AgentDefinition(name="x", system_prompt="a\x00b"))


async def test_list_agents_pages_in_name_order(tenancy: Tenancy) -> None:
    ops = tenancy.agent("ops", Role.OPERATOR)
    for name in ("delta", "alpha", "charlie", "bravo", "echo"):
        await ops.put_agent(agent_pb2.AgentDefinition(name=name))
    names: list[str] = []
    token = ""
    while True:
        page = await ops.list_agents(page_size=2, page_token=token)
        names += [a.name for a in page.agents]
        token = page.next_page_token
        if not token:
            break
    assert names == ["alpha", "bravo", "charlie", "delta", "echo"]


async def test_definitions_load_from_yaml_at_start_and_survive_a_restart(tmp_path: Path) -> None:
    definitions = tmp_path / "agents.yaml"
    definitions.write_text(
        "agents:\n"
        "  - name: triage\n"
        "    system_prompt: You are the triage desk.\n"
        "    tools: [calculator]\n"
        "    recall_limit: 0\n"
    )
    settings = scripted(tmp_path) | {"definitions_file": str(definitions)}
    keys = {"audit": audit_keys()}  # the restarted suite must open the same audit log
    async with secure_suite(tmp_path / "data", agent=settings, overrides=keys) as tenancy:
        ops = tenancy.agent("ops", Role.OPERATOR)
        loaded = await ops.get_agent("triage")
        assert list(loaded.tools) == ["calculator"]
        assert loaded.recall_limit == 0
        await ops.put_agent(SUPPORT)
    async with secure_suite(tmp_path / "data", agent=scripted(tmp_path), overrides=keys) as tenancy:
        ops = tenancy.agent("ops", Role.OPERATOR)
        assert {a.name for a in (await ops.list_agents()).agents} == {"support", "triage"}, (
            "definitions are durable: a restarted Agent serves them"
        )
        answer = await tenancy.agent("bob").run("who are you?", user_id="bob", agent="triage")
        assert answer.output == "You are the triage desk."


async def test_a_bad_definitions_file_stops_the_start(tmp_path: Path) -> None:
    definitions = tmp_path / "agents.yaml"
    definitions.write_text("agents:\n  - name: Not Valid\n")
    with pytest.raises(ValueError, match="agents\\[0\\]"):
        async with secure_suite(tmp_path / "data", agent={"definitions_file": str(definitions)}):
            pass


async def test_tools_the_tenants_policy_denies_outright_are_not_offered(tmp_path: Path) -> None:
    async with secure_suite(tmp_path, agent=scripted(tmp_path)) as tenancy:
        ops = tenancy.agent("ops", Role.OPERATOR)
        await ops.put_agent(SUPPORT)
        rules = [
            policy_pb2.Rule(id="no-math", tool="calculator", decision=policy_pb2.DECISION_DENY),
            policy_pb2.Rule(id="no-clear", tool="notes_clear", decision=policy_pb2.DECISION_ASK),
        ]
        await tenancy.policy().put_policy(policy_pb2.Policy(rules=rules), user_id="alice")
        alices = await tenancy.agent("alice").run("which tools can you use?", user_id="alice", agent="support")
        bobs = await tenancy.agent("bob").run("which tools can you use?", user_id="bob", agent="support")
    assert alices.output == "notes_append,notes_clear,notes_read", "a denied tool is not offered; an ask one is"
    assert bobs.output == "calculator,notes_append,notes_clear,notes_read", "bob's policy is his own"


async def test_the_policy_cache_keeps_only_tenants_read_within_its_ttl(tmp_path: Path) -> None:
    """An expired policy is never served again, so it is not kept either (it held every tenant seen)."""
    port = free_port()
    address = f"127.0.0.1:{port}"
    deps = Dependencies(Addresses(address, address, address, address), ServiceCredential(AuthSettings(), True), 5.0)
    policies = TenantPolicies(deps, ttl_s=3.0)  # 20 reads take well under it, even on a loaded machine
    try:
        async with running_suite(tmp_path, services="policy", overrides={"": {"port": port}}):
            for n in range(20):
                tenant = f"t{n}"
                await policies.get(tenant, tenancy_pb2.UserScope(user_id=tenant), time.monotonic() + 5)
            assert len(policies._cache) == 20, "within the TTL every policy is served from the cache"
            await asyncio.sleep(3.1)
            await policies.get("late", tenancy_pb2.UserScope(user_id="late"), time.monotonic() + 5)
            assert list(policies._cache) == ["late"]
    finally:
        await deps.close()
