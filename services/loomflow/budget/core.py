"""The budget itself: prices usage, names reservations, asks the ledger, raises soft warnings.

Everything atomic lives in the ledger backend; this layer is pure bookkeeping
around it, the same for every backend.

Reservation ids are ``r1.<128 random bits>.<created ms, hex>.<price entry>``:
unguessable, and carrying what Commit needs to price the actual usage (the price
entry the estimate was priced with) and to measure wall clock, so a commit is
one atomic ledger operation with no read before it. A client cannot forge a
cheaper entry: the ledger looks the whole id up, scoped to the tenant.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from loomflow.budget import metrics
from loomflow.budget.ledger.base import Ledger
from loomflow.budget.models import (
    BudgetWarning,
    CommitOutcome,
    Dimension,
    ForgetReceipt,
    Limit,
    LimitState,
    LimitTarget,
    Overrun,
    Reservation,
    ReserveOutcome,
    StatusSnapshot,
    TenantExport,
    Usage,
    Window,
    overruns,
)
from loomflow.budget.pricing import PriceTable
from loomflow.budget.windows import Calendar
from loomflow.kernel.config import ConfigError
from loomflow.kernel.errors import InvalidArgument, NotFound, ResourceExhausted

_ID = re.compile(r"^r1\.[A-Za-z0-9_-]{22}\.([0-9a-f]{1,16})\.([a-z0-9._-]{0,64})$")
MAX_LIMITS = 32


def new_reservation_id(priced_as: str, created_ms: int) -> str:
    return f"r1.{secrets.token_urlsafe(16)}.{created_ms:x}.{priced_as}"


def parse_reservation_id(reservation_id: str) -> tuple[int, str] | None:
    """(created ms, price entry) of a well-formed id; None for anything the server never issued."""
    match = _ID.match(reservation_id)
    if match is None:
        return None
    return int(match.group(1), 16), match.group(2)


def check_limits(limits: Sequence[Limit], field: str = "limits") -> None:
    """One limit per (dimension, window), at most 32."""
    if len(limits) > MAX_LIMITS:
        raise InvalidArgument.field(field, f"at most {MAX_LIMITS} limits")
    seen: set[tuple[Dimension, Window]] = set()
    for index, limit in enumerate(limits):
        if limit.max < 0:
            raise InvalidArgument.field(f"{field}[{index}].max", "must be >= 0")
        key = (limit.dimension, limit.window)
        if key in seen:
            raise InvalidArgument.field(f"{field}[{index}]", f"duplicate limit {limit.name}")
        seen.add(key)


def parse_limit_spec(spec: str, option: str) -> list[Limit]:
    """Parses ``total_tokens/daily=100000,cost_micros/monthly=5000000`` (a settings value)."""
    limits: list[Limit] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        try:
            name, _, amount = part.partition("=")
            dimension, _, window = name.strip().partition("/")
            limits.append(
                Limit(Dimension[dimension.strip().upper()], Window[(window.strip() or "none").upper()], int(amount))
            )
        except (KeyError, ValueError):
            raise ConfigError(
                f"{option}: {part!r} is not <dimension>/<window>=<max>; dimensions: "
                f"{', '.join(d.label for d in Dimension)}; windows: {', '.join(w.label for w in Window)}"
            ) from None
    try:
        check_limits(limits, option)
    except InvalidArgument as exc:
        raise ConfigError(exc.message) from None
    return limits


@dataclass(frozen=True, slots=True)
class ReserveResult:
    outcome: ReserveOutcome
    warnings: list[BudgetWarning]


@dataclass(frozen=True, slots=True)
class CommitResult:
    outcome: CommitOutcome
    warnings: list[BudgetWarning]
    overruns: list[Overrun]
    """Dimensions charged above the reservation's hold: booked all the same (the usage happened)."""


@dataclass(frozen=True, slots=True)
class StatusResult:
    snapshot: StatusSnapshot
    warnings: list[BudgetWarning]
    now_ms: int


class Budget:
    def __init__(
        self,
        ledger: Ledger,
        prices: PriceTable,
        calendar: Calendar | None = None,
        *,
        default_ttl_ms: int = 300_000,
        warn_fraction: float = 0.8,
        configured_limits: dict[LimitTarget, list[Limit]] | None = None,
    ) -> None:
        self.ledger = ledger
        self.prices = prices
        self.calendar = calendar or Calendar()
        self.default_ttl_ms = default_ttl_ms
        self.warn_fraction = warn_fraction
        # Limits from settings are written before the first operation (and retried until the
        # store accepts them), so a store that was down at start-up can never run without them.
        self._pending_limits = dict(configured_limits or {})
        self._limits_lock = asyncio.Lock()

    async def start(self) -> None:
        await self.ledger.start()

    async def close(self) -> None:
        await self.ledger.close()

    async def _apply_configured_limits(self) -> None:
        # Serialized, so a concurrent SetLimits cannot land before a settings write still in flight.
        async with self._limits_lock:
            for target in list(self._pending_limits):
                await self.ledger.set_limits(target, "", self._pending_limits[target])
                del self._pending_limits[target]

    def warnings(self, states: Sequence[LimitState]) -> list[BudgetWarning]:
        threshold = self.warn_fraction
        if threshold <= 0:
            return []
        found: list[BudgetWarning] = []
        for state in states:
            fraction = state.fraction
            if state.limit.max > 0 and fraction >= threshold:
                used = state.committed + state.reserved
                found.append(
                    BudgetWarning(
                        state,
                        f"{state.applies_to.value} limit {state.limit.name} is {fraction:.0%} used "
                        f"({used} of {state.limit.max})",
                    )
                )
        return found

    async def reserve(self, tenant: str, call_id: str, model: str, estimate: Usage, ttl_ms: int = 0) -> ReserveResult:
        estimate.check("estimate")
        if self._pending_limits:
            await self._apply_configured_limits()
        at = self.calendar.now()
        price = self.prices.resolve(model)
        reservation = Reservation(
            reservation_id=new_reservation_id(price.name, at.now_ms),
            call_id=call_id,
            held=self.prices.charge(price, estimate),
            created_ms=at.now_ms,
            expires_ms=at.now_ms + (ttl_ms or self.default_ttl_ms),
        )
        try:
            outcome = await self.ledger.reserve(tenant, reservation, at)
        except ResourceExhausted as refused:
            metrics.record_refusal(tenant, refused.limit)
            raise
        metrics.record_reservation(tenant, outcome.replayed)
        return ReserveResult(outcome, self.warnings(outcome.limits))

    async def commit(self, tenant: str, reservation_id: str, actual: Usage) -> CommitResult:
        """Books ``actual`` priced like the estimate was. Wall clock 0 means "measure it": the
        time from Reserve to this Commit is charged."""
        actual.check("actual")
        parsed = parse_reservation_id(reservation_id)
        if parsed is None:
            raise NotFound(f"reservation {reservation_id!r} not found")
        if self._pending_limits:
            await self._apply_configured_limits()
        created_ms, priced_as = parsed
        at = self.calendar.now()
        wall = actual.wall_clock_ms or max(0, at.now_ms - created_ms)
        charge = self.prices.charge(self.prices.by_name(priced_as), actual, wall)
        outcome = await self.ledger.commit(tenant, reservation_id, charge, at)
        found = overruns(outcome.held, outcome.charged)
        if not outcome.replayed:
            metrics.record_charge(tenant, charge.input_tokens, charge.output_tokens, charge.cost_micros / 1_000_000)
            for overrun in found:
                metrics.record_overrun(tenant, overrun.dimension.label, overrun.excess)
        return CommitResult(outcome, self.warnings(outcome.limits), found)

    async def release(self, tenant: str, reservation_id: str) -> bool:
        if parse_reservation_id(reservation_id) is None:
            raise NotFound(f"reservation {reservation_id!r} not found")
        if self._pending_limits:
            await self._apply_configured_limits()
        return await self.ledger.release(tenant, reservation_id, self.calendar.now())

    async def status(self, tenant: str) -> StatusResult:
        if self._pending_limits:
            await self._apply_configured_limits()
        at = self.calendar.now()
        snapshot = await self.ledger.status(tenant, at)
        return StatusResult(snapshot, self.warnings(snapshot.limits), at.now_ms)

    async def set_limits(self, target: LimitTarget, tenant: str, limits: Sequence[Limit]) -> list[Limit]:
        check_limits(limits)
        if self._pending_limits:
            await self._apply_configured_limits()
        async with self._limits_lock:
            await self.ledger.set_limits(target, tenant, list(limits))
        return await self.ledger.get_limits(target, tenant)

    async def forget(self, tenant: str) -> ForgetReceipt:
        """Erases the tenant's budget state (see the Ledger contract); the global totals keep the aggregate."""
        return await self.ledger.forget(tenant, self.calendar.now())

    async def export(self, tenant: str) -> TenantExport:
        return await self.ledger.export(tenant, self.calendar.now())
