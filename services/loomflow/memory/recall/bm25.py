"""Okapi BM25 over one tenant's postings.

Statistics (document count, document frequencies, average length) come from the
tenant's own episodes only: another tenant's corpus never changes a score.

A search reads only the postings of the query's terms. Everything in the formula
but the IDF depends on the tenant's episodes alone, so each posting's weight
``tf·(K1+1) / (tf + K1·(1-B+B·len/avg))`` is computed once after a batch of
appends (:func:`posting_weights`); a search then costs, per query term, one
dictionary lookup and an IDF, then one weighted count of the matched postings.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import cast

import numpy as np
import numpy.typing as npt

K1 = 1.2
B = 0.75


def posting_weights(
    post_tf: npt.NDArray[np.float32], post_doc_len: npt.NDArray[np.float32], avg_len: float
) -> npt.NDArray[np.float64]:
    """Each posting's term-frequency part of BM25 (the IDF is applied at search time)."""
    tf = post_tf.astype(np.float64)
    norm = K1 * (1.0 - B + B * post_doc_len.astype(np.float64) / max(avg_len, 1e-9))
    weights: npt.NDArray[np.float64] = tf * (K1 + 1.0) / (tf + norm)
    return weights


def idf(doc_count: int, df: int) -> float:
    return math.log1p((doc_count - df + 0.5) / (df + 0.5))


def bm25_scores(
    doc_count: int,
    spans: Mapping[int, tuple[int, int]],
    post_doc: npt.NDArray[np.int32],
    weights: npt.NDArray[np.float64],
    query: Iterable[int],
) -> npt.NDArray[np.float64]:
    """BM25 of every document against the query's distinct terms (0 where no term matched).

    ``spans``: term id -> [start, end) of its postings in ``post_doc``/``weights`` (grouped by term;
    a document appears at most once per term). The matched terms' postings are gathered and summed
    per document by one ``bincount``, in query-term order like a term-by-term scatter-add, so the
    scores are the same bit for bit; one call instead of three array operations per term
    (bm25_scores 48 -> 28 us per Recall at 100 episodes, 4.5 matched terms, on this VM).
    """
    matched = [span for span in map(spans.get, query) if span is not None]
    if not matched:
        return np.zeros(doc_count, dtype=np.float64)
    docs = np.concatenate([post_doc[start:end] for start, end in matched])
    scaled = np.concatenate([idf(doc_count, end - start) * weights[start:end] for start, end in matched])
    # float64 with weights (numpy's stubs type every bincount as integers)
    return cast("npt.NDArray[np.float64]", np.bincount(docs, weights=scaled, minlength=doc_count))
