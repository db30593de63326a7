"""Episode retention: the SQL SQLite and Postgres share (the protocol's two calls are in base.py).

Deleting
episodes bumps the tenant's epoch in the same transaction, as Forget does, so every
replica's recall index for the tenant is rebuilt without them. Blocks and facts are not
touched: retention covers episodes only.
"""

from __future__ import annotations

TENANTS_WITH_EPISODES_BEFORE = (
    "SELECT DISTINCT tenant FROM memory_episodes WHERE created_at < ? AND tenant > ? ORDER BY tenant LIMIT ?"
)
DELETE_EPISODES_BEFORE = (
    "DELETE FROM memory_episodes WHERE tenant = ? AND seq IN "
    "(SELECT seq FROM memory_episodes WHERE tenant = ? AND created_at < ? ORDER BY seq LIMIT ?)"
)
