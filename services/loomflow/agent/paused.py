"""Runs that wait for their caller: caller-declared tools, the paused state, its expiry.

When the model calls a tool the caller declared (``RunOptions.caller_tools``),
the call passes the same gate as a server tool (policy check, approval when
ASK, the write-ahead audit entry), and then the run *pauses*: its whole state
(conversation, charges, records, the held reservation, the turn count and the
run time left) is written to the Agent's durable store under (tenant, run_id)
with a TTL, and the caller gets ``RUN_STATUS_REQUIRES_ACTION`` with the pending
calls. Any replica resumes it with ContinueRun; a sweeper marks runs whose TTL
passed as expired and releases their budget hold (the reservation's own TTL is
the backstop if no Agent is running).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message as ProtoMessage

from loomflow.agent.dependencies import Dependencies
from loomflow.agent.models.base import Message, ToolCall
from loomflow.agent.store import AgentStore, PausedRecord
from loomflow.agent.tools.registry import ToolSpec
from loomflow.kernel.errors import FailedPrecondition, InvalidArgument
from loomflow.kernel.tenancy import scope_for
from loomflow.v1 import agent_pb2, audit_pb2, budget_pb2

log = logging.getLogger("loomflow.agent")

_EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}


@dataclass(frozen=True)
class PauseSettings:
    ttl_s: float = 600.0
    """How long a paused run waits for its caller's results."""
    max_per_tenant: int = 100
    max_result_chars: int = 65_536
    """A caller tool result longer than this is refused (INVALID_ARGUMENT), never cut."""
    sweep_interval_s: float = 1.0
    ttl_overrides_s: Mapping[str, float] = field(default_factory=dict)
    """Per-tenant TTLs from the retention file (``agent_paused_runs_days``); others get ``ttl_s``."""

    def ttl_for(self, tenant: str) -> float:
        return self.ttl_overrides_s.get(tenant) or self.ttl_s


@dataclass
class Pauses:
    """What a runner needs to pause and resume runs: the durable store, the settings, the sweeper."""

    store: AgentStore
    settings: PauseSettings
    sweeper: Sweeper


def now_micros() -> int:
    return time.time_ns() // 1000


def caller_specs(tools: Sequence[agent_pb2.CallerTool], server_names: frozenset[str]) -> tuple[ToolSpec, ...]:
    """The caller's tools as the model is told about them; names must be unique and not the server's."""
    seen: set[str] = set()
    specs: list[ToolSpec] = []
    for index, tool in enumerate(tools):
        if tool.name in seen or tool.name in server_names:
            raise InvalidArgument.field(
                f"options.caller_tools[{index}].name", f"{tool.name!r} is already a tool of this run"
            )
        seen.add(tool.name)
        schema = MessageToDict(tool.parameters) if tool.HasField("parameters") else _EMPTY_SCHEMA
        specs.append(ToolSpec(tool.name, tool.description, schema))
    return tuple(specs)


# -- the paused state as JSON ------------------------------------------------------------


def pack(message: ProtoMessage) -> str:
    return base64.b64encode(message.SerializeToString()).decode()


def unpack(text: str, kind: type[Any]) -> Any:
    return kind.FromString(base64.b64decode(text))


def message_dict(m: Message) -> dict[str, Any]:
    return {
        "role": m.role,
        "content": m.content,
        "tool_calls": [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in m.tool_calls],
        "tool_call_id": m.tool_call_id,
        "tool_name": m.tool_name,
        "is_error": m.is_error,
    }


def message_from(raw: dict[str, Any]) -> Message:
    return Message(
        role=raw["role"],
        content=raw["content"],
        tool_calls=tuple(ToolCall(c["id"], c["name"], dict(c["arguments"])) for c in raw["tool_calls"]),
        tool_call_id=raw["tool_call_id"],
        tool_name=raw["tool_name"],
        is_error=raw["is_error"],
    )


def dumps(state: dict[str, Any]) -> str:
    return json.dumps(state, separators=(",", ":"))


def loads(text: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(text)
    return loaded


# -- checks on a ContinueRun ------------------------------------------------------------------


def check_resumable(record: PausedRecord, now: int) -> None:
    if record.status != "paused" or record.expires_at <= now:
        raise FailedPrecondition(
            f"run {record.run_id!r} expired waiting for its tool results; its budget hold was released"
        )


def check_results(results: Sequence[agent_pb2.ToolResult], pending: Sequence[str], max_chars: int) -> None:
    """Exactly one result per pending call; sizes within the limit; nothing a backend cannot store."""
    expected = set(pending)
    seen: set[str] = set()
    for index, result in enumerate(results):
        field = f"results[{index}]"
        if result.call_id not in expected:
            raise InvalidArgument.field(f"{field}.call_id", f"{result.call_id!r} is not a pending call of this run")
        if result.call_id in seen:
            raise InvalidArgument.field(f"{field}.call_id", f"{result.call_id!r} is answered twice")
        seen.add(result.call_id)
        if len(result.output) > max_chars:
            raise InvalidArgument.field(f"{field}.output", f"longer than {max_chars} characters")
        if "\x00" in result.output:
            raise InvalidArgument.field(f"{field}.output", "must not contain NUL characters (U+0000)")
    missing = sorted(expected - seen)
    if missing:
        raise InvalidArgument.field("results", f"no result for pending call(s) {', '.join(missing)}")


# -- expiry ------------------------------------------------------------------------------------


class Sweeper:
    """Marks paused runs whose TTL passed as expired, releases their holds and audits the expiry."""

    def __init__(self, store: AgentStore, deps: Dependencies, settings: PauseSettings) -> None:
        self._store = store
        self._deps = deps
        self._settings = settings
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception:  # a store or dependency hiccup must not end the sweeper
                log.warning("sweeping expired paused runs failed; retrying", exc_info=True)
            await asyncio.sleep(self._settings.sweep_interval_s)

    async def sweep(self) -> int:
        now = now_micros()
        expired = await self._store.expire_paused(now, 100)
        for record in expired:
            await self._release(record)
        # Markers answer FAILED_PRECONDITION for a day, then go.
        await self._store.purge_expired(now - 86_400_000_000)
        return len(expired)

    async def _release(self, record: PausedRecord) -> None:
        deps = self._deps
        scope = scope_for(record.tenant)
        calls: list[Awaitable[object]] = []
        if record.reservation_id:
            calls.append(
                deps.budget.Release(
                    budget_pb2.ReleaseRequest(scope=scope, reservation_id=record.reservation_id),
                    metadata=deps.metadata,
                    timeout=deps.call_timeout_s,
                )
            )
        payload = audit_pb2.AppendRequest(scope=scope, run_id=record.run_id, actor="agent", action="run_expired")
        payload.payload.update({"reason": "the caller did not send its tool results before the pause's TTL"})
        calls.append(deps.audit.Append(payload, metadata=deps.metadata, timeout=deps.call_timeout_s))
        for outcome in await asyncio.gather(*calls, return_exceptions=True):
            if isinstance(outcome, grpc.aio.AioRpcError):  # the reservation's own TTL returns the hold
                log.warning("expiring paused run %s: %s", record.run_id, outcome.details())
