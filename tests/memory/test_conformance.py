"""The Memory conformance suite: every test runs against every backend (see conftest.BACKENDS).

A backend is done when this file passes against it. Tenant ids are unique per
test because Postgres and Redis are shared.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from loomflow.kernel.errors import Aborted, NotFound, ResourceExhausted
from loomflow.kernel.tenancy import ANONYMOUS_SENTINEL, tenant_key
from loomflow.memory.models import (
    Block,
    BlockWrite,
    Episode,
    EpisodeDraft,
    Fact,
    FactAssertion,
    FactQuery,
    ForgetScope,
    RecallQuery,
    SessionPage,
    now_micros,
)
from loomflow.memory.recall.embedding import Embedder
from loomflow.memory.recall.local import WordLlamaEmbedder
from loomflow.memory.recall.reembed import Progress, Reembeddable, reembed
from loomflow.memory.servicer import MemoryServicer
from loomflow.memory.store import MemoryStore, open_store
from loomflow.v1 import memory_pb2, tenancy_pb2
from tests.memory.conftest import dsn_for

Tenant = Callable[[str], str]
SECOND = 1_000_000


def draft(text_in: str, text_out: str = "", session: str = "", **metadata: str) -> EpisodeDraft:
    return EpisodeDraft(session_id=session, input=text_in, output=text_out, metadata=metadata, run_id="run-1")


async def export_all(store: MemoryStore, tenant: str) -> list[Episode | Block | Fact]:
    return [record async for record in store.export(tenant)]


async def recall_ids(store: MemoryStore, tenant: str, text: str, limit: int = 10, **kw: object) -> list[str]:
    hits = await store.recall(tenant, RecallQuery(text=text, limit=limit, **kw))  # type: ignore[arg-type]
    return [h.episode.id for h in hits]


# -- episodes and recall ---------------------------------------------------------


async def test_remembered_episode_reads_back_by_id_with_every_field(store: MemoryStore, tenant: Tenant) -> None:
    alice = tenant("alice")
    at = now_micros()
    stored = await store.remember(alice, draft("what is the capital of France", "Paris", "s1", lang="en"), at)
    assert stored.id
    assert stored.tenant == alice
    assert stored.created_at == at
    assert stored.seq >= 1
    read = await store.get_episode(alice, stored.id)
    assert read == stored
    assert read.metadata == {"lang": "en"}
    assert read.run_id == "run-1"
    assert read.session_id == "s1"


async def test_recall_never_returns_other_tenant_even_when_it_is_the_better_match(
    store: MemoryStore, tenant: Tenant
) -> None:
    alice, bob = tenant("alice"), tenant("bob")
    query = "bob's secret launch code is tangerine seventeen"
    own = await store.remember(alice, draft("grocery list: milk, eggs", "noted"), now_micros())
    theirs = await store.remember(bob, draft(query, "stored securely"), now_micros())

    bob_hits = await store.recall(bob, RecallQuery(text=query, limit=5))
    assert bob_hits[0].episode.id == theirs.id, "precondition: bob's episode is the best match for the query"
    assert bob_hits[0].lexical_score > 0
    assert bob_hits[0].vector_score > 0.5

    alice_hits = await store.recall(alice, RecallQuery(text=query, limit=50))
    assert [h.episode.id for h in alice_hits] == [own.id], "alice's recall must only ever return alice's episodes"
    assert all(h.episode.tenant == alice for h in alice_hits)
    assert await store.recall(tenant("carol"), RecallQuery(text=query, limit=5)) == []


async def test_recall_ranks_the_matching_episode_first_and_reports_its_scores(
    store: MemoryStore, tenant: Tenant
) -> None:
    alice = tenant("alice")
    for topic in ["the cat sat on the mat", "stock prices fell sharply", "baking sourdough bread at home"]:
        await store.remember(alice, draft(topic, "ok"), now_micros())
    target = await store.remember(alice, draft("my favourite colour is ultramarine blue", "noted"), now_micros())

    hits = await store.recall(alice, RecallQuery(text="what is my favourite colour?", limit=2))
    assert len(hits) == 2
    assert hits[0].episode.id == target.id
    assert hits[0].score > hits[1].score > 0
    assert hits[0].lexical_score > 0
    assert -1.0 <= hits[0].vector_score <= 1.0
    assert hits[0].vector_score > hits[1].vector_score


async def test_recall_matches_inflected_words_through_the_embedding(store: MemoryStore, tenant: Tenant) -> None:
    alice = tenant("alice")
    await store.remember(alice, draft("quarterly budget spreadsheet", "done"), now_micros())
    target = await store.remember(alice, draft("we were gardening and planting tomatoes", "nice"), now_micros())
    hits = await store.recall(alice, RecallQuery(text="garden plants", limit=1))
    assert hits[0].episode.id == target.id
    assert hits[0].lexical_score == 0, "no exact term in common: only the embedding can find it"


async def test_recall_honours_session_filter_limit_and_min_score(store: MemoryStore, tenant: Tenant) -> None:
    alice = tenant("alice")
    in_s1 = [await store.remember(alice, draft(f"note {i} about rockets", "", "s1"), now_micros()) for i in range(3)]
    await store.remember(alice, draft("note about rockets elsewhere", "", "s2"), now_micros())

    session_hits = await recall_ids(store, alice, "rockets", session_id="s1")
    assert set(session_hits) == {e.id for e in in_s1}
    assert await recall_ids(store, alice, "rockets", session_id="no-such-session") == []
    assert len(await recall_ids(store, alice, "rockets", limit=2)) == 2

    all_hits = await store.recall(alice, RecallQuery(text="rockets", limit=10))
    threshold = all_hits[1].score
    above = await store.recall(alice, RecallQuery(text="rockets", limit=10, min_score=threshold))
    assert above
    assert all(h.score >= threshold for h in above)
    assert len(above) < len(all_hits)


async def test_recall_sees_episodes_remembered_after_an_earlier_recall(store: MemoryStore, tenant: Tenant) -> None:
    alice = tenant("alice")
    await store.remember(alice, draft("first note about volcanoes", ""), now_micros())
    assert len(await recall_ids(store, alice, "volcanoes")) == 1
    later = await store.remember(alice, draft("second note about volcanoes erupting", ""), now_micros())
    assert later.id in await recall_ids(store, alice, "volcanoes erupting")


async def test_recall_can_leave_out_one_session(store: MemoryStore, tenant: Tenant) -> None:
    alice = tenant("alice")
    here = await store.remember(alice, draft("the flight to Lisbon leaves at nine", "noted", "conv-1"), now_micros())
    there = await store.remember(alice, draft("the flight to Lisbon was delayed", "sorry", "conv-2"), now_micros())
    loose = await store.remember(alice, draft("Lisbon flight tips", "pack light", ""), now_micros())

    assert set(await recall_ids(store, alice, "flight to Lisbon")) == {here.id, there.id, loose.id}
    kept = await recall_ids(store, alice, "flight to Lisbon", exclude_session_id="conv-1")
    assert set(kept) == {there.id, loose.id}, "the excluded session's episodes must not be recalled"
    assert await recall_ids(store, alice, "flight to Lisbon", session_id="conv-1", exclude_session_id="conv-1") == []
    assert set(await recall_ids(store, alice, "flight to Lisbon", exclude_session_id="no-such")) == {
        here.id,
        there.id,
        loose.id,
    }


async def session_ids(
    store: MemoryStore, tenant: str, session: str, limit: int, before: int | None = None
) -> list[str]:
    return [e.id for e in await store.list_episodes(tenant, SessionPage(session, limit, before))]


async def test_list_episodes_pages_one_session_newest_first_in_a_stable_order(
    store: MemoryStore, tenant: Tenant
) -> None:
    alice = tenant("alice")
    at = now_micros()  # every episode gets the same created_at: the order must still be total
    stored = [await store.remember(alice, draft(f"turn {n}", f"answer {n}", "conv-42"), at) for n in range(7)]
    await store.remember(alice, draft("another conversation", "", "conv-43"), at)
    newest_first = [e.id for e in reversed(stored)]

    first = await store.list_episodes(alice, SessionPage("conv-42", 3))
    assert [e.id for e in first] == newest_first[:3]
    assert first[0] == stored[-1], "a listed episode reads back with every field"
    paged: list[str] = []
    before: int | None = None
    while True:
        page = await store.list_episodes(alice, SessionPage("conv-42", 3, before))
        if not page:
            break
        paged += [e.id for e in page]
        before = page[-1].seq
    assert paged == newest_first, "paging must visit every episode of the session once, newest first"
    assert await session_ids(store, alice, "conv-42", 100) == newest_first, "the order is the same on every read"
    await store.remember(alice, draft("turn 7", "answer 7", "conv-42"), now_micros())
    assert await session_ids(store, alice, "conv-42", 3, first[-1].seq) == newest_first[3:6], (
        "a new episode must not shift a page that continues from a token"
    )


async def test_list_episodes_of_another_tenants_session_with_the_same_id_is_empty(
    store: MemoryStore, tenant: Tenant
) -> None:
    alice, bob = tenant("alice"), tenant("bob")
    theirs = await store.remember(bob, draft("bob's secret plan", "kept", "conv-42"), now_micros())
    assert await session_ids(store, alice, "conv-42", 20) == [], "alice must never see bob's conv-42"
    ours = await store.remember(alice, draft("alice's own turn", "", "conv-42"), now_micros())
    assert await session_ids(store, alice, "conv-42", 20) == [ours.id]
    assert await session_ids(store, bob, "conv-42", 20) == [theirs.id], "the same session id stays two sessions"
    assert await session_ids(store, alice, "", 20) == [], "the no-session bucket holds only episodes without one"


async def test_list_episodes_forgets_with_the_session(store: MemoryStore, tenant: Tenant) -> None:
    alice = tenant("alice")
    kept = await store.remember(alice, draft("keep me", "", "conv-1"), now_micros())
    await store.remember(alice, draft("forget me", "", "conv-2"), now_micros())
    await store.forget(alice, ForgetScope(session_id="conv-2"), now_micros() + 1)
    assert await session_ids(store, alice, "conv-2", 20) == []
    assert await session_ids(store, alice, "conv-1", 20) == [kept.id]


async def test_get_episode_of_another_tenant_is_not_found(store: MemoryStore, tenant: Tenant) -> None:
    alice, bob = tenant("alice"), tenant("bob")
    theirs = await store.remember(bob, draft("bob only", ""), now_micros())
    with pytest.raises(NotFound):
        await store.get_episode(alice, theirs.id)
    with pytest.raises(NotFound):
        await store.get_episode(alice, "ep_does_not_exist")


# -- working blocks ----------------------------------------------------------------


async def test_block_versions_grow_and_stale_writes_abort(store: MemoryStore, tenant: Tenant) -> None:
    alice = tenant("alice")
    first = await store.put_block(alice, BlockWrite("persona", "", "terse", expected_version=0), now_micros())
    assert first.version == 1
    with pytest.raises(Aborted):
        await store.put_block(alice, BlockWrite("persona", "", "again", expected_version=0), now_micros())
    second = await store.put_block(alice, BlockWrite("persona", "", "chatty", expected_version=1), now_micros())
    assert second.version == 2
    with pytest.raises(Aborted):
        await store.put_block(alice, BlockWrite("persona", "", "stale", expected_version=1), now_micros())
    third = await store.put_block(alice, BlockWrite("persona", "", "last writer wins"), now_micros())
    assert third.version == 3
    assert await store.get_block(alice, "", "persona") == third
    with pytest.raises(Aborted):
        await store.put_block(alice, BlockWrite("missing", "", "x", expected_version=4), now_micros())


async def test_blocks_are_keyed_by_label_and_session_and_listed_in_order(store: MemoryStore, tenant: Tenant) -> None:
    alice = tenant("alice")
    for session, label in [("", "b"), ("", "a"), ("s1", "a"), ("s2", "z")]:
        await store.put_block(alice, BlockWrite(label, session, f"{session}/{label}"), now_micros())
    listed = await store.list_blocks(alice, None)
    assert [(b.session_id, b.label) for b in listed] == [("", "a"), ("", "b"), ("s1", "a"), ("s2", "z")]
    assert [b.content for b in await store.list_blocks(alice, "s1")] == ["s1/a"]
    assert (await store.get_block(alice, "s1", "a")).content == "s1/a"
    with pytest.raises(NotFound):
        await store.get_block(alice, "s2", "a")


async def test_delete_block_checks_version_and_other_tenants_see_nothing(store: MemoryStore, tenant: Tenant) -> None:
    alice, bob = tenant("alice"), tenant("bob")
    await store.put_block(alice, BlockWrite("plan", "", "v1"), now_micros())
    await store.put_block(alice, BlockWrite("plan", "", "v2"), now_micros())
    with pytest.raises(NotFound):
        await store.get_block(bob, "", "plan")
    with pytest.raises(NotFound):
        await store.delete_block(bob, "", "plan", None)
    assert await store.list_blocks(bob, None) == []
    with pytest.raises(Aborted):
        await store.delete_block(alice, "", "plan", 1)
    assert await store.delete_block(alice, "", "plan", 2) == 2
    with pytest.raises(NotFound):
        await store.get_block(alice, "", "plan")


async def test_concurrent_block_writes_with_the_same_version_have_exactly_one_winner(
    store: MemoryStore, tenant: Tenant
) -> None:
    alice = tenant("alice")
    await store.put_block(alice, BlockWrite("counter", "", "0"), now_micros())
    writers = [
        store.put_block(alice, BlockWrite("counter", "", f"writer {i}", expected_version=1), now_micros())
        for i in range(12)
    ]
    outcomes = await asyncio.gather(*writers, return_exceptions=True)
    winners = [o for o in outcomes if isinstance(o, Block)]
    assert len(winners) == 1, f"exactly one writer may win version 1 → 2, got {outcomes}"
    assert all(isinstance(o, Aborted) for o in outcomes if not isinstance(o, Block))
    assert await store.get_block(alice, "", "counter") == winners[0]
    assert winners[0].version == 2


# -- facts ---------------------------------------------------------------------------


def assertion(obj: str, valid_from: int, valid_until: int | None = None) -> FactAssertion:
    return FactAssertion("alice", "lives_in", obj, valid_from, valid_until)


async def test_asserting_a_new_object_closes_the_old_fact_without_deleting_it(
    store: MemoryStore, tenant: Tenant
) -> None:
    alice = tenant("alice")
    t0 = now_micros()
    paris = await store.assert_fact(alice, assertion("Paris", t0 - 100 * SECOND), t0)
    berlin = await store.assert_fact(alice, assertion("Berlin", t0 - 10 * SECOND), t0 + 1)
    assert [(f.id, f.object, f.valid_until) for f in berlin.superseded] == [(paris.fact.id, "Paris", t0 - 10 * SECOND)]

    now = FactQuery(valid_at=t0 + 2, known_at=t0 + 2)
    assert [f.object for f in await store.query_facts(alice, now)] == ["Berlin"]
    back_then = FactQuery(valid_at=t0 - 50 * SECOND, known_at=t0 + 2)
    assert [f.object for f in await store.query_facts(alice, back_then)] == ["Paris"]
    as_known_before_berlin = FactQuery(valid_at=t0, known_at=t0)
    believed = await store.query_facts(alice, as_known_before_berlin)
    assert [(f.object, f.valid_until) for f in believed] == [("Paris", None)], "what we knew at t0 is unchanged"

    history = await store.query_facts(alice, FactQuery(valid_at=0, known_at=0, include_history=True))
    assert sorted((f.object, f.retracted_at is None) for f in history) == [
        ("Berlin", True),
        ("Paris", False),
        ("Paris", True),
    ]


async def test_reasserting_the_same_object_changes_nothing(store: MemoryStore, tenant: Tenant) -> None:
    alice = tenant("alice")
    t0 = now_micros()
    first = await store.assert_fact(alice, assertion("Paris", t0 - SECOND), t0)
    again = await store.assert_fact(alice, assertion("Paris", t0), t0 + 1)
    assert again.fact == first.fact
    assert again.superseded == []
    history = await store.query_facts(alice, FactQuery(valid_at=0, known_at=0, include_history=True))
    assert len(history) == 1


async def test_retracted_fact_stays_visible_to_queries_as_known_before(store: MemoryStore, tenant: Tenant) -> None:
    alice, bob = tenant("alice"), tenant("bob")
    t0 = now_micros()
    asserted = await store.assert_fact(alice, FactAssertion("alice", "likes", "tea", t0 - SECOND, None), t0)
    with pytest.raises(NotFound):
        await store.retract_fact(bob, asserted.fact.id, t0 + 1)
    retracted = await store.retract_fact(alice, asserted.fact.id, t0 + 2)
    assert retracted.id == asserted.fact.id
    assert retracted.retracted_at == t0 + 2
    assert await store.query_facts(alice, FactQuery(valid_at=t0 + 3, known_at=t0 + 3)) == []
    before = await store.query_facts(alice, FactQuery(valid_at=t0 + 1, known_at=t0 + 1))
    assert [f.object for f in before] == ["tea"]
    with pytest.raises(NotFound):
        await store.retract_fact(alice, asserted.fact.id, t0 + 4)


async def test_query_facts_filters_by_subject_and_predicate_and_limits(store: MemoryStore, tenant: Tenant) -> None:
    alice, bob = tenant("alice"), tenant("bob")
    t0 = now_micros()
    for subject, predicate, obj in [("alice", "likes", "tea"), ("alice", "owns", "cat"), ("bob", "likes", "jazz")]:
        await store.assert_fact(alice, FactAssertion(subject, predicate, obj, t0 - SECOND, None), t0)
    await store.assert_fact(bob, FactAssertion("alice", "likes", "coffee", t0 - SECOND, None), t0)
    now = t0 + 1
    everything = await store.query_facts(alice, FactQuery(valid_at=now, known_at=now))
    assert [(f.subject, f.predicate, f.object) for f in everything] == [
        ("alice", "likes", "tea"),
        ("alice", "owns", "cat"),
        ("bob", "likes", "jazz"),
    ]
    assert all(f.tenant == alice for f in everything)
    likes = await store.query_facts(alice, FactQuery(valid_at=now, known_at=now, predicate="likes"))
    assert [f.object for f in likes] == ["tea", "jazz"]
    assert [f.object for f in await store.query_facts(alice, FactQuery(now, now, subject="bob"))] == ["jazz"]
    assert len(await store.query_facts(alice, FactQuery(valid_at=now, known_at=now, limit=2))) == 2


# -- forget, export, anonymous ---------------------------------------------------------


async def seed(store: MemoryStore, tenant: str, at: int, session: str = "s1") -> None:
    await store.remember(tenant, draft(f"episode of {tenant}", "", session), at)
    await store.put_block(tenant, BlockWrite("notes", session, f"notes of {tenant}"), at)
    await store.assert_fact(tenant, FactAssertion(session, "is", "tested", at - SECOND, None, session), at)


async def test_forget_then_export_is_empty_and_other_tenants_keep_everything(
    store: MemoryStore, tenant: Tenant
) -> None:
    alice, bob = tenant("alice"), tenant("bob")
    t0 = now_micros()
    await seed(store, alice, t0)
    await seed(store, bob, t0)
    result = await store.forget(alice, ForgetScope(), t0 + SECOND)
    assert (result.episodes_deleted, result.blocks_deleted, result.facts_deleted) == (1, 1, 1)
    assert await export_all(store, alice) == []
    assert await store.recall(alice, RecallQuery(text=f"episode of {alice}", limit=5)) == []
    kept = await export_all(store, bob)
    assert sorted(type(r).__name__ for r in kept) == ["Block", "Episode", "Fact"]
    assert all(r.tenant == bob for r in kept)


async def test_export_streams_every_record_of_the_tenant_and_nothing_else(store: MemoryStore, tenant: Tenant) -> None:
    alice, bob = tenant("alice"), tenant("bob")
    t0 = now_micros()
    await seed(store, alice, t0)
    await seed(store, bob, t0)
    await store.assert_fact(alice, FactAssertion("s1", "is", "exported", t0, None, "s1"), t0 + 1)
    records = await export_all(store, alice)
    episodes = [r for r in records if isinstance(r, Episode)]
    blocks = [r for r in records if isinstance(r, Block)]
    fact_rows = [r for r in records if isinstance(r, Fact)]
    assert [e.input for e in episodes] == [f"episode of {alice}"]
    assert [b.content for b in blocks] == [f"notes of {alice}"]
    assert len(fact_rows) == 3, "every fact version: the closed one, its replacement and the new fact"
    assert all(r.tenant == alice for r in records)
    assert records == [*episodes, *blocks, *fact_rows], "episodes, then blocks, then facts"


async def test_forget_one_session_or_older_data_only(store: MemoryStore, tenant: Tenant) -> None:
    alice = tenant("alice")
    t0 = now_micros()
    await seed(store, alice, t0, "s1")
    await seed(store, alice, t0, "s2")
    await store.remember(alice, draft("a newer s2 episode", "", "s2"), t0 + 10 * SECOND)

    one_session = await store.forget(alice, ForgetScope(session_id="s1"), t0 + 20 * SECOND)
    assert (one_session.episodes_deleted, one_session.blocks_deleted, one_session.facts_deleted) == (1, 1, 1)
    older = await store.forget(alice, ForgetScope(before=t0 + 5 * SECOND), t0 + 20 * SECOND)
    assert older.episodes_deleted == 1
    assert older.blocks_deleted == 1
    assert older.facts_deleted == 1
    left = await export_all(store, alice)
    assert [(type(r).__name__, getattr(r, "input", "")) for r in left] == [("Episode", "a newer s2 episode")]


async def test_a_write_that_started_before_a_forget_is_refused_and_a_later_one_stored(
    store: MemoryStore, tenant: Tenant
) -> None:
    alice = tenant("alice")
    t0 = now_micros()
    await store.forget(alice, ForgetScope(), t0)
    with pytest.raises(Aborted):
        await store.remember(alice, draft("late write from before the forget"), t0 - 1)
    with pytest.raises(Aborted):
        await store.put_block(alice, BlockWrite("notes", "", "late"), t0 - 1)
    with pytest.raises(Aborted):
        await store.assert_fact(alice, FactAssertion("a", "b", "c", t0 - SECOND, None), t0 - 1)
    assert await export_all(store, alice) == []
    fresh = await store.remember(alice, draft("a new write after the forget"), t0 + 1)
    assert [r.id for r in await export_all(store, alice) if isinstance(r, Episode)] == [fresh.id]


async def test_a_session_tombstone_only_covers_that_session(store: MemoryStore, tenant: Tenant) -> None:
    alice = tenant("alice")
    t0 = now_micros()
    await store.forget(alice, ForgetScope(session_id="s1"), t0)
    with pytest.raises(Aborted):
        await store.remember(alice, draft("late", "", "s1"), t0 - 1)
    other = await store.remember(alice, draft("other session", "", "s2"), t0 - 1)
    assert await store.get_episode(alice, other.id) == other


async def test_forget_racing_concurrent_remembers_never_leaves_data_from_before_it(
    store: MemoryStore, tenant: Tenant
) -> None:
    alice = tenant("alice")
    t0 = now_micros()
    cutoff = t0 + 30

    async def remember(i: int) -> Episode | Exception:
        try:
            return await store.remember(alice, draft(f"racing write {i}"), t0 + i)
        except Aborted as exc:
            return exc

    writers = [asyncio.ensure_future(remember(i)) for i in range(60)]
    await asyncio.sleep(0)
    forgetting = asyncio.ensure_future(store.forget(alice, ForgetScope(), cutoff))
    outcomes = await asyncio.gather(*writers)
    await forgetting

    survivors = {r.id: r for r in await export_all(store, alice) if isinstance(r, Episode)}
    assert all(e.created_at >= cutoff for e in survivors.values()), "a write from before the forget survived it"
    for i, outcome in enumerate(outcomes):
        if t0 + i >= cutoff:
            assert isinstance(outcome, Episode), f"write {i}, stamped after the forget, was refused"
            assert outcome.id in survivors, f"write {i}, stamped after the forget, was lost"
        else:
            assert isinstance(outcome, Exception) or outcome.id not in survivors
    assert set(await recall_ids(store, alice, "racing write", limit=100)) == set(survivors)


async def test_anonymous_bucket_is_a_real_partition(store: MemoryStore, tenant: Tenant) -> None:
    alice = tenant("alice")
    t0 = now_micros()
    anonymous = await store.remember(ANONYMOUS_SENTINEL, draft(f"anonymous visitor {alice} asked about ferries"), t0)
    own = await store.remember(alice, draft("alice asked about ferries"), t0)
    anonymous_hits = await recall_ids(store, ANONYMOUS_SENTINEL, f"anonymous visitor {alice} ferries", limit=1000)
    assert anonymous.id in anonymous_hits
    assert own.id not in anonymous_hits
    assert await recall_ids(store, alice, "ferries") == [own.id]
    with pytest.raises(NotFound):
        await store.get_episode(alice, anonymous.id)

    await store.forget(ANONYMOUS_SENTINEL, ForgetScope(), now_micros())
    assert [r for r in await export_all(store, ANONYMOUS_SENTINEL)] == []
    assert [r.id for r in await export_all(store, alice) if isinstance(r, Episode)] == [own.id]


async def test_remember_many_stores_all_with_consecutive_seqs_or_none_under_a_tombstone(
    store: MemoryStore, tenant: Tenant
) -> None:
    alice = tenant("alice")
    t0 = now_micros()
    batch = await store.remember_many(
        alice, [draft(f"bulk {i} about lighthouses", "", f"s{i % 2}") for i in range(5)], t0
    )
    assert [e.seq for e in batch] == list(range(batch[0].seq, batch[0].seq + 5))
    assert len({e.id for e in batch}) == 5
    assert set(await recall_ids(store, alice, "lighthouses")) == {e.id for e in batch}
    for episode in batch:
        assert await store.get_episode(alice, episode.id) == episode

    await store.forget(alice, ForgetScope(session_id="s1"), t0 + 10)
    with pytest.raises(Aborted):
        await store.remember_many(alice, [draft("fine", "", "s0"), draft("overtaken", "", "s1")], t0 + 5)
    left = [r for r in await export_all(store, alice) if isinstance(r, Episode)]
    assert [e.session_id for e in left] == ["s0", "s0", "s0"], "a refused batch stores nothing"


# -- per-tenant piles and paging (issue 19, item 9) -----------------------------------------


async def test_blocks_beyond_the_tenants_byte_cap_are_refused(store: MemoryStore, tenant: Tenant) -> None:
    alice, bob = tenant("alice"), tenant("bob")
    cap = 1000

    def capped(label: str, content: str, session: str = "") -> BlockWrite:
        return BlockWrite(label=label, session_id=session, content=content, max_tenant_bytes=cap)

    await store.put_block(alice, capped("a", "x" * 400), now_micros())
    await store.put_block(alice, capped("b", "é" * 200, session="s1"), now_micros())  # 400 UTF-8 bytes
    with pytest.raises(ResourceExhausted) as refused:
        await store.put_block(alice, capped("c", "y" * 201), now_micros())
    assert refused.value.limit == "max_block_bytes_per_user"
    await store.put_block(alice, capped("c", "y" * 200), now_micros())  # exactly at the cap
    await store.put_block(alice, capped("a", "z" * 400), now_micros())  # rewriting counts the new size only
    with pytest.raises(ResourceExhausted):
        await store.put_block(alice, capped("a", "z" * 401), now_micros())
    await store.put_block(bob, capped("a", "w" * 1000), now_micros())  # another tenant's pile is its own
    await store.delete_block(alice, "", "c", None)
    await store.put_block(alice, capped("d", "v" * 200), now_micros())  # deleting frees room
    assert sorted(b.label for b in await store.list_blocks(alice, None)) == ["a", "b", "d"]


async def test_fact_queries_page_in_a_stable_order_without_gaps_or_repeats(store: MemoryStore, tenant: Tenant) -> None:
    alice, bob = tenant("alice"), tenant("bob")
    start = now_micros() - 10 * SECOND
    for n in range(25):
        await store.assert_fact(alice, FactAssertion(f"s{n % 5}", f"p{n}", f"o{n}", start, None), start)
        await store.assert_fact(bob, FactAssertion(f"s{n % 5}", f"p{n}", "bob's", start, None), start)
    now = now_micros()
    whole = await store.query_facts(alice, FactQuery(valid_at=now, known_at=now, limit=100))
    assert len(whole) == 25
    seen: list[Fact] = []
    after = None
    while True:
        page = await store.query_facts(alice, FactQuery(valid_at=now, known_at=now, limit=7, after=after))
        seen.extend(page)
        if len(page) < 7:
            break
        last = page[-1]
        after = (last.subject, last.predicate, last.valid_from, last.recorded_at, last.row_id)
    assert [f.row_id for f in seen] == [f.row_id for f in whole], "pages must add up to the whole answer, in order"
    assert all(f.tenant == alice for f in seen)


# -- embedders: tagged vectors, never compared across embedders, re-embedding ------------


@pytest.fixture
def reopen(backend: str, tmp_path: Path) -> Callable[[Embedder], MemoryStore]:
    """Opens the same storage again with another embedder (the in-memory backend keeps nothing)."""
    if backend == "memory":
        pytest.skip("the in-memory backend keeps nothing across a restart: no stored vectors to switch")
    return lambda embedder: open_store(dsn_for(backend, tmp_path), tmp_path, embedder=embedder)


GARDEN = "we were gardening and planting tomatoes"
GARDEN_QUERY = "vegetable patch"
"""Shares no word with GARDEN: only a vector comparison can find it."""


async def test_vectors_of_another_embedder_are_never_compared_until_reembedded(
    store: MemoryStore, reopen: Callable[[Embedder], MemoryStore], tenant: Tenant, tmp_path: Path, backend: str
) -> None:
    alice = tenant("alice")
    old = await store.remember(alice, draft(GARDEN, "nice"), now_micros())  # hashing-256 vectors
    await store.remember(alice, draft("quarterly budget spreadsheet", "done"), now_micros())
    await store.close()

    model = WordLlamaEmbedder(128)  # another model *and* another dimension
    switched = reopen(model)
    await switched.start()
    try:
        assert await recall_ids(switched, alice, GARDEN_QUERY) == [], "hashing vectors must not meet a 128-d query"
        assert await recall_ids(switched, alice, "tomatoes") == [old.id], "BM25 still finds the old episodes"
        new = await switched.remember(alice, draft("I repotted the chilli seedlings", "good"), now_micros())
        assert new.id in await recall_ids(switched, alice, "growing peppers", limit=2), "new vectors compare"

        assert isinstance(switched, Reembeddable)
        progress = await reembed(switched, model, tmp_path / "progress.json", tenant=alice)
        assert progress.finished
        # Chroma keeps one embedder per collection: the new write already moved the tenant's old episodes.
        assert progress.episodes == (0 if backend == "chroma" else 2), "old episodes re-embedded, the new one not"
        hits = await switched.recall(alice, RecallQuery(text=GARDEN_QUERY, limit=1))
        assert [h.episode.id for h in hits] == [old.id]
        assert hits[0].lexical_score == 0
        assert hits[0].vector_score > 0.2
        again = await reembed(switched, model, tmp_path / "again.json", tenant=alice)
        assert again.episodes == 0, "nothing stale is left"
    finally:
        await switched.close()


async def test_reembed_resumes_from_its_progress_file_after_an_interruption(
    store: MemoryStore, reopen: Callable[[Embedder], MemoryStore], tenant: Tenant, tmp_path: Path, backend: str
) -> None:
    if backend == "chroma":
        pytest.skip("Chroma moves a tenant in one step (one embedder per collection): it resumes tenant by tenant")
    alice = tenant("alice")
    await store.remember_many(alice, [draft(f"note {n} about the harbour", "ok") for n in range(5)], now_micros())
    await store.close()
    model = WordLlamaEmbedder(64)
    switched = reopen(model)
    await switched.start()
    progress_file = tmp_path / "progress.json"
    pages: list[int] = []

    def interrupt_after_two_pages(progress: Progress) -> None:
        pages.append(progress.episodes)
        if len(pages) == 2 and not progress.tenant_done:
            raise KeyboardInterrupt

    try:
        assert isinstance(switched, Reembeddable)
        with pytest.raises(KeyboardInterrupt):
            await reembed(switched, model, progress_file, tenant=alice, page=1, report=interrupt_after_two_pages)
        saved = Progress.load(progress_file, model.name)
        assert (saved.tenant, saved.tenant_done) == (alice, False)
        resumed = await reembed(switched, model, progress_file, tenant=alice, page=1)
        assert resumed.finished
        assert resumed.episodes == 5, "the second run continued where the first stopped: each episode once"
        assert (await reembed(switched, model, tmp_path / "check.json", tenant=alice)).episodes == 0, "none left"
        assert len(await recall_ids(switched, alice, "port")) == 5, "found by the new vectors alone"
    finally:
        await switched.close()


# -- GetContext: a run's reads in one call, each part as its own RPC answers it --------------


def scoped(user: str) -> tenancy_pb2.UserScope:
    return tenancy_pb2.UserScope(user_id=user)


async def test_get_context_parts_equal_what_the_single_rpcs_answer(store: MemoryStore, tenant: Tenant) -> None:
    alice, bob = scoped(tenant("alice")), scoped(tenant("bob"))
    memory = MemoryServicer(store)
    at = now_micros()
    for n in range(4):
        await store.remember(tenant_key(alice), draft(f"the Lisbon trip, day {n}", f"noted {n}", "trip"), at + n)
    await store.remember(tenant_key(alice), draft("the Lisbon flight leaves at nine", "ok", "plans"), at)
    await store.remember(tenant_key(alice), draft("Lisbon hotel near the river", "booked", ""), at)
    for session, label in [("", "persona"), ("", "diet"), ("trip", "itinerary"), ("plans", "other session")]:
        await store.put_block(tenant_key(alice), BlockWrite(label, session, f"{session}/{label}"), at)
    for n in range(3):
        await store.assert_fact(tenant_key(alice), FactAssertion("alice", f"likes{n}", "Lisbon", at - SECOND, None), at)
    # bob holds the better matches, the same session id and blocks: none of it may reach alice
    await store.remember(tenant_key(bob), draft("the Lisbon trip Lisbon trip Lisbon", "bob's", "trip"), at)
    await store.put_block(tenant_key(bob), BlockWrite("persona", "", "bob's persona"), at)
    await store.put_block(tenant_key(bob), BlockWrite("itinerary", "trip", "bob's trip"), at)
    await store.assert_fact(tenant_key(bob), FactAssertion("alice", "likes", "bob's", at - SECOND, None), at)

    request = memory_pb2.GetContextRequest(
        scope=alice,
        session_id="trip",
        recall_query="Lisbon trip",
        recall_limit=10,
        recall_exclude_session_id="trip",
        history_page_size=3,
        blocks_page_size=100,
        facts_page_size=2,
    )
    context = await memory.GetContext(request, None)

    recalled = await memory.Recall(
        memory_pb2.RecallRequest(scope=alice, query="Lisbon trip", limit=10, exclude_session_id="trip"), None
    )
    assert list(context.recall_hits) == list(recalled.hits), "the recall part is Recall's answer"
    assert len(context.recall_hits) == 2, "the excluded session's episodes are left out"
    assert (context.embedder, context.min_vector_similarity) == (recalled.embedder, recalled.min_vector_similarity)
    listed = await memory.ListEpisodes(
        memory_pb2.ListEpisodesRequest(scope=alice, session_id="trip", page_size=3), None
    )
    assert list(context.history) == list(listed.episodes), "the history part is ListEpisodes' first page"
    assert context.history_next_page_token == listed.next_page_token
    older = await memory.ListEpisodes(
        memory_pb2.ListEpisodesRequest(scope=alice, session_id="trip", page_token=context.history_next_page_token),
        None,
    )
    assert [e.input for e in older.episodes] == ["the Lisbon trip, day 0"], "its token continues in ListEpisodes"
    every_block = await memory.ListBlocks(memory_pb2.ListBlocksRequest(scope=alice), None)
    assert list(context.blocks) == [b for b in every_block.blocks if b.session_id in ("", "trip")]
    assert [(b.session_id, b.label) for b in context.blocks] == [("", "diet"), ("", "persona"), ("trip", "itinerary")]
    assert not context.more_blocks
    current = await memory.QueryFacts(memory_pb2.QueryFactsRequest(scope=alice, page_size=2), None)
    assert list(context.facts) == list(current.facts), "the facts part is QueryFacts' first page"
    rest = await memory.QueryFacts(
        memory_pb2.QueryFactsRequest(scope=alice, page_token=context.facts_next_page_token), None
    )
    assert [f.predicate for f in rest.facts] == ["likes2"], "its token continues in QueryFacts"
    scopes = [h.episode.scope for h in context.recall_hits] + [e.scope for e in context.history]
    scopes += [b.scope for b in context.blocks] + [f.scope for f in context.facts]
    assert all(s == alice for s in scopes), "another tenant's record never appears"
    assert "bob's" not in str(context)

    carol = await memory.GetContext(
        memory_pb2.GetContextRequest(
            scope=scoped(tenant("carol")),
            session_id="trip",
            recall_query="Lisbon trip",
            recall_limit=10,
            history_page_size=20,
            blocks_page_size=100,
            facts_page_size=100,
        ),
        None,
    )
    assert (list(carol.recall_hits), list(carol.history), list(carol.blocks), list(carol.facts)) == ([], [], [], [])
    assert (carol.history_next_page_token, carol.more_blocks, carol.facts_next_page_token) == ("", False, "")


async def test_get_context_reads_only_the_parts_asked_for(store: MemoryStore, tenant: Tenant) -> None:
    alice = scoped(tenant("alice"))
    memory = MemoryServicer(store)
    await seed(store, tenant_key(alice), now_micros())
    nothing = await memory.GetContext(memory_pb2.GetContextRequest(scope=alice, session_id="s1"), None)
    assert nothing == memory_pb2.GetContextResponse(), "every part is off when its size is 0"
    blocks_only = await memory.GetContext(
        memory_pb2.GetContextRequest(scope=alice, session_id="s1", blocks_page_size=1), None
    )
    assert [b.label for b in blocks_only.blocks] == ["notes"]
    assert (list(blocks_only.history), list(blocks_only.facts), list(blocks_only.recall_hits)) == ([], [], [])
    no_session = await memory.GetContext(memory_pb2.GetContextRequest(scope=alice, blocks_page_size=10), None)
    assert list(no_session.blocks) == [], "without a session only tenant-wide blocks count, and s1's is not one"
