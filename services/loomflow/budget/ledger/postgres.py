"""The Postgres ledger (asyncpg): durable, so a restart loses nothing committed.

Tables (prefixed ``budget_`` because services may share one database):

* ``budget_ledger`` — one row per reservation, the ledger itself: the hold, the
  state (h held, c committed, r released, x expired) and, once committed, the
  charge. ``(user_key, call_id)`` is unique (idempotency); rows are kept.
* ``budget_usage`` — committed totals per scope (``g`` global, ``u<tenant>``)
  and window key (``all``, ``d2026-11-24``, ``m2026-11``).
* ``budget_held`` — outstanding holds per scope.
* ``budget_limits`` — limits per target (global, default, user override).

Atomicity: every mutating operation runs in one transaction that first locks
the global ``budget_held`` row (``SELECT … FOR UPDATE``). Every operation must
update global totals anyway, so they are serialized on that row; the check and
the booking therefore see and change one consistent state, and 1,000
concurrent reservations cannot overshoot. Locking the global row first, always,
also rules out deadlocks. Expired holds are swept by the next operation, in the
same transaction, by one statement.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import asyncpg

from loomflow.budget.ledger.base import decode_limits, encode_limits, states_for
from loomflow.budget.models import (
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
from loomflow.kernel.backends import migrations, postgres
from loomflow.kernel.backends.errors import unavailable_on_outage
from loomflow.kernel.errors import NotFound, Unavailable

log = logging.getLogger("loomflow.budget.postgres")

GLOBAL = "g"

MIGRATIONS: list[str] = [
    # 1: the ledger
    """
    CREATE TABLE IF NOT EXISTS budget_limits (
        target text NOT NULL,
        user_key text NOT NULL DEFAULT '',
        limits jsonb NOT NULL,
        PRIMARY KEY (target, user_key)
    );
    CREATE TABLE IF NOT EXISTS budget_held (
        scope text PRIMARY KEY,
        input_tokens bigint NOT NULL DEFAULT 0,
        output_tokens bigint NOT NULL DEFAULT 0,
        total_tokens bigint NOT NULL DEFAULT 0,
        cost_micros bigint NOT NULL DEFAULT 0,
        wall_clock_ms bigint NOT NULL DEFAULT 0
    );
    INSERT INTO budget_held (scope) VALUES ('g') ON CONFLICT DO NOTHING;
    CREATE TABLE IF NOT EXISTS budget_usage (
        scope text NOT NULL,
        window_key text NOT NULL,
        input_tokens bigint NOT NULL DEFAULT 0,
        output_tokens bigint NOT NULL DEFAULT 0,
        cached_input_tokens bigint NOT NULL DEFAULT 0,
        cache_write_tokens bigint NOT NULL DEFAULT 0,
        cost_micros bigint NOT NULL DEFAULT 0,
        wall_clock_ms bigint NOT NULL DEFAULT 0,
        PRIMARY KEY (scope, window_key)
    );
    CREATE TABLE IF NOT EXISTS budget_ledger (
        user_key text NOT NULL,
        reservation_id text NOT NULL,
        call_id text NOT NULL,
        state char(1) NOT NULL,
        created_ms bigint NOT NULL,
        expires_ms bigint NOT NULL,
        settled_ms bigint,
        priced_as text NOT NULL,
        held bigint[] NOT NULL,
        charged bigint[],
        PRIMARY KEY (user_key, reservation_id),
        UNIQUE (user_key, call_id)
    );
    CREATE INDEX IF NOT EXISTS budget_ledger_open_by_expiry ON budget_ledger (expires_ms) WHERE state = 'h';
    """,
]

_LOCK_GLOBAL = "SELECT 1 FROM budget_held WHERE scope = 'g' FOR UPDATE"

# held[] is (input, output, cached input, cache write, cost, wall); holds count input, output, their sum, cost, wall.
_SWEEP = """
WITH due AS (
    UPDATE budget_ledger SET state = 'x', settled_ms = expires_ms
    WHERE state = 'h' AND expires_ms <= $1
    RETURNING user_key, held
), per_scope AS (
    SELECT 'u' || user_key AS scope, sum(held[1]) AS i, sum(held[2]) AS o, sum(held[5]) AS c, sum(held[6]) AS w
    FROM due GROUP BY user_key
    UNION ALL
    SELECT 'g', sum(held[1]), sum(held[2]), sum(held[5]), sum(held[6]) FROM due HAVING count(*) > 0
)
UPDATE budget_held h SET
    input_tokens = h.input_tokens - p.i, output_tokens = h.output_tokens - p.o,
    total_tokens = h.total_tokens - p.i - p.o, cost_micros = h.cost_micros - p.c, wall_clock_ms = h.wall_clock_ms - p.w
FROM per_scope p WHERE h.scope = p.scope
"""

_HELD_COLUMNS = "ARRAY[input_tokens, output_tokens, total_tokens, cost_micros, wall_clock_ms]"
_USAGE_COLUMNS = (
    "ARRAY[input_tokens, output_tokens, cached_input_tokens, cache_write_tokens, cost_micros, wall_clock_ms]"
)

# $1 user scope ('u' || tenant), $2 tenant, $3 day key, $4 month key
_STATE = f"""
SELECT
    (SELECT limits FROM budget_limits WHERE target = 'global' AND user_key = '') AS global_limits,
    COALESCE(
        (SELECT limits FROM budget_limits WHERE target = 'user' AND user_key = $2),
        (SELECT limits FROM budget_limits WHERE target = 'default' AND user_key = '')
    ) AS user_limits,
    (SELECT {_HELD_COLUMNS} FROM budget_held WHERE scope = 'g') AS global_held,
    (SELECT {_HELD_COLUMNS} FROM budget_held WHERE scope = $1) AS user_held,
    (SELECT {_USAGE_COLUMNS} FROM budget_usage WHERE scope = 'g' AND window_key = 'all') AS global_all,
    (SELECT {_USAGE_COLUMNS} FROM budget_usage WHERE scope = 'g' AND window_key = $3) AS global_day,
    (SELECT {_USAGE_COLUMNS} FROM budget_usage WHERE scope = 'g' AND window_key = $4) AS global_month,
    (SELECT {_USAGE_COLUMNS} FROM budget_usage WHERE scope = $1 AND window_key = 'all') AS user_all,
    (SELECT {_USAGE_COLUMNS} FROM budget_usage WHERE scope = $1 AND window_key = $3) AS user_day,
    (SELECT {_USAGE_COLUMNS} FROM budget_usage WHERE scope = $1 AND window_key = $4) AS user_month
"""

# $1 scopes, $2 signed hold vector (input, output, total, cost, wall)
_ADD_HELD = """
INSERT INTO budget_held AS h (scope, input_tokens, output_tokens, total_tokens, cost_micros, wall_clock_ms)
SELECT scope, ($2::bigint[])[1], ($2::bigint[])[2], ($2::bigint[])[3], ($2::bigint[])[4], ($2::bigint[])[5]
FROM unnest($1::text[]) AS scope
ON CONFLICT (scope) DO UPDATE SET
    input_tokens = h.input_tokens + EXCLUDED.input_tokens, output_tokens = h.output_tokens + EXCLUDED.output_tokens,
    total_tokens = h.total_tokens + EXCLUDED.total_tokens, cost_micros = h.cost_micros + EXCLUDED.cost_micros,
    wall_clock_ms = h.wall_clock_ms + EXCLUDED.wall_clock_ms
"""

# $1 scopes, $2 window keys (paired), $3 charge (input, output, cached, write, cost, wall)
_ADD_USAGE = """
INSERT INTO budget_usage AS u (scope, window_key, input_tokens, output_tokens, cached_input_tokens,
                               cache_write_tokens, cost_micros, wall_clock_ms)
SELECT s, w, c[1], c[2], c[3], c[4], c[5], c[6]
FROM unnest($1::text[], $2::text[]) AS t(s, w), (SELECT $3::bigint[] AS c) AS charge
ON CONFLICT (scope, window_key) DO UPDATE SET
    input_tokens = u.input_tokens + EXCLUDED.input_tokens, output_tokens = u.output_tokens + EXCLUDED.output_tokens,
    cached_input_tokens = u.cached_input_tokens + EXCLUDED.cached_input_tokens,
    cache_write_tokens = u.cache_write_tokens + EXCLUDED.cache_write_tokens,
    cost_micros = u.cost_micros + EXCLUDED.cost_micros, wall_clock_ms = u.wall_clock_ms + EXCLUDED.wall_clock_ms
"""

SCHEMA = migrations.numbered("budget", MIGRATIONS, legacy=migrations.legacy_table("budget_schema"))
WHAT = "budget ledger (Postgres)"

_ZERO_USAGE = [0, 0, 0, 0, 0, 0]


def _hold_vector(held: Sequence[int]) -> list[int]:
    i, o, _ci, _cw, cost, wall = held
    return [i, o, i + o, cost, wall]


def _states(row: asyncpg.Record) -> list[LimitState]:
    states: list[LimitState] = []
    for applies, limits, held, buckets in (
        (AppliesTo.GLOBAL, row["global_limits"], row["global_held"], ("global_all", "global_day", "global_month")),
        (AppliesTo.USER, row["user_limits"], row["user_held"], ("user_all", "user_day", "user_month")),
    ):
        decoded = decode_limits(limits)
        if decoded:
            usage = [v for name in buckets for v in (row[name] or _ZERO_USAGE)]
            states += states_for(decoded, applies, usage, held or [0, 0, 0, 0, 0])
    return states


def _plus(states: list[LimitState], hold: Sequence[int]) -> list[LimitState]:
    return [LimitState(s.limit, s.applies_to, s.committed, s.reserved + hold[s.limit.dimension]) for s in states]


class PostgresLedger:
    def __init__(self, dsn: str, *, pool_size: int = 10, migrate: bool = True) -> None:
        self._dsn = dsn
        self._apply = migrate
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()

    async def start(self) -> None:
        try:
            await self._connected()
        except Unavailable as exc:
            # Start anyway and answer UNAVAILABLE until Postgres is back: never grant without it.
            log.warning("budget ledger: Postgres unreachable at start-up, will retry on use: %s", exc.message)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def _connected(self) -> asyncpg.Pool:
        if self._pool is not None:
            return self._pool
        async with self._opening:
            if self._pool is None:
                pool = await postgres.open_pool(self._dsn, WHAT, max_size=self._pool_size, command_timeout=30)
                try:
                    with unavailable_on_outage(WHAT):
                        async with pool.acquire() as conn:
                            await migrations.migrate_or_check(conn, SCHEMA, apply=self._apply)
                except BaseException:
                    await pool.close()
                    raise
                self._pool = pool
        assert self._pool is not None
        return self._pool

    async def migrate(self) -> None:
        """Connects, applying the migrations (``loomflow migrate``): unlike ``start``, fails when it cannot."""
        await self._connected()

    async def _transaction(self, work: Any) -> Any:
        """Runs ``work(conn)`` in one transaction holding the global lock; connection loss → UNAVAILABLE."""
        pool = await self._connected()
        with unavailable_on_outage(WHAT):
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute(_LOCK_GLOBAL)
                return await work(conn)

    @staticmethod
    async def _sweep(conn: asyncpg.Connection, at: Moment) -> None:
        await conn.execute(_SWEEP, at.now_ms)

    @staticmethod
    async def _state(conn: asyncpg.Connection, tenant: str, at: Moment) -> asyncpg.Record:
        row: asyncpg.Record = await conn.fetchrow(_STATE, "u" + tenant, tenant, at.day, at.month)
        return row

    # -- operations ----------------------------------------------------------

    async def reserve(self, tenant: str, reservation: Reservation, at: Moment) -> ReserveOutcome:
        held = reservation.held
        hold = list(held.vector)

        async def work(conn: asyncpg.Connection) -> ReserveOutcome:
            await self._sweep(conn, at)
            earlier = await conn.fetchrow(
                "SELECT reservation_id, created_ms, expires_ms, held, priced_as FROM budget_ledger "
                "WHERE user_key = $1 AND call_id = $2",
                tenant,
                reservation.call_id,
            )
            states = _states(await self._state(conn, tenant, at))
            if earlier is not None:
                original = Reservation(
                    reservation_id=earlier["reservation_id"],
                    call_id=reservation.call_id,
                    held=Charge.from_stored(earlier["held"], earlier["priced_as"]),
                    created_ms=earlier["created_ms"],
                    expires_ms=earlier["expires_ms"],
                )
                return ReserveOutcome(original, True, states)
            refused = first_refusal(states, held.vector)
            if refused is not None:
                raise refused
            await conn.execute(
                "INSERT INTO budget_ledger (user_key, reservation_id, call_id, state, created_ms, expires_ms, "
                "priced_as, held) VALUES ($1, $2, $3, 'h', $4, $5, $6, $7)",
                tenant,
                reservation.reservation_id,
                reservation.call_id,
                reservation.created_ms,
                reservation.expires_ms,
                held.priced_as,
                list(held.stored),
            )
            await conn.execute(_ADD_HELD, [GLOBAL, "u" + tenant], hold)
            return ReserveOutcome(reservation, False, _plus(states, hold))

        outcome: ReserveOutcome = await self._transaction(work)
        return outcome

    async def commit(self, tenant: str, reservation_id: str, charge: Charge, at: Moment) -> CommitOutcome:
        async def work(conn: asyncpg.Connection) -> CommitOutcome:
            await self._sweep(conn, at)
            row = await conn.fetchrow(
                "SELECT state, held, charged, priced_as FROM budget_ledger WHERE user_key = $1 AND reservation_id = $2",
                tenant,
                reservation_id,
            )
            if row is None:
                raise NotFound(f"reservation {reservation_id!r} not found")
            held = Charge.from_stored(row["held"], row["priced_as"])
            if row["state"] == "c":
                original = Charge.from_stored(row["charged"], row["priced_as"])
                return CommitOutcome(original, True, _states(await self._state(conn, tenant, at)), held)
            if row["state"] == "h":
                await conn.execute(_ADD_HELD, [GLOBAL, "u" + tenant], [-v for v in _hold_vector(row["held"])])
            await conn.execute(
                "UPDATE budget_ledger SET state = 'c', settled_ms = $3, charged = $4 "
                "WHERE user_key = $1 AND reservation_id = $2",
                tenant,
                reservation_id,
                at.now_ms,
                list(charge.stored),
            )
            user = "u" + tenant
            await conn.execute(
                _ADD_USAGE,
                [GLOBAL, GLOBAL, GLOBAL, user, user, user],
                ["all", at.day, at.month] * 2,
                list(charge.stored),
            )
            return CommitOutcome(charge, False, _states(await self._state(conn, tenant, at)), held)

        outcome: CommitOutcome = await self._transaction(work)
        return outcome

    async def release(self, tenant: str, reservation_id: str, at: Moment) -> bool:
        async def work(conn: asyncpg.Connection) -> bool:
            await self._sweep(conn, at)
            row = await conn.fetchrow(
                "UPDATE budget_ledger SET state = 'r', settled_ms = $3 "
                "WHERE user_key = $1 AND reservation_id = $2 AND state = 'h' RETURNING held",
                tenant,
                reservation_id,
                at.now_ms,
            )
            if row is not None:
                await conn.execute(_ADD_HELD, [GLOBAL, "u" + tenant], [-v for v in _hold_vector(row["held"])])
                return True
            exists = await conn.fetchval(
                "SELECT 1 FROM budget_ledger WHERE user_key = $1 AND reservation_id = $2", tenant, reservation_id
            )
            if exists is None:
                raise NotFound(f"reservation {reservation_id!r} not found")
            return False

        released: bool = await self._transaction(work)
        return released

    async def status(self, tenant: str, at: Moment) -> StatusSnapshot:
        async def work(conn: asyncpg.Connection) -> StatusSnapshot:
            await self._sweep(conn, at)
            row = await self._state(conn, tenant, at)
            return StatusSnapshot(_states(row), Charge.from_stored(row["user_all"] or _ZERO_USAGE))

        snapshot: StatusSnapshot = await self._transaction(work)
        return snapshot

    async def set_limits(self, target: LimitTarget, tenant: str, limits: Sequence[Limit]) -> None:
        kind, user = self._target(target, tenant)
        pool = await self._connected()
        with unavailable_on_outage(WHAT):
            if limits:
                await pool.execute(
                    "INSERT INTO budget_limits (target, user_key, limits) VALUES ($1, $2, $3::jsonb) "
                    "ON CONFLICT (target, user_key) DO UPDATE SET limits = EXCLUDED.limits",
                    kind,
                    user,
                    encode_limits(limits),
                )
            else:
                await pool.execute("DELETE FROM budget_limits WHERE target = $1 AND user_key = $2", kind, user)

    async def get_limits(self, target: LimitTarget, tenant: str) -> list[Limit]:
        kind, user = self._target(target, tenant)
        pool = await self._connected()
        with unavailable_on_outage(WHAT):
            text = await pool.fetchval(
                "SELECT limits FROM budget_limits WHERE target = $1 AND user_key = $2", kind, user
            )
        return decode_limits(text)

    async def forget(self, tenant: str, at: Moment) -> ForgetReceipt:
        user = "u" + tenant

        async def work(conn: asyncpg.Connection) -> ForgetReceipt:
            # Under the global lock like every booking: a Commit either ran before (and is erased with
            # the rest) or runs after and finds no reservation (NOT_FOUND).
            await self._sweep(conn, at)
            open_holds = await conn.fetchrow(
                "SELECT count(*) AS n, coalesce(sum(held[1]), 0) AS i, coalesce(sum(held[2]), 0) AS o, "
                "coalesce(sum(held[5]), 0) AS c, coalesce(sum(held[6]), 0) AS w "
                "FROM budget_ledger WHERE user_key = $1 AND state = 'h'",
                tenant,
            )
            if open_holds["n"]:
                i, o, c, w = (int(open_holds[k]) for k in ("i", "o", "c", "w"))
                await conn.execute(_ADD_HELD, [GLOBAL], [-i, -o, -(i + o), -c, -w])
            deleted = await conn.fetchval(
                "WITH gone AS (DELETE FROM budget_ledger WHERE user_key = $1 RETURNING 1) SELECT count(*) FROM gone",
                tenant,
            )
            windows = await conn.fetchval(
                "WITH gone AS (DELETE FROM budget_usage WHERE scope = $1 RETURNING 1) SELECT count(*) FROM gone", user
            )
            await conn.execute("DELETE FROM budget_held WHERE scope = $1", user)
            override = await conn.fetchval(
                "WITH gone AS (DELETE FROM budget_limits WHERE target = 'user' AND user_key = $1 RETURNING 1) "
                "SELECT count(*) FROM gone",
                tenant,
            )
            return ForgetReceipt(int(deleted), int(open_holds["n"]), int(windows), bool(override))

        receipt: ForgetReceipt = await self._transaction(work)
        return receipt

    async def export(self, tenant: str, at: Moment) -> TenantExport:
        pool = await self._connected()
        with unavailable_on_outage(WHAT):
            async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
                usage_rows = await conn.fetch(
                    f"SELECT window_key, {_USAGE_COLUMNS} AS usage FROM budget_usage WHERE scope = $1 "
                    "ORDER BY window_key",
                    "u" + tenant,
                )
                ledger_rows = await conn.fetch(
                    "SELECT reservation_id, call_id, state, created_ms, expires_ms, priced_as, held, charged "
                    "FROM budget_ledger WHERE user_key = $1 ORDER BY created_ms, reservation_id",
                    tenant,
                )
                override = await conn.fetchval(
                    "SELECT limits FROM budget_limits WHERE target = 'user' AND user_key = $1", tenant
                )
        usage = {row["window_key"]: Charge.from_stored(row["usage"]) for row in usage_rows if any(row["usage"])}
        kept = [
            KeptReservation(
                Reservation(
                    row["reservation_id"],
                    row["call_id"],
                    Charge.from_stored(row["held"], row["priced_as"]),
                    row["created_ms"],
                    row["expires_ms"],
                ),
                State(row["state"]),
                Charge.from_stored(row["charged"], row["priced_as"]) if row["charged"] is not None else None,
            )
            for row in ledger_rows
        ]
        return TenantExport(usage, kept, decode_limits(override))

    @staticmethod
    def _target(target: LimitTarget, tenant: str) -> tuple[str, str]:
        if target is LimitTarget.GLOBAL:
            return "global", ""
        if target is LimitTarget.DEFAULT_USER:
            return "default", ""
        return "user", tenant
