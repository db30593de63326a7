"""Weighted reciprocal rank fusion: score(d) = sum over rankings of w / (k + rank of d), ranks from 1."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

RRF_K = 60
"""The usual constant (Cormack et al.): damps the weight of the very top ranks."""


def order(scores: npt.NDArray[np.floating[Any]], candidates: npt.NDArray[np.intp] | None) -> npt.NDArray[np.intp]:
    """Candidates by descending score, ties broken by the more recent episode (higher seq).

    Positions are in seq order (a tenant's episodes are indexed as they come), and ``candidates``
    must be ascending (None: every position); a stable sort of the reversed candidates then puts
    the later episode first among equals.
    """
    if candidates is None:  # every position: the reversed scores are a view, no gathers
        by_score: npt.NDArray[np.intp] = (len(scores) - 1) - np.argsort(-scores[::-1], kind="stable")
        return by_score
    newest_first = candidates[::-1]
    return newest_first[np.argsort(-scores[newest_first], kind="stable")]


def reciprocal_rank_fusion(
    doc_count: int,
    rankings: Sequence[npt.NDArray[np.intp]],
    weights: Sequence[float] | None = None,
    k: int = RRF_K,
) -> npt.NDArray[np.float64]:
    """Fused scores for documents 0..doc_count-1 from rankings (arrays of document indexes, best first).

    ``weights`` (one per ranking, default 1) say how much each ranking counts: a better embedder
    earns its vector ranking a larger share (tuned per embedder, see :mod:`.tuning`).
    """
    fused = np.zeros(doc_count, dtype=np.float64)
    for n, ranking in enumerate(rankings):
        weight = 1.0 if weights is None else weights[n]
        if ranking.size and weight:
            fused[ranking] += weight / _ranks_after(k, ranking.size)
    return fused


_ranks: dict[int, npt.NDArray[np.float64]] = {}


def _ranks_after(k: int, count: int) -> npt.NDArray[np.float64]:
    """``k + 1, k + 2, ..., k + count`` as floats: a read-only slice of a table grown by doubling."""
    table = _ranks.get(k)
    if table is None or len(table) < count:
        size = max(count, 2 * (0 if table is None else len(table)), 1024)
        table = _ranks[k] = k + np.arange(1, size + 1, dtype=np.float64)
        table.flags.writeable = False
    return table[:count]
