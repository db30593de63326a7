"""What every ledger backend implements, and the small helpers they share.

A backend owns the atomic part of the budget: holding, settling and releasing
reservations against the limits it stores. It never reads a clock (the caller
passes a :class:`Moment`) and never prices anything (the caller passes charges).

Contract, checked by tests/budget/test_ledger_conformance.py for every backend:

* ``reserve`` stores the reservation only if, for every applicable limit (global,
  then the tenant's override or the default user limits), committed usage in the
  limit's current window + outstanding holds + the hold stays within the limit,
  atomically with the check. Otherwise it raises ``ResourceExhausted`` naming the
  limit (see :func:`loomflow.budget.models.first_refusal`). The same ``call_id``
  of the same tenant returns the original reservation (replayed) and holds nothing.
* ``commit`` books the charge exactly once. A retry returns the original charge
  (replayed) and books nothing. An expired or released reservation is still
  booked (the tokens were spent); its hold was already returned.
* ``release`` returns an open hold; idempotent; False when the reservation was
  already committed, released or expired.
* Holds past their expiry stop counting (lazily, on the next operation).
* Unknown ids and other tenants' ids raise ``NotFound``.
* A backend that cannot reach its store raises ``Unavailable``: it never grants.
* ``forget`` erases the tenant's usage (every window), its reservations (open holds
  return to the global pool first) and its override; the global totals keep the
  tenant's past usage as an anonymous aggregate. Afterwards a Commit or Release of
  a forgotten reservation raises ``NotFound``, so a run racing the erase cannot
  write the tenant's usage back. Idempotent.
* ``export`` returns everything stored about the tenant, and no other tenant's data.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Protocol

from loomflow.budget.models import (
    AppliesTo,
    Charge,
    CommitOutcome,
    Dimension,
    ForgetReceipt,
    Limit,
    LimitState,
    LimitTarget,
    Moment,
    Reservation,
    ReserveOutcome,
    StatusSnapshot,
    TenantExport,
    Window,
)

BUCKET = 6
"""Stored fields of one usage bucket: input, output, cached input, cache write, cost, wall clock."""


class Ledger(Protocol):
    async def start(self) -> None:
        """Connects and prepares storage (migrations). Must not fail when the store is down."""

    async def close(self) -> None: ...

    async def reserve(self, tenant: str, reservation: Reservation, at: Moment) -> ReserveOutcome: ...

    async def commit(self, tenant: str, reservation_id: str, charge: Charge, at: Moment) -> CommitOutcome: ...

    async def release(self, tenant: str, reservation_id: str, at: Moment) -> bool: ...

    async def status(self, tenant: str, at: Moment) -> StatusSnapshot: ...

    async def set_limits(self, target: LimitTarget, tenant: str, limits: Sequence[Limit]) -> None:
        """Replaces the target's limits. For USER, an empty list removes the override."""

    async def get_limits(self, target: LimitTarget, tenant: str) -> list[Limit]: ...

    async def forget(self, tenant: str, at: Moment) -> ForgetReceipt: ...

    async def export(self, tenant: str, at: Moment) -> TenantExport: ...


def committed_value(bucket: Sequence[int], offset: int, dimension: Dimension) -> int:
    """A dimension's committed amount from a stored bucket starting at ``offset``."""
    if dimension is Dimension.INPUT_TOKENS:
        return int(bucket[offset])
    if dimension is Dimension.OUTPUT_TOKENS:
        return int(bucket[offset + 1])
    if dimension is Dimension.TOTAL_TOKENS:
        return int(bucket[offset]) + int(bucket[offset + 1])
    if dimension is Dimension.COST_MICROS:
        return int(bucket[offset + 4])
    return int(bucket[offset + 5])


WINDOW_OFFSET = {Window.NONE: 0, Window.DAILY: BUCKET, Window.MONTHLY: 2 * BUCKET}
"""Where each window's bucket starts when a backend keeps the three side by side."""


def states_for(
    limits: Sequence[Limit], applies_to: AppliesTo, usage: Sequence[int], held: Sequence[int]
) -> list[LimitState]:
    """Limit states from three side-by-side buckets (all, day, month) and a held vector."""
    return [
        LimitState(
            limit,
            applies_to,
            committed_value(usage, WINDOW_OFFSET[limit.window], limit.dimension),
            int(held[limit.dimension]),
        )
        for limit in limits
    ]


def encode_limits(limits: Sequence[Limit]) -> str:
    return json.dumps([[int(x.dimension), int(x.window), x.max] for x in limits], separators=(",", ":"))


def decode_limits(text: str | bytes | None) -> list[Limit]:
    if not text:
        return []
    return [Limit(Dimension(d), Window(w), int(m)) for d, w, m in json.loads(text)]


def total_charge(usage: Sequence[int]) -> Charge:
    """The all-time bucket (offset 0) as a charge."""
    return Charge.from_stored(list(usage[:BUCKET]))
