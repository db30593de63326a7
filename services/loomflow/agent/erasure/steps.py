"""One erasure step per service: call its Forget and return what it erased, by kind.

Every step is idempotent (each service's Forget is), so a step retried after a
failure whose answer was lost erases nothing twice; it only reports zeros.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import Message

from loomflow.agent.dependencies import Dependencies
from loomflow.agent.paused import now_micros
from loomflow.agent.store import AgentStore
from loomflow.kernel.tenancy import scope_for
from loomflow.v1 import audit_pb2, budget_pb2, memory_pb2, policy_pb2

Counts = dict[str, int]


def counts_of(message: Message) -> Counts:
    """Every field of a Forget response (all integers or booleans), zeros included."""
    return {f.name: int(getattr(message, f.name)) for f in message.DESCRIPTOR.fields}


class Steps:
    """The Forget of each service for one tenant, through the Agent's own channels and credential."""

    def __init__(
        self, deps: Dependencies, store: AgentStore, on_forget: Callable[[str], None] = lambda _: None
    ) -> None:
        self._deps = deps
        self._store = store
        self._on_forget = on_forget

    def _call(self) -> dict[str, Any]:
        return {"metadata": self._deps.metadata, "timeout": self._deps.call_timeout_s}

    async def agent(self, tenant: str) -> Counts:
        """The Agent's own state: paused runs (their budget holds go back now) and this replica's caches."""
        records = await self._store.forget_paused(tenant, now_micros())
        self._on_forget(tenant)
        holds = [r for r in records if r.status == "paused" and r.reservation_id]
        releases: list[Awaitable[object]] = [
            self._deps.budget.Release(
                budget_pb2.ReleaseRequest(scope=scope_for(tenant), reservation_id=r.reservation_id), **self._call()
            )
            for r in holds
        ]
        outcomes = await asyncio.gather(*releases, return_exceptions=True)
        # A hold whose release failed is returned by Budget's own step (its Forget releases every open hold).
        released = sum(1 for o in outcomes if not isinstance(o, BaseException))
        return {"paused_runs_deleted": len(records), "holds_released": released}

    async def memory(self, tenant: str) -> Counts:
        request = memory_pb2.MemoryServiceForgetRequest(scope=scope_for(tenant))
        return counts_of(await self._deps.memory.Forget(request, **self._call()))

    async def budget(self, tenant: str) -> Counts:
        request = budget_pb2.BudgetServiceForgetRequest(scope=scope_for(tenant))
        return counts_of(await self._deps.budget.Forget(request, **self._call()))

    async def policy(self, tenant: str) -> Counts:
        request = policy_pb2.PolicyServiceForgetRequest(scope=scope_for(tenant))
        return counts_of(await self._deps.policy.Forget(request, **self._call()))

    async def audit(self, tenant: str, erasure_id: str, requested_by: str, receipt: dict[str, Counts]) -> Counts:
        """Shreds the tenant's audit payloads, then records the erasure itself in the tenant's chain."""
        scope = scope_for(tenant)
        shredded = counts_of(
            await self._deps.audit.Forget(audit_pb2.AuditServiceForgetRequest(scope=scope), **self._call())
        )
        entry = audit_pb2.AppendRequest(scope=scope, actor=requested_by, action="user.erased", run_id=erasure_id)
        entry.payload.update({"erasure_id": erasure_id, "counts": {k: dict(v) for k, v in receipt.items()}})
        await self._deps.audit.Append(entry, **self._call())
        return shredded


def failure(error: BaseException) -> str:
    """How a failed step is described in GetErasure."""
    if isinstance(error, grpc.aio.AioRpcError):
        return f"{error.code().name}: {error.details() or ''}".strip()
    return f"{type(error).__name__}: {error}"
