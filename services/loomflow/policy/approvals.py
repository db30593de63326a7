"""Durable human approvals: request, resolve, expire, remember, and watch.

Fail closed everywhere: an approval that nobody resolves before its deadline
becomes EXPIRED, which is a deny. Expiry is applied lazily by every read and
resolve (so it never depends on timing), and eagerly by a sweep every
``sweep_seconds`` (so watchers hear about it).

Watchers subscribe to an in-process :class:`Broadcaster`. Approvals created
or resolved by another replica reach it through the store's change
notifications (Postgres LISTEN/NOTIFY); the approval is re-read from the store
and published here, so every replica's watchers see every tenant's events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from google.protobuf import any_pb2
from google.rpc import error_details_pb2

from loomflow.kernel.errors import (
    Aborted,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
)
from loomflow.kernel.tenancy import display_tenant
from loomflow.policy import metrics
from loomflow.policy.ids import new_id
from loomflow.policy.listing import ApprovalListing, ApprovalPage, list_page
from loomflow.policy.models import (
    Approval,
    ApprovalRequest,
    ApprovalStatus,
    Remembered,
    Resolution,
    ResolutionInput,
)
from loomflow.policy.store import Change, ChangeKind, PolicyStore
from loomflow.policy.store.codec import arguments_digest

log = logging.getLogger("loomflow.policy")
security_log = logging.getLogger("loomflow.security")

Clock = Callable[[], int]


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


_OUTCOME = {ApprovalStatus.APPROVED: "approved", ApprovalStatus.DENIED: "denied", ApprovalStatus.EXPIRED: "expired"}


class ApprovalNotUsable(FailedPrecondition):
    """An approval presented for a tool call that it does not allow (any more): single use,
    bound to its tool, its arguments and its run. ``why`` is machine-readable."""

    def __init__(self, approval_id: str, why: str, message: str) -> None:
        super().__init__(message)
        self.approval_id = approval_id
        self.why = why

    def details(self) -> list[any_pb2.Any]:
        info = error_details_pb2.ErrorInfo(
            reason="APPROVAL_NOT_USABLE", domain="loomflow", metadata={"approval_id": self.approval_id, "why": self.why}
        )
        packed = any_pb2.Any()
        packed.Pack(info)
        return [packed]


def _unusable(approval: Approval, tool_name: str, digest: str, run_id: str) -> ApprovalNotUsable:
    """Why ``approval`` cannot be consumed for this call (it was not, by the compare-and-set)."""
    aid = approval.id
    if approval.status is not ApprovalStatus.APPROVED:
        return ApprovalNotUsable(aid, "not_approved", f"approval {aid!r} is {approval.status.value}, not approved")
    if approval.consumed_at:
        return ApprovalNotUsable(
            aid, "already_used", f"approval {aid!r} was already used at {_when(approval.consumed_at)}: it is single-use"
        )
    if approval.tool_name != tool_name:
        return ApprovalNotUsable(aid, "other_tool", f"approval {aid!r} is for another tool than {tool_name}")
    if not approval.arguments_sha256 or approval.arguments_sha256 != digest:
        return ApprovalNotUsable(aid, "other_arguments", f"approval {aid!r} was given for other arguments")
    if not approval.deferred and approval.run_id != run_id:
        return ApprovalNotUsable(aid, "other_run", f"approval {aid!r} belongs to the run that asked for it")
    return ApprovalNotUsable(aid, "not_usable", f"approval {aid!r} cannot be used now")


class Subscription:
    """One watcher's queue. Bounded: a watcher that falls too far behind is ended with ABORTED."""

    def __init__(self, tenant: str | None, include_resolved: bool, queue_size: int) -> None:
        self.tenant = tenant
        self.include_resolved = include_resolved
        self._queue: asyncio.Queue[Approval | None] = asyncio.Queue(queue_size)
        self._delivered: OrderedDict[tuple[str, ApprovalStatus], None] = OrderedDict()
        self.overflowed = False
        self.closed = False

    def wants(self, approval: Approval) -> bool:
        if self.tenant is not None and approval.tenant != self.tenant:
            return False
        return approval.pending or self.include_resolved

    def offer(self, approval: Approval) -> None:
        if self.closed or self.overflowed:
            return
        try:
            self._queue.put_nowait(approval)
        except asyncio.QueueFull:
            self.overflowed = True

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(None)

    def first_delivery(self, approval: Approval) -> bool:
        """False if this watcher already got this approval in this state (replays and
        notifications can both carry it)."""
        key = (approval.id, approval.status)
        if key in self._delivered:
            return False
        self._delivered[key] = None
        if len(self._delivered) > 4096:
            self._delivered.popitem(last=False)
        return True

    async def next(self) -> Approval | None:
        if self.overflowed:
            raise Aborted(
                f"this watcher fell more than {self._queue.maxsize} approvals behind; "
                "watch again with replay_pending to catch up"
            )
        if self.closed and self._queue.empty():
            return None
        return await self._queue.get()


class Broadcaster:
    """Fans approvals out to this process's watchers."""

    def __init__(self, queue_size: int = 1000) -> None:
        self._queue_size = queue_size
        self._subscriptions: set[Subscription] = set()

    def subscribe(self, tenant: str | None, include_resolved: bool) -> Subscription:
        subscription = Subscription(tenant, include_resolved, self._queue_size)
        self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)

    def publish(self, approval: Approval) -> None:
        for subscription in self._subscriptions:
            if subscription.wants(approval):
                subscription.offer(approval)

    @property
    def watchers(self) -> int:
        return len(self._subscriptions)

    def close(self) -> None:
        for subscription in self._subscriptions:
            subscription.close()


class Watch:
    """One watcher: subscribed from creation, so nothing published after that is missed."""

    def __init__(self, approvals: Approvals, subscription: Subscription, replay_pending: bool) -> None:
        self._approvals = approvals
        self._subscription = subscription
        self._replay_pending = replay_pending

    def __aiter__(self) -> AsyncIterator[Approval]:
        return self._events()

    async def _events(self) -> AsyncIterator[Approval]:
        subscription = self._subscription
        try:
            if self._replay_pending:
                for approval in await self._approvals.pending(subscription.tenant):
                    if subscription.first_delivery(approval):
                        yield approval
            while (event := await subscription.next()) is not None:
                if subscription.first_delivery(event):
                    yield event
        finally:
            self.close()

    def close(self) -> None:
        self._approvals.broadcaster.unsubscribe(self._subscription)


class Approvals:
    def __init__(
        self,
        store: PolicyStore,
        *,
        default_timeout_ms: int = 300_000,
        remember_ttl_ms: int = 86_400_000,
        sweep_seconds: float = 1.0,
        queue_size: int = 1000,
        max_pending_per_tenant: int = 0,
        clock: Clock = wall_clock_ms,
    ) -> None:
        self._store = store
        self._max_pending = max_pending_per_tenant
        self._default_timeout_ms = default_timeout_ms
        self._remember_ttl_ms = remember_ttl_ms
        self._sweep_seconds = sweep_seconds
        self._clock = clock
        self.broadcaster = Broadcaster(queue_size)
        self._sweeper: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._store.on_change(self._on_change)
        if self._sweep_seconds > 0:
            self._sweeper = asyncio.create_task(self._sweep_forever(), name="policy-approval-expiry")

    async def close(self) -> None:
        self.broadcaster.close()
        tasks = [t for t in (self._sweeper, *self._background) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._sweeper = None

    def now(self) -> int:
        """This service's clock (Unix ms): what approvals are stamped with and Forget tombstones compared to."""
        return self._clock()

    # -- the flow ----------------------------------------------------------

    async def request(self, request: ApprovalRequest, timeout_ms: int = 0) -> Approval:
        """Records a pending approval addressed to ``request.tenant``; 0 means the default timeout."""
        now = self._clock()
        approval = Approval(
            id=new_id("apr_"),
            tenant=request.tenant,
            tool_name=request.tool_name,
            arguments=dict(request.arguments),
            decision_id=request.decision_id,
            session_id=request.session_id,
            run_id=request.run_id,
            reason=request.reason,
            status=ApprovalStatus.PENDING,
            created_at=now,
            expires_at=now + (timeout_ms or self._default_timeout_ms),
            self_approval=request.self_approval,
            arguments_sha256=arguments_digest(request.arguments),
            deferred=request.deferred,
        )
        if not await self._store.insert_approval(approval, self._max_pending):
            raise ResourceExhausted(
                f"{self._max_pending} approvals are already pending for this user; resolve or let some expire first",
                limit="max_pending_approvals",
            )
        metrics.record_approval_opened(approval.tenant)
        self.broadcaster.publish(approval)
        return approval

    async def get(self, tenant: str, approval_id: str) -> Approval:
        """The tenant's approval (expired first if its deadline passed). Another tenant's is NOT_FOUND."""
        approval = await self._store.get_approval(tenant, approval_id)
        if approval is None:
            raise NotFound(f"approval {approval_id!r} not found")
        if approval.pending and approval.expires_at <= self._clock():
            approval = await self._expire_one(approval)
        return approval

    async def resolve(
        self, tenant: str, approval_id: str, answer: ResolutionInput, *, by_tenant: bool = False
    ) -> Approval:
        """Approves or denies a pending approval; retrying the same answer returns the same record.

        ``by_tenant``: the tenant answers for themself (a user credential), which only an
        approval created by a ``self_approval`` rule allows; otherwise an operator answers."""
        if answer.edited_arguments is not None and answer.resolution is Resolution.DENY:
            raise InvalidArgument.field("edited_arguments", "only an approval can carry edited arguments")
        current = await self.get(tenant, approval_id)
        if by_tenant and not current.self_approval:
            raise PermissionDenied(
                f"approval {approval_id!r} needs an operator: the rule that asked does not let the tenant approve it"
            )
        if answer.remember and not current.run_id:
            raise InvalidArgument.field(
                "remember", "this approval has no run_id, so there is no run to remember the answer for"
            )
        now = self._clock()
        remember_until = now + self._remember_ttl_ms if answer.remember else None
        resolved = None
        if current.pending:
            resolved = await self._store.resolve_approval(tenant, approval_id, answer, now, remember_until)
        if resolved is not None:
            metrics.record_approval_resolved(tenant, _OUTCOME[resolved.status])
            self.broadcaster.publish(resolved)
            return resolved
        current = await self.get(tenant, approval_id)  # someone else got there first, or the deadline passed
        if current.status is ApprovalStatus.EXPIRED:
            raise FailedPrecondition(
                f"approval {approval_id!r} expired at {_when(current.expires_at)} and counts as denied"
            )
        if current.status is answer.status:
            return current
        raise FailedPrecondition(f"approval {approval_id!r} is already {current.status.value}")

    async def consume(
        self, tenant: str, approval_id: str, tool_name: str, arguments: Mapping[str, Any], run_id: str
    ) -> Approval:
        """Uses an approval for one tool call, once: it must be approved, unused, for this tool and
        these arguments, and deferred or asked by ``run_id``. A refusal is FAILED_PRECONDITION
        (ApprovalNotUsable) and a line on the security log; another tenant's is NOT_FOUND."""
        digest = arguments_digest(arguments)
        consumed = await self._store.consume_approval(tenant, approval_id, tool_name, digest, run_id, self._clock())
        if consumed is not None:
            metrics.record_approval_consumed(tenant)
            return consumed
        current = await self.get(tenant, approval_id)
        refusal = _unusable(current, tool_name, digest, run_id)
        security_log.warning(
            "approval_reuse_refused",
            extra={
                "event": "approval_reuse_refused",
                "target_user_id": display_tenant(tenant),
                "approval_id": approval_id,
                "why": refusal.why,
                "tool": tool_name,
                "run_id": run_id,
                "asked_by_run": current.run_id,
                "used_by_run": current.consumed_run_id,
            },
        )
        metrics.record_approval_refused(tenant, refusal.why)
        raise refusal

    async def pending(self, tenant: str | None) -> list[Approval]:
        """Approvals still waiting for a human (of ``tenant``, or every tenant's for None)."""
        now = self._clock()
        return [a for a in await self._store.pending_approvals(tenant) if a.expires_at > now]

    async def list_approvals(self, listing: ApprovalListing, page_token: str = "") -> ApprovalPage:
        """One page of approvals for an operator's (or the tenant's) listing (see listing.py)."""
        return await list_page(self._store, listing, page_token)

    async def remembered(self, tenant: str, run_id: str, tool_name: str) -> Remembered | None:
        return await self._store.remembered(tenant, run_id, tool_name, self._clock())

    def watch(self, tenant: str | None, *, include_resolved: bool = False, replay_pending: bool = False) -> Watch:
        """Subscribes now to approvals of ``tenant`` (every tenant's for None) as they are
        created, and resolved if asked; iterating first replays the ones already pending if
        ``replay_pending``. Iteration ends when the service stops; :meth:`Watch.close` ends it early."""
        subscription = self.broadcaster.subscribe(tenant, include_resolved)
        return Watch(self, subscription, replay_pending)

    # -- expiry ------------------------------------------------------------

    async def _expire_one(self, approval: Approval) -> Approval:
        expired = await self._store.expire_due(self._clock(), approval.tenant, approval.id)
        for item in expired:
            self._announce_expired(item)
        if expired:
            return expired[0]
        fresh = await self._store.get_approval(approval.tenant, approval.id)
        return fresh if fresh is not None else approval

    def _announce_expired(self, approval: Approval) -> None:
        metrics.record_approval_resolved(approval.tenant, "expired")
        self.broadcaster.publish(approval)

    async def sweep(self) -> int:
        """Expires every pending approval past its deadline; returns how many."""
        now = self._clock()
        expired = await self._store.expire_due(now)
        for approval in expired:
            self._announce_expired(approval)
        return len(expired)

    async def _sweep_forever(self) -> None:
        rounds = 0
        while True:
            await asyncio.sleep(self._sweep_seconds)
            rounds += 1
            try:
                await self.sweep()
                if rounds % 60 == 0:
                    await self._store.purge(self._clock())
            except Exception:
                log.warning("approval expiry sweep failed; retrying", exc_info=True)

    # -- other replicas ----------------------------------------------------

    def _on_change(self, change: Change) -> None:
        if change.kind is not ChangeKind.APPROVAL or not self.broadcaster.watchers:
            return
        if change.approval is not None:
            self.broadcaster.publish(change.approval)
            return
        task = asyncio.get_running_loop().create_task(self._relay(change))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _relay(self, change: Change) -> None:
        try:
            approval = await self._store.get_approval(change.tenant, change.approval_id)
        except Exception:
            log.warning("could not read approval %s announced by another replica", change.approval_id, exc_info=True)
            return
        if approval is not None:
            self.broadcaster.publish(approval)
