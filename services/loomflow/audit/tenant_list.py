"""The operator's list of tenants, read from the audit chains.

Every service's work for a tenant (runs, model and tool calls, policy decisions, erasures) is
journaled in the tenant's chain, so the set of chain heads is the set of tenants the suite has
seen, and the last entry's time is when the tenant was last seen. Pages are in tenant id order:
a token resumes after the last tenant listed, even while new tenants appear.
"""

from __future__ import annotations

from dataclasses import dataclass

from loomflow.audit.core import AuditLog
from loomflow.audit.models import QueryFilter

DEFAULT_PAGE_SIZE = 100


@dataclass(frozen=True, slots=True)
class TenantSeen:
    tenant: str
    audit_entries: int
    last_seen_us: int


async def tenants_page(log: AuditLog, after: str, page_size: int) -> tuple[list[TenantSeen], str]:
    """At most ``page_size`` tenants whose id sorts after ``after``, and the id to resume after
    (empty on the last page)."""
    heads = await log.sink.all_heads()
    tenants = sorted(t for t in heads if t > after)
    page = tenants[:page_size]
    rows: list[TenantSeen] = []
    for tenant in page:
        head = heads[tenant]
        # The head's own entry: no payload is decrypted for a listing.
        last = await log.sink.read(QueryFilter(tenant, after_seq=head.seq - 1, limit=1))
        rows.append(TenantSeen(tenant, head.seq, last[0].ts_us if last else 0))
    return rows, page[-1] if len(tenants) > page_size else ""
