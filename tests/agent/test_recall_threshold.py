"""The Agent's similarity threshold follows what Memory reports for its embedder (each embedder has
its own cosine scale): Memory answers the tuned threshold with every Recall, the Agent applies it."""

from __future__ import annotations

import pytest

from loomflow.agent.models.echo import EchoModel
from loomflow.agent.run.limits import RunLimits
from loomflow.agent.run.memories import select_memories
from loomflow.memory.recall.embedding import HashingEmbedder
from loomflow.memory.recall.tuning import DEFAULT, tuning_for
from loomflow.memory.servicer import MemoryServicer
from loomflow.memory.store.inmemory import InMemoryStore
from loomflow.v1 import memory_pb2, tenancy_pb2


def _kept(limits: RunLimits, reported: float, cosines: list[float]) -> list[str]:
    hits = [
        memory_pb2.RecallHit(episode=memory_pb2.Episode(id=f"e{n}", input=f"turn {n}"), vector_score=c)
        for n, c in enumerate(cosines)
    ]
    return [episode_id for episode_id, _ in select_memories(hits, reported, limits, EchoModel())]


@pytest.mark.parametrize(
    ("embedder", "kept"),
    [("wordllama-256", ["e0", "e1"]), ("hashing-256", ["e0"]), ("openai:some-model-1024", ["e0"])],
)
def test_by_default_a_wordless_hit_needs_the_cosine_tuned_for_its_embedder(embedder: str, kept: list[str]) -> None:
    # 0.15 clears wordllama-256's 0.11 but not hashing's 0.2 (nor the 0.2 of an unmeasured model).
    reported = tuning_for(embedder).min_similarity
    assert reported == {"wordllama-256": 0.11}.get(embedder, DEFAULT.min_similarity)
    assert _kept(RunLimits(), reported, [0.5, 0.15, 0.05]) == kept


def test_an_explicit_threshold_overrides_the_embedders() -> None:
    assert _kept(RunLimits(recall_min_similarity=0.4), 0.11, [0.5, 0.15]) == ["e0"]
    assert _kept(RunLimits(recall_min_similarity=0.0), 0.2, [0.5, 0.15, 0.05]) == ["e0", "e1", "e2"]


async def test_memory_reports_its_embedders_tuned_threshold_with_every_recall() -> None:
    embedder = HashingEmbedder()
    servicer = MemoryServicer(InMemoryStore(embedder=embedder), embedder=embedder)
    reply = await servicer.Recall(
        memory_pb2.RecallRequest(scope=tenancy_pb2.UserScope(user_id="alice"), query="anything"), None
    )
    assert reply.embedder == embedder.name
    assert reply.min_vector_similarity == pytest.approx(tuning_for(embedder.name).min_similarity)
