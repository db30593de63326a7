"""Run slots: a bounded pool of runs executing at once across every tenant, handed out fairly by tenant.

A run's work is CPU in the Agent and in every service it calls (recall, reserve, audit,
remember), all of it shared by every tenant. The kernel's per-user limits cap how fast and
how much at once one tenant may ask; they do not decide whose run goes first when the
suite is busy. Measured with ``python -m bench noisy_neighbour``: one tenant inside its
limits (10 runs/s, 4 in flight) kept 4 runs executing at once whenever its bucket allowed,
and each quiet tenant's run queued behind that tenant's work in every service's event loop
(quiet p99 5-6x its value alone).

With ``LOOMFLOW_AGENT_RUN_SLOTS`` set, a tenant's first run always starts at once, and its
further runs start only while fewer than that many runs (every tenant's) execute; otherwise
they wait, and each freed slot goes to the waiting tenant that holds the fewest slots (ties:
the one whose oldest waiting run came first). So a tenant with nothing running never waits
behind a flooder's backlog, a flooder still gets every slot nobody else wants (its share is
never zero: its first run always starts), and a slow dependency cannot make the pool starve
everyone (each tenant keeps its one run). The queue is bounded by the kernel's per-user
in-flight cap (a waiting run is in flight for it), and a waiting run is cancelled with its
call (its caller's deadline or disconnect), so waiting holds nothing past it.

A run waiting on a remote model (a provider's HTTP API) lends its slot for the wait
(:meth:`RunSlots.lent`): the wait costs no CPU here, so holding the slot through it only kept
other runs from the cores; with the answer the run takes a slot again by the same rule as a run
starting. The slots are for CPU, which is what one tenant's runs can take from another's.

The scheduler is synchronous and single-loop (the Agent is one asyncio event loop), O(log n)
per grant in the number of waiting tenants (a heap with lazy deletion).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from loomflow.kernel.config import ConfigError


@dataclass(slots=True)
class _Tenant:
    held: int = 0
    waiting: deque[tuple[int, asyncio.Future[None]]] = field(default_factory=deque)
    """(arrival number, future) of each run of this tenant waiting for a slot, oldest first."""


class RunSlots:
    """Each tenant's first run starts at once; its further runs share ``capacity`` slots fairly.

    A tenant with no run executing always gets one (counted in the pool, even past
    ``capacity``), so a quiet tenant never waits and no tenant's share is ever zero. A run of a
    tenant that already has one executing starts only while fewer than ``capacity`` runs
    execute; otherwise it waits, and each freed slot goes to the waiting tenant holding the
    fewest (ties: the one whose oldest waiting run came first). ``capacity`` 0 turns the pool
    off (every run starts at once).
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ConfigError("LOOMFLOW_AGENT_RUN_SLOTS must be ≥ 0 (0: no limit)")
        self.capacity = capacity
        self.in_use = 0
        self._waiters = 0
        self._tenants: dict[str, _Tenant] = {}
        self._arrivals = itertools.count()
        # (slots held, arrival of the oldest waiting run, tenant); an entry is live while it
        # matches the tenant's state (see _key), stale ones are skipped when they surface.
        self._order: list[tuple[int, int, str]] = []

    @property
    def enabled(self) -> bool:
        return self.capacity > 0

    def held(self, tenant: str) -> int:
        state = self._tenants.get(tenant)
        return state.held if state is not None else 0

    def waiting(self, tenant: str | None = None) -> int:
        """Runs waiting for a slot: of ``tenant``, or of every tenant."""
        if tenant is None:
            return self._waiters
        state = self._tenants.get(tenant)
        return len(state.waiting) if state is not None else 0

    @asynccontextmanager
    async def slot(self, tenant: str) -> AsyncIterator[None]:
        """Holds one slot of ``tenant`` for the block (waits for one first when the tenant must)."""
        if not self.enabled:
            yield
            return
        await self.acquire(tenant)
        try:
            yield
        finally:
            self.release(tenant)

    @asynccontextmanager
    async def lent(self, tenant: str) -> AsyncIterator[None]:
        """Gives one of ``tenant``'s slots back for the block (a wait on a remote model, which costs no
        CPU here) and takes one again after it, waiting its turn like a run starting: a tenant with no
        other run executing gets it at once. When the block fails or is cancelled the slot is taken
        back without waiting (the pool may then hold one over capacity until the run ends and its
        ``slot`` releases it), so the run's own release always finds the slot it holds."""
        if not self.enabled:
            yield
            return
        self.release(tenant)
        try:
            yield
            await self.acquire(tenant)
        except BaseException:  # the wait failed, or acquire gave up its place: hold one anyway
            self._take(self._tenants.setdefault(tenant, _Tenant()))
            raise

    async def acquire(self, tenant: str) -> None:
        state = self._tenants.get(tenant)
        if state is None:
            state = self._tenants[tenant] = _Tenant()
        if not state.held or (self.in_use < self.capacity and not self._waiters):
            self._take(state)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (next(self._arrivals), future)
        state.waiting.append(entry)
        self._waiters += 1
        if len(state.waiting) == 1:
            self._push(tenant, state)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():  # granted as it was cancelled: pass the slot on
                self.release(tenant)
            else:
                self._withdraw(tenant, state, entry)
            raise

    def release(self, tenant: str) -> None:
        state = self._tenants[tenant]
        state.held -= 1
        self.in_use -= 1
        if state.waiting and not state.held:  # its first run again: starts at once
            self._grant_to(tenant, state)
        elif state.waiting:
            self._push(tenant, state)  # holding one fewer moves it forward
        else:
            self._forget_if_idle(tenant, state)
        self._grant()

    def _take(self, state: _Tenant) -> None:
        state.held += 1
        self.in_use += 1

    def _grant(self) -> None:
        while self.in_use < self.capacity and self._order:
            held, arrival, tenant = heapq.heappop(self._order)
            state = self._tenants.get(tenant)
            if state is None or not state.waiting or (held, arrival) != self._key(state):
                continue  # stale: the tenant's state changed after this entry was pushed
            self._grant_to(tenant, state)

    def _grant_to(self, tenant: str, state: _Tenant) -> None:
        _, future = state.waiting.popleft()
        self._waiters -= 1
        self._take(state)
        future.set_result(None)
        if state.waiting:
            self._push(tenant, state)

    def _withdraw(self, tenant: str, state: _Tenant, entry: tuple[int, asyncio.Future[None]]) -> None:
        was_first = state.waiting[0] is entry
        state.waiting.remove(entry)
        self._waiters -= 1
        if state.waiting and was_first:
            self._push(tenant, state)
        self._forget_if_idle(tenant, state)

    def _forget_if_idle(self, tenant: str, state: _Tenant) -> None:
        if not state.held and not state.waiting:
            del self._tenants[tenant]

    @staticmethod
    def _key(state: _Tenant) -> tuple[int, int]:
        return state.held, state.waiting[0][0]

    def _push(self, tenant: str, state: _Tenant) -> None:
        heapq.heappush(self._order, (*self._key(state), tenant))
        if len(self._order) > 2 * self._waiters + 64:  # mostly stale entries: rebuild from the live state
            self._order = [(*self._key(s), t) for t, s in self._tenants.items() if s.waiting]
            heapq.heapify(self._order)
