"""The embedded default store: one SQLite file in WAL mode, written with ``synchronous=FULL``.

Writes and scans run on one dedicated thread with one connection
(:class:`~loomflow.kernel.backends.sqlite.GroupWriter`), so the event loop never
waits for a commit's fsync and writes are serialised without locks of our own;
the writes queued together share one ``BEGIN IMMEDIATE`` transaction and one
fsync, each in its own savepoint (one that fails is rolled back alone), and
SQLite serialises them against other processes sharing the file. Point reads by
primary key (a policy, an approval, a remembered answer) run directly on the
event loop through a second, read-only connection: in WAL mode readers never
wait for the writer, and such a read (~10 µs) is cheaper than a hop to a
thread. The hot path (Check) rarely comes here at all: policies are cached in
process (:mod:`loomflow.policy.book`).
"""

from __future__ import annotations

import functools
import sqlite3
import time
from collections.abc import Callable
from typing import Any, TypeVar

from loomflow.kernel.backends import sqlite as sqlite_backend
from loomflow.kernel.backends.errors import unavailable_on_outage
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
from loomflow.policy.store.base import ChangeListener
from loomflow.policy.store.codec import (
    APPROVAL_COLUMNS,
    FORGOTTEN_POLICY,
    approval_from_row,
    approval_values,
    arguments_to_json,
    policy_from_json,
    policy_to_json,
    stored_policy,
)
from loomflow.policy.store.erasure import REMEMBERED_COLUMNS, refuse_if_forgotten, remembered_from_row

T = TypeVar("T")

WHAT = "policy store (SQLite)"

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE IF NOT EXISTS policy_policies (
            key TEXT PRIMARY KEY, body TEXT NOT NULL, version INTEGER NOT NULL, updated_at INTEGER NOT NULL
        ) WITHOUT ROWID""",
        "CREATE INDEX IF NOT EXISTS policy_policies_by_version ON policy_policies (version)",
        """CREATE TABLE IF NOT EXISTS policy_approvals (
            tenant TEXT NOT NULL, id TEXT NOT NULL, tool_name TEXT NOT NULL, arguments TEXT NOT NULL,
            decision_id TEXT NOT NULL, session_id TEXT NOT NULL, run_id TEXT NOT NULL, reason TEXT NOT NULL,
            status TEXT NOT NULL, created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL,
            edited_arguments TEXT, resolved_by TEXT NOT NULL, note TEXT NOT NULL, remember INTEGER NOT NULL,
            resolved_at INTEGER NOT NULL,
            PRIMARY KEY (tenant, id)
        ) WITHOUT ROWID""",
        # Pending approvals by deadline: the expiry sweep and replays read only these rows.
        """CREATE INDEX IF NOT EXISTS policy_approvals_pending
            ON policy_approvals (expires_at) WHERE status = 'pending'""",
        """CREATE TABLE IF NOT EXISTS policy_remembered (
            tenant TEXT NOT NULL, run_id TEXT NOT NULL, tool_name TEXT NOT NULL,
            approval_id TEXT NOT NULL, decision TEXT NOT NULL, expires_at INTEGER NOT NULL,
            PRIMARY KEY (tenant, run_id, tool_name)
        ) WITHOUT ROWID""",
    ),
    # The rule that asked lets the tenant resolve the approval themself.
    ("ALTER TABLE policy_approvals ADD COLUMN self_approval INTEGER NOT NULL DEFAULT 0",),
    # Single use, bound to the tool, the arguments and the run (rows from before carry no digest,
    # so they can never be consumed: fail closed).
    (
        "ALTER TABLE policy_approvals ADD COLUMN arguments_sha256 TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE policy_approvals ADD COLUMN deferred INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE policy_approvals ADD COLUMN consumed_at INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE policy_approvals ADD COLUMN consumed_run_id TEXT NOT NULL DEFAULT ''",
    ),
    # Forget's tombstones (see loomflow.policy.store.erasure).
    (
        """CREATE TABLE IF NOT EXISTS policy_forgotten (
            tenant TEXT PRIMARY KEY, cutoff INTEGER NOT NULL
        ) WITHOUT ROWID""",
    ),
)


class SqliteStore:
    def __init__(self, path: str) -> None:
        self._path = path
        self._writes: sqlite_backend.GroupWriter | None = None
        self._reader: sqlite3.Connection | None = None

    # -- plumbing ----------------------------------------------------------

    def _writer(self) -> sqlite_backend.GroupWriter:
        if self._writes is None or self._writes.connection is None:
            raise Unavailable("the policy store is not open")
        return self._writes

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """A read on the writer's thread (one that may grow with the data: kept off the event loop)."""
        writes = self._writer()
        with unavailable_on_outage(WHAT):
            return await writes.call(fn)

    async def _transaction(self, body: Callable[[sqlite3.Connection], T]) -> T:
        """A write, committed with the others queued with it (each in its own savepoint)."""
        writes = self._writer()
        with unavailable_on_outage(WHAT):
            return await writes.write(body)

    def _read_now(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Runs an indexed point read on the event loop (see the module docstring)."""
        if self._reader is None:
            raise Unavailable("the policy store is not open")
        with unavailable_on_outage(WHAT):
            return fn(self._reader)

    def _open(self) -> sqlite3.Connection:
        # synchronous=FULL: an approval acknowledged is an approval kept
        conn = sqlite_backend.connect(self._path, busy_timeout=30.0, synchronous="full")
        sqlite_backend.migrate(conn, MIGRATIONS)
        return conn

    async def start(self) -> None:
        self._writes = sqlite_backend.GroupWriter(self._open, "policy-sqlite")
        try:
            await self._writes.start()
            # Opened after the migrations, so it sees the tables; never writes.
            self._reader = sqlite_backend.connect(self._path, busy_timeout=1.0, wal=False, query_only=True)
        except sqlite3.Error as exc:
            raise Unavailable(f"cannot open the policy store {self._path}: {exc}") from exc

    async def close(self) -> None:
        writes, self._writes = self._writes, None
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()
        if writes is not None:
            await writes.close()

    def on_change(self, listener: ChangeListener) -> None:
        """SQLite cannot notify: other processes' policy changes are found by polling."""

    # -- policies ----------------------------------------------------------

    async def get_policy(self, key: str) -> Policy | None:
        def read(c: sqlite3.Connection) -> Policy | None:
            row = c.execute("SELECT body, version FROM policy_policies WHERE key = ?", (key,)).fetchone()
            return None if row is None else stored_policy(row[0], row[1])

        return self._read_now(read)

    async def put_policy(self, key: str, policy: Policy) -> Policy:
        body = policy_to_json(policy)

        version = await self._transaction(functools.partial(_upsert_policy, key, body))
        return policy_from_json(body, version)

    async def policy_version(self) -> int:
        def read(c: sqlite3.Connection) -> int:
            return int(c.execute("SELECT coalesce(max(version), 0) FROM policy_policies").fetchone()[0])

        return await self._run(read)

    async def policy_changes(self, since_version: int) -> list[tuple[str, int]]:
        def read(c: sqlite3.Connection) -> list[tuple[str, int]]:
            rows = c.execute(
                "SELECT key, version FROM policy_policies WHERE version > ? ORDER BY version", (since_version,)
            ).fetchall()
            return [(row[0], row[1]) for row in rows]

        return await self._run(read)

    # -- approvals ---------------------------------------------------------

    async def insert_approval(self, approval: Approval, max_pending: int = 0) -> bool:
        values = approval_values(approval)
        marks = ", ".join("?" * len(values))

        def write(c: sqlite3.Connection) -> bool:
            # Writes are serialised (one thread, BEGIN IMMEDIATE), so check-then-insert cannot race.
            row = c.execute("SELECT cutoff FROM policy_forgotten WHERE tenant = ?", (approval.tenant,)).fetchone()
            refuse_if_forgotten(None if row is None else row[0], approval.created_at)
            if max_pending > 0:
                pending = c.execute(
                    "SELECT count(*) FROM policy_approvals WHERE tenant = ? AND status = 'pending' AND expires_at > ?",
                    (approval.tenant, approval.created_at),
                ).fetchone()[0]
                if pending >= max_pending:
                    return False
            c.execute(f"INSERT INTO policy_approvals ({APPROVAL_COLUMNS}) VALUES ({marks})", values)
            return True

        return await self._transaction(write)

    async def consume_approval(
        self, tenant: str, approval_id: str, tool_name: str, arguments_sha256: str, run_id: str, now_ms: int
    ) -> Approval | None:
        def write(c: sqlite3.Connection) -> Approval | None:
            row = c.execute(
                f"""UPDATE policy_approvals SET consumed_at = ?, consumed_run_id = ?
                    WHERE tenant = ? AND id = ? AND status = 'approved' AND consumed_at = 0
                      AND tool_name = ? AND arguments_sha256 = ? AND arguments_sha256 <> ''
                      AND (deferred OR run_id = ?)
                    RETURNING {APPROVAL_COLUMNS}""",
                (now_ms, run_id, tenant, approval_id, tool_name, arguments_sha256, run_id),
            ).fetchone()
            return None if row is None else approval_from_row(row)

        return await self._transaction(write)

    async def get_approval(self, tenant: str, approval_id: str) -> Approval | None:
        def read(c: sqlite3.Connection) -> Approval | None:
            row = c.execute(
                f"SELECT {APPROVAL_COLUMNS} FROM policy_approvals WHERE tenant = ? AND id = ?",
                (tenant, approval_id),
            ).fetchone()
            return None if row is None else approval_from_row(row)

        return self._read_now(read)

    async def resolve_approval(
        self,
        tenant: str,
        approval_id: str,
        answer: ResolutionInput,
        now_ms: int,
        remember_until_ms: int | None,
    ) -> Approval | None:
        def write(c: sqlite3.Connection) -> Approval | None:
            row = c.execute(
                f"""UPDATE policy_approvals
                    SET status = ?, edited_arguments = ?, resolved_by = ?, note = ?, remember = ?, resolved_at = ?
                    WHERE tenant = ? AND id = ? AND status = 'pending' AND expires_at > ?
                    RETURNING {APPROVAL_COLUMNS}""",
                (
                    answer.status.value,
                    arguments_to_json(answer.edited_arguments),
                    answer.resolved_by,
                    answer.note,
                    int(answer.remember),
                    now_ms,
                    tenant,
                    approval_id,
                    now_ms,
                ),
            ).fetchone()
            if row is None:
                return None
            approval = approval_from_row(row)
            if remember_until_ms is not None:
                decision = Decision.ALLOW if answer.status is ApprovalStatus.APPROVED else Decision.DENY
                c.execute(
                    """INSERT INTO policy_remembered (tenant, run_id, tool_name, approval_id, decision, expires_at)
                       VALUES (?, ?, ?, ?, ?, ?)
                       ON CONFLICT (tenant, run_id, tool_name) DO UPDATE SET approval_id = excluded.approval_id,
                       decision = excluded.decision, expires_at = excluded.expires_at""",
                    (tenant, approval.run_id, approval.tool_name, approval.id, decision.value, remember_until_ms),
                )
            return approval

        return await self._transaction(write)

    async def expire_due(
        self, now_ms: int, tenant: str | None = None, approval_id: str | None = None
    ) -> list[Approval]:
        where = "status = 'pending' AND expires_at <= ?"
        params: tuple[Any, ...] = (now_ms,)
        if tenant is not None and approval_id is not None:
            where += " AND tenant = ? AND id = ?"
            params += (tenant, approval_id)

        def write(c: sqlite3.Connection) -> list[Approval]:
            rows = c.execute(
                f"UPDATE policy_approvals SET status = 'expired', resolved_at = ? WHERE {where} "
                f"RETURNING {APPROVAL_COLUMNS}",
                (now_ms, *params),
            ).fetchall()
            return sorted((approval_from_row(r) for r in rows), key=lambda a: (a.created_at, a.id))

        return await self._transaction(write)

    async def pending_approvals(self, tenant: str | None) -> list[Approval]:
        def read(c: sqlite3.Connection) -> list[Approval]:
            if tenant is None:
                rows = c.execute(
                    f"SELECT {APPROVAL_COLUMNS} FROM policy_approvals WHERE status = 'pending' ORDER BY created_at, id"
                ).fetchall()
            else:
                rows = c.execute(
                    f"SELECT {APPROVAL_COLUMNS} FROM policy_approvals WHERE tenant = ? AND status = 'pending' "
                    "ORDER BY created_at, id",
                    (tenant,),
                ).fetchall()
            return [approval_from_row(r) for r in rows]

        return await self._run(read)

    # -- operator listing and retention (sql_ops.py holds the SQL both engines share) --

    async def list_approvals(self, listing: ApprovalListing) -> list[Approval]:
        sql, args = sql_ops.list_approvals(listing)

        def read(c: sqlite3.Connection) -> list[Approval]:
            return [approval_from_row(r) for r in c.execute(sql, args).fetchall()]

        return await self._run(read)

    async def tenants_with_settled_approvals_before(self, cutoff_ms: int, after: str, limit: int) -> list[str]:
        def read(c: sqlite3.Connection) -> list[str]:
            return [r[0] for r in c.execute(sql_ops.TENANTS_WITH_SETTLED_BEFORE, (cutoff_ms, after, limit))]

        return await self._run(read)

    async def delete_settled_approvals_before(self, tenant: str, cutoff_ms: int, limit: int) -> int:
        def write(c: sqlite3.Connection) -> int:
            return c.execute(sql_ops.DELETE_SETTLED_BEFORE, (tenant, cutoff_ms, limit)).rowcount

        return await self._transaction(write)

    async def remembered(self, tenant: str, run_id: str, tool_name: str, now_ms: int) -> Remembered | None:
        def read(c: sqlite3.Connection) -> Remembered | None:
            row = c.execute(
                """SELECT approval_id, decision FROM policy_remembered
                   WHERE tenant = ? AND run_id = ? AND tool_name = ? AND expires_at > ?""",
                (tenant, run_id, tool_name, now_ms),
            ).fetchone()
            return None if row is None else Remembered(row[0], Decision(row[1]))

        return self._read_now(read)

    async def purge(self, now_ms: int) -> int:
        def write(c: sqlite3.Connection) -> int:
            return c.execute("DELETE FROM policy_remembered WHERE expires_at <= ?", (now_ms,)).rowcount

        return await self._transaction(write)

    # -- erasure -----------------------------------------------------------

    async def forget(self, tenant: str, at_ms: int) -> ForgetReceipt:
        def write(c: sqlite3.Connection) -> ForgetReceipt:
            row = c.execute("SELECT body FROM policy_policies WHERE key = ?", (tenant,)).fetchone()
            had_policy = row is not None and row[0] != FORGOTTEN_POLICY
            if had_policy:
                _upsert_policy(tenant, FORGOTTEN_POLICY, c)
            pending = c.execute(
                "SELECT count(*) FROM policy_approvals WHERE tenant = ? AND status = 'pending'", (tenant,)
            ).fetchone()[0]
            approvals = c.execute("DELETE FROM policy_approvals WHERE tenant = ?", (tenant,)).rowcount
            remembered = c.execute("DELETE FROM policy_remembered WHERE tenant = ?", (tenant,)).rowcount
            c.execute(
                """INSERT INTO policy_forgotten (tenant, cutoff) VALUES (?, ?)
                   ON CONFLICT (tenant) DO UPDATE SET cutoff = max(cutoff, excluded.cutoff)""",
                (tenant, at_ms),
            )
            return ForgetReceipt(had_policy, approvals, pending, remembered)

        return await self._transaction(write)

    async def export(self, tenant: str) -> TenantExport:
        def read(c: sqlite3.Connection) -> TenantExport:
            row = c.execute("SELECT body, version FROM policy_policies WHERE key = ?", (tenant,)).fetchone()
            approvals = c.execute(
                f"SELECT {APPROVAL_COLUMNS} FROM policy_approvals WHERE tenant = ? ORDER BY created_at, id", (tenant,)
            ).fetchall()
            remembered = c.execute(
                f"SELECT {REMEMBERED_COLUMNS} FROM policy_remembered WHERE tenant = ? ORDER BY run_id, tool_name",
                (tenant,),
            ).fetchall()
            return TenantExport(
                None if row is None else stored_policy(row[0], row[1]),
                tuple(approval_from_row(r) for r in approvals),
                tuple(remembered_from_row(r) for r in remembered),
            )

        # One BEGIN IMMEDIATE: a snapshot no write of the tenant can split.
        return await self._transaction(read)


def _upsert_policy(key: str, body: str, c: sqlite3.Connection) -> int:
    """Writes ``key``'s policy row with the next version (inside the caller's write transaction)."""
    version: int = c.execute("SELECT coalesce(max(version), 0) + 1 FROM policy_policies").fetchone()[0]
    c.execute(
        """INSERT INTO policy_policies (key, body, version, updated_at)
           VALUES (?, ?, ?, ?)
           ON CONFLICT (key) DO UPDATE SET body = excluded.body, version = excluded.version,
           updated_at = excluded.updated_at""",
        (key, body, version, int(time.time() * 1000)),
    )
    return version
