"""A cache for tools whose key always includes the tenant.

The seed's trap: a tool caches ``{query: answer}`` in one dict and two tenants
see each other's answers. :class:`TenantCache` takes only the caller's part of
the key and prepends the tenant of the current run (from the RunContext), so
there is no way to build a key without it. It is bounded (LRU) and entries
expire, so one noisy tenant cannot grow it without limit.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from loomflow.agent.context import get_run_context

V = TypeVar("V")


class TenantCache(Generic[V]):
    def __init__(self, max_entries: int = 10_000, ttl_seconds: float = 300.0) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._max = max_entries
        self._ttl = ttl_seconds
        self._entries: OrderedDict[tuple[str, Hashable], tuple[float, V]] = OrderedDict()
        self._inflight: dict[tuple[str, Hashable], asyncio.Future[V]] = {}

    @staticmethod
    def _key(key: Hashable) -> tuple[str, Hashable]:
        # The tenant comes from the run, never from the caller: the trap cannot be built.
        return (get_run_context().tenant, key)

    def get(self, key: Hashable) -> V | None:
        full = self._key(key)
        entry = self._entries.get(full)
        if entry is None:
            return None
        expires, value = entry
        if expires < time.monotonic():
            del self._entries[full]
            return None
        self._entries.move_to_end(full)
        return value

    def set(self, key: Hashable, value: V) -> None:
        full = self._key(key)
        self._entries[full] = (time.monotonic() + self._ttl, value)
        self._entries.move_to_end(full)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    async def get_or_compute(self, key: Hashable, compute: Callable[[], Awaitable[V]]) -> V:
        """The cached value, or ``compute()``'s result cached for this tenant.

        Concurrent misses for the same tenant and key share one computation.
        """
        cached = self.get(key)
        if cached is not None:
            return cached
        full = self._key(key)
        pending = self._inflight.get(full)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._inflight[full] = future
        try:
            value = await compute()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # marked retrieved, so a failure nobody else awaited is not logged as lost
            raise
        finally:
            self._inflight.pop(full, None)
        future.set_result(value)
        self.set(key, value)
        return value

    def __len__(self) -> int:
        return len(self._entries)
