"""One tenant's recall index: postings for BM25 and a matrix of embeddings.

An index holds exactly one tenant's episodes, so a search costs what that
tenant has stored and nothing else: no global collection is ever filtered by
user. It only grows (episodes arrive in ``seq`` order); a Forget makes the
owner rebuild it from what is left.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from loomflow.memory.recall.bm25 import bm25_scores, posting_weights
from loomflow.memory.recall.embedding import Embedder, Vector
from loomflow.memory.recall.fusion import order, reciprocal_rank_fusion
from loomflow.memory.recall.text import query_terms, term_counts


@dataclass(frozen=True, slots=True)
class IndexedDoc:
    """What the index needs of an episode.

    ``embedding``: as stored (any float dtype), made by the store's current embedder; None when the
    episode has no vector of that embedder (stored by another one and not re-embedded yet): it then
    takes no part in the vector ranking, and is found by BM25 alone.
    """

    seq: int
    session_id: str
    text: str
    embedding: npt.NDArray[Any] | None = None


@dataclass(frozen=True, slots=True)
class PreparedQuery:
    terms: tuple[int, ...]
    """Distinct term ids, ascending (:func:`~loomflow.memory.recall.text.query_terms`)."""
    vector: Vector


async def prepare(text: str, embedder: Embedder) -> PreparedQuery:
    return PreparedQuery(terms=query_terms(text), vector=(await embedder.embed_texts([text]))[0])


@dataclass(frozen=True, slots=True)
class ScoredDoc:
    seq: int
    score: float
    lexical: float
    vector: float | None
    """None when this episode has no vector of the query's embedder here: an external index did not
    return it, or its stored vector is another embedder's."""


class _Column:
    """A numpy array that grows by half its size, so appending one episode is amortised O(1).

    It starts empty and first grows to exactly what is appended: most tenants hold a few episodes,
    and a head start of 8 rows made every tenant's index ~10 KB (8 rows of 256 float32s) whatever
    it held (bench/race at 4,000 tenants of 3 episodes: a third of the suite's RSS per tenant).
    """

    __slots__ = ("_data", "_shape_tail", "size")

    def __init__(self, dtype: npt.DTypeLike, width: int = 0) -> None:
        self._shape_tail: tuple[int, ...] = (width,) if width else ()
        self._data: npt.NDArray[Any] = np.empty((0, *self._shape_tail), dtype=dtype)
        self.size = 0

    def extend(self, values: npt.NDArray[Any]) -> None:
        needed = self.size + len(values)
        if needed > len(self._data):
            capacity = max(needed, len(self._data) * 3 // 2)  # x1.5: a third spare at most, amortised O(1) still
            grown = np.empty((capacity, *self._shape_tail), dtype=self._data.dtype)
            grown[: self.size] = self._data[: self.size]
            self._data = grown
        self._data[self.size : needed] = values
        self.size = needed

    @property
    def view(self) -> npt.NDArray[Any]:
        return self._data[: self.size]

    @property
    def nbytes(self) -> int:
        return int(self._data.nbytes)


class TenantIndex:
    """Recall index of one tenant. ``dim`` 0: no embeddings kept (an external vector index ranks)."""

    def __init__(self, dim: int) -> None:
        self._dim = dim
        self._seqs = _Column(np.int64)
        self._sessions = _Column(np.int32)
        self._session_codes: dict[str, int] = {}
        self._doc_len = _Column(np.float32)
        self._post_doc = _Column(np.int32)
        self._post_term = _Column(np.uint32)
        self._post_tf = _Column(np.float32)
        self._lexicon: _Lexicon | None = _Lexicon.empty()
        """BM25's view of the postings, rebuilt on the first search after appends (None: stale)."""
        # float32, not the float16 they are stored as: converting a tenant's matrix on every recall
        # cost more than the whole rest of the search.
        self._vectors = _Column(np.float32, width=dim) if dim else None
        self._has_vector = _Column(np.bool_)
        self._without_vector = 0
        self._total_len = 0.0

    @property
    def size(self) -> int:
        return self._seqs.size

    @property
    def max_seq(self) -> int:
        return int(self._seqs.view[-1]) if self._seqs.size else 0

    @property
    def nbytes(self) -> int:
        columns = [self._seqs, self._sessions, self._doc_len, self._post_doc, self._post_term, self._post_tf]
        if self._vectors is not None:
            columns += [self._vectors, self._has_vector]
        lexicon = 0 if self._lexicon is None else self._lexicon.nbytes
        return sum(c.nbytes for c in columns) + 100 * len(self._session_codes) + lexicon

    def add(self, docs: Iterable[IndexedDoc]) -> int:
        """Appends episodes in ascending ``seq``; ones already indexed are skipped. Returns how many were added."""
        added = 0
        for doc in docs:
            if doc.seq <= self.max_seq:
                continue
            terms, tfs, length = term_counts(doc.text)
            position = self.size
            self._seqs.extend(np.asarray([doc.seq], dtype=np.int64))
            code = self._session_codes.setdefault(doc.session_id, len(self._session_codes))
            self._sessions.extend(np.asarray([code], dtype=np.int32))
            self._doc_len.extend(np.asarray([length], dtype=np.float32))
            self._total_len += length
            self._post_doc.extend(np.full(len(terms), position, dtype=np.int32))
            self._post_term.extend(terms)
            self._post_tf.extend(tfs)
            self._lexicon = None  # the new postings, and the average length, change every weight
            if self._vectors is not None:
                known = doc.embedding is not None and doc.embedding.shape[-1] == self._dim
                vector = doc.embedding if known else None
                self._vectors.extend(np.zeros((1, self._dim)) if vector is None else vector.reshape(1, -1))
                self._has_vector.extend(np.asarray([known]))
                self._without_vector += not known
            added += 1
        return added

    def session_seqs(self, session_id: str, before_seq: int | None, limit: int) -> list[int]:
        """The seqs of one session's newest ``limit`` episodes below ``before_seq``, newest first."""
        code = self._session_codes.get(session_id)
        if code is None or limit <= 0:
            return []
        seqs = self._seqs.view[self._sessions.view == code]  # ascending: episodes are added in seq order
        if before_seq is not None:
            seqs = seqs[: int(np.searchsorted(seqs, before_seq))]
        return [int(s) for s in seqs[-limit:][::-1]]

    def _current_lexicon(self) -> _Lexicon:
        """BM25's view of the postings: once after each batch of appends, not per search."""
        if self._lexicon is None:
            by_term = np.argsort(self._post_term.view, kind="stable")  # grouped by term, appends are not
            for column in (self._post_doc, self._post_term, self._post_tf):
                column.view[:] = column.view[by_term]
            self._lexicon = _Lexicon.build(
                self._post_term.view, self._post_doc.view, self._post_tf.view, self._doc_len.view, self._total_len
            )
        return self._lexicon

    def search(
        self,
        query: PreparedQuery,
        limit: int,
        session_id: str | None = None,
        min_score: float = 0.0,
        nearest: Mapping[int, float] | None = None,
        weights: tuple[float, float] = (1.0, 1.0),
        exclude_session_id: str | None = None,
    ) -> list[ScoredDoc]:
        """The best ``limit`` episodes by fused rank.

        The vector ranking is an exact cosine scan of this tenant's embeddings,
        or, when ``nearest`` is given (seq -> cosine from an external vector
        index such as Chroma or pgvector), those candidates in cosine order.
        ``weights``: (lexical, vector) weights of the fusion.
        """
        count = self.size
        if count == 0 or limit <= 0:
            return []
        seqs = self._seqs.view
        candidates: npt.NDArray[np.intp] | None = None  # every episode: the common case, without gathers
        if session_id is not None:
            code = self._session_codes.get(session_id)
            if code is None:
                return []
            candidates = np.flatnonzero(self._sessions.view == code)
        excluded = None if exclude_session_id is None else self._session_codes.get(exclude_session_id)
        if excluded is not None:
            sessions = self._sessions.view
            if candidates is None:
                candidates = np.flatnonzero(sessions != excluded)
            else:
                candidates = candidates[sessions[candidates] != excluded]
        if candidates is not None and not len(candidates):
            return []
        lexicon = self._current_lexicon()
        lexical = bm25_scores(count, lexicon.spans, lexicon.post_doc, lexicon.weights, query.terms)
        if nearest is None:
            if self._vectors is None:
                raise ValueError("this index keeps no embeddings: pass the external nearest neighbours")
            cosine = self._vectors.view @ query.vector
            vector_known = self._has_vector.view
            ranked = candidates
            if self._without_vector:
                ranked = np.flatnonzero(vector_known) if candidates is None else candidates[vector_known[candidates]]
            vector_ranking = order(cosine, ranked)  # float32: the same order as its exact float64 widening
        else:
            cosine = np.zeros(count, dtype=np.float32)
            vector_known = np.zeros(count, dtype=bool)
            positions = np.searchsorted(seqs, np.fromiter(nearest.keys(), dtype=np.int64, count=len(nearest)))
            for position, (seq, similarity) in zip(positions, nearest.items(), strict=True):
                if position < count and seqs[position] == seq:
                    cosine[position] = similarity
                    vector_known[position] = True
            if candidates is not None:
                in_session = np.zeros(count, dtype=bool)
                in_session[candidates] = True
                vector_known &= in_session
            vector_ranking = order(cosine, np.flatnonzero(vector_known))
        matched = np.flatnonzero(lexical > 0) if candidates is None else candidates[lexical[candidates] > 0]
        lexical_ranking = order(lexical, matched)
        fused = reciprocal_rank_fusion(count, [lexical_ranking, vector_ranking], weights)
        top = order(fused, candidates)[:limit]
        results: list[ScoredDoc] = []
        # Python numbers for the few answered, five gathers: not five numpy scalar reads per hit (24 -> 19 us)
        columns = (seqs[top], fused[top], lexical[top], cosine[top], vector_known[top])
        for seq, score, lexical_score, similarity, known in zip(*(c.tolist() for c in columns), strict=True):
            if score < min_score or score == 0.0:
                break  # best first: the rest score no higher
            results.append(ScoredDoc(seq, score, lexical_score, similarity if known else None))
        return results


@dataclass(frozen=True, slots=True)
class _Lexicon:
    """The postings as BM25 reads them: grouped by term, each with its precomputed weight."""

    spans: dict[int, tuple[int, int]]
    """term id -> [start, end) of its postings."""
    post_doc: npt.NDArray[np.int32]
    weights: npt.NDArray[np.float64]

    @staticmethod
    def empty() -> _Lexicon:
        return _Lexicon({}, np.empty(0, dtype=np.int32), np.empty(0, dtype=np.float64))

    @staticmethod
    def build(
        post_term: npt.NDArray[np.uint32],
        post_doc: npt.NDArray[np.int32],
        post_tf: npt.NDArray[np.float32],
        doc_len: npt.NDArray[np.float32],
        total_len: float,
    ) -> _Lexicon:
        """From postings already grouped by ascending term id."""
        if not post_term.size:
            return _Lexicon.empty()
        terms, starts, counts = np.unique(post_term, return_index=True, return_counts=True)
        ends = starts + counts
        spans = dict(zip(terms.tolist(), zip(starts.tolist(), ends.tolist(), strict=True), strict=True))
        weights = posting_weights(post_tf, doc_len[post_doc], total_len / max(len(doc_len), 1))
        return _Lexicon(spans, post_doc, weights)  # views: appends replace the lexicon, never touch it

    @property
    def nbytes(self) -> int:
        return int(self.post_doc.nbytes + self.weights.nbytes) + 120 * len(self.spans)
