"""Re-embedding stored episodes with the configured embedder, online and resumably (``loomflow memory reembed``).

Each backend rewrites, page by page, the vectors that another embedder made
(:func:`rewrite_stale` for the stores that keep one tagged vector per episode;
Chroma moves a tenant's collection). Each page commits on its own and bumps the
tenant's epoch, so serving processes reload the new vectors on their next
Recall; until then the old ones are only never compared with the new embedder's
queries (BM25 still finds those episodes). The position reached, (tenant, seq),
is written to a progress file after every page: a rerun with the same file
continues from there, and a page done twice finds nothing stale.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from loomflow.memory.recall.embedding import Embedder, Vector

PAGE = 256
TENANT_PAGE = 1000


class VectorRewriter(Protocol):
    async def stale_episodes(self, tenant: str, after_seq: int, limit: int) -> tuple[list[tuple[int, str]], int]:
        """(seq, text) of episodes after ``after_seq`` (``limit`` scanned) whose vector is another embedder's,
        and the last seq scanned (-1: the tenant has no more)."""
        ...

    async def store_vectors(self, tenant: str, vectors: Sequence[tuple[int, Vector]]) -> None:
        """Replaces these episodes' vectors (skipping ones deleted meanwhile) and bumps the tenant's epoch."""
        ...


@runtime_checkable
class Reembeddable(Protocol):
    async def tenants_after(self, after: str, limit: int) -> list[str]:
        """Tenant keys greater than ``after``, ascending, at most ``limit``."""
        ...

    async def reembed_page(self, tenant: str, after_seq: int, limit: int) -> tuple[int, int]:
        """Re-embeds one page of the tenant: (episodes re-embedded, seq to continue after; -1 when done)."""
        ...


async def rewrite_stale(
    store: VectorRewriter, embedder: Embedder, tenant: str, after_seq: int, limit: int
) -> tuple[int, int]:
    stale, next_seq = await store.stale_episodes(tenant, after_seq, limit)
    if stale:
        vectors = await embedder.embed_texts([text for _, text in stale])
        await store.store_vectors(tenant, [(seq, vectors[n]) for n, (seq, _) in enumerate(stale)])
    return len(stale), next_seq


@dataclass
class Progress:
    embedder: str
    tenant: str = ""
    """The tenant being re-embedded ("" before the first)."""
    after_seq: int = 0
    tenant_done: bool = False
    tenants: int = 0
    episodes: int = 0
    finished: bool = False

    @staticmethod
    def load(path: Path, embedder: str) -> Progress:
        """The saved position for this embedder (a file of another embedder's run starts over)."""
        try:
            saved = json.loads(path.read_text())
        except FileNotFoundError:
            return Progress(embedder)
        return Progress(**saved) if saved.get("embedder") == embedder else Progress(embedder)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        scratch = path.with_suffix(path.suffix + ".tmp")
        scratch.write_text(json.dumps(asdict(self)))
        os.replace(scratch, path)  # atomic: a crash leaves the old position or the new one


async def reembed(
    store: Reembeddable,
    embedder: Embedder,
    progress_file: Path,
    tenant: str | None = None,
    page: int = PAGE,
    report: Callable[[Progress], None] = lambda _: None,
) -> Progress:
    """Re-embeds one tenant, or every tenant in key order, resuming from ``progress_file``."""
    progress = Progress.load(progress_file, embedder.name)
    if tenant is not None:
        progress = progress if progress.tenant == tenant else Progress(embedder.name, tenant)
        await _one_tenant(store, progress, progress_file, page, report)
    else:
        while True:
            if progress.tenant and not progress.tenant_done:
                await _one_tenant(store, progress, progress_file, page, report)
            upcoming = await store.tenants_after(progress.tenant, TENANT_PAGE)
            if not upcoming:
                break
            for name in upcoming:
                progress.tenant, progress.after_seq, progress.tenant_done = name, 0, False
                await _one_tenant(store, progress, progress_file, page, report)
    progress.finished = True
    progress.save(progress_file)
    report(progress)
    return progress


async def _one_tenant(
    store: Reembeddable, progress: Progress, progress_file: Path, page: int, report: Callable[[Progress], None]
) -> None:
    while not progress.tenant_done:
        count, next_seq = await store.reembed_page(progress.tenant, progress.after_seq, page)
        progress.episodes += count
        if next_seq < 0:
            progress.tenant_done = True
            progress.tenants += 1
        else:
            progress.after_seq = next_seq
        progress.save(progress_file)
        report(progress)
