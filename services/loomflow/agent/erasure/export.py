"""ExportUser's archive: one gzip'd tar holding a JSONL file per service and a manifest.

Each line of ``<service>.jsonl`` is one record of that service's Export stream,
in protobuf's JSON mapping with the .proto's field names (``memory.jsonl``: a
MemoryServiceExportResponse per line, ``budget.jsonl``: BudgetServiceExportResponse,
``policy.jsonl``: PolicyServiceExportResponse, ``audit.jsonl``: AuditServiceExportResponse).
``agent.jsonl`` holds the Agent's paused runs: ``{"run_id", "status", "expires_at"
(Unix µs), "reservation_id", "state"}`` with the run's saved state as JSON.
``manifest.json`` names the format (``loomflow-export/1``), the user, when, and how
many records each file holds. The schema is documented in docs/erasure.md.
"""

from __future__ import annotations

import asyncio
import io
import json
import tarfile
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from loomflow.agent.dependencies import Dependencies, dependency_error
from loomflow.agent.store import AgentStore
from loomflow.kernel.tenancy import display_tenant, scope_for
from loomflow.v1 import audit_pb2, budget_pb2, memory_pb2, policy_pb2

FORMAT = "loomflow-export/1"
CHUNK_BYTES = 256 * 1024


def _line(record: dict[str, Any]) -> bytes:
    return json.dumps(record, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode() + b"\n"


async def _lines(service: str, stream: Callable[[], AsyncIterator[Message]]) -> list[bytes]:
    try:
        return [_line(MessageToDict(m, preserving_proto_field_name=True)) async for m in stream()]
    except grpc.aio.AioRpcError as error:
        raise dependency_error(service, error) from None


async def collect(deps: Dependencies, store: AgentStore, tenant: str) -> dict[str, list[bytes]]:
    """Every service's records of the tenant, as JSONL lines per file name. Fails whole, never partial."""
    scope = scope_for(tenant)

    def call(method: Any, request: Message) -> Callable[[], AsyncIterator[Message]]:
        return lambda: method(request, metadata=deps.metadata, timeout=deps.call_timeout_s * 6)

    memory, budget, policy, audit, paused = await asyncio.gather(
        _lines("memory", call(deps.memory.Export, memory_pb2.MemoryServiceExportRequest(scope=scope))),
        _lines("budget", call(deps.budget.Export, budget_pb2.BudgetServiceExportRequest(scope=scope))),
        _lines("policy", call(deps.policy.Export, policy_pb2.PolicyServiceExportRequest(scope=scope))),
        _lines("audit", call(deps.audit.Export, audit_pb2.AuditServiceExportRequest(scope=scope))),
        store.export_paused(tenant),
    )
    agent = [
        _line(
            {
                "run_id": r.run_id,
                "status": r.status,
                "expires_at": r.expires_at,
                "reservation_id": r.reservation_id,
                "state": json.loads(r.state),
            }
        )
        for r in paused
    ]
    return {
        "agent.jsonl": agent,
        "memory.jsonl": memory,
        "budget.jsonl": budget,
        "policy.jsonl": policy,
        "audit.jsonl": audit,
    }


def archive(tenant: str, files: dict[str, list[bytes]], now: float | None = None) -> bytes:
    """The tar.gz of ``files`` plus ``manifest.json``."""
    at = time.time() if now is None else now
    manifest = {
        "format": FORMAT,
        "user_id": display_tenant(tenant),
        "anonymous": display_tenant(tenant) != tenant,
        "exported_at": int(at),
        "files": {name: len(lines) for name, lines in files.items()},
    }
    contents = {"manifest.json": json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n"}
    contents.update({name: b"".join(lines) for name, lines in files.items()})
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in contents.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), int(at), 0o600
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def chunks(data: bytes) -> list[bytes]:
    return [data[i : i + CHUNK_BYTES] for i in range(0, len(data), CHUNK_BYTES)] or [b""]
