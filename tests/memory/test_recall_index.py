"""A tenant's recall index scores BM25 exactly like the textbook formula, however it was built.

The index keeps its postings grouped by term and re-groups them after appends; a naive
reference scores every document from its tokens. Hypothesis builds indexes in several
batches with searches in between (so searches meet freshly appended, ungrouped postings)
and every lexical score must match the reference.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loomflow.memory.models import EpisodeDraft, RecallQuery, now_micros
from loomflow.memory.recall.bm25 import K1, B
from loomflow.memory.recall.cache import IndexCache
from loomflow.memory.recall.embedding import HashingEmbedder
from loomflow.memory.recall.index import IndexedDoc, PreparedQuery, TenantIndex
from loomflow.memory.recall.text import query_terms, tokens
from loomflow.memory.store.sqlite import SQLiteStore

VOCABULARY = ["amber", "birch", "cedar", "delta", "ember", "fjord", "glade", "heron", "iris", "juniper"]
EMBEDDER = HashingEmbedder()

texts = st.lists(st.sampled_from(VOCABULARY), min_size=1, max_size=12).map(" ".join)


def reference_bm25(documents: list[str], query: str) -> list[float]:
    bags = [Counter(tokens(text)) for text in documents]
    lengths = [sum(bag.values()) for bag in bags]
    average = sum(lengths) / len(documents)
    scores = []
    for bag, length in zip(bags, lengths, strict=True):
        score = 0.0
        for term in set(tokens(query)):
            df = sum(1 for other in bags if term in other)
            if term in bag:
                idf = math.log1p((len(documents) - df + 0.5) / (df + 0.5))
                tf = bag[term]
                score += idf * tf * (K1 + 1) / (tf + K1 * (1 - B + B * length / average))
        scores.append(score)
    return scores


def doc(seq: int, text: str) -> IndexedDoc:
    return IndexedDoc(seq, "", text, EMBEDDER.embed(text))


def lexical_scores(index: TenantIndex, query: str) -> list[float]:
    prepared = PreparedQuery(terms=query_terms(query), vector=EMBEDDER.embed(query))
    found = index.search(prepared, limit=index.size)
    by_seq = {doc.seq: doc.lexical for doc in found}
    assert len(by_seq) == index.size  # every episode has a vector score, so every one is returned
    return [by_seq[seq] for seq in range(1, index.size + 1)]


@settings(max_examples=150, deadline=None)
@given(
    batches=st.lists(st.lists(texts, min_size=1, max_size=6), min_size=1, max_size=4),
    queries=st.lists(texts, min_size=1, max_size=3),
)
def test_bm25_matches_the_reference_after_every_batch_of_appends(batches: list[list[str]], queries: list[str]) -> None:
    index = TenantIndex(EMBEDDER.dim)
    documents: list[str] = []
    for batch in batches:
        index.add([doc(len(documents) + i + 1, text) for i, text in enumerate(batch)])
        documents.extend(batch)
        for query in queries:
            assert lexical_scores(index, query) == pytest.approx(reference_bm25(documents, query), rel=1e-5)


def test_a_term_no_episode_has_scores_zero_everywhere() -> None:
    index = TenantIndex(EMBEDDER.dim)
    index.add([doc(1, "amber birch"), doc(2, "cedar")])
    assert lexical_scores(index, "zephyr") == [0.0, 0.0]


async def test_a_tenant_that_never_stored_an_episode_is_recalled_without_loading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SQLiteStore(tmp_path / "memory.db")
    await store.start()
    loads: list[int] = []
    real_load = store.load

    async def counted_load(tenant: str, after_seq: int) -> list[IndexedDoc]:
        loads.append(after_seq)
        return await real_load(tenant, after_seq)

    monkeypatch.setattr(store, "load", counted_load)
    try:
        assert await store.recall("newcomer", RecallQuery(text="anything at all", limit=5)) == []
        assert loads == []  # a first-time user costs no scan (and no hop to the scan thread)
        stored = await store.remember("newcomer", EpisodeDraft("", "the heron nests by the fjord", ""), now_micros())
        hits = await store.recall("newcomer", RecallQuery(text="heron", limit=5))
        assert [hit.episode.id for hit in hits] == [stored.id]
        assert loads == [0]
    finally:
        await store.close()


def test_an_index_is_sized_by_what_it_holds_not_by_a_head_start() -> None:
    """A one-episode tenant's index holds about one episode's vector (it held eight: ~10 KB per tenant)."""
    index = TenantIndex(EMBEDDER.dim)
    index.add([doc(1, "amber birch")])
    vector_bytes = 4 * EMBEDDER.dim  # float32
    assert index.nbytes < 2 * vector_bytes
    for seq in range(2, 101):
        index.add([doc(seq, "cedar delta")])
    assert index.nbytes < 1.5 * 100 * vector_bytes + 100 * 64, "growth keeps at most a third spare"


def test_a_churn_of_one_episode_tenants_is_bounded_by_their_indexes_cost() -> None:
    """Each tenant counts one episode beyond what it holds, so tiny tenants cannot multiply the bound."""
    cache = IndexCache(max_episodes=1_000)
    for n in range(5_000):
        index = TenantIndex(EMBEDDER.dim)
        index.add([doc(1, f"tenant {n}")])
        cache.put(f"t{n}", 0, index, 1)
    assert cache.tenants == 500
    assert cache.episodes == 1_000
