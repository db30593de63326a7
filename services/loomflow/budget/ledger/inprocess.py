"""The in-process ledger: one process's memory, atomic because nothing in it awaits.

Per-tenant state is bounded as in the seed's StandardBudget: at most
``max_users`` tenants (least recently used evicted first) and none idle longer
than ``idle_ttl_ms``; 0 disables either bound. Evicting a tenant returns its open
holds to the global pool and forgets its usage and its idempotency records, so
an evicted tenant starts its windows from zero: use Redis or Postgres where
per-user limits must survive idleness or restarts. Global usage and the limits
(including per-user overrides, which only an operator can create) are never
evicted.

Settled reservations are kept for ``retention_ms`` after settling (so retries of
Reserve and Commit replay), and at most ``max_kept_per_user`` per tenant.
"""

from __future__ import annotations

import heapq
import itertools
from array import array
from collections import OrderedDict
from collections.abc import Sequence

from loomflow.budget.ledger.base import BUCKET, states_for, total_charge
from loomflow.budget.models import (
    ZERO,
    AppliesTo,
    Charge,
    CommitOutcome,
    ForgetReceipt,
    KeptReservation,
    Limit,
    LimitState,
    LimitTarget,
    Moment,
    Reservation,
    ReserveOutcome,
    State,
    StatusSnapshot,
    TenantExport,
    first_refusal,
)
from loomflow.kernel.errors import NotFound

_HELD, _COMMITTED, _RELEASED, _EXPIRED = State.HELD, State.COMMITTED, State.RELEASED, State.EXPIRED
_NO_USAGE = (0,) * (3 * BUCKET)


class _Usage:
    """Committed usage in three side-by-side buckets (all time, day, month) of :data:`BUCKET` ints."""

    __slots__ = ("day", "month", "values")

    def __init__(self) -> None:
        self.values = array("q", bytes(8 * 3 * BUCKET))
        self.day = ""
        self.month = ""

    def windows(self, at: Moment) -> dict[str, Charge]:
        """The non-empty buckets by window key, as of ``at``."""
        values = self.roll(at)
        keyed = {"all": 0, self.day: BUCKET, self.month: 2 * BUCKET}
        return {
            key: Charge.from_stored(list(values[offset : offset + BUCKET]))
            for key, offset in keyed.items()
            if any(values[offset : offset + BUCKET])
        }

    def roll(self, at: Moment) -> array[int]:
        """The buckets as of ``at``: a window that has ended reads as zero."""
        values = self.values
        if self.day != at.day:
            values[BUCKET : 2 * BUCKET] = array("q", bytes(8 * BUCKET))
            self.day = at.day
        if self.month != at.month:
            values[2 * BUCKET :] = array("q", bytes(8 * BUCKET))
            self.month = at.month
        return values

    def add(self, charge: Charge, at: Moment) -> None:
        values = self.roll(at)
        for offset in (0, BUCKET, 2 * BUCKET):
            for index, amount in enumerate(charge.stored):
                values[offset + index] += amount


class _Reservation:
    __slots__ = ("charged", "expires_ms", "record", "settled_ms", "state", "tenant")

    def __init__(self, record: Reservation, tenant: _Tenant) -> None:
        self.record = record
        self.tenant = tenant
        self.expires_ms = record.expires_ms
        self.state = _HELD
        self.charged: Charge | None = None
        self.settled_ms = 0


class _Tenant:
    __slots__ = ("by_call", "by_id", "held", "key", "seen_ms", "usage")

    def __init__(self, key: str) -> None:
        self.key = key
        self.usage = _Usage()
        # Created on first use and dropped when empty, so an idle tenant costs little.
        self.held: list[int] | None = None
        self.by_id: dict[str, _Reservation] | None = None
        self.by_call: dict[str, _Reservation] | None = None
        self.seen_ms = 0


class InProcessLedger:
    def __init__(
        self,
        max_users: int = 100_000,
        idle_ttl_ms: int = 86_400_000,
        retention_ms: int = 3_600_000,
        max_kept_per_user: int = 1_000,
    ) -> None:
        self.max_users = max_users
        self.idle_ttl_ms = idle_ttl_ms
        self.retention_ms = retention_ms
        self.max_kept_per_user = max_kept_per_user
        self._tenants: OrderedDict[str, _Tenant] = OrderedDict()
        self._global_usage = _Usage()
        self._global_held = [0, 0, 0, 0, 0]
        self._global_limits: list[Limit] = []
        self._default_limits: list[Limit] = []
        self._overrides: dict[str, list[Limit]] = {}
        self._expiry: list[tuple[int, int, _Reservation]] = []
        self._stale = 0  # heap entries whose reservation was settled before expiring
        self._seq = itertools.count()
        self.evicted = 0

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def __len__(self) -> int:
        return len(self._tenants)

    # -- bounded tenant state ---------------------------------------------

    def _tenant(self, key: str, at: Moment, create: bool) -> _Tenant | None:
        tenants = self._tenants
        tenant = tenants.get(key)
        if tenant is not None:
            tenants.move_to_end(key)
        elif create:
            tenant = tenants[key] = _Tenant(key)
        if tenant is not None:
            tenant.seen_ms = at.now_ms
        self._evict(at)
        return tenant

    def _evict(self, at: Moment) -> None:
        tenants = self._tenants
        if self.max_users > 0:
            while len(tenants) > self.max_users:
                self._forget(tenants.popitem(last=False)[1])
        if self.idle_ttl_ms > 0:
            horizon = at.now_ms - self.idle_ttl_ms
            while tenants:
                oldest = next(iter(tenants.values()))
                if oldest.seen_ms > horizon:
                    break
                del tenants[oldest.key]
                self._forget(oldest)

    def _forget(self, tenant: _Tenant) -> None:
        """Evicts a tenant: its open holds go back to the global pool."""
        self.evicted += 1
        for reservation in (tenant.by_id or {}).values():
            if reservation.state is _HELD:
                self._unhold(reservation, _EXPIRED, 0)

    # -- holds and expiry ---------------------------------------------------

    def _hold(self, tenant: _Tenant, reservation: _Reservation) -> None:
        vector = reservation.record.held.vector
        held = tenant.held if tenant.held is not None else [0, 0, 0, 0, 0]
        tenant.held = held
        global_held = self._global_held
        for index, amount in enumerate(vector):
            held[index] += amount
            global_held[index] += amount
        heapq.heappush(self._expiry, (reservation.expires_ms, next(self._seq), reservation))

    def _unhold(self, reservation: _Reservation, state: State, now_ms: int) -> None:
        tenant = reservation.tenant
        vector = reservation.record.held.vector
        held = tenant.held
        global_held = self._global_held
        for index, amount in enumerate(vector):
            global_held[index] -= amount
            if held is not None:
                held[index] -= amount
        if held is not None and not any(held):
            tenant.held = None
        reservation.state = state
        reservation.settled_ms = now_ms
        if reservation.expires_ms > now_ms:
            self._stale += 1
            if self._stale > 1024 and self._stale * 2 > len(self._expiry):
                # Settled holds linger in the heap until their expiry; rebuild before they dominate it.
                self._expiry = [entry for entry in self._expiry if entry[2].state is _HELD]
                heapq.heapify(self._expiry)
                self._stale = 0

    def _expire(self, at: Moment) -> None:
        """Lazy expiry: every hold whose time has come stops counting before anything is read."""
        heap = self._expiry
        now = at.now_ms
        while heap and heap[0][0] <= now:
            reservation = heapq.heappop(heap)[2]
            if reservation.state is _HELD:
                self._unhold(reservation, _EXPIRED, reservation.expires_ms)
            elif self._stale > 0:
                self._stale -= 1

    def _prune(self, tenant: _Tenant, at: Moment) -> None:
        """Drops settled reservations older than the retention (or beyond the per-tenant cap)."""
        by_id = tenant.by_id
        if not by_id:
            return
        over = len(by_id) - self.max_kept_per_user
        horizon = at.now_ms - self.retention_ms
        doomed: list[_Reservation] = []
        for reservation in by_id.values():
            if reservation.state is _HELD or (over <= 0 and reservation.settled_ms > horizon):
                if over <= 0:
                    break
                continue
            doomed.append(reservation)
            over -= 1
        by_call = tenant.by_call
        for reservation in doomed:
            del by_id[reservation.record.reservation_id]
            if by_call is not None:
                by_call.pop(reservation.record.call_id, None)
        if not by_id:
            tenant.by_id = tenant.by_call = None

    # -- limits -------------------------------------------------------------

    def _states(self, tenant: _Tenant | None, key: str, at: Moment) -> list[LimitState]:
        states: list[LimitState] = []
        if self._global_limits:
            states = states_for(self._global_limits, AppliesTo.GLOBAL, self._global_usage.roll(at), self._global_held)
        user_limits = self._overrides.get(key, self._default_limits)
        if user_limits:
            if tenant is None:
                states += states_for(user_limits, AppliesTo.USER, _NO_USAGE, ZERO)
            else:
                states += states_for(user_limits, AppliesTo.USER, tenant.usage.roll(at), tenant.held or ZERO)
        return states

    async def set_limits(self, target: LimitTarget, tenant: str, limits: Sequence[Limit]) -> None:
        if target is LimitTarget.GLOBAL:
            self._global_limits = list(limits)
        elif target is LimitTarget.DEFAULT_USER:
            self._default_limits = list(limits)
        elif limits:
            self._overrides[tenant] = list(limits)
        else:
            self._overrides.pop(tenant, None)

    async def get_limits(self, target: LimitTarget, tenant: str) -> list[Limit]:
        if target is LimitTarget.GLOBAL:
            return list(self._global_limits)
        if target is LimitTarget.DEFAULT_USER:
            return list(self._default_limits)
        return list(self._overrides.get(tenant, []))

    # -- the ledger operations ------------------------------------------------

    async def reserve(self, tenant: str, reservation: Reservation, at: Moment) -> ReserveOutcome:
        self._expire(at)
        state = self._tenant(tenant, at, create=True)
        assert state is not None
        if state.by_call is not None:
            earlier = state.by_call.get(reservation.call_id)
            if earlier is not None:
                return ReserveOutcome(earlier.record, True, self._states(state, tenant, at))
        states = self._states(state, tenant, at)
        hold = reservation.held.vector
        refused = first_refusal(states, hold)
        if refused is not None:
            raise refused
        stored = _Reservation(reservation, state)
        if state.by_id is None or state.by_call is None:
            state.by_id, state.by_call = {}, {}
        state.by_id[reservation.reservation_id] = stored
        state.by_call[reservation.call_id] = stored
        self._hold(state, stored)
        self._prune(state, at)
        return ReserveOutcome(reservation, False, [_plus(s, hold) for s in states])

    def _find(self, tenant: str, reservation_id: str, at: Moment) -> tuple[_Tenant, _Reservation]:
        self._expire(at)
        state = self._tenant(tenant, at, create=False)
        found = state.by_id.get(reservation_id) if state is not None and state.by_id is not None else None
        if state is None or found is None:
            raise NotFound(f"reservation {reservation_id!r} not found")
        return state, found

    async def commit(self, tenant: str, reservation_id: str, charge: Charge, at: Moment) -> CommitOutcome:
        state, reservation = self._find(tenant, reservation_id, at)
        held = reservation.record.held
        if reservation.state is _COMMITTED:
            assert reservation.charged is not None
            return CommitOutcome(reservation.charged, True, self._states(state, tenant, at), held)
        if reservation.state is _HELD:
            self._unhold(reservation, _COMMITTED, at.now_ms)
        reservation.state = _COMMITTED
        reservation.settled_ms = at.now_ms
        reservation.charged = charge
        state.usage.add(charge, at)
        self._global_usage.add(charge, at)
        self._prune(state, at)
        return CommitOutcome(charge, False, self._states(state, tenant, at), held)

    async def release(self, tenant: str, reservation_id: str, at: Moment) -> bool:
        _, reservation = self._find(tenant, reservation_id, at)
        if reservation.state is not _HELD:
            return False
        self._unhold(reservation, _RELEASED, at.now_ms)
        return True

    async def status(self, tenant: str, at: Moment) -> StatusSnapshot:
        self._expire(at)
        state = self._tenant(tenant, at, create=False)  # a read never creates tenant state
        total = total_charge(state.usage.values) if state is not None else Charge()
        return StatusSnapshot(self._states(state, tenant, at), total)

    async def forget(self, tenant: str, at: Moment) -> ForgetReceipt:
        # Nothing here awaits, so no operation can interleave: a later Commit finds no tenant (NotFound).
        self._expire(at)
        override_removed = self._overrides.pop(tenant, None) is not None
        state = self._tenants.pop(tenant, None)
        if state is None:
            return ForgetReceipt(override_removed=override_removed)
        released = 0
        for reservation in (state.by_id or {}).values():
            if reservation.state is _HELD:
                self._unhold(reservation, _RELEASED, at.now_ms)
                released += 1
        return ForgetReceipt(
            reservations_deleted=len(state.by_id or {}),
            open_holds_released=released,
            usage_windows_deleted=len(state.usage.windows(at)),
            override_removed=override_removed,
        )

    async def export(self, tenant: str, at: Moment) -> TenantExport:
        self._expire(at)
        state = self._tenants.get(tenant)  # a read never creates or refreshes tenant state
        override = list(self._overrides.get(tenant, []))
        if state is None:
            return TenantExport({}, [], override)
        kept = [KeptReservation(r.record, r.state, r.charged) for r in (state.by_id or {}).values()]
        return TenantExport(state.usage.windows(at), kept, override)


def _plus(state: LimitState, hold: tuple[int, ...]) -> LimitState:
    return LimitState(state.limit, state.applies_to, state.committed, state.reserved + hold[state.limit.dimension])
