"""What a policy store does: durable policies, approvals and remembered answers.

One protocol, one module per backend (``sqlite``, ``postgres``), one
conformance suite (tests/policy/test_store_conformance.py) run against each.
Every approval read and write names the tenant, and a row of another tenant is
simply not found: the WHERE clause carries the tenant, never a filter after it.
Times are Unix milliseconds, passed in by the caller so tests control the clock.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from loomflow.policy.listing import ApprovalListing
from loomflow.policy.models import Approval, ForgetReceipt, Policy, Remembered, ResolutionInput, TenantExport


class ChangeKind(enum.Enum):
    POLICY = "policy"
    APPROVAL = "approval"


@dataclass(frozen=True)
class Change:
    """Another replica changed a policy (``tenant`` is its key) or an approval (``tenant``,
    ``approval_id``). ``approval`` is the approval as that write left it, when the
    notification could carry it; otherwise listeners re-read it."""

    kind: ChangeKind
    tenant: str
    approval_id: str = ""
    approval: Approval | None = None


ChangeListener = Callable[[Change], None]


class PolicyStore(Protocol):
    async def start(self) -> None:
        """Connects and applies migrations (idempotent; safe when replicas start together)."""

    async def close(self) -> None: ...

    # -- policies ----------------------------------------------------------

    async def get_policy(self, key: str) -> Policy | None:
        """The stored policy of ``key`` (a tenant key, or DEFAULT_POLICY_KEY); None if it has none."""

    async def put_policy(self, key: str, policy: Policy) -> Policy:
        """Replaces ``key``'s policy; returns it with its new version (greater than every earlier one)."""

    async def policy_version(self) -> int:
        """The highest version written so far (0 when no policy was ever stored)."""

    async def policy_changes(self, since_version: int) -> list[tuple[str, int]]:
        """(key, version) of every policy written after ``since_version``, oldest first."""

    # -- approvals ---------------------------------------------------------

    async def insert_approval(self, approval: Approval, max_pending: int = 0) -> bool:
        """Stores a new pending approval; with ``max_pending`` > 0, only if the tenant has fewer
        approvals pending (and not past their deadline at ``approval.created_at``), atomically.
        False when the cap refused it. Aborted when a Forget of the tenant happened after
        ``approval.created_at`` (the request started before the erase)."""

    async def consume_approval(
        self, tenant: str, approval_id: str, tool_name: str, arguments_sha256: str, run_id: str, now_ms: int
    ) -> Approval | None:
        """Marks an approved approval as used by ``run_id``, in one compare-and-set: only if it is
        approved, not used yet, for this tool and these arguments (digest), and either deferred or
        asked by this run. Returns it as consumed; None when any of that does not hold (each
        approval is consumed by exactly one caller, however many race)."""

    async def get_approval(self, tenant: str, approval_id: str) -> Approval | None: ...

    async def resolve_approval(
        self,
        tenant: str,
        approval_id: str,
        answer: ResolutionInput,
        now_ms: int,
        remember_until_ms: int | None,
    ) -> Approval | None:
        """Resolves the approval if it is still pending and not past its deadline, and (when
        ``remember_until_ms`` is set) remembers the answer for its run and tool, atomically.
        None when nothing was resolved: missing, another tenant's, already resolved or due."""

    async def expire_due(
        self, now_ms: int, tenant: str | None = None, approval_id: str | None = None
    ) -> list[Approval]:
        """Marks pending approvals whose deadline has passed as expired and returns them
        (only ``tenant``'s ``approval_id`` when given). Each is returned by exactly one caller."""

    async def pending_approvals(self, tenant: str | None) -> list[Approval]:
        """Pending approvals of ``tenant`` (every tenant's for None), oldest first."""

    async def list_approvals(self, listing: ApprovalListing) -> list[Approval]:
        """One page of approvals matching ``listing``, newest first by (created_at, tenant, id),
        starting after ``listing.after``; every tenant's when ``listing.tenant`` is None."""

    async def tenants_with_settled_approvals_before(self, cutoff_ms: int, after: str, limit: int) -> list[str]:
        """Tenants (sorted, greater than ``after``, at most ``limit``) holding a resolved or
        expired approval created before ``cutoff_ms``: the retention sweeper's work list."""

    async def delete_settled_approvals_before(self, tenant: str, cutoff_ms: int, limit: int) -> int:
        """Deletes at most ``limit`` of the tenant's resolved or expired approvals created
        before ``cutoff_ms`` (oldest first; never a pending one); returns how many."""

    async def remembered(self, tenant: str, run_id: str, tool_name: str, now_ms: int) -> Remembered | None:
        """The answer remembered for this tenant, run and tool, if it has not lapsed."""

    async def purge(self, now_ms: int) -> int:
        """Drops remembered answers that lapsed; returns how many."""

    # -- erasure -----------------------------------------------------------

    async def forget(self, tenant: str, at_ms: int) -> ForgetReceipt:
        """Erases the tenant's own policy (leaving a versioned marker, so other replicas' caches drop
        it), every approval and every remembered answer, and records the tombstone ``at_ms``: from
        then on :meth:`insert_approval` refuses (Aborted) an approval created before it. Atomic
        with respect to every other write of the tenant; idempotent."""

    async def export(self, tenant: str) -> TenantExport:
        """Everything stored about the tenant (its own policy, approvals oldest first, remembered answers)."""

    # -- replicas ----------------------------------------------------------

    def on_change(self, listener: ChangeListener) -> None:
        """Calls ``listener`` (on the event loop) when another process changes a policy or
        approval. A backend that cannot notify never calls it; policy changes are still
        picked up by polling :meth:`policy_changes`."""
