"""The Agent's durable state behind one protocol: agent definitions and paused runs.

The Agent process stays stateless: whatever must outlive a request (an agent an
operator defined, a run waiting for its caller's tool results) is written here,
so any replica can serve any request and a restart loses nothing. SQLite under
the data directory is the embedded default; Postgres is the production store.

Paused runs are keyed by (tenant, run_id): a run id of another tenant is
indistinguishable from a missing one. Stores raise the kernel's domain errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

Micros = int

PAUSED = "paused"
EXPIRED = "expired"


@dataclass(frozen=True)
class StoredDefinition:
    name: str
    body: str
    """The definition as JSON (see :mod:`loomflow.agent.definitions`)."""
    version: int
    updated_at: Micros


@dataclass(frozen=True)
class PausedRecord:
    tenant: str
    run_id: str
    state: str
    """The run's state as JSON (see :mod:`loomflow.agent.paused`)."""
    reservation_id: str
    expires_at: Micros
    status: str = PAUSED
    started_at: Micros = 0
    """When the request that paused the run started (not stored): a pause that started before a
    ForgetUser of its tenant is refused, so a run in flight during the erase cannot store the
    user's conversation again."""


@dataclass(frozen=True)
class ErasureRow:
    """One ForgetUser job as stored; ``body`` is its steps as JSON (see :mod:`loomflow.agent.erasure.job`)."""

    id: str
    tenant: str
    request_id: str
    body: str
    state: str
    next_attempt_at: Micros
    leased_until: Micros
    created_at: Micros


class AgentStore(Protocol):
    async def start(self) -> None:
        """Connects and runs migrations; Unavailable when the backend cannot be reached."""
        ...

    async def close(self) -> None: ...

    async def put_definition(self, name: str, body: str, at: Micros) -> StoredDefinition:
        """Creates or replaces a definition; its version grows by one on every write."""
        ...

    async def get_definition(self, name: str) -> StoredDefinition:
        """NotFound when no agent has this name."""
        ...

    async def list_definitions(self, after: str, limit: int) -> list[StoredDefinition]:
        """Definitions named after ``after``, in name order, at most ``limit``."""
        ...

    async def delete_definition(self, name: str) -> int:
        """Deletes a definition and returns the version deleted; NotFound when there is none."""
        ...

    async def pause(self, record: PausedRecord, now: Micros, max_per_tenant: int) -> None:
        """Stores a paused run; ResourceExhausted when the tenant already has ``max_per_tenant`` live ones;
        Aborted when the tenant was forgotten after ``record.started_at``."""
        ...

    async def get_paused(self, tenant: str, run_id: str) -> PausedRecord:
        """The tenant's paused (or expired) run; NotFound when the tenant has no such run."""
        ...

    async def take_paused(self, tenant: str, run_id: str) -> PausedRecord:
        """Removes a paused run and returns it, once: a second taker gets NotFound."""
        ...

    async def expire_paused(self, now: Micros, limit: int) -> list[PausedRecord]:
        """Marks up to ``limit`` paused runs whose TTL passed as expired and returns them (for their holds)."""
        ...

    async def purge_expired(self, before: Micros) -> int:
        """Deletes expired markers that expired before ``before`` (they only answer FAILED_PRECONDITION)."""
        ...

    async def forget_paused(self, tenant: str, at: Micros) -> list[PausedRecord]:
        """Deletes every paused run (and expired marker) of the tenant and returns them (for their holds);
        records the tombstone ``at``, atomically with respect to :meth:`pause`."""
        ...

    async def export_paused(self, tenant: str) -> list[PausedRecord]:
        """Every paused run (and expired marker) of the tenant, by run id."""
        ...

    async def insert_erasure(self, row: ErasureRow) -> ErasureRow:
        """Stores a new erasure, or returns the one already stored for (tenant, request_id)."""
        ...

    async def pending_erasure(self, tenant: str) -> ErasureRow | None:
        """The tenant's oldest erasure not done yet, if any."""
        ...

    async def get_erasure(self, tenant: str, erasure_id: str) -> ErasureRow:
        """NotFound for an unknown id, or another tenant's."""
        ...

    async def claim_erasure(self, erasure_id: str, now: Micros, lease_until: Micros) -> ErasureRow | None:
        """Leases a pending erasure to this caller until ``lease_until``; None if done or leased by another."""
        ...

    async def save_erasure(self, erasure_id: str, body: str, state: str, next_attempt_at: Micros) -> None:
        """Records a claimed erasure's progress and ends the lease."""
        ...

    async def due_erasures(self, now: Micros, limit: int) -> list[str]:
        """Ids of pending, unleased erasures whose next attempt is due."""
        ...
