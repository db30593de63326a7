"""Offline verification on several cores: chains split across processes by a hash of the tenant.

Chains are independent, so each worker process opens the log read-only and verifies
only the chains of its share of tenants (a file worker skips other tenants' lines
without parsing them; a Postgres worker asks the server for its share). The parts
are then combined, and chains the checkpoint signed but no part found are reported.
Used by ``loomflow audit verify --jobs`` and the benchmark; the service verifies in
one thread so that appends keep their cores.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import re
from concurrent.futures import ProcessPoolExecutor

from loomflow.audit.models import ChainReport, Checkpoint
from loomflow.audit.sink import open_sink
from loomflow.audit.verify import missing_chains

_LINE_NUMBER = re.compile(r"line (\d+):")


async def _verify_part(
    source: str, key: bytes, checkpoint: Checkpoint | None, only: str | None, part: int, parts: int
) -> tuple[list[ChainReport], list[str]]:
    sink = open_sink(source, readonly=True)
    await sink.open()
    try:
        return await sink.verify(key, checkpoint, only, part, parts)
    finally:
        await sink.close()


def _run_part(
    source: str, key: bytes, checkpoint: Checkpoint | None, part: int, parts: int
) -> tuple[list[ChainReport], list[str]]:
    return asyncio.run(_verify_part(source, key, checkpoint, None, part, parts))


def _line_order(record: str) -> int:
    match = _LINE_NUMBER.match(record)
    return int(match[1]) if match else 0


def verify_source(
    source: str, key: bytes, checkpoint: Checkpoint | None, only: str | None = None, jobs: int = 1
) -> tuple[list[ChainReport], list[str]]:
    """Verifies a log by path or DSN with ``jobs`` processes (one tenant's chain: one process)."""
    if jobs <= 1 or only is not None:
        return asyncio.run(_verify_part(source, key, checkpoint, only, 0, 1))
    # spawn, not fork: the caller may be threaded (fork would copy held locks).
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        futures = [pool.submit(_run_part, source, key, checkpoint, part, jobs) for part in range(jobs)]
        results = [f.result() for f in futures]
    reports = sorted((r for part, _ in results for r in part), key=lambda r: (r.tenant or "", r.tenant_digest))
    unreadable = sorted((u for _, part in results for u in part), key=_line_order)
    if checkpoint is not None:
        reports.extend(missing_chains(checkpoint, reports))
    return reports, unreadable
