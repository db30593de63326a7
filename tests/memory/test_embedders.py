"""Embedders: the packaged model knows synonyms and never touches the network; the endpoint embedder
speaks the OpenAI wire format with batching and retries; --memory-embedder picks one."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from loomflow.kernel.config import ConfigError
from loomflow.kernel.errors import Unavailable
from loomflow.memory.models import EpisodeDraft, RecallQuery, now_micros
from loomflow.memory.recall.embedding import LEGACY_EMBEDDER, HashingEmbedder, from_bytes, to_bytes, usable
from loomflow.memory.recall.factory import DEFAULT_EMBEDDER, EmbedderOptions, open_embedder
from loomflow.memory.recall.local import WordLlamaEmbedder
from loomflow.memory.recall.remote import OpenAIEmbedder
from loomflow.memory.store.inmemory import InMemoryStore
from loomflow.memory.store.sqlite import SQLiteStore
from loomflow.testing.processes import source_env
from tests.agent.fakes.provider import Reply
from tests.memory.fake_embeddings import FakeEmbeddings

ROOT = Path(__file__).resolve().parents[2]


def cosine(embedder: WordLlamaEmbedder | HashingEmbedder, a: str, b: str) -> float:
    va, vb = embedder.embed_many([a, b])
    return float(va @ vb)


def test_the_packaged_model_knows_synonyms_the_hashing_embedder_does_not() -> None:
    model, hashing = WordLlamaEmbedder(), HashingEmbedder()
    assert cosine(model, "car", "automobile") > 0.5
    assert cosine(model, "doctor", "physician") > 0.5
    assert cosine(model, "doctor", "banana") < 0.2
    assert cosine(hashing, "car", "automobile") < 0.2


@pytest.mark.parametrize("dim", [256, 128, 64])
def test_wordllama_vectors_have_their_dimension_and_unit_length(dim: int) -> None:
    embedder = WordLlamaEmbedder(dim)
    vectors = embedder.embed_many(["my favourite colour is blue", "", "the and of"])
    assert vectors.shape == (3, dim)
    assert embedder.name == f"wordllama-{dim}"
    assert np.linalg.norm(vectors[0]) == pytest.approx(1.0, abs=1e-5)
    assert not vectors[1].any(), "a text without words embeds to zeros"
    assert np.linalg.norm(vectors[2]) == pytest.approx(1.0, abs=1e-5), "only stop words: embedded as they are"


def test_the_word_cache_holds_token_ids_as_two_bytes_each_and_embeds_as_the_tokenizer_says() -> None:
    # Every distinct word of every tenant passes through this cache (up to 200,000 words): a tuple of ints
    # cost ~36 bytes per token id, so an id-like word of a dozen tokens held ~0.5 KB.
    embedder = WordLlamaEmbedder()
    embedder.load()
    assert embedder._tokenizer is not None
    assert embedder._table is not None
    word = "sec0123456789abcdef0123"
    ids = embedder._tokenizer.encode(word, add_special_tokens=False).ids
    cached = embedder._ids_of(word)
    assert isinstance(cached, bytes)
    assert len(cached) == 2 * len(ids)
    by_hand = embedder._table[ids].astype(np.float32).sum(axis=0)
    assert np.allclose(embedder.embed(word), by_hand / np.linalg.norm(by_hand), atol=1e-6)


def test_stored_vectors_carry_their_embedder_and_dimension() -> None:
    embedder = WordLlamaEmbedder(128)
    raw = to_bytes(embedder.embed("hello there"), embedder.name)
    name, vector = from_bytes(raw)
    assert (name, vector.shape[0]) == ("wordllama-128", 128)
    assert usable(raw, embedder) is not None
    assert usable(raw, WordLlamaEmbedder(64)) is None, "another embedder's vector is never used"
    assert usable(raw, HashingEmbedder()) is None
    legacy = HashingEmbedder().embed("hello there").astype(np.float16).tobytes()  # stored before tags
    assert from_bytes(legacy)[0] == LEGACY_EMBEDDER
    assert usable(legacy, HashingEmbedder()) is not None


NO_NETWORK = """
import asyncio, socket, sys
attempts = []

def audit(event, args):
    if event in ("socket.connect", "socket.getaddrinfo", "socket.gethostbyname", "socket.sendto"):
        attempts.append((event, repr(args)[:120]))
        raise PermissionError(f"network access: {event} {args!r}")

sys.addaudithook(audit)

from loomflow.memory.models import EpisodeDraft, RecallQuery, now_micros
from loomflow.memory.recall.factory import EmbedderOptions, open_embedder
from loomflow.memory.store import open_store

async def main():
    embedder = open_embedder(EmbedderOptions(kind=sys.argv[1]))
    await embedder.start()
    store = open_store(sys.argv[2], sys.argv[3], embedder=embedder)
    await store.start()
    await store.remember("alice", EpisodeDraft("s", "I drive an old automobile", "noted"), now_micros())
    hits = await store.recall("alice", RecallQuery(text="what car do I have", limit=3))
    await store.close()
    await embedder.close()
    assert hits and hits[0].episode.input == "I drive an old automobile", hits

asyncio.run(main())
print("attempts", attempts)
"""


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["wordllama-256", "wordllama-64", "hashing-256"])
@pytest.mark.parametrize("backend", ["sqlite", "chroma"])
def test_local_embedders_open_no_connection_at_start_or_at_run_time(kind: str, backend: str, tmp_path: Path) -> None:
    """An audit hook in a fresh interpreter refuses every connect and name lookup: loading the model,
    starting the store, Remember and Recall must all succeed without one."""
    dsn = f"sqlite://{tmp_path}/memory.db" if backend == "sqlite" else f"chroma://{tmp_path}/chroma"
    done = subprocess.run(
        [sys.executable, "-c", NO_NETWORK, kind, dsn, str(tmp_path)],
        env=source_env(),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "attempts []" in done.stdout, done.stdout


@pytest.fixture
async def fake() -> AsyncIterator[FakeEmbeddings]:
    server = FakeEmbeddings(dim=256)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def test_the_endpoint_embedder_batches_asks_the_dimension_and_sends_the_key(fake: FakeEmbeddings) -> None:
    embedder = OpenAIEmbedder(fake.base_url, "fake-embed", api_key="sk-test", batch_size=2)
    await embedder.start()
    try:
        assert embedder.dim == 256, "the dimension comes from the endpoint's answer at start"
        assert embedder.name == "openai:fake-embed-256"
        texts = ["one apple", "two pears", "", "three plums", "four figs"]
        vectors = await embedder.embed_texts(texts)
    finally:
        await embedder.close()
    assert [len(r["input"]) for r in fake.requests[1:]] == [2, 2], "4 texts with words, 2 per request"
    assert all(r["model"] == "fake-embed" for r in fake.requests)
    assert set(fake.authorizations) == {"Bearer sk-test"}
    assert not vectors[2].any(), "an empty text is not sent and embeds to zeros"
    expected = fake.embedder.embed_many([texts[0], texts[4]])
    np.testing.assert_allclose(vectors[[0, 4]], expected, atol=1e-6)  # matched by index, not answer order


async def test_the_endpoint_embedder_retries_server_errors_then_gives_up_unavailable(fake: FakeEmbeddings) -> None:
    embedder = OpenAIEmbedder(fake.base_url, "fake-embed", dim=256, attempts=3)
    try:
        fake.queue(Reply(status=503), Reply(status=429, headers={"retry-after-ms": "10"}))
        vectors = await embedder.embed_texts(["retried until it works"])
        assert vectors.shape == (1, 256)
        assert len(fake.requests) == 3
        fake.queue(*(Reply(status=500) for _ in range(3)))
        with pytest.raises(Unavailable, match="embeddings endpoint"):
            await embedder.embed_texts(["never answered"])
    finally:
        await embedder.close()


async def test_a_store_recalls_through_the_endpoint_embedder(fake: FakeEmbeddings, tmp_path: Path) -> None:
    embedder = open_embedder(
        EmbedderOptions(kind="openai", base_url=fake.base_url, model="fake-embed", api_key="k", batch_size=8)
    )
    await embedder.start()
    store = SQLiteStore(tmp_path / "memory.db", embedder)
    await store.start()
    try:
        await store.remember_many(
            "alice",
            [EpisodeDraft("s", "we were gardening and planting tomatoes", "nice"), EpisodeDraft("s", "tax", "ok")],
            now_micros(),
        )
        hits = await store.recall("alice", RecallQuery(text="garden plants", limit=1))
        assert hits[0].episode.input == "we were gardening and planting tomatoes"
        assert hits[0].lexical_score == 0
        assert hits[0].vector_score > 0
    finally:
        await store.close()
        await embedder.close()


@pytest.mark.parametrize("backend", ["sqlite", "memory"])
async def test_a_recall_with_nothing_to_search_does_not_embed_its_query(
    fake: FakeEmbeddings, tmp_path: Path, backend: str
) -> None:
    """A user who stored nothing (a new one, or a flood of made-up ids) costs no embedding: with an
    endpoint embedder that would be a network call per Recall. The first episode stored (by any
    process) makes the next Recall embed again."""
    embedder = open_embedder(EmbedderOptions(kind="openai", base_url=fake.base_url, model="fake-embed", api_key="k"))
    await embedder.start()
    store = SQLiteStore(tmp_path / "memory.db", embedder) if backend == "sqlite" else InMemoryStore(embedder=embedder)
    await store.start()
    try:
        asked = len(fake.requests)  # the dimension probe at start
        for user in ("nobody", "nobody-else", "nobody"):
            assert await store.recall(user, RecallQuery(text="garden plants", limit=3)) == []
        assert len(fake.requests) == asked, "no embeddings request for users with nothing stored"
        await store.remember_many(
            "nobody", [EpisodeDraft("s", "we planted tomatoes in the garden", "ok")], now_micros()
        )
        asked = len(fake.requests)
        hits = await store.recall("nobody", RecallQuery(text="garden plants", limit=3))
        assert [h.episode.input for h in hits] == ["we planted tomatoes in the garden"]
        assert [r["input"] for r in fake.requests[asked:]] == [["garden plants"]], "the query is embedded now"
    finally:
        await store.close()
        await embedder.close()


def test_the_default_embedder_is_the_packaged_model() -> None:
    assert DEFAULT_EMBEDDER == "wordllama-256"
    assert open_embedder(EmbedderOptions()).name == "wordllama-256"
    assert open_embedder(EmbedderOptions(kind="wordllama")).name == "wordllama-256"
    assert open_embedder(EmbedderOptions(kind="hashing")).name == "hashing-256"


@pytest.mark.parametrize(
    "options",
    [
        EmbedderOptions(kind="bert"),
        EmbedderOptions(kind="wordllama-300"),
        EmbedderOptions(kind="openai"),
        EmbedderOptions(kind="openai", base_url="http://127.0.0.1:1/v1", model="m", batch_size=0),
    ],
    ids=["unknown", "bad_dimension", "openai_without_endpoint", "zero_batch"],
)
def test_unusable_embedder_settings_are_config_errors_naming_the_variable(options: EmbedderOptions) -> None:
    with pytest.raises(ConfigError, match="LOOMFLOW_MEMORY_EMBEDDER"):
        open_embedder(options)
