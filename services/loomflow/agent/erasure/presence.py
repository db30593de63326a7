"""Which services hold data for each tenant: the Audit service's tenant list, probed per service.

The tenants and their last-seen times come from AuditService/ListTenants (every tenant the suite
has worked for has an audit chain). For each tenant of the page, each service's Export stream is
opened and closed after its first record: a record means the service holds data for the tenant.
The Agent's own paused runs are read from its store. A page is bounded (at most 100 tenants), so
a listing costs at most 100 × 4 short streams.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import timestamp_pb2
from google.protobuf.message import Message

from loomflow.agent.dependencies import Dependencies, Metadata, dependency_error
from loomflow.agent.store import AgentStore
from loomflow.kernel.tenancy import scope_for, tenant_key
from loomflow.v1 import audit_pb2, budget_pb2, memory_pb2, policy_pb2, tenancy_pb2

EVERYONE = tenancy_pb2.UserScope(all_tenants=tenancy_pb2.AllTenants())


@dataclass(frozen=True, slots=True)
class Presence:
    tenant: str
    last_seen: timestamp_pb2.Timestamp
    services: list[str]


async def _holds(service: str, open_stream: Callable[[], Any]) -> bool:
    stream = open_stream()
    try:
        async for _ in stream:
            return True
        return False
    except grpc.aio.AioRpcError as error:
        raise dependency_error(service, error) from None
    finally:
        stream.cancel()


async def _services(deps: Dependencies, store: AgentStore, tenant: str) -> list[str]:
    scope = scope_for(tenant)

    def probe(method: Any, request: Message) -> Callable[[], Any]:
        return lambda: method(request, metadata=deps.metadata, timeout=deps.call_timeout_s * 6)

    held = await asyncio.gather(
        _paused(store, tenant),
        _holds("memory", probe(deps.memory.Export, memory_pb2.MemoryServiceExportRequest(scope=scope))),
        _holds("budget", probe(deps.budget.Export, budget_pb2.BudgetServiceExportRequest(scope=scope))),
        _holds("policy", probe(deps.policy.Export, policy_pb2.PolicyServiceExportRequest(scope=scope))),
        _holds("audit", probe(deps.audit.Export, audit_pb2.AuditServiceExportRequest(scope=scope))),
    )
    return [name for name, yes in zip(("agent", "memory", "budget", "policy", "audit"), held, strict=True) if yes]


async def _paused(store: AgentStore, tenant: str) -> bool:
    return bool(await store.export_paused(tenant))


async def list_tenants(
    deps: Dependencies, store: AgentStore, operator: Metadata, page_size: int, page_token: str
) -> tuple[list[Presence], str]:
    """One page of tenants with the services holding their data. ``operator`` is the caller's
    credential: the Audit service lists every tenant for an operator only."""
    try:
        listed = await deps.audit.ListTenants(
            audit_pb2.ListTenantsRequest(scope=EVERYONE, page_size=page_size, page_token=page_token),
            metadata=operator,
            timeout=deps.call_timeout_s * 6,
        )
    except grpc.aio.AioRpcError as error:
        raise dependency_error("audit", error) from None
    tenants = [tenant_key(t.scope) for t in listed.tenants]
    services = await asyncio.gather(*(_services(deps, store, t) for t in tenants))
    rows = [Presence(t, s.last_seen_time, held) for t, s, held in zip(tenants, listed.tenants, services, strict=True)]
    return rows, listed.next_page_token
