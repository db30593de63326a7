"""ForgetUser as a durable job: stored first, run step by step, retried with backoff until every service answered.

A request stores the job (idempotently: the same request id answers the same
job; no request id answers the user's pending job if there is one) and runs
one attempt before answering. A step that fails (a service down, a deadline)
stays pending with its error; the job's next attempt is due after an
exponential backoff, and a background loop on every Agent replica picks due
jobs up. A lease (``claim``) keeps two replicas from running one job at once;
a replica that dies mid-attempt leaves a lease that simply runs out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from dataclasses import dataclass, replace

from loomflow.agent.erasure.job import DONE, Job
from loomflow.agent.erasure.steps import Steps, failure
from loomflow.agent.paused import now_micros
from loomflow.agent.store import AgentStore

log = logging.getLogger("loomflow.agent.erasure")


@dataclass(frozen=True)
class EraserSettings:
    retry_s: float = 1.0
    """First retry delay of a pending erasure; doubles with each failed attempt."""
    retry_max_s: float = 60.0
    lease_s: float = 60.0
    """How long one attempt may hold a job before another replica may take it over."""


def backoff_micros(attempts: int, settings: EraserSettings) -> int:
    delay = min(settings.retry_max_s, settings.retry_s * 2 ** max(0, attempts - 1))
    return int(delay * 1_000_000)


class Eraser:
    def __init__(self, store: AgentStore, steps: Steps, settings: EraserSettings) -> None:
        self._store = store
        self._steps = steps
        self._settings = settings
        self._task: asyncio.Task[None] | None = None

    # -- requests ----------------------------------------------------------

    async def request(self, tenant: str, request_id: str, requested_by: str) -> Job:
        """Stores the erasure (or finds the one this request already made) and runs one attempt."""
        if not request_id:
            pending = await self._store.pending_erasure(tenant)
            if pending is not None:
                return await self._attempt_or_read(Job.from_row(pending))
        erasure_id = "era_" + secrets.token_hex(12)
        job = Job.new(erasure_id, tenant, request_id or erasure_id, requested_by, now_micros())
        stored = Job.from_row(await self._store.insert_erasure(job.to_row()))
        return await self._attempt_or_read(stored)

    async def get(self, tenant: str, erasure_id: str) -> Job:
        return Job.from_row(await self._store.get_erasure(tenant, erasure_id))

    async def _attempt_or_read(self, job: Job) -> Job:
        if job.state == DONE:
            return job
        attempted = await self.attempt(job.id)
        return attempted if attempted is not None else await self.get(job.tenant, job.id)

    # -- attempts ----------------------------------------------------------

    async def attempt(self, erasure_id: str) -> Job | None:
        """Runs every pending step once; None when the job is done or another replica holds it."""
        now = now_micros()
        claimed = await self._store.claim_erasure(erasure_id, now, now + int(self._settings.lease_s * 1_000_000))
        if claimed is None:
            return None
        job = Job.from_row(claimed)
        for step in job.steps:
            if step.state == DONE:
                continue
            others_done = all(s.state == DONE for s in job.steps if s.service != "audit")
            if step.service == "audit" and not others_done:
                continue  # the receipt in the audit chain needs every other service's counts
            try:
                counts = await self._run(job, step.service)
            except Exception as error:  # noqa: BLE001 - any failure leaves the step pending, to be retried
                log.warning("erasure %s: %s step failed: %s", job.id, step.service, failure(error))
                job = job.with_step(step.failed(failure(error)))
            else:
                job = job.with_step(step.succeeded(counts, now_micros()))
        if job.state == DONE:
            job = replace(job, done_at=now_micros(), next_attempt_at=0)
            log.info("erasure %s done", job.id)
        else:
            job = replace(job, next_attempt_at=now_micros() + backoff_micros(job.attempts, self._settings))
        await self._store.save_erasure(job.id, job.body(), job.state, job.next_attempt_at)
        return job

    async def _run(self, job: Job, service: str) -> dict[str, int]:
        steps, tenant = self._steps, job.tenant
        if service == "agent":
            return await steps.agent(tenant)
        if service == "memory":
            return await steps.memory(tenant)
        if service == "budget":
            return await steps.budget(tenant)
        if service == "policy":
            return await steps.policy(tenant)
        receipt = {s.service: s.counts for s in job.steps if s.service != "audit"}
        return await steps.audit(tenant, job.id, job.requested_by, receipt)

    # -- the retry loop ------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="agent-erasure-retries")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def retry_due(self) -> int:
        """Attempts every erasure whose next attempt is due; returns how many were attempted."""
        due = await self._store.due_erasures(now_micros(), 20)
        for erasure_id in due:
            await self.attempt(erasure_id)
        return len(due)

    async def _loop(self) -> None:
        interval = min(1.0, self._settings.retry_s)
        while True:
            try:
                await self.retry_due()
            except Exception:  # the store itself may be down: keep trying
                log.warning("retrying pending erasures failed; trying again", exc_info=True)
            await asyncio.sleep(interval)
