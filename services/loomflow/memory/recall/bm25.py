"""Okapi BM25 over one tenant's postings, vectorised with numpy.

Statistics (document count, document frequencies, average length) come from the
tenant's own episodes only: another tenant's corpus never changes a score.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

K1 = 1.2
B = 0.75


def bm25_scores(
    doc_count: int,
    post_doc: npt.NDArray[np.int32],
    post_term: npt.NDArray[np.uint32],
    post_tf: npt.NDArray[np.float32],
    doc_len: npt.NDArray[np.float32],
    avg_len: float,
    query: npt.NDArray[np.uint32],
) -> npt.NDArray[np.float64]:
    """BM25 of every document against the query's distinct, sorted terms (0 where no term matched).

    The postings must be grouped by ascending term id: each query term's postings are then one
    run found by binary search, and only those are read (not every posting of the tenant).
    """
    if doc_count == 0 or query.size == 0 or post_term.size == 0:
        return np.zeros(doc_count, dtype=np.float64)
    starts = np.searchsorted(post_term, query, side="left")
    df = np.searchsorted(post_term, query, side="right") - starts
    matched = df > 0
    if not matched.any():
        return np.zeros(doc_count, dtype=np.float64)
    starts, df = starts[matched], df[matched]
    # Positions of every matched term's run, concatenated; ``term`` says which run each came from.
    term = np.repeat(np.arange(df.size), df)
    positions = np.arange(int(df.sum())) + np.repeat(starts - (np.cumsum(df) - df), df)
    docs = post_doc[positions]
    tf = post_tf[positions]
    idf = np.log1p((doc_count - df + 0.5) / (df + 0.5))
    norm = K1 * (1.0 - B + B * doc_len[docs] / max(avg_len, 1e-9))
    contributions = idf[term] * tf * (K1 + 1.0) / (tf + norm)
    # bincount with weights is float64 already (numpy's stubs type it as int): astype without a copy.
    return np.bincount(docs, weights=contributions, minlength=doc_count).astype(np.float64, copy=False)
