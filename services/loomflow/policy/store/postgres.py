"""The production store: Postgres through asyncpg, tables prefixed ``policy_``.

Migrations are idempotent and run under a transaction-scoped advisory lock, so
replicas starting together apply them once. Policy writes take a second
advisory lock: versions are then assigned in commit order, which is what lets
other replicas poll ``version > last_seen`` without ever skipping a change.

Replicas hear each other through LISTEN/NOTIFY on one channel per schema:
every policy or approval write sends ``pg_notify`` inside its transaction (so
it is delivered only if the write commits), naming the key or approval and
the writing replica; each replica ignores its own notifications and passes the
others to its listeners. A dedicated connection listens and reconnects if it
drops; changes missed meanwhile are caught by the policy poll, and watchers
can reconnect with ``replay_pending``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from loomflow.kernel.backends import migrations, postgres
from loomflow.kernel.backends.errors import unavailable_on_outage
from loomflow.kernel.config import ConfigError
from loomflow.kernel.errors import Unavailable
from loomflow.policy.listing import ApprovalListing
from loomflow.policy.models import (
    Approval,
    ApprovalStatus,
    Decision,
    ForgetReceipt,
    Policy,
    Remembered,
    ResolutionInput,
    TenantExport,
)
from loomflow.policy.store import sql_ops
from loomflow.policy.store.base import Change, ChangeKind, ChangeListener
from loomflow.policy.store.codec import (
    APPROVAL_COLUMNS,
    FORGOTTEN_POLICY,
    approval_from_json,
    approval_from_row,
    approval_to_json,
    approval_values,
    arguments_to_json,
    policy_from_json,
    policy_to_json,
    stored_policy,
)
from loomflow.policy.store.erasure import REMEMBERED_COLUMNS, refuse_if_forgotten, remembered_from_row

log = logging.getLogger("loomflow.policy")

T = TypeVar("T")

WHAT = "policy store (Postgres)"
_POLICY_WRITE_LOCK = 0x706F6C77  # "polw": serialises policy writes so versions follow commit order
_PENDING_LOCK = 0x706F6C70  # "polp": with a hash of the tenant, serialises its approval requests and Forget

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE IF NOT EXISTS policy_policies (
            key TEXT PRIMARY KEY, body TEXT NOT NULL, version BIGINT NOT NULL, updated_at BIGINT NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS policy_policies_by_version ON policy_policies (version)",
        """CREATE TABLE IF NOT EXISTS policy_approvals (
            tenant TEXT NOT NULL, id TEXT NOT NULL, tool_name TEXT NOT NULL, arguments TEXT NOT NULL,
            decision_id TEXT NOT NULL, session_id TEXT NOT NULL, run_id TEXT NOT NULL, reason TEXT NOT NULL,
            status TEXT NOT NULL, created_at BIGINT NOT NULL, expires_at BIGINT NOT NULL,
            edited_arguments TEXT, resolved_by TEXT NOT NULL, note TEXT NOT NULL, remember BOOLEAN NOT NULL,
            resolved_at BIGINT NOT NULL,
            PRIMARY KEY (tenant, id)
        )""",
        # Pending approvals only: the expiry sweep reads by deadline, replays by tenant.
        """CREATE INDEX IF NOT EXISTS policy_approvals_pending_by_deadline
            ON policy_approvals (expires_at) WHERE status = 'pending'""",
        """CREATE INDEX IF NOT EXISTS policy_approvals_pending_by_tenant
            ON policy_approvals (tenant, created_at) WHERE status = 'pending'""",
        """CREATE TABLE IF NOT EXISTS policy_remembered (
            tenant TEXT NOT NULL, run_id TEXT NOT NULL, tool_name TEXT NOT NULL,
            approval_id TEXT NOT NULL, decision TEXT NOT NULL, expires_at BIGINT NOT NULL,
            PRIMARY KEY (tenant, run_id, tool_name)
        )""",
        "CREATE INDEX IF NOT EXISTS policy_remembered_by_expiry ON policy_remembered (expires_at)",
    ),
    # The rule that asked lets the tenant resolve the approval themself.
    ("ALTER TABLE policy_approvals ADD COLUMN IF NOT EXISTS self_approval BOOLEAN NOT NULL DEFAULT FALSE",),
    # Single use, bound to the tool, the arguments and the run (rows from before carry no digest,
    # so they can never be consumed: fail closed).
    (
        """ALTER TABLE policy_approvals
            ADD COLUMN IF NOT EXISTS arguments_sha256 TEXT NOT NULL DEFAULT '',
            ADD COLUMN IF NOT EXISTS deferred BOOLEAN NOT NULL DEFAULT FALSE,
            ADD COLUMN IF NOT EXISTS consumed_at BIGINT NOT NULL DEFAULT 0,
            ADD COLUMN IF NOT EXISTS consumed_run_id TEXT NOT NULL DEFAULT ''""",
    ),
    # Forget's tombstones (see loomflow.policy.store.erasure).
    ("CREATE TABLE IF NOT EXISTS policy_forgotten (tenant TEXT PRIMARY KEY, cutoff BIGINT NOT NULL)",),
)

# Releases before the kernel's runner kept one row, the version reached, in ``policy_schema``.
SCHEMA = migrations.numbered("policy", MIGRATIONS, legacy=migrations.legacy_table("policy_schema"))

_MAX_NOTIFY_BYTES = 7900  # Postgres refuses NOTIFY payloads of 8000 bytes or more

_MARKS = ", ".join(f"${i}" for i in range(1, len(APPROVAL_COLUMNS.split(",")) + 1))


def _channel(schema: str) -> str:
    """The NOTIFY channel of one schema (identifiers stop at 63 bytes, so long names are hashed)."""
    name = f"loomflow_policy_{schema}"
    if len(name.encode()) <= 63:
        return name
    return "loomflow_policy_" + hashlib.sha256(schema.encode()).hexdigest()[:40]


def _pg_values(approval: Approval) -> list[Any]:
    values = list(approval_values(approval))
    values[14] = approval.remember  # BOOLEAN here, INTEGER in SQLite
    values[16] = approval.self_approval
    values[18] = approval.deferred
    return values


class PostgresStore:
    def __init__(self, dsn: str, pool_size: int = 10, *, migrate: bool = True) -> None:
        self._dsn = dsn
        self._migrate = migrate
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._origin = uuid.uuid4().hex
        self._channel = ""
        self._listeners: list[ChangeListener] = []
        self._listen_conn: asyncpg.Connection | None = None
        self._reconnect: asyncio.Task[None] | None = None
        self._closing = False

    # -- plumbing ----------------------------------------------------------

    async def _with(self, body: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        if self._pool is None:
            raise Unavailable("the policy store is not open")
        with unavailable_on_outage(WHAT):
            async with self._pool.acquire() as conn:
                return await body(conn)

    async def _in_transaction(self, body: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        async def run(conn: asyncpg.Connection) -> T:
            async with conn.transaction():
                return await body(conn)

        return await self._with(run)

    async def _notify(
        self, conn: asyncpg.Connection, kind: ChangeKind, tenant: str, approval: Approval | None = None
    ) -> None:
        message = {"o": self._origin, "k": kind.value, "t": tenant, "i": approval.id if approval else ""}
        payload = json.dumps(message)
        if approval is not None:
            # Carry the approval itself when it fits, so other replicas relay exactly this
            # state, in commit order, without a read that could see a later one.
            with_approval = json.dumps({**message, "a": approval_to_json(approval)})
            if len(with_approval.encode()) <= _MAX_NOTIFY_BYTES:
                payload = with_approval
        await conn.execute("SELECT pg_notify($1, $2)", self._channel, payload)

    async def start(self) -> None:
        self._pool = await postgres.open_pool(self._dsn, WHAT, max_size=self._pool_size, connect_timeout=60)

        async def migrate_and_name(conn: asyncpg.Connection) -> str:
            await migrations.migrate_or_check(conn, SCHEMA, apply=self._migrate)
            return await postgres.current_schema(conn)

        self._channel = _channel(await self._with(migrate_and_name))
        await self._listen()

    async def close(self) -> None:
        self._closing = True
        if self._reconnect is not None:
            self._reconnect.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconnect
        if self._listen_conn is not None:
            with contextlib.suppress(Exception):
                await self._listen_conn.close(timeout=2)
            self._listen_conn = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    # -- notifications -----------------------------------------------------

    def on_change(self, listener: ChangeListener) -> None:
        self._listeners.append(listener)

    async def _listen(self) -> None:
        conn = await postgres.connect(self._dsn, WHAT, connect_timeout=60)
        conn.add_termination_listener(self._on_listener_lost)
        await conn.add_listener(self._channel, self._on_notification)
        self._listen_conn = conn

    def _on_notification(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            message = json.loads(payload)
            if message["o"] == self._origin:
                return
            carried = approval_from_json(message["a"]) if "a" in message else None
            change = Change(ChangeKind(message["k"]), message["t"], message["i"], carried)
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed policy notification: %r", payload[:200])
            return
        for listener in self._listeners:
            try:
                listener(change)
            except Exception:
                log.exception("a policy change listener failed")

    def _on_listener_lost(self, _conn: Any) -> None:
        if self._closing or (self._reconnect is not None and not self._reconnect.done()):
            return
        log.warning("lost the policy notification connection; reconnecting")
        self._reconnect = asyncio.get_running_loop().create_task(self._relisten())

    async def _relisten(self) -> None:
        while not self._closing:
            try:
                await self._listen()
                log.info("policy notifications resumed")
                return
            except (Unavailable, ConfigError, asyncpg.PostgresError):  # down, or refusing us: keep trying
                await asyncio.sleep(1.0)

    # -- policies ----------------------------------------------------------

    async def _upsert_policy(self, conn: asyncpg.Connection, key: str, body: str) -> int:
        """Writes ``key``'s policy row with the next version and announces it (inside a transaction)."""
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _POLICY_WRITE_LOCK)
        version: int = await conn.fetchval(
            """INSERT INTO policy_policies (key, body, version, updated_at)
               VALUES ($1, $2, (SELECT coalesce(max(version), 0) + 1 FROM policy_policies), $3)
               ON CONFLICT (key) DO UPDATE SET body = excluded.body, version = excluded.version,
               updated_at = excluded.updated_at
               RETURNING version""",
            key,
            body,
            int(time.time() * 1000),
        )
        await self._notify(conn, ChangeKind.POLICY, key)
        return version

    async def get_policy(self, key: str) -> Policy | None:
        async def read(conn: asyncpg.Connection) -> Policy | None:
            row = await conn.fetchrow("SELECT body, version FROM policy_policies WHERE key = $1", key)
            return None if row is None else stored_policy(row["body"], row["version"])

        return await self._with(read)

    async def put_policy(self, key: str, policy: Policy) -> Policy:
        body = policy_to_json(policy)

        async def write(conn: asyncpg.Connection) -> int:
            return await self._upsert_policy(conn, key, body)

        version = await self._in_transaction(write)
        return policy_from_json(body, version)

    async def policy_version(self) -> int:
        async def read(conn: asyncpg.Connection) -> int:
            return int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM policy_policies"))

        return await self._with(read)

    async def policy_changes(self, since_version: int) -> list[tuple[str, int]]:
        async def read(conn: asyncpg.Connection) -> list[tuple[str, int]]:
            rows = await conn.fetch(
                "SELECT key, version FROM policy_policies WHERE version > $1 ORDER BY version", since_version
            )
            return [(row["key"], row["version"]) for row in rows]

        return await self._with(read)

    # -- approvals ---------------------------------------------------------

    async def insert_approval(self, approval: Approval, max_pending: int = 0) -> bool:
        async def write(conn: asyncpg.Connection) -> bool:
            # One tenant's inserts (and its Forget) queue on a lock of their own, so neither the
            # tombstone check nor the count below can race.
            await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", _PENDING_LOCK, approval.tenant)
            cutoff = await conn.fetchval("SELECT cutoff FROM policy_forgotten WHERE tenant = $1", approval.tenant)
            refuse_if_forgotten(cutoff, approval.created_at)
            if max_pending > 0:
                pending = await conn.fetchval(
                    """SELECT count(*) FROM policy_approvals
                       WHERE tenant = $1 AND status = 'pending' AND expires_at > $2""",
                    approval.tenant,
                    approval.created_at,
                )
                if pending >= max_pending:
                    return False
            await conn.execute(
                f"INSERT INTO policy_approvals ({APPROVAL_COLUMNS}) VALUES ({_MARKS})", *_pg_values(approval)
            )
            await self._notify(conn, ChangeKind.APPROVAL, approval.tenant, approval)
            return True

        return await self._in_transaction(write)

    async def consume_approval(
        self, tenant: str, approval_id: str, tool_name: str, arguments_sha256: str, run_id: str, now_ms: int
    ) -> Approval | None:
        async def write(conn: asyncpg.Connection) -> Approval | None:
            row = await conn.fetchrow(
                f"""UPDATE policy_approvals SET consumed_at = $1, consumed_run_id = $2
                    WHERE tenant = $3 AND id = $4 AND status = 'approved' AND consumed_at = 0
                      AND tool_name = $5 AND arguments_sha256 = $6 AND arguments_sha256 <> ''
                      AND (deferred OR run_id = $2)
                    RETURNING {APPROVAL_COLUMNS}""",
                now_ms,
                run_id,
                tenant,
                approval_id,
                tool_name,
                arguments_sha256,
            )
            return None if row is None else approval_from_row(row)

        return await self._with(write)

    async def get_approval(self, tenant: str, approval_id: str) -> Approval | None:
        async def read(conn: asyncpg.Connection) -> Approval | None:
            row = await conn.fetchrow(
                f"SELECT {APPROVAL_COLUMNS} FROM policy_approvals WHERE tenant = $1 AND id = $2", tenant, approval_id
            )
            return None if row is None else approval_from_row(row)

        return await self._with(read)

    async def resolve_approval(
        self,
        tenant: str,
        approval_id: str,
        answer: ResolutionInput,
        now_ms: int,
        remember_until_ms: int | None,
    ) -> Approval | None:
        async def write(conn: asyncpg.Connection) -> Approval | None:
            row = await conn.fetchrow(
                f"""UPDATE policy_approvals
                    SET status = $1, edited_arguments = $2, resolved_by = $3, note = $4, remember = $5,
                        resolved_at = $6
                    WHERE tenant = $7 AND id = $8 AND status = 'pending' AND expires_at > $6
                    RETURNING {APPROVAL_COLUMNS}""",
                answer.status.value,
                arguments_to_json(answer.edited_arguments),
                answer.resolved_by,
                answer.note,
                answer.remember,
                now_ms,
                tenant,
                approval_id,
            )
            if row is None:
                return None
            approval = approval_from_row(row)
            if remember_until_ms is not None:
                decision = Decision.ALLOW if answer.status is ApprovalStatus.APPROVED else Decision.DENY
                await conn.execute(
                    """INSERT INTO policy_remembered (tenant, run_id, tool_name, approval_id, decision, expires_at)
                       VALUES ($1, $2, $3, $4, $5, $6)
                       ON CONFLICT (tenant, run_id, tool_name) DO UPDATE SET approval_id = excluded.approval_id,
                       decision = excluded.decision, expires_at = excluded.expires_at""",
                    tenant,
                    approval.run_id,
                    approval.tool_name,
                    approval.id,
                    decision.value,
                    remember_until_ms,
                )
            await self._notify(conn, ChangeKind.APPROVAL, tenant, approval)
            return approval

        return await self._in_transaction(write)

    async def expire_due(
        self, now_ms: int, tenant: str | None = None, approval_id: str | None = None
    ) -> list[Approval]:
        async def write(conn: asyncpg.Connection) -> list[Approval]:
            if tenant is not None and approval_id is not None:
                rows = await conn.fetch(
                    f"""UPDATE policy_approvals SET status = 'expired', resolved_at = $1
                        WHERE status = 'pending' AND expires_at <= $1 AND tenant = $2 AND id = $3
                        RETURNING {APPROVAL_COLUMNS}""",
                    now_ms,
                    tenant,
                    approval_id,
                )
            else:
                rows = await conn.fetch(
                    f"""UPDATE policy_approvals SET status = 'expired', resolved_at = $1
                        WHERE status = 'pending' AND expires_at <= $1
                        RETURNING {APPROVAL_COLUMNS}""",
                    now_ms,
                )
            expired = sorted((approval_from_row(r) for r in rows), key=lambda a: (a.created_at, a.id))
            for approval in expired:
                await self._notify(conn, ChangeKind.APPROVAL, approval.tenant, approval)
            return expired

        return await self._in_transaction(write)

    async def pending_approvals(self, tenant: str | None) -> list[Approval]:
        async def read(conn: asyncpg.Connection) -> list[Approval]:
            if tenant is None:
                rows = await conn.fetch(
                    f"SELECT {APPROVAL_COLUMNS} FROM policy_approvals WHERE status = 'pending' ORDER BY created_at, id"
                )
            else:
                rows = await conn.fetch(
                    f"""SELECT {APPROVAL_COLUMNS} FROM policy_approvals
                        WHERE tenant = $1 AND status = 'pending' ORDER BY created_at, id""",
                    tenant,
                )
            return [approval_from_row(r) for r in rows]

        return await self._with(read)

    # -- operator listing and retention (sql_ops.py holds the SQL both engines share) --

    async def list_approvals(self, listing: ApprovalListing) -> list[Approval]:
        sql, args = sql_ops.list_approvals(listing)

        async def read(conn: asyncpg.Connection) -> list[Approval]:
            return [approval_from_row(r) for r in await conn.fetch(sql_ops.numbered(sql), *args)]

        return await self._with(read)

    async def tenants_with_settled_approvals_before(self, cutoff_ms: int, after: str, limit: int) -> list[str]:
        async def read(conn: asyncpg.Connection) -> list[str]:
            rows = await conn.fetch(sql_ops.numbered(sql_ops.TENANTS_WITH_SETTLED_BEFORE), cutoff_ms, after, limit)
            return [r[0] for r in rows]

        return await self._with(read)

    async def delete_settled_approvals_before(self, tenant: str, cutoff_ms: int, limit: int) -> int:
        async def write(conn: asyncpg.Connection) -> int:
            status: str = await conn.execute(sql_ops.numbered(sql_ops.DELETE_SETTLED_BEFORE), tenant, cutoff_ms, limit)
            return int(status.rsplit(" ", 1)[-1])

        return await self._with(write)

    async def remembered(self, tenant: str, run_id: str, tool_name: str, now_ms: int) -> Remembered | None:
        async def read(conn: asyncpg.Connection) -> Remembered | None:
            row = await conn.fetchrow(
                """SELECT approval_id, decision FROM policy_remembered
                   WHERE tenant = $1 AND run_id = $2 AND tool_name = $3 AND expires_at > $4""",
                tenant,
                run_id,
                tool_name,
                now_ms,
            )
            return None if row is None else Remembered(row["approval_id"], Decision(row["decision"]))

        return await self._with(read)

    async def purge(self, now_ms: int) -> int:
        async def write(conn: asyncpg.Connection) -> int:
            status: str = await conn.execute("DELETE FROM policy_remembered WHERE expires_at <= $1", now_ms)
            return int(status.rsplit(" ", 1)[-1])

        return await self._with(write)

    # -- erasure -----------------------------------------------------------

    async def forget(self, tenant: str, at_ms: int) -> ForgetReceipt:
        async def write(conn: asyncpg.Connection) -> ForgetReceipt:
            await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", _PENDING_LOCK, tenant)
            body = await conn.fetchval("SELECT body FROM policy_policies WHERE key = $1", tenant)
            had_policy = body is not None and body != FORGOTTEN_POLICY
            if had_policy:
                await self._upsert_policy(conn, tenant, FORGOTTEN_POLICY)
            counted = await conn.fetchrow(
                """WITH gone AS (DELETE FROM policy_approvals WHERE tenant = $1 RETURNING status)
                   SELECT count(*) AS approvals, count(*) FILTER (WHERE status = 'pending') AS pending FROM gone""",
                tenant,
            )
            status: str = await conn.execute("DELETE FROM policy_remembered WHERE tenant = $1", tenant)
            await conn.execute(
                """INSERT INTO policy_forgotten (tenant, cutoff) VALUES ($1, $2)
                   ON CONFLICT (tenant) DO UPDATE
                   SET cutoff = greatest(policy_forgotten.cutoff, excluded.cutoff)""",
                tenant,
                at_ms,
            )
            return ForgetReceipt(
                had_policy, int(counted["approvals"]), int(counted["pending"]), int(status.rsplit(" ", 1)[-1])
            )

        return await self._in_transaction(write)

    async def export(self, tenant: str) -> TenantExport:
        async def read(conn: asyncpg.Connection) -> TenantExport:
            row = await conn.fetchrow("SELECT body, version FROM policy_policies WHERE key = $1", tenant)
            approvals = await conn.fetch(
                f"SELECT {APPROVAL_COLUMNS} FROM policy_approvals WHERE tenant = $1 ORDER BY created_at, id", tenant
            )
            remembered = await conn.fetch(
                f"SELECT {REMEMBERED_COLUMNS} FROM policy_remembered WHERE tenant = $1 "
                'ORDER BY run_id COLLATE "C", tool_name COLLATE "C"',
                tenant,
            )
            return TenantExport(
                None if row is None else stored_policy(row["body"], row["version"]),
                tuple(approval_from_row(r) for r in approvals),
                tuple(remembered_from_row(r) for r in remembered),
            )

        async def snapshot(conn: asyncpg.Connection) -> TenantExport:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                return await read(conn)

        return await self._with(snapshot)
