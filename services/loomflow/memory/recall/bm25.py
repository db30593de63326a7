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
    query: npt.NDArray[np.uint32],
) -> npt.NDArray[np.float64]:
    """BM25 of every document against the query's distinct terms (0 where no term matched)."""
    scores = np.zeros(doc_count, dtype=np.float64)
    if doc_count == 0 or query.size == 0 or post_term.size == 0:
        return scores
    hits = np.flatnonzero(np.isin(post_term, query))
    if hits.size == 0:
        return scores
    terms = post_term[hits]
    docs = post_doc[hits]
    tf = post_tf[hits].astype(np.float64)
    _, inverse, df = np.unique(terms, return_inverse=True, return_counts=True)
    idf = np.log1p((doc_count - df + 0.5) / (df + 0.5))
    avg_len = max(float(doc_len.mean()), 1e-9)
    norm = K1 * (1.0 - B + B * doc_len[docs].astype(np.float64) / avg_len)
    contributions = idf[inverse] * tf * (K1 + 1.0) / (tf + norm)
    scores += np.bincount(docs, weights=contributions, minlength=doc_count)
    return scores
