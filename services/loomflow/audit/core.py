"""The audit log: chains, group commit, encryption, checkpoints and verification over one sink.

This is the domain the servicer talks to; it knows nothing of gRPC. A tenant is
a partition key (:func:`loomflow.kernel.tenancy.tenant_key`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterable

from loomflow.audit import metrics
from loomflow.audit.chain import key_fingerprint, tenant_digest
from loomflow.audit.checkpoint import Checkpointer, now_us, same_heads, sign, signature_problem
from loomflow.audit.crypto import Keyring, MasterKeyMismatch, day_of
from loomflow.audit.keys import AuditKeys
from loomflow.audit.models import Appended, Checkpoint, Draft, LogReport, QueryFilter, ReadEntry
from loomflow.audit.sink import Sink
from loomflow.audit.writer import GroupCommitWriter
from loomflow.kernel.config import ConfigError
from loomflow.kernel.errors import FailedPrecondition

log = logging.getLogger("loomflow.audit")

FORMAT_VERSION = "1"
EXPORT_PAGE = 500
FORGET_ACTION = "audit.forget"


class AuditLog:
    def __init__(
        self,
        sink: Sink,
        keys: AuditKeys,
        *,
        max_batch: int = 1024,
        checkpoint_interval: float = 60.0,
        clock: Callable[[], int] = now_us,
    ) -> None:
        self.sink = sink
        self.keys = keys
        self._keyring = Keyring(keys.payload_key)
        self._keys_lock = asyncio.Lock()
        self._writer = GroupCommitWriter(sink, keys.hmac_key, self._keyring, self._keys_lock, max_batch, clock)
        self._checkpointer = Checkpointer(checkpoint_interval, self._checkpoint_if_changed)
        self._checkpoint_lock = asyncio.Lock()
        self._signing_blocked = ""
        """Why no new checkpoint may be signed (the log disagrees with the last one), if so."""

    # -- lifecycle --------------------------------------------------------

    async def start(self) -> None:
        await self.sink.open()
        try:
            await self._check_key_fingerprints()
            await self._check_against_latest_checkpoint()
        except BaseException:
            await self.sink.close()
            raise
        self._writer.start()
        self._checkpointer.start()

    async def stop(self) -> None:
        """Finishes queued appends, signs a last checkpoint if a head moved, closes the sink."""
        await self._writer.stop()
        await self._checkpointer.stop()
        try:
            await self._checkpoint_if_changed()
        except Exception:  # the log itself is durable; a missing last checkpoint is not fatal
            log.exception("final audit checkpoint failed")
        await self.sink.close()

    async def _check_key_fingerprints(self) -> None:
        wanted = {
            "format": FORMAT_VERSION,
            "hmac_key_fingerprint": key_fingerprint(self.keys.hmac_key),
            "payload_key_fingerprint": key_fingerprint(self.keys.payload_key),
        }
        stored = await self.sink.init_meta(wanted)
        for name, variable in (("hmac_key", "LOOMFLOW_AUDIT_HMAC_KEY"), ("payload_key", "LOOMFLOW_AUDIT_PAYLOAD_KEY")):
            field = f"{name}_fingerprint"
            if stored.get(field, wanted[field]) != wanted[field]:
                raise ConfigError(
                    f"{variable} is not the key the audit log at {self.sink.description} was written with "
                    f"(key fingerprint {wanted[field]}, the log expects {stored[field]})"
                )

    async def _check_against_latest_checkpoint(self) -> None:
        """Refuses to sign new checkpoints if the log no longer reaches the last signed heads:
        signing would legitimise a truncation. Appends and reads keep working."""
        latest = await self.sink.latest_checkpoint()
        if latest is None:
            return
        problem = signature_problem(latest, trusted=None)
        if not problem:
            by_digest = {tenant_digest(self.keys.hmac_key, t): t for t in await self.sink.all_heads()}
            signed = {(by_digest.get(h.tenant_digest, ""), h.seq): h.mac for h in latest.heads}
            stored = await self.sink.macs_at(list(signed))
            if any(stored.get(at) != mac for at, mac in signed.items()):
                problem = f"the log no longer holds every head checkpoint {latest.checkpoint_id} signed"
        if problem:
            self._signing_blocked = f"{problem}; run Verify, restore the log, then restart"
            log.critical("audit log %s: %s", self.sink.description, self._signing_blocked)

    # -- the operations ----------------------------------------------------

    async def append(self, draft: Draft) -> Appended:
        return await self._writer.append(draft)

    async def _load_keys(self, tenants: Iterable[str], reload: bool = False) -> None:
        """Caches the tenants' data keys (again, when ``reload``) from the sink."""
        wanted = {t for t in tenants if reload or not self._keyring.known(t)}
        if not wanted:
            return
        async with self._keys_lock:
            if not reload:
                wanted = {t for t in wanted if not self._keyring.known(t)}
            if wanted:
                try:
                    for tenant, wrapped in (await self.sink.load_keys(wanted)).items():
                        self._keyring.install(tenant, wrapped)
                except MasterKeyMismatch as exc:
                    raise FailedPrecondition(str(exc)) from None

    async def query(self, query: QueryFilter) -> list[ReadEntry]:
        entries = await self.sink.read(query)
        await self._load_keys(e.user_id for e in entries if e.payload)
        # A key this process has not seen (another process made it) is loaded once more.
        stale = {e.user_id for e in entries if e.payload and self._keyring.lacks_key(e.user_id, e.payload)}
        if stale:
            await self._load_keys(stale, reload=True)
        result: list[ReadEntry] = []
        for entry in entries:
            plaintext = self._keyring.decrypt(entry.user_id, entry.payload)
            result.append(ReadEntry(entry, plaintext or b"", shredded=plaintext is None))
        return result

    async def export(self, tenant: str) -> AsyncIterator[ReadEntry]:
        """Every entry of the tenant's chain in seq order, payloads decrypted."""
        after = 0
        while True:
            page = await self.query(QueryFilter(tenant, after_seq=after, limit=EXPORT_PAGE))
            for item in page:
                yield item
            if len(page) < EXPORT_PAGE:
                return
            after = page[-1].entry.seq

    async def tenants(self, after: str = "") -> list[str]:
        """Every tenant with a chain, sorted, after ``after`` (operator reports)."""
        return sorted(t for t in await self.sink.all_heads() if t > after)

    async def verify(self, tenant: str | None) -> LogReport:
        """One tenant's chain (or every chain) against the latest checkpoint this service signed."""
        latest = await self.sink.latest_checkpoint()
        checkpoint_error = signature_problem(latest, trusted=self.keys.public_key) if latest is not None else ""
        checkpoint = latest if latest is not None and not checkpoint_error else None
        reports, unreadable = await self.sink.verify(self.keys.hmac_key, checkpoint, tenant)
        for report in reports:
            if not report.ok:
                metrics.record_verify_failure(report.tenant or report.tenant_digest[:16])
        return LogReport(
            chains=reports,
            checkpoint_id=latest.checkpoint_id if latest is not None else "",
            checkpoint_error=checkpoint_error,
            unreadable=unreadable,
        )

    async def forget(self, tenant: str, actor: str) -> int:
        """Destroys the tenant's data keys, then records that it did (an entry without payload)."""

        async def shred() -> int:
            async with self._keys_lock:
                count = await self.sink.destroy_keys(tenant)
                self._keyring.forget(tenant)
            return count

        shredded = await self._writer.exclusive(shred)
        await self.append(Draft(tenant, actor=actor, action=FORGET_ACTION))
        return shredded

    async def tenants_with_payloads_before(self, cutoff_us: int, after: str, limit: int) -> list[str]:
        """Tenants holding payload keys of UTC days that ended by ``cutoff_us`` (retention)."""
        return await self.sink.tenants_with_keys_before(day_of(cutoff_us), after, limit)

    async def shred_payloads_before(self, tenant: str, cutoff_us: int, limit: int) -> int:
        """Retention: destroys (at most ``limit`` of) the tenant's day keys of UTC days that ended by
        ``cutoff_us``, so their payloads read as shredded; the entries and chain stay. A payload thus
        becomes unreadable at most one day after its retention ends. Returns the keys destroyed."""

        async def shred() -> int:
            async with self._keys_lock:
                destroyed = await self.sink.destroy_keys_before(tenant, day_of(cutoff_us), limit)
                self._keyring.evict(tenant)  # reloaded without the destroyed keys
            return destroyed

        destroyed: int = await self._writer.exclusive(shred)
        return destroyed

    # -- checkpoints --------------------------------------------------------

    async def checkpoint(self, create: bool) -> Checkpoint:
        """The latest checkpoint, or a new one when ``create`` (or when none exists)."""
        async with self._checkpoint_lock:
            if not create:
                latest = await self.sink.latest_checkpoint()
                if latest is not None:
                    return latest
            return await self._sign()

    async def _sign(self) -> Checkpoint:
        if self._signing_blocked:
            raise FailedPrecondition(f"checkpoint signing is suspended: {self._signing_blocked}")
        heads = await self.sink.all_heads()
        # Off the event loop: with many tenants, digesting and signing every head takes a while.
        checkpoint = await asyncio.to_thread(sign, self.keys.hmac_key, self.keys.signing_key, heads, now_us())
        await self.sink.save_checkpoint(checkpoint)
        return checkpoint

    async def _checkpoint_if_changed(self) -> Checkpoint | None:
        if self._signing_blocked:
            return None
        async with self._checkpoint_lock:
            latest = await self.sink.latest_checkpoint()
            heads = await self.sink.all_heads()
            unchanged = await asyncio.to_thread(same_heads, latest, heads, self.keys.hmac_key)
            if unchanged and (latest is None or latest.public_key == self.keys.public_key):
                return None
            return await self._sign()
