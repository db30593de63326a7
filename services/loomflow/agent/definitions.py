"""Agents defined per application: what a named agent is, where it is kept, and what it offers.

A definition holds the system prompt, model, tool allow-list, recall and history
settings and turn limit of one application's agent. Operators manage them with
PutAgent/GetAgent/ListAgents/DeleteAgent or a YAML file loaded at start; they
live in the Agent's durable store, so every replica serves the same agents.
The server's flags define the unnamed default agent.

Each replica caches a definition for ``cache_ttl_s`` (a write on the replica
itself is seen at once; one on another replica within the TTL): a run then
costs no store read.
"""

from __future__ import annotations

import base64
import fnmatch
import json
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import yaml
from google.protobuf.json_format import MessageToDict, ParseDict, ParseError

from loomflow.agent.dependencies import Dependencies, dependency_error
from loomflow.agent.store import AgentStore, StoredDefinition
from loomflow.agent.tools.registry import ToolSpec
from loomflow.kernel.config import ConfigError
from loomflow.kernel.errors import InvalidArgument
from loomflow.kernel.validation import validate
from loomflow.v1 import agent_pb2, policy_pb2, tenancy_pb2

if TYPE_CHECKING:
    from loomflow.agent.run.limits import RunLimits

DEFAULT_PAGE = 50


@dataclass(frozen=True)
class AgentDefinition:
    name: str
    system_prompt: str = ""
    model: str = ""
    tools: tuple[str, ...] = ()
    """Globs of tool names the agent may offer; empty offers none of the server's tools."""
    recall_limit: int | None = None
    history_turns: int | None = None
    history_tokens: int | None = None
    max_turns: int | None = None
    version: int = 0

    def allows(self, tool_name: str) -> bool:
        return any(fnmatch.fnmatchcase(tool_name, pattern) for pattern in self.tools)

    def limits(self, base: RunLimits) -> RunLimits:
        """The server's limits with what this agent sets instead."""
        seed = base.seed
        if self.history_turns is not None:
            seed = replace(seed, history_turns=self.history_turns)
        if self.history_tokens is not None:
            seed = replace(seed, history_tokens=self.history_tokens)
        return replace(
            base,
            system_prompt=self.system_prompt or base.system_prompt,
            max_turns=base.max_turns if self.max_turns is None else self.max_turns,
            recall_limit=base.recall_limit if self.recall_limit is None else self.recall_limit,
            seed=seed,
        )


def to_proto(definition: AgentDefinition) -> agent_pb2.AgentDefinition:
    message = agent_pb2.AgentDefinition(
        name=definition.name,
        system_prompt=definition.system_prompt,
        model=definition.model,
        tools=list(definition.tools),
        version=definition.version,
    )
    for field in ("recall_limit", "history_turns", "history_tokens", "max_turns"):
        value = getattr(definition, field)
        if value is not None:
            setattr(message, field, value)
    return message


def from_proto(message: agent_pb2.AgentDefinition, version: int = 0) -> AgentDefinition:
    optional = {
        field: getattr(message, field) if message.HasField(field) else None
        for field in ("recall_limit", "history_turns", "history_tokens", "max_turns")
    }
    return AgentDefinition(
        name=message.name,
        system_prompt=message.system_prompt,
        model=message.model,
        tools=tuple(message.tools),
        version=version,
        **optional,
    )


def to_json(definition: AgentDefinition) -> str:
    body = asdict(definition)
    del body["version"]  # the store's column is the truth
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def from_stored(stored: StoredDefinition) -> AgentDefinition:
    return from_stored_json(stored.body, stored.version)


def from_stored_json(text: str, version: int = 0) -> AgentDefinition:
    body: dict[str, Any] = json.loads(text)
    body["tools"] = tuple(body.get("tools", ()))
    return AgentDefinition(**body, version=version)


def load_yaml(path: str | Path) -> list[AgentDefinition]:
    """Definitions from a YAML file: ``agents: [{name: support, system_prompt: ..., tools: [...]}, ...]``.

    Each is validated like a PutAgent request, so a file cannot hold what the RPC would refuse.
    """
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"LOOMFLOW_AGENT_DEFINITIONS_FILE={str(path)!r}: {error}") from None
    entries = raw.get("agents") if isinstance(raw, dict) else None
    if not isinstance(entries, list):
        raise ConfigError(f"LOOMFLOW_AGENT_DEFINITIONS_FILE={str(path)!r}: expected a top-level `agents:` list")
    found: list[AgentDefinition] = []
    for index, entry in enumerate(entries):
        try:
            message = ParseDict(entry, agent_pb2.AgentDefinition())
            validate(agent_pb2.PutAgentRequest(scope={"anonymous": {}}, agent=message))
        except (ParseError, InvalidArgument, TypeError) as error:
            raise ConfigError(f"LOOMFLOW_AGENT_DEFINITIONS_FILE: agents[{index}]: {_describe(error)}") from None
        found.append(from_proto(message))
    names = [d.name for d in found]
    if len(set(names)) != len(names):
        raise ConfigError("LOOMFLOW_AGENT_DEFINITIONS_FILE: two agents share a name")
    return found


def _describe(error: Exception) -> str:
    if isinstance(error, InvalidArgument) and error.violations:
        return "; ".join(f"{v.field}: {v.description}" for v in error.violations)
    return str(error)


def reject_nul(message: agent_pb2.AgentDefinition) -> None:
    """U+0000 is not storable in Postgres text: refused up front, naming the field."""
    texts = {"agent.name": message.name, "agent.system_prompt": message.system_prompt, "agent.model": message.model}
    texts |= {f"agent.tools[{i}]": t for i, t in enumerate(message.tools)}
    for field, text in texts.items():
        if "\x00" in text:
            raise InvalidArgument.field(field, "must not contain NUL characters (U+0000)")


def page_token(after: str) -> str:
    return base64.urlsafe_b64encode(after.encode()).decode()


def parse_page_token(token: str) -> str:
    if not token:
        return ""
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        raise InvalidArgument.field("page_token", "is not a page token issued by ListAgents") from None


class AgentDefinitions:
    """The default agent (from flags) and the stored ones, with a short per-replica cache."""

    def __init__(self, store: AgentStore, default: AgentDefinition, cache_ttl_s: float = 2.0) -> None:
        self.store = store
        self.default = default
        self._ttl = cache_ttl_s
        self._cache: dict[str, tuple[float, AgentDefinition]] = {}

    async def resolve(self, name: str) -> AgentDefinition:
        """The definition a run names; empty is the default agent; NotFound for an unknown name."""
        if not name:
            return self.default
        now = time.monotonic()
        cached = self._cache.get(name)
        if cached is not None and cached[0] > now:
            return cached[1]
        definition = from_stored(await self.store.get_definition(name))
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[name] = (now + self._ttl, definition)
        return definition

    async def resolve_fresh(self, name: str) -> AgentDefinition:
        """The stored definition as it is now (no cache): what operators read back."""
        return from_stored(await self.store.get_definition(name))

    async def put(self, definition: AgentDefinition) -> AgentDefinition:
        stored = await self.store.put_definition(definition.name, to_json(definition), time.time_ns() // 1000)
        self._cache.pop(definition.name, None)
        return from_stored(stored)

    async def delete(self, name: str) -> int:
        self._cache.pop(name, None)
        return await self.store.delete_definition(name)

    async def list(self, token: str, size: int) -> tuple[list[AgentDefinition], str]:
        found = await self.store.list_definitions(parse_page_token(token), size + 1)
        page = [from_stored(s) for s in found[:size]]
        return page, page_token(page[-1].name) if len(found) > size else ""

    async def load(self, definitions: Iterable[AgentDefinition]) -> None:
        for definition in definitions:
            await self.put(definition)


def denied_outright(policy: policy_pb2.Policy, name: str, tags: frozenset[str]) -> bool:
    """Whether the policy denies every call of the tool, whatever its arguments.

    True in plan mode for a tool not tagged read_only, and when the first rule
    that can match the tool's name is a deny rule without argument conditions
    (an earlier rule with conditions might match instead, so it keeps the tool).
    """
    if policy.mode == policy_pb2.MODE_PLAN and "read_only" not in tags:
        return True
    for rule in policy.rules:
        if not fnmatch.fnmatchcase(name, rule.tool):
            continue
        return rule.decision == policy_pb2.DECISION_DENY and not rule.conditions
    return False


def offered_tools(
    specs: Sequence[ToolSpec], tags: Mapping[str, frozenset[str]], policy: policy_pb2.Policy | None
) -> tuple[ToolSpec, ...]:
    """Of the tools an agent allows, those the tenant's policy does not deny outright."""
    if policy is None:
        return tuple(specs)
    return tuple(s for s in specs if not denied_outright(policy, s.name, tags.get(s.name, frozenset())))


def definition_dict(definition: AgentDefinition) -> dict[str, Any]:
    """The definition as the YAML file and JSON clients write it."""
    return MessageToDict(to_proto(definition), preserving_proto_field_name=True)


class TenantPolicies:
    """Each tenant's policy as last read, for ``ttl_s``: deciding which tools to offer costs no call per run.

    Only the offer uses it: every call the model makes is still checked live (PolicyService.Check),
    so a policy tightened within the TTL can at most offer a tool that the check then denies.
    """

    def __init__(self, deps: Dependencies, ttl_s: float = 1.0, max_tenants: int = 10_000) -> None:
        self._deps = deps
        self._ttl = ttl_s
        self._max = max_tenants
        self._cache: OrderedDict[str, tuple[float, policy_pb2.Policy]] = OrderedDict()

    def forget(self, tenant: str) -> None:
        """Drops the tenant's cached policy (ForgetUser): this replica reads it afresh next time."""
        self._cache.pop(tenant, None)

    def _drop_expired(self, now: float) -> None:
        """Drops the policies past their TTL, oldest first: entries are kept in the order they were
        read, which with one TTL is the order they expire. An expired policy is never served again,
        yet kept it held every tenant seen in the last ``max_tenants`` (bench/race: 4,000 tenants)."""
        cache = self._cache
        while cache:
            expires, _ = next(iter(cache.values()))
            if expires > now:
                break
            cache.popitem(last=False)

    async def get(self, tenant: str, scope: tenancy_pb2.UserScope, deadline: float) -> policy_pb2.Policy:
        now = time.monotonic()
        cached = self._cache.get(tenant)
        if cached is not None and cached[0] > now:
            return cached[1]
        self._drop_expired(now)
        deps = self._deps
        try:
            reply = await deps.policy.GetPolicy(
                policy_pb2.GetPolicyRequest(scope=scope), metadata=deps.metadata, timeout=deps.timeout(deadline)
            )
        except grpc.aio.AioRpcError as error:
            raise dependency_error("policy", error) from None
        self._cache[tenant] = (now + self._ttl, reply.policy)
        self._cache.move_to_end(tenant)
        while len(self._cache) > self._max:
            self._cache.popitem(last=False)
        policy: policy_pb2.Policy = reply.policy
        return policy
