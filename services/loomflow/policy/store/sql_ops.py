"""SQL the SQLite and Postgres policy stores share for operator listings and retention.

Written with ``?`` placeholders; :func:`numbered` turns them into Postgres's ``$n``.
Both engines compare row values, so one statement serves both.
"""

from __future__ import annotations

import re
from typing import Any

from loomflow.policy.listing import ApprovalListing
from loomflow.policy.store.codec import APPROVAL_COLUMNS


def numbered(sql: str) -> str:
    """``?`` placeholders as ``$1, $2, …`` (the statements here hold no literal question mark)."""
    counter = iter(range(1, 10_000))
    return re.sub(r"\?", lambda _: f"${next(counter)}", sql)


def list_approvals(listing: ApprovalListing) -> tuple[str, list[Any]]:
    """One page of approvals, newest first by (created_at, tenant, id): a total order, so a
    page key resumes exactly after the last row."""
    where: list[str] = []
    args: list[Any] = []
    if listing.tenant is not None:
        where.append("tenant = ?")
        args.append(listing.tenant)
    if listing.statuses:
        statuses = sorted(s.value for s in listing.statuses)
        where.append(f"status IN ({', '.join('?' for _ in statuses)})")
        args.extend(statuses)
    if listing.tool_name:
        where.append("tool_name = ?")
        args.append(listing.tool_name)
    if listing.created_from:
        where.append("created_at >= ?")
        args.append(listing.created_from)
    if listing.created_to:
        where.append("created_at < ?")
        args.append(listing.created_to)
    if listing.after is not None:
        where.append("(created_at, tenant, id) < (?, ?, ?)")
        args.extend([listing.after.created_at, listing.after.tenant, listing.after.approval_id])
    clause = f"WHERE {' AND '.join(where)} " if where else ""
    args.append(listing.page_size)
    sql = (
        f"SELECT {APPROVAL_COLUMNS} FROM policy_approvals {clause}"
        "ORDER BY created_at DESC, tenant DESC, id DESC LIMIT ?"
    )
    return sql, args


# Retention: settled approvals (never pending ones: those expire first) created before a cutoff.
TENANTS_WITH_SETTLED_BEFORE = (
    "SELECT DISTINCT tenant FROM policy_approvals WHERE status <> 'pending' AND created_at < ? AND tenant > ? "
    "ORDER BY tenant LIMIT ?"
)
DELETE_SETTLED_BEFORE = (
    "DELETE FROM policy_approvals WHERE (tenant, id) IN (SELECT tenant, id FROM policy_approvals "
    "WHERE tenant = ? AND status <> 'pending' AND created_at < ? ORDER BY created_at LIMIT ?)"
)
