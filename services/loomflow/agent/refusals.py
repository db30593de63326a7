"""Refused calls at the Agent, appended to the targeted tenant's audit chain.

The Agent is the suite's public edge: a forged token, an expired one, or bob's
token used for ``user_id="alice"`` ends there as UNAUTHENTICATED or
PERMISSION_DENIED. The kernel logs every refusal (``loomflow.security``); this
hook also writes one tamper-evident audit entry, ``actor="security"``,
``action="auth_refused"``, in the chain of the tenant the request named, so the
tenant's own audit trail shows who tried to act as them, with what, and why it
was refused. Requests whose scope is invalid name no tenant and are only logged.

The append runs in the background (a refusal is answered at once), at most
``max_pending`` at a time: past that, refusals are only logged and counted, so a
flood cannot queue unbounded work. The kernel already rate limits refusals per
(claimed principal, target) before they reach this hook.
"""

from __future__ import annotations

import asyncio
import logging

import grpc

from loomflow.agent.dependencies import Dependencies
from loomflow.agent.toolcalls import to_struct
from loomflow.kernel.security import Refusal
from loomflow.kernel.tenancy import scope_for
from loomflow.v1 import audit_pb2

log = logging.getLogger("loomflow.agent")

ACTOR = "security"
ACTION = "auth_refused"


class RefusalAuditor:
    """The Agent's ``on_refusal`` hook; inert until :meth:`attach` gives it the Audit connection."""

    def __init__(self, max_pending: int = 256) -> None:
        self._deps: Dependencies | None = None
        self._max_pending = max_pending
        self._pending: set[asyncio.Task[None]] = set()
        self.dropped = 0

    def attach(self, deps: Dependencies | None) -> None:
        self._deps = deps

    def __call__(self, refusal: Refusal) -> None:
        deps = self._deps
        if deps is None or refusal.tenant is None:
            return
        if len(self._pending) >= self._max_pending:
            self.dropped += 1
            log.warning("refusal not audited: %d audit appends already pending", len(self._pending))
            return
        task = asyncio.get_running_loop().create_task(self._append(deps, refusal))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _append(self, deps: Dependencies, refusal: Refusal) -> None:
        assert refusal.tenant is not None
        request = audit_pb2.AppendRequest(
            scope=scope_for(refusal.tenant),
            actor=ACTOR,
            action=ACTION,
            payload=to_struct(
                {
                    "rpc": refusal.rpc,
                    "code": refusal.code,
                    "reason": refusal.reason,
                    "principal": refusal.principal,
                    "claimed_subject": refusal.claimed_subject,
                    "peer": refusal.peer,
                }
            ),
        )
        try:
            await deps.audit.Append(request, metadata=deps.metadata, timeout=deps.call_timeout_s)
        except grpc.aio.AioRpcError as error:
            log.warning("could not audit a refused call to %s: %s", refusal.rpc, error.code().name)

    async def drain(self) -> None:
        """Waits for the appends in flight (the Agent stops after them)."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
