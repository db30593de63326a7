"""What every audit sink provides. The log (``core.py``) owns chains, keys and batching;
a sink only stores what it is given, durably, and reads it back.

Contract every sink keeps (and the conformance suite in tests/audit checks):

* :meth:`Sink.write_batch` is all-or-nothing and returns only once the batch is
  durable (fsync / COMMIT); new data keys become durable no later than the
  entries that use them.
* Reads return entries in storage order; verification sees exactly what is stored.
* Only one writer process per file log (a lock file); a Postgres log may have
  several writer processes, and a seq or key race surfaces as :class:`Conflict`.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol

from loomflow.audit.models import Batch, ChainReport, Checkpoint, Entry, Head, QueryFilter, WrappedKey


class Conflict(Exception):
    """Another process moved these tenants' chains or destroyed their keys: reload and retry."""

    def __init__(self, tenants: Collection[str], why: str) -> None:
        super().__init__(why)
        self.tenants = set(tenants)


class BadEntry(Exception):
    """The batch holds an entry this sink cannot store (e.g. a NUL byte in Postgres text).

    The writer then splits the batch, so only the entries that cannot be stored fail
    (INVALID_ARGUMENT) and every other tenant's entries of the batch commit.
    """


class SinkBroken(Exception):
    """The sink can no longer guarantee durability (e.g. fsync failed and the rollback too)."""


class Sink(Protocol):
    description: str
    """Where the log lives, for logs and errors (no secrets)."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def init_meta(self, values: dict[str, str]) -> dict[str, str]:
        """Stores ``values`` unless metadata exists already; returns what is stored."""
        ...

    async def load_heads(self, tenants: Collection[str]) -> dict[str, Head]:
        """The stored heads of these tenants (tenants without entries are left out)."""
        ...

    async def all_heads(self) -> dict[str, Head]: ...

    async def load_keys(self, tenants: Collection[str]) -> dict[str, list[WrappedKey]]:
        """Each tenant's wrapped data keys, oldest first (tenants without keys map to [])."""
        ...

    async def write_batch(self, batch: Batch) -> None: ...

    async def destroy_keys(self, tenant: str) -> int:
        """Destroys every stored data key of the tenant; returns how many entries carry a payload."""
        ...

    async def tenants_with_keys_before(self, day: int, after: str, limit: int) -> list[str]:
        """Sorted tenants after ``after`` holding period keys of UTC days before ``day``, at most ``limit``."""
        ...

    async def destroy_keys_before(self, tenant: str, day: int, limit: int) -> int:
        """Destroys at most ``limit`` of the tenant's period keys of UTC days before ``day`` (retention);
        returns how many it destroyed. The entries stay: their payloads become unreadable."""
        ...

    async def read(self, query: QueryFilter) -> list[Entry]:
        """Matching entries ordered by (tenant, seq), at most ``query.limit``."""
        ...

    async def macs_at(self, positions: Collection[tuple[str, int]]) -> dict[tuple[str, int], bytes]:
        """The mac stored at each (tenant, seq) that exists."""
        ...

    async def verify(
        self, key: bytes, checkpoint: Checkpoint | None, only: str | None
    ) -> tuple[list[ChainReport], list[str]]:
        """Verifies every chain (or only one tenant's) over what is stored; returns the chain
        reports (with replayed copies already identified) and unreadable records."""
        ...

    async def save_checkpoint(self, checkpoint: Checkpoint) -> None: ...

    async def latest_checkpoint(self) -> Checkpoint | None: ...
