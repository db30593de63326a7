"""Which policy applies to a tenant, answered from memory on the hot path.

Routing is ``PerUserPermissions(policies, default)``'s: a tenant with a policy
of its own gets it, every other tenant gets the default. The book keeps
compiled policies in a bounded LRU (including "this tenant has none", the
common case), so a Check costs no I/O once a tenant is warm.

Staying fresh across processes: this process's ``PutPolicy`` updates the cache
at once; changes made elsewhere arrive by a store notification (Postgres
LISTEN/NOTIFY) when the backend has one, and in any case by polling the
store's change feed every ``refresh_seconds`` (policy versions only grow).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections import OrderedDict
from collections.abc import Mapping

from loomflow.policy.engine import CompiledPolicy, compile_policy
from loomflow.policy.models import BUILT_IN_DEFAULT, DEFAULT_POLICY_KEY, ForgetReceipt, Policy, TenantExport
from loomflow.policy.store import Change, ChangeKind, PolicyStore

log = logging.getLogger("loomflow.policy")

_ABSENT = object()


class PolicyBook:
    def __init__(self, store: PolicyStore, max_cached: int = 100_000, refresh_seconds: float = 1.0) -> None:
        self._store = store
        self._max_cached = max(1, max_cached)
        self._refresh_seconds = refresh_seconds
        # tenant key → its own compiled policy, or None when the default applies
        self._cache: OrderedDict[str, CompiledPolicy | None] = OrderedDict()
        self._default = compile_policy(BUILT_IN_DEFAULT)
        self._epoch = 0  # bumped by every invalidation, so a load that raced one is not cached
        self._seen_version = 0
        self._poller: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._seen_version = await self._store.policy_version()
        await self._load_default()
        self._store.on_change(self._on_change)
        if self._refresh_seconds > 0:
            self._poller = asyncio.create_task(self._poll(), name="policy-refresh")

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None

    # -- reads -------------------------------------------------------------

    def cached(self, tenant: str) -> CompiledPolicy | None:
        """The policy that applies to ``tenant`` if it is cached (the hot path), else None."""
        entry = self._cache.get(tenant, _ABSENT)
        if entry is _ABSENT:
            return None
        self._cache.move_to_end(tenant)
        return self._default if entry is None else entry  # type: ignore[return-value]

    async def applicable(self, tenant: str) -> tuple[CompiledPolicy, bool]:
        """The policy that applies to ``tenant`` and whether it is the default."""
        entry = self._cache.get(tenant, _ABSENT)
        if entry is _ABSENT:
            epoch = self._epoch
            stored = await self._store.get_policy(tenant)
            entry = None if stored is None else compile_policy(stored)
            if epoch == self._epoch:
                self._remember(tenant, entry)
        else:
            self._cache.move_to_end(tenant)
        if entry is None:
            return self._default, True
        return entry, False  # type: ignore[return-value]

    def default(self) -> CompiledPolicy:
        return self._default

    # -- writes ------------------------------------------------------------

    async def put(self, key: str, policy: Policy) -> Policy:
        """Stores ``policy`` for a tenant key or DEFAULT_POLICY_KEY; returns it with its version."""
        stored = await self._store.put_policy(key, policy)
        self._invalidate(key)
        compiled = compile_policy(stored)
        if key == DEFAULT_POLICY_KEY:
            if self._default.policy.version <= stored.version:  # a refresh may already hold a newer one
                self._default = compiled
        else:
            self._remember(key, compiled)
        return stored

    async def forget(self, tenant: str, at_ms: int) -> ForgetReceipt:
        """Erases the tenant's Policy data (see PolicyStore.forget) and drops it from this cache now;
        other replicas drop it on the store's notification or their next poll of the change feed."""
        receipt = await self._store.forget(tenant, at_ms)
        self._invalidate(tenant)
        return receipt

    async def export(self, tenant: str) -> TenantExport:
        return await self._store.export(tenant)

    async def apply_file(self, policies: Mapping[str, Policy]) -> list[str]:
        """Writes the policies a file declares, skipping those already stored as is; returns the keys written."""
        written = []
        for key, policy in policies.items():
            stored = await self._store.get_policy(key)
            if stored is not None and dataclasses.replace(stored, version=0) == dataclasses.replace(policy, version=0):
                continue
            await self.put(key, policy)
            written.append(key)
        return written

    # -- freshness ---------------------------------------------------------

    def _remember(self, tenant: str, entry: CompiledPolicy | None) -> None:
        self._cache[tenant] = entry
        self._cache.move_to_end(tenant)
        while len(self._cache) > self._max_cached:
            self._cache.popitem(last=False)

    def _invalidate(self, key: str) -> None:
        self._epoch += 1
        self._cache.pop(key, None)

    async def _load_default(self) -> None:
        stored = await self._store.get_policy(DEFAULT_POLICY_KEY)
        self._default = compile_policy(stored if stored is not None else BUILT_IN_DEFAULT)

    def _on_change(self, change: Change) -> None:
        if change.kind is not ChangeKind.POLICY:
            return
        self._invalidate(change.tenant)
        if change.tenant == DEFAULT_POLICY_KEY:
            asyncio.get_running_loop().create_task(self._refresh_logged())

    async def _refresh_logged(self) -> None:
        try:
            await self.refresh()
        except Exception:
            log.warning("policy refresh failed; the next poll retries", exc_info=True)

    async def refresh(self) -> int:
        """Applies policy changes made by other processes; returns how many were seen."""
        changes = await self._store.policy_changes(self._seen_version)
        if not changes:
            return 0
        for key, _ in changes:
            self._invalidate(key)
        if any(key == DEFAULT_POLICY_KEY and v > self._default.policy.version for key, v in changes):
            await self._load_default()
        # Only now: a failed default reload above leaves these changes to the next poll.
        self._seen_version = max(self._seen_version, changes[-1][1])
        return len(changes)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_seconds)
            await self._refresh_logged()
