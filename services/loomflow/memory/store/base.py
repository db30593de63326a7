"""The storage protocol every Memory backend implements.

Every method takes the tenant's partition key (``tenant_key(scope)``) first and
touches that tenant's data only; a record of another tenant is indistinguishable
from a missing one (NOT_FOUND). Writes take ``at``, the instant their request
started, which stamps the record and is checked against Forget tombstones (see
:mod:`loomflow.memory.forgetting`). Stores raise the kernel's domain errors
(``NotFound``, ``Aborted``, ``Unavailable``), never gRPC ones.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from loomflow.memory.models import (
    AssertionResult,
    Block,
    BlockWrite,
    Episode,
    EpisodeDraft,
    ExportRecord,
    Fact,
    FactAssertion,
    FactQuery,
    ForgetResult,
    ForgetScope,
    Micros,
    RecallHit,
    RecallQuery,
    SessionPage,
)


class MemoryStore(Protocol):
    async def start(self) -> None:
        """Connects and runs migrations; Unavailable when the backend cannot be reached."""
        ...

    async def close(self) -> None: ...

    async def remember(self, tenant: str, draft: EpisodeDraft, at: Micros) -> Episode: ...

    async def remember_many(self, tenant: str, drafts: Sequence[EpisodeDraft], at: Micros) -> list[Episode]:
        """Stores several episodes of one tenant at once, all or none (bulk imports, benchmark loads)."""
        ...

    async def recall(self, tenant: str, query: RecallQuery) -> list[RecallHit]: ...

    async def get_episode(self, tenant: str, episode_id: str) -> Episode: ...

    async def list_episodes(self, tenant: str, page: SessionPage) -> list[Episode]:
        """One session's episodes with ``seq < page.before_seq``, newest first, at most ``page.limit``.

        Reads only the page's rows (an index on (tenant, session, seq) or the tenant's recall index).
        """
        ...

    async def put_block(self, tenant: str, write: BlockWrite, at: Micros) -> Block: ...

    async def get_block(self, tenant: str, session_id: str, label: str) -> Block: ...

    async def list_blocks(self, tenant: str, session_id: str | None) -> list[Block]:
        """Blocks of one session, or (None) every block of the tenant; ordered by (session_id, label)."""
        ...

    async def delete_block(self, tenant: str, session_id: str, label: str, expected_version: int | None) -> int:
        """Deletes a block and returns the version deleted."""
        ...

    async def assert_fact(self, tenant: str, assertion: FactAssertion, at: Micros) -> AssertionResult: ...

    async def retract_fact(self, tenant: str, fact_id: str, at: Micros) -> Fact:
        """Retracts every believed version of the fact; NOT_FOUND when none is believed."""
        ...

    async def query_facts(self, tenant: str, query: FactQuery) -> list[Fact]: ...

    async def tenants_with_episodes_before(self, cutoff: Micros, after: str, limit: int) -> list[str]:
        """Tenants (sorted, greater than ``after``, at most ``limit``) that may hold an episode created
        before ``cutoff`` (Redis and Chroma list every tenant: they have no index by time)."""
        ...

    async def delete_episodes_before(self, tenant: str, cutoff: Micros, limit: int) -> int:
        """Deletes at most ``limit`` of the tenant's episodes created before ``cutoff`` (oldest first) and
        drops them from recall; blocks and facts stay. Returns how many (retention, loomflow/retention.py)."""
        ...

    async def forget(self, tenant: str, scope: ForgetScope, at: Micros) -> ForgetResult: ...

    def export(self, tenant: str) -> AsyncIterator[ExportRecord]:
        """Every record of the tenant: episodes (by seq), then blocks, then every fact version."""
        ...
