"""Multi-tenant load through the Agent that records every call, and the checks run after it.

Each call is one agent run for one of N users (every third one also calls a
tool, so the Policy service is on the path), with a unique marker in its prompt.
An OK answer is an *acknowledged* run: its budget charge, its audit entries and
its episode were written before the Agent answered. After the faults, the checks
read everything back: every acknowledged run's episode is in Memory and its
entries are in the Audit log (zero lost writes), every tenant's chain verifies,
no budget reservation is still held once its TTL has passed, and no committed
charge is smaller than what the acknowledged runs were charged.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import grpc

from bench.topology import Suite
from loomflow.v1 import (
    agent_pb2,
    agent_pb2_grpc,
    audit_pb2,
    audit_pb2_grpc,
    budget_pb2,
    budget_pb2_grpc,
    memory_pb2,
    memory_pb2_grpc,
    tenancy_pb2,
)

CLIENT_DEADLINE_S = 30.0
"""A call still running after this is *hung*: the suite's own deadlines should have ended it long before."""

# The bench client reconnects fast, so what is measured is the suite's recovery, not client backoff.
CLIENT_OPTIONS = [("grpc.initial_reconnect_backoff_ms", 100), ("grpc.max_reconnect_backoff_ms", 500)]


@dataclass(frozen=True)
class Outcome:
    started: float
    seconds: float
    user: str
    code: str
    run_id: str = ""
    total_tokens: int = 0
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.code == "OK"


@dataclass
class Load:
    """Keeps ``concurrency`` runs in flight for ``users`` tenants until stopped."""

    suite: Suite
    users: int
    concurrency: int
    prefix: str = field(default_factory=lambda: "f" + secrets.token_hex(3))
    outcomes: list[Outcome] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.user_ids = [f"{self.prefix}-user{n}" for n in range(self.users)]
        self._tokens = {u: (("authorization", f"Bearer {self.suite.user_token(u)}"),) for u in self.user_ids}

    def acknowledged(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.ok]

    async def run(self, stop: asyncio.Event) -> None:
        async with grpc.aio.insecure_channel(self.suite.agent_address, options=CLIENT_OPTIONS) as channel:
            agent = agent_pb2_grpc.AgentServiceStub(channel)
            await asyncio.gather(*(self._worker(agent, n, stop) for n in range(self.concurrency)))

    async def _worker(self, agent: agent_pb2_grpc.AgentServiceAsyncStub, worker: int, stop: asyncio.Event) -> None:
        turn = 0
        while not stop.is_set():
            user = self.user_ids[(worker + turn * self.concurrency) % self.users]
            turn += 1
            prompt = f"note {secrets.token_hex(6)} from {user}"
            if turn % 3 == 0:
                prompt = '/call calculator {"expression": "6*7"}\n' + prompt
            request = agent_pb2.RunRequest(
                scope=tenancy_pb2.UserScope(user_id=user),
                options=agent_pb2.RunOptions(prompt=prompt, session_id=f"{user}-s"),
            )
            started = time.monotonic()
            try:
                reply = await agent.Run(request, metadata=self._tokens[user], timeout=CLIENT_DEADLINE_S)
            except grpc.aio.AioRpcError as error:
                self.outcomes.append(
                    Outcome(started, time.monotonic() - started, user, error.code().name, detail=error.details() or "")
                )
                await asyncio.sleep(0.05)  # a failing suite is not hammered in a tight loop
                continue
            self.outcomes.append(
                Outcome(started, time.monotonic() - started, user, "OK", reply.run_id, reply.usage.total_tokens)
            )


def summarise(outcomes: list[Outcome]) -> dict[str, Any]:
    failed = [o for o in outcomes if not o.ok]
    return {
        "calls": len(outcomes),
        "ok": len(outcomes) - len(failed),
        "codes": dict(Counter(o.code for o in outcomes)),
        "max_failed_call_s": round(max((o.seconds for o in failed), default=0.0), 3),
        "max_call_s": round(max((o.seconds for o in outcomes), default=0.0), 3),
        "hung_calls": sum(1 for o in outcomes if o.seconds >= CLIENT_DEADLINE_S - 0.5),
        "failure_details": sorted({o.detail[:120] for o in failed})[:6],
    }


# -- the checks ------------------------------------------------------------------------------


async def _exported_run_ids(suite: Suite, users: list[str]) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    operator = (("authorization", f"Bearer {suite.operator_token()}"),)
    memory_ids: dict[str, set[str]] = {}
    audit_ids: dict[str, set[str]] = {}
    async with (
        grpc.aio.insecure_channel(suite.internal_address["memory"]) as memory_channel,
        grpc.aio.insecure_channel(suite.internal_address["audit"]) as audit_channel,
    ):
        memory = memory_pb2_grpc.MemoryServiceStub(memory_channel)
        audit = audit_pb2_grpc.AuditServiceStub(audit_channel)
        for user in users:
            scope = tenancy_pb2.UserScope(user_id=user)
            memory_ids[user] = {
                record.episode.run_id
                async for record in memory.Export(
                    memory_pb2.MemoryServiceExportRequest(scope=scope), metadata=operator, timeout=120
                )
                if record.WhichOneof("record") == "episode"
            }
            audit_ids[user] = {
                item.entry.run_id
                async for item in audit.Export(
                    audit_pb2.AuditServiceExportRequest(scope=scope), metadata=operator, timeout=120
                )
            }
    return memory_ids, audit_ids


async def lost_writes(suite: Suite, load: Load) -> dict[str, Any]:
    """Acknowledged runs whose episode or audit entries cannot be read back."""
    memory_ids, audit_ids = await _exported_run_ids(suite, load.user_ids)
    acked = load.acknowledged()
    lost_memory = [o.run_id for o in acked if o.run_id not in memory_ids[o.user]]
    lost_audit = [o.run_id for o in acked if o.run_id not in audit_ids[o.user]]
    return {
        "acknowledged_runs": len(acked),
        "lost_memory_writes": len(lost_memory),
        "lost_audit_writes": len(lost_audit),
        "lost_examples": (lost_memory + lost_audit)[:5],
    }


async def audit_verifies(suite: Suite) -> dict[str, Any]:
    operator = (("authorization", f"Bearer {suite.operator_token()}"),)
    async with grpc.aio.insecure_channel(suite.internal_address["audit"]) as channel:
        audit = audit_pb2_grpc.AuditServiceStub(channel)
        anyone = tenancy_pb2.UserScope(anonymous=tenancy_pb2.Anonymous())
        reply = await audit.Verify(
            audit_pb2.VerifyRequest(scope=anyone, all_tenants=True), metadata=operator, timeout=300
        )
    bad = [c for c in reply.chains if not c.ok]
    return {
        "audit_verifies": reply.ok,
        "chains_verified": len(reply.chains),
        "entries_verified": sum(c.entries_checked for c in reply.chains),
        "bad_chains": [f"{c.scope.user_id}: {c.reason} at {c.first_bad_seq}" for c in bad][:5],
        "checkpoint_error": reply.checkpoint_error,
    }


async def budget_after_ttl(suite: Suite, load: Load, ttl_s: float) -> dict[str, Any]:
    """Waits until every hold any run could have left has passed its TTL, then reads every tenant's ledger."""
    last_start = max((o.started for o in load.outcomes), default=time.monotonic())
    wait = max(0.0, last_start + ttl_s - time.monotonic())
    await asyncio.sleep(wait)
    operator = (("authorization", f"Bearer {suite.operator_token()}"),)
    charged: Counter[str] = Counter()
    for outcome in load.acknowledged():
        charged[outcome.user] += outcome.total_tokens
    outstanding, short = {}, {}
    async with grpc.aio.insecure_channel(suite.internal_address["budget"]) as channel:
        budget = budget_pb2_grpc.BudgetServiceStub(channel)
        for user in load.user_ids:
            status = await budget.GetStatus(
                budget_pb2.GetStatusRequest(scope=tenancy_pb2.UserScope(user_id=user)), metadata=operator, timeout=30
            )
            held = max((u.reserved for u in status.limits if u.applies_to != "global"), default=0)
            if held:
                outstanding[user] = held
            if status.total.total_tokens < charged[user]:
                short[user] = (status.total.total_tokens, charged[user])
    return {
        "waited_for_ttl_s": round(wait, 1),
        "reservations_outstanding_after_ttl": sum(outstanding.values()),
        "tenants_with_outstanding_holds": len(outstanding),
        "acknowledged_charges_missing": len(short),
        "missing_examples": {u: list(v) for u, v in list(short.items())[:5]},
    }


async def stop_load(task: asyncio.Task[None], stop: asyncio.Event) -> None:
    stop.set()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, CLIENT_DEADLINE_S + 5)
