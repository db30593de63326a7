"""The operator's tenant list (AuditService/ListTenants) on every sink: tenant id order, pages that
resume after the last tenant listed, and each tenant's last-seen time and entry count."""

from __future__ import annotations

from loomflow.audit.core import AuditLog
from loomflow.audit.models import Draft
from loomflow.audit.tenant_list import tenants_page


async def test_tenants_are_listed_in_id_order_with_their_last_entry_time(audit_log: AuditLog, unique: str) -> None:
    carol, alice, bob = f"{unique}-carol", f"{unique}-alice", f"{unique}-bob"
    last: dict[str, int] = {}
    for tenant, entries in ((carol, 1), (alice, 3), (bob, 2)):
        for _ in range(entries):
            last[tenant] = (await audit_log.append(Draft(tenant, actor="agent", action="tool_call"))).ts_us

    rows, _ = await tenants_page(audit_log, after=unique, page_size=1000)
    mine = [r for r in rows if r.tenant.startswith(f"{unique}-")]
    assert [r.tenant for r in mine] == [alice, bob, carol], "not in tenant id order"
    assert [r.audit_entries for r in mine] == [3, 2, 1]
    assert [r.last_seen_us for r in mine] == [last[alice], last[bob], last[carol]], "last seen is not the last entry"


async def test_a_page_resumes_after_the_last_tenant_even_when_a_tenant_appears_between_pages(
    audit_log: AuditLog, unique: str
) -> None:
    for name in ("a", "c", "e"):
        await audit_log.append(Draft(f"{unique}-{name}", actor="agent", action="tool_call"))
    first, after = await tenants_page(audit_log, after=unique, page_size=2)
    assert [r.tenant for r in first] == [f"{unique}-a", f"{unique}-c"]
    assert after == f"{unique}-c"
    await audit_log.append(Draft(f"{unique}-b", actor="agent", action="tool_call"))  # before the cursor
    await audit_log.append(Draft(f"{unique}-d", actor="agent", action="tool_call"))  # after it
    second, _ = await tenants_page(audit_log, after=after, page_size=2)
    assert [r.tenant for r in second] == [f"{unique}-d", f"{unique}-e"], "a page skipped or repeated a tenant"
