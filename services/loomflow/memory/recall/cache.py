"""A bounded, process-local LRU of tenant indexes for the stores that persist elsewhere.

Entries are tagged with the tenant's *epoch* (bumped by every Forget) and know
the highest ``seq`` they hold; the owning store compares both with the
database on every recall, so another process's writes and forgets are seen:
new episodes are appended, a changed epoch rebuilds. The bound is a number of
episodes across tenants, each tenant counted one episode more than it holds: an index
costs ~1.7 KB before its first episode (its columns' headers), about what one episode's
256-dimension vector and postings cost, so a churn of one-episode tenants stops at
half the bound's tenants instead of one per counted episode.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from loomflow.memory.recall.index import TenantIndex


@dataclass(slots=True)
class CachedIndex:
    epoch: int
    index: TenantIndex
    seen_seq: int = 0
    """The tenant's highest seq when last refreshed (may exceed index.max_seq after a Forget)."""
    counted: int = 0


TENANT_OVERHEAD_EPISODES = 1
"""What a tenant's index costs beyond its episodes, in episodes."""


class IndexCache:
    def __init__(self, max_episodes: int) -> None:
        self._max = max_episodes
        self._entries: OrderedDict[str, CachedIndex] = OrderedDict()
        self._episodes = 0

    @property
    def episodes(self) -> int:
        return self._episodes

    @property
    def tenants(self) -> int:
        return len(self._entries)

    def get(self, tenant: str) -> CachedIndex | None:
        entry = self._entries.get(tenant)
        if entry is not None:
            self._entries.move_to_end(tenant)
        return entry

    def put(self, tenant: str, epoch: int, index: TenantIndex, seen_seq: int) -> CachedIndex:
        self.drop(tenant)
        entry = CachedIndex(epoch, index, max(seen_seq, index.max_seq))
        self._entries[tenant] = entry
        self.resized(tenant)
        return entry

    def resized(self, tenant: str) -> None:
        """Re-counts a tenant's index after it grew, then evicts least recently used tenants."""
        entry = self._entries.get(tenant)
        if entry is None:
            return
        counted = entry.index.size + TENANT_OVERHEAD_EPISODES
        self._episodes += counted - entry.counted
        entry.counted = counted
        while self._episodes > self._max and len(self._entries) > 1:
            oldest = next(iter(self._entries))
            if oldest == tenant:
                self._entries.move_to_end(tenant)
                oldest = next(iter(self._entries))
            self.drop(oldest)

    def drop(self, tenant: str) -> None:
        entry = self._entries.pop(tenant, None)
        if entry is not None:
            self._episodes -= entry.counted
