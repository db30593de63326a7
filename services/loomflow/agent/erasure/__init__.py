"""Erasing and exporting one user across the whole suite (ForgetUser, GetErasure, ExportUser)."""

from __future__ import annotations

from dataclasses import dataclass

from loomflow.agent.dependencies import Dependencies, Metadata
from loomflow.agent.erasure.eraser import Eraser
from loomflow.agent.erasure.export import archive, collect
from loomflow.agent.erasure.presence import Presence, list_tenants
from loomflow.agent.store import AgentStore


@dataclass(frozen=True)
class UserData:
    """What the AgentService needs for ForgetUser, GetErasure and ExportUser."""

    eraser: Eraser
    deps: Dependencies
    store: AgentStore

    async def export(self, tenant: str) -> bytes:
        """The user's archive (see :mod:`loomflow.agent.erasure.export`)."""
        return archive(tenant, await collect(self.deps, self.store, tenant))

    async def list_tenants(self, operator: Metadata, page_size: int, page_token: str) -> tuple[list[Presence], str]:
        """A page of tenants with the services holding their data (see :mod:`.presence`)."""
        return await list_tenants(self.deps, self.store, operator or self.deps.metadata, page_size, page_token)
