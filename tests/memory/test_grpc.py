"""MemoryService through a real gRPC server on a free port (embedded SQLite default)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import timestamp_pb2

from loomflow.memory.models import EpisodeDraft, now_micros
from loomflow.memory.servicer import MemoryServicer
from loomflow.memory.store import open_store
from loomflow.testing.suite import running_suite
from loomflow.v1 import memory_pb2, memory_pb2_grpc, tenancy_pb2
from tests.memory.conftest import dsn_for
from tests.support.status import bad_request_fields

ANONYMOUS = tenancy_pb2.UserScope(anonymous=tenancy_pb2.Anonymous())


def user(name: str) -> tenancy_pb2.UserScope:
    return tenancy_pb2.UserScope(user_id=name)


@pytest.fixture
async def memory(tmp_path: Path) -> AsyncIterator[memory_pb2_grpc.MemoryServiceAsyncStub]:
    async with running_suite(tmp_path, services="memory") as running:
        yield memory_pb2_grpc.MemoryServiceStub(running.channel)


async def export(stub: memory_pb2_grpc.MemoryServiceAsyncStub, scope: tenancy_pb2.UserScope) -> list[str]:
    kinds = []
    async for item in stub.Export(memory_pb2.MemoryServiceExportRequest(scope=scope)):
        kinds.append(item.WhichOneof("record") or "")
    return kinds


async def test_remember_recall_and_get_carry_the_tenant_scope(memory: memory_pb2_grpc.MemoryServiceAsyncStub) -> None:
    stored = await memory.Remember(
        memory_pb2.RememberRequest(
            scope=user("alice"), session_id="s1", input="my dog is called Biscuit", output="cute", metadata={"k": "v"}
        )
    )
    episode = stored.episode
    assert episode.id
    assert episode.scope.user_id == "alice"
    assert episode.created_at.seconds > 0
    recalled = await memory.Recall(memory_pb2.RecallRequest(scope=user("alice"), query="what is my dog called"))
    assert [h.episode.id for h in recalled.hits] == [episode.id]
    assert recalled.hits[0].score > 0
    assert recalled.hits[0].lexical_score > 0
    got = await memory.GetEpisode(memory_pb2.GetEpisodeRequest(scope=user("alice"), episode_id=episode.id))
    assert got.episode == episode


async def test_other_tenants_episode_is_never_recalled_and_by_id_is_not_found(
    memory: memory_pb2_grpc.MemoryServiceAsyncStub,
) -> None:
    secret = "bob's bank pin is 4921 and his password is hunter2"
    theirs = await memory.Remember(memory_pb2.RememberRequest(scope=user("bob"), input=secret))
    await memory.Remember(memory_pb2.RememberRequest(scope=user("alice"), input="alice likes hiking"))
    hits = (await memory.Recall(memory_pb2.RecallRequest(scope=user("alice"), query=secret, limit=100))).hits
    assert all(h.episode.scope.user_id == "alice" for h in hits)
    assert len(hits) == 1
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await memory.GetEpisode(memory_pb2.GetEpisodeRequest(scope=user("alice"), episode_id=theirs.episode.id))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_stale_block_version_answers_aborted(memory: memory_pb2_grpc.MemoryServiceAsyncStub) -> None:
    put = await memory.PutBlock(
        memory_pb2.PutBlockRequest(scope=user("alice"), label="plan", content="v1", expected_version=0)
    )
    assert put.block.version == 1
    assert put.block.scope.user_id == "alice"
    writes = [
        memory.PutBlock(
            memory_pb2.PutBlockRequest(scope=user("alice"), label="plan", content=f"w{i}", expected_version=1)
        )
        for i in range(5)
    ]
    outcomes = await asyncio.gather(*writes, return_exceptions=True)
    assert sum(isinstance(o, memory_pb2.PutBlockResponse) for o in outcomes) == 1
    assert all(o.code() == grpc.StatusCode.ABORTED for o in outcomes if isinstance(o, grpc.aio.AioRpcError))
    listed = await memory.ListBlocks(memory_pb2.ListBlocksRequest(scope=user("alice")))
    assert [(b.label, b.version) for b in listed.blocks] == [("plan", 2)]
    deleted = await memory.DeleteBlock(memory_pb2.DeleteBlockRequest(scope=user("alice"), label="plan"))
    assert deleted.version == 2
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await memory.GetBlock(memory_pb2.GetBlockRequest(scope=user("alice"), label="plan"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def ts(seconds: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=seconds)


async def test_facts_answer_as_of_queries_on_both_axes(memory: memory_pb2_grpc.MemoryServiceAsyncStub) -> None:
    alice = user("alice")
    first = await memory.AssertFact(
        memory_pb2.AssertFactRequest(scope=alice, subject="alice", predicate="city", object="Lyon", valid_from=ts(1000))
    )
    second = await memory.AssertFact(
        memory_pb2.AssertFactRequest(scope=alice, subject="alice", predicate="city", object="Oslo", valid_from=ts(2000))
    )
    assert [(f.id, f.valid_until.seconds) for f in second.superseded] == [(first.fact.id, 2000)]
    current = await memory.QueryFacts(memory_pb2.QueryFactsRequest(scope=alice, subject="alice"))
    assert [f.object for f in current.facts] == ["Oslo"]
    past = await memory.QueryFacts(memory_pb2.QueryFactsRequest(scope=alice, valid_at=ts(1500)))
    assert [f.object for f in past.facts] == ["Lyon"]
    as_known_then = await memory.QueryFacts(
        memory_pb2.QueryFactsRequest(scope=alice, valid_at=ts(2500), known_at=second.fact.recorded_at)
    )
    assert [f.object for f in as_known_then.facts] == ["Oslo"]
    before_oslo = timestamp_pb2.Timestamp()
    before_oslo.FromMicroseconds(second.fact.recorded_at.ToMicroseconds() - 1)
    as_known_before = await memory.QueryFacts(
        memory_pb2.QueryFactsRequest(scope=alice, valid_at=ts(2500), known_at=before_oslo)
    )
    assert [(f.object, f.HasField("valid_until")) for f in as_known_before.facts] == [("Lyon", False)]
    retracted = await memory.RetractFact(memory_pb2.RetractFactRequest(scope=alice, fact_id=second.fact.id))
    assert retracted.fact.HasField("retracted_at")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await memory.RetractFact(memory_pb2.RetractFactRequest(scope=user("bob"), fact_id=first.fact.id))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_anonymous_recall_answers_episodes_scoped_anonymous(
    memory: memory_pb2_grpc.MemoryServiceAsyncStub,
) -> None:
    stored = await memory.Remember(memory_pb2.RememberRequest(scope=ANONYMOUS, input="the heron nests by the fjord"))
    recalled = await memory.Recall(memory_pb2.RecallRequest(scope=ANONYMOUS, query="where does the heron nest"))
    assert [hit.episode for hit in recalled.hits] == [stored.episode]
    assert recalled.hits[0].episode.scope == ANONYMOUS
    assert not recalled.hits[0].episode.scope.user_id  # the storage sentinel never goes on the wire


async def test_forget_then_export_is_empty_for_a_user_and_for_the_anonymous_bucket(
    memory: memory_pb2_grpc.MemoryServiceAsyncStub,
) -> None:
    for scope in (user("alice"), ANONYMOUS, user("bob")):
        await memory.Remember(memory_pb2.RememberRequest(scope=scope, input="hello"))
        await memory.PutBlock(memory_pb2.PutBlockRequest(scope=scope, label="l", content="c"))
        await memory.AssertFact(memory_pb2.AssertFactRequest(scope=scope, subject="s", predicate="p", object="o"))
    assert await export(memory, ANONYMOUS) == ["episode", "block", "fact"]
    for scope in (user("alice"), ANONYMOUS):
        forgot = await memory.Forget(memory_pb2.MemoryServiceForgetRequest(scope=scope))
        assert (forgot.episodes_deleted, forgot.blocks_deleted, forgot.facts_deleted) == (1, 1, 1)
        assert await export(memory, scope) == []
    assert await export(memory, user("bob")) == ["episode", "block", "fact"]


@pytest.mark.parametrize(
    ("request_message", "field"),
    [
        (memory_pb2.RecallRequest(scope=user("a"), query=""), "query"),
        (memory_pb2.RecallRequest(scope=user("a"), query="x", limit=-1), "limit"),
        (memory_pb2.RecallRequest(scope=user("__jeeves_anon_user__"), query="x"), "scope.user_id"),
        (memory_pb2.QueryFactsRequest(scope=user("a"), valid_at=ts(300_000_000_000)), "valid_at"),
        (memory_pb2.AssertFactRequest(scope=user("a"), subject="s", predicate="p", valid_until=ts(10)), "valid_until"),
        (
            memory_pb2.MemoryServiceForgetRequest(scope=user("a"), before=timestamp_pb2.Timestamp(nanos=-5)),
            "before",
        ),
        (memory_pb2.RememberRequest(scope=user("a"), input="nul \x00 inside"), "input"),
        (memory_pb2.RememberRequest(scope=user("a"), metadata={"k": "v\x00"}), "metadata['k']"),
        (memory_pb2.GetBlockRequest(scope=user("a"), label="l\x00"), "label"),
        (memory_pb2.GetContextRequest(scope=user("a"), recall_limit=5), "recall_query"),
        (memory_pb2.GetContextRequest(scope=user("a"), recall_query="x", recall_limit=1001), "recall_limit"),
        (memory_pb2.GetContextRequest(scope=user("a"), recall_query="x" * 65537, recall_limit=1), "recall_query"),
        (memory_pb2.GetContextRequest(scope=user("a"), history_page_size=-1), "history_page_size"),
        (memory_pb2.GetContextRequest(scope=user("a"), blocks_page_size=1001), "blocks_page_size"),
        (memory_pb2.GetContextRequest(scope=user("a"), facts_page_size=1001), "facts_page_size"),
        (memory_pb2.GetContextRequest(scope=user("a"), session_id="s" * 257), "session_id"),
        (memory_pb2.GetContextRequest(scope=user("a"), recall_exclude_session_id="s\x00"), "recall_exclude_session_id"),
        (memory_pb2.GetContextRequest(history_page_size=1), "scope"),
    ],
    ids=[
        "empty_query",
        "negative_limit",
        "sentinel",
        "timestamp_out_of_range",
        "until_before_default_from",
        "nanos",
        "nul_input",
        "nul_metadata",
        "nul_label",
        "context_recall_without_query",
        "context_recall_limit",
        "context_long_query",
        "context_negative_history",
        "context_blocks_page",
        "context_facts_page",
        "context_long_session",
        "context_nul_exclude",
        "context_no_scope",
    ],
)
async def test_bad_input_answers_invalid_argument_naming_the_field(
    memory: memory_pb2_grpc.MemoryServiceAsyncStub, request_message: object, field: str
) -> None:
    rpc = {
        memory_pb2.RecallRequest: memory.Recall,
        memory_pb2.QueryFactsRequest: memory.QueryFacts,
        memory_pb2.AssertFactRequest: memory.AssertFact,
        memory_pb2.MemoryServiceForgetRequest: memory.Forget,
        memory_pb2.RememberRequest: memory.Remember,
        memory_pb2.GetBlockRequest: memory.GetBlock,
        memory_pb2.GetContextRequest: memory.GetContext,
    }[type(request_message)]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await rpc(request_message)  # type: ignore[operator]
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in bad_request_fields(caught.value)


async def test_every_backend_serves_the_memory_service_over_grpc(backend: str, tmp_path: Path, unique: str) -> None:
    """The DSN picks the backend behind the same servicer (``backend`` fixture: every backend)."""
    overrides = {"memory": {"dsn": dsn_for(backend, tmp_path)}}
    async with running_suite(tmp_path, services="memory", overrides=overrides) as running:
        stub = memory_pb2_grpc.MemoryServiceStub(running.channel)
        alice, bob = user(f"alice-{unique}"), user(f"bob-{unique}")
        mine = await stub.Remember(memory_pb2.RememberRequest(scope=alice, input="the wifi password is in the drawer"))
        await stub.Remember(memory_pb2.RememberRequest(scope=bob, input="the wifi password is swordfish"))
        hits = (await stub.Recall(memory_pb2.RecallRequest(scope=alice, query="wifi password", limit=10))).hits
        assert [h.episode.id for h in hits] == [mine.episode.id]
        context = await stub.GetContext(
            memory_pb2.GetContextRequest(
                scope=alice, recall_query="wifi password", recall_limit=10, history_page_size=5
            )
        )
        assert list(context.recall_hits) == list(hits)
        assert [e.id for e in context.history] == [mine.episode.id], "alice's episode stored without a session"
        await stub.Forget(memory_pb2.MemoryServiceForgetRequest(scope=alice))
        assert await export(stub, alice) == []
        assert await export(stub, bob) == ["episode"]


async def test_a_recall_answer_keeps_the_best_hits_that_fit_in_one_message(tmp_path: Path) -> None:
    store = open_store("memory://", tmp_path)
    await store.start()
    try:
        for word in ("alpha", "beta", "gamma"):  # ~25 KB each: two fit in the 64 KiB floor, three do not
            text = f"{word} needle " + "filler " * 3_500
            await store.remember("alice", EpisodeDraft("s1", text, ""), now_micros())
        query = memory_pb2.RecallRequest(scope=user("alice"), query="alpha needle", limit=3)
        roomy = await MemoryServicer(store).Recall(query, None)
        tight = await MemoryServicer(store, max_message_bytes=64 * 1024).Recall(query, None)
    finally:
        await store.close()
    assert len(roomy.hits) == 3
    assert roomy.hits[0].episode.input.startswith("alpha")
    assert list(tight.hits) == list(roomy.hits[:2])
    assert tight.ByteSize() <= 64 * 1024


async def test_list_episodes_pages_a_session_newest_first_through_tokens(
    memory: memory_pb2_grpc.MemoryServiceAsyncStub,
) -> None:
    stored = [
        (
            await memory.Remember(memory_pb2.RememberRequest(scope=user("alice"), session_id="conv", input=f"turn {n}"))
        ).episode.id
        for n in range(5)
    ]
    await memory.Remember(memory_pb2.RememberRequest(scope=user("bob"), session_id="conv", input="bob's turn"))
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = await memory.ListEpisodes(
            memory_pb2.ListEpisodesRequest(scope=user("alice"), session_id="conv", page_size=2, page_token=token)
        )
        seen += [e.id for e in page.episodes]
        assert all(e.scope.user_id == "alice" for e in page.episodes)
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert seen == stored[::-1]
    assert pages == 3, "5 episodes in pages of 2: the last page says there is no next one"
    carol = await memory.ListEpisodes(memory_pb2.ListEpisodesRequest(scope=user("carol"), session_id="conv"))
    assert list(carol.episodes) == []


async def test_list_episodes_refuses_a_forged_page_token(memory: memory_pb2_grpc.MemoryServiceAsyncStub) -> None:
    for forged in ("not-a-token", "ZXAxOi0x", "ZXAxOjk5OTk5OTk5OTk5OTk5OTk5OTk5"):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await memory.ListEpisodes(
                memory_pb2.ListEpisodesRequest(scope=user("alice"), session_id="conv", page_token=forged)
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert bad_request_fields(caught.value) == ["page_token"]
