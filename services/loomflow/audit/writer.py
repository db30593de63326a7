"""Group commit: one writer task assigns seqs, links chains and makes batches durable.

Appends queue up while the previous batch is being made durable; the writer
then takes everything waiting (up to ``max_batch``) and writes it with one
fsync (file) or one transaction (Postgres). Because only this task assigns seqs
and macs, a tenant's chain never races with itself, however many appends run
concurrently. An append's future resolves only after the sink reports the
batch durable; if the write fails, every append of the batch fails and the
cached chain heads are dropped, so nothing half-written is ever built upon.

A batch mixes tenants, so one entry the sink cannot store (:class:`BadEntry`)
must not fail the others: the writer splits such a batch in halves until the bad
entries stand alone; they fail with INVALID_ARGUMENT, the rest commits (about
2·log2(batch) extra writes per bad entry). Seqs are assigned again for each part
(heads reload from the sink), so a chain never skips a seq.

Other work that must not interleave with a batch (Forget) runs through
:meth:`GroupCommitWriter.exclusive`, between batches.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from loomflow.audit import metrics
from loomflow.audit.chain import seal
from loomflow.audit.checkpoint import now_us
from loomflow.audit.crypto import Keyring, day_of
from loomflow.audit.models import EMPTY_HEAD, Appended, Batch, Draft, Entry, Head, WrappedKey
from loomflow.audit.sink import BadEntry, Conflict, Sink, SinkBroken
from loomflow.kernel.errors import InvalidArgument, ServiceError, Unavailable

log = logging.getLogger("loomflow.audit")
T = TypeVar("T")

CONFLICT_RETRIES = 5


@dataclass(slots=True)
class _Append:
    draft: Draft
    done: asyncio.Future[Appended]


@dataclass(slots=True)
class _Exclusive:
    work: Callable[[], Awaitable[Any]]
    done: asyncio.Future[Any]


class GroupCommitWriter:
    def __init__(
        self,
        sink: Sink,
        hmac_key: bytes,
        keyring: Keyring,
        keys_lock: asyncio.Lock,
        max_batch: int = 1024,
        clock: Callable[[], int] = now_us,
    ) -> None:
        self._sink = sink
        self._clock = clock
        self._key = hmac_key
        self._keyring = keyring
        self._keys_lock = keys_lock
        self._max_batch = max_batch
        self._heads: dict[str, Head] = {}
        self._queue: deque[_Append | _Exclusive] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="audit-writer")

    async def stop(self) -> None:
        """Lets everything already queued finish, then stops."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def append(self, draft: Draft) -> Appended:
        appended: Appended = await self._submit(_Append(draft, asyncio.get_running_loop().create_future()))
        return appended

    async def exclusive(self, work: Callable[[], Awaitable[T]]) -> T:
        """Runs ``work`` between batches: no append is in flight while it runs."""
        result: T = await self._submit(_Exclusive(work, asyncio.get_running_loop().create_future()))
        return result

    async def _submit(self, job: _Append | _Exclusive) -> Any:
        if self._closing or self._task is None:
            raise Unavailable("the audit log is not accepting writes (shutting down)")
        job.done.add_done_callback(_retrieve)
        self._queue.append(job)
        self._wake.set()
        return await asyncio.shield(job.done)  # a cancelled caller must not cancel the batch

    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                # One turn of the loop first: requests that arrived together get to queue up
                # and share this batch's fsync instead of each starting one of their own.
                await asyncio.sleep(0)
                continue
            first = self._queue.popleft()
            if isinstance(first, _Exclusive):
                await self._run_exclusive(first)
                continue
            batch = [first]
            while self._queue and len(batch) < self._max_batch and isinstance(self._queue[0], _Append):
                batch.append(self._queue.popleft())  # type: ignore[arg-type]  # checked just above
            await self._commit(batch)

    async def _run_exclusive(self, job: _Exclusive) -> None:
        try:
            result = await job.work()
        except Exception as exc:  # noqa: BLE001  # handed to the caller, who sees it raised
            if not job.done.done():
                job.done.set_exception(exc)
            return
        if not job.done.done():
            job.done.set_result(result)

    # -- one batch --------------------------------------------------------

    async def _commit(self, jobs: list[_Append]) -> None:
        tenants = {j.draft.tenant for j in jobs}
        with_payload = {j.draft.tenant for j in jobs if j.draft.payload}
        failure: BaseException | None = None
        for _ in range(CONFLICT_RETRIES):
            created: list[WrappedKey] = []
            try:
                await self._load(tenants, with_payload)
                batch, heads, results = self._prepare(jobs, created)
                await self._sink.write_batch(batch)
            except Conflict as conflict:
                self._forget_cached(conflict.tenants, created)
                failure = conflict
                continue
            except BadEntry as bad:
                self._forget_cached(tenants, created)
                if len(jobs) > 1:  # isolate the bad entry: the rest of the batch commits
                    middle = len(jobs) // 2
                    await self._commit(jobs[:middle])
                    await self._commit(jobs[middle:])
                    return
                failure = bad
                break
            except Exception as exc:  # noqa: BLE001  # every append of the batch fails with it (below)
                self._forget_cached(tenants, created)
                failure = exc
                break
            self._heads.update(heads)
            for job, result in zip(jobs, results, strict=True):
                if not job.done.done():
                    job.done.set_result(result)
            for entry in batch.entries:
                metrics.record_append(entry.user_id)
            return
        log.error("audit batch of %d entries failed: %s", len(jobs), failure)
        error = _client_error(failure)
        for job in jobs:
            if not job.done.done():
                job.done.set_exception(error)

    def _forget_cached(self, tenants: set[str], created: list[WrappedKey]) -> None:
        """Drops cached state the failed batch may have made stale (reloaded from the sink next time)."""
        for tenant in tenants | {k.tenant for k in created}:
            self._heads.pop(tenant, None)
            self._keyring.evict(tenant)

    async def _load(self, tenants: set[str], with_payload: set[str]) -> None:
        missing = [t for t in tenants if t not in self._heads]
        if missing:
            found = await self._sink.load_heads(missing)
            for tenant in missing:
                self._heads[tenant] = found.get(tenant, EMPTY_HEAD)
        if any(not self._keyring.known(t) for t in with_payload):
            async with self._keys_lock:
                unknown = [t for t in with_payload if not self._keyring.known(t)]
                if unknown:
                    for tenant, wrapped in (await self._sink.load_keys(unknown)).items():
                        self._keyring.install(tenant, wrapped)

    def _prepare(self, jobs: list[_Append], created: list[WrappedKey]) -> tuple[Batch, dict[str, Head], list[Appended]]:
        heads: dict[str, Head] = {}
        entries: list[Entry] = []
        results: list[Appended] = []
        key, keyring = self._key, self._keyring
        for job in jobs:
            draft = job.draft
            tenant = draft.tenant
            head = heads.get(tenant) or self._heads[tenant]
            ciphertext = b""
            ts_us = self._clock()
            if draft.payload:
                # The key of the entry's UTC day: retention shreds a whole day by destroying it.
                day = day_of(ts_us)
                if keyring.needs_key(tenant, day):
                    created.append(keyring.create(tenant, day))
                ciphertext = keyring.encrypt(tenant, draft.payload, day)
            try:
                entry = seal(
                    key,
                    seq=head.seq + 1,
                    ts_us=ts_us,
                    user_id=tenant,
                    session_id=draft.session_id,
                    run_id=draft.run_id,
                    actor=draft.actor,
                    action=draft.action,
                    payload=ciphertext,
                    decision_id=draft.decision_id,
                    prev_mac=head.mac,
                )
            except UnicodeError as exc:  # e.g. a lone surrogate: no canonical bytes, so no mac
                raise BadEntry(f"an entry cannot be encoded: {exc}") from None
            heads[tenant] = Head(entry.seq, entry.mac)
            entries.append(entry)
            results.append(Appended(entry.seq, entry.ts_us, entry.mac))
        return Batch(entries, list(created)), heads, results


def _retrieve(done: asyncio.Future[Any]) -> None:
    """Marks a failure as seen even when its caller went away (no 'never retrieved' noise)."""
    if not done.cancelled():
        done.exception()


def _client_error(failure: BaseException | None) -> ServiceError:
    if isinstance(failure, ServiceError):
        return failure
    if isinstance(failure, BadEntry):
        return InvalidArgument(f"the audit log cannot store this entry: {failure}")
    if isinstance(failure, SinkBroken):
        return Unavailable(f"the audit log cannot record entries: {failure}")
    return Unavailable("the audit log could not make the entry durable; it was not recorded, retry")
