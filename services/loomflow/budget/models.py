"""The budget's domain types: plain dataclasses, no gRPC, no storage.

Quantities are integers everywhere (tokens, micro-USD, milliseconds), so totals
add up exactly and every backend agrees to the unit.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from loomflow.kernel.errors import InvalidArgument, ResourceExhausted

MAX_USAGE = 10**12
"""Largest quantity one call may report per field. Keeps every sum exact in Redis Lua
(doubles, exact to 2**53) with room for millions of calls per window."""


class Dimension(enum.IntEnum):
    """A metered quantity. The value is its position in a :data:`Vector`."""

    INPUT_TOKENS = 0
    OUTPUT_TOKENS = 1
    TOTAL_TOKENS = 2
    COST_MICROS = 3
    WALL_CLOCK_MS = 4

    @property
    def label(self) -> str:
        return self.name.lower()


class Window(enum.IntEnum):
    """The period a limit applies to, computed on read in UTC."""

    NONE = 0
    DAILY = 1
    MONTHLY = 2

    @property
    def label(self) -> str:
        return self.name.lower()


class LimitTarget(enum.Enum):
    GLOBAL = "global"
    DEFAULT_USER = "default_user"
    USER = "user"


class AppliesTo(enum.Enum):
    """Which total a limit is checked against: every tenant's together, or the tenant's own."""

    GLOBAL = "global"
    USER = "user"


Vector = tuple[int, int, int, int, int]
"""One value per :class:`Dimension`, in its order."""

ZERO: Vector = (0, 0, 0, 0, 0)


@dataclass(frozen=True, slots=True)
class Limit:
    dimension: Dimension
    window: Window
    max: int

    @property
    def name(self) -> str:
        return f"{self.dimension.label}/{self.window.label}"

    @property
    def readable(self) -> str:
        """The limit as a person reads it: ``output_tokens, no window``, ``total_tokens, daily (UTC)``."""
        period = {Window.NONE: ", no window", Window.DAILY: ", daily (UTC)", Window.MONTHLY: ", monthly (UTC)"}
        return self.dimension.label + period[self.window]


@dataclass(frozen=True, slots=True)
class Usage:
    """What a model call consumed (or is estimated to consume), as the caller reports it.

    ``input_tokens`` includes the cached and cache-write tokens.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    wall_clock_ms: int = 0

    def check(self, field: str) -> None:
        """Refuses usages that cannot be priced: cache tokens beyond the input, absurd sizes."""
        for name in ("input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens", "wall_clock_ms"):
            value: int = getattr(self, name)
            if value < 0 or value > MAX_USAGE:
                raise InvalidArgument.field(f"{field}.{name}", f"must be between 0 and {MAX_USAGE}")
        if self.cached_input_tokens + self.cache_write_tokens > self.input_tokens:
            raise InvalidArgument.field(
                f"{field}.cached_input_tokens",
                "cached_input_tokens + cache_write_tokens cannot exceed input_tokens (input includes them)",
            )


@dataclass(frozen=True, slots=True)
class Charge:
    """What the ledger books (or holds) for a usage: tokens, priced cost and wall clock."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    cost_micros: int = 0
    wall_clock_ms: int = 0
    priced_as: str = ""

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def vector(self) -> Vector:
        return (self.input_tokens, self.output_tokens, self.total_tokens, self.cost_micros, self.wall_clock_ms)

    @property
    def stored(self) -> tuple[int, int, int, int, int, int]:
        """The six integers a backend keeps (total is derived)."""
        return (
            self.input_tokens,
            self.output_tokens,
            self.cached_input_tokens,
            self.cache_write_tokens,
            self.cost_micros,
            self.wall_clock_ms,
        )

    @classmethod
    def from_stored(cls, values: tuple[int, ...] | list[int], priced_as: str = "") -> Charge:
        i, o, ci, cw, cost, wall = (int(v) for v in values)
        return cls(i, o, ci, cw, cost, wall, priced_as)


@dataclass(frozen=True, slots=True)
class Moment:
    """The instant an operation happens at, with the window keys it falls in (UTC).

    Backends never read a clock: the caller passes the moment, so tests inject time.
    """

    now_ms: int
    day: str
    month: str

    def window_key(self, window: Window) -> str:
        if window is Window.DAILY:
            return self.day
        if window is Window.MONTHLY:
            return self.month
        return "all"


class State(enum.Enum):
    HELD = "h"
    COMMITTED = "c"
    RELEASED = "r"
    EXPIRED = "x"


@dataclass(frozen=True, slots=True)
class Reservation:
    reservation_id: str
    call_id: str
    held: Charge
    created_ms: int
    expires_ms: int


@dataclass(frozen=True, slots=True)
class LimitState:
    """One applicable limit with the usage it is checked against, at read time."""

    limit: Limit
    applies_to: AppliesTo
    committed: int
    reserved: int

    @property
    def fraction(self) -> float:
        return (self.committed + self.reserved) / self.limit.max if self.limit.max > 0 else 0.0

    def admits(self, amount: int) -> bool:
        """Whether holding ``amount`` more stays within the limit.

        A used-up limit admits nothing, not even a zero amount: otherwise a run
        estimating zero wall clock could start after the wall-clock budget is spent.
        """
        used = self.committed + self.reserved
        if amount == 0:
            return used < self.limit.max
        return used + amount <= self.limit.max


def limit_name(applies_to: AppliesTo, limit: Limit) -> str:
    """How RESOURCE_EXHAUSTED names a limit: ``user:total_tokens/daily``."""
    return f"{applies_to.value}:{limit.name}"


def refusal(state: LimitState, amount: int) -> ResourceExhausted:
    limit = state.limit
    return ResourceExhausted(
        f"budget exceeded: the {state.applies_to.value} limit ({limit.readable}) is {limit.max}; "
        f"committed {state.committed} + reserved {state.reserved} + estimate {amount} = "
        f"{state.committed + state.reserved + amount} would exceed it",
        limit=limit_name(state.applies_to, limit),
    )


def first_refusal(states: list[LimitState], hold: Vector) -> ResourceExhausted | None:
    """The first limit (global limits first) that refuses holding ``hold``, if any."""
    for state in states:
        amount = hold[state.limit.dimension]
        if not state.admits(amount):
            return refusal(state, amount)
    return None


@dataclass(frozen=True, slots=True)
class ReserveOutcome:
    reservation: Reservation
    replayed: bool
    limits: list[LimitState]


@dataclass(frozen=True, slots=True)
class CommitOutcome:
    charged: Charge
    replayed: bool
    limits: list[LimitState]
    held: Charge
    """What the reservation held when it was granted (the same on a replay, or after release or expiry)."""


@dataclass(frozen=True, slots=True)
class Overrun:
    """A dimension a commit charged more of than its reservation held."""

    dimension: Dimension
    held: int
    charged: int

    @property
    def excess(self) -> int:
        return self.charged - self.held


def overruns(held: Charge, charged: Charge) -> list[Overrun]:
    """Every dimension where ``charged`` exceeds ``held``, in dimension order.

    Wall clock counts only when the reservation estimated some: a hold of 0 ms is how a
    caller says it does not estimate time (the commit then measures it).
    """
    return [
        Overrun(dimension, h, c)
        for dimension, h, c in zip(Dimension, held.vector, charged.vector, strict=True)
        if c > h and (dimension is not Dimension.WALL_CLOCK_MS or h > 0)
    ]


@dataclass(frozen=True, slots=True)
class StatusSnapshot:
    limits: list[LimitState]
    total: Charge


@dataclass(frozen=True, slots=True)
class BudgetWarning:
    """A soft warning: usage of a limit crossed the warning fraction."""

    state: LimitState
    message: str


@dataclass(frozen=True, slots=True)
class KeptReservation:
    """A reservation as the ledger keeps it: the hold, its state and, once committed, the charge."""

    reservation: Reservation
    state: State
    charged: Charge | None = None


@dataclass(frozen=True, slots=True)
class TenantExport:
    """Everything a ledger stores about one tenant."""

    usage: dict[str, Charge]
    """Committed usage per stored window key (``all``, ``d2026-11-24``, ``m2026-11``); empty windows left out."""
    reservations: list[KeptReservation]
    override: list[Limit]


@dataclass(frozen=True, slots=True)
class ForgetReceipt:
    """What a Forget erased from a ledger."""

    reservations_deleted: int = 0
    open_holds_released: int = 0
    usage_windows_deleted: int = 0
    override_removed: bool = False
