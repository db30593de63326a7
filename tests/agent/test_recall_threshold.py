"""The Agent's similarity threshold follows the embedder Memory reports (each has its own cosine scale)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from loomflow.agent.models.echo import EchoModel
from loomflow.agent.runner import RunLimits, _Run
from loomflow.memory.recall.tuning import DEFAULT, tuning_for
from loomflow.v1 import memory_pb2


def _kept(limits: RunLimits, embedder: str, cosines: list[float]) -> list[str]:
    run = object.__new__(_Run)  # only what _use_memories reads: the limits, the model, the lists it fills
    run.runner = SimpleNamespace(limits=limits)  # type: ignore[assignment]
    run.model = EchoModel()
    run.memories, run.recalled_ids = [], []
    hits = [
        memory_pb2.RecallHit(episode=memory_pb2.Episode(id=f"e{n}", input=f"turn {n}"), vector_score=c)
        for n, c in enumerate(cosines)
    ]
    run._use_memories(hits, embedder)
    return run.recalled_ids


@pytest.mark.parametrize(
    ("embedder", "kept"),
    [("wordllama-256", ["e0", "e1"]), ("hashing-256", ["e0"]), ("openai:some-model-1024", ["e0"])],
)
def test_by_default_a_wordless_hit_needs_the_cosine_tuned_for_its_embedder(embedder: str, kept: list[str]) -> None:
    # 0.15 clears wordllama-256's 0.11 but not hashing's 0.2 (nor the 0.2 of an unmeasured model).
    assert _kept(RunLimits(), embedder, [0.5, 0.15, 0.05]) == kept
    assert tuning_for(embedder).min_similarity == {"wordllama-256": 0.11}.get(embedder, DEFAULT.min_similarity)


def test_an_explicit_threshold_overrides_the_embedders() -> None:
    assert _kept(RunLimits(recall_min_similarity=0.4), "wordllama-256", [0.5, 0.15]) == ["e0"]
    assert _kept(RunLimits(recall_min_similarity=0.0), "hashing-256", [0.5, 0.15, 0.05]) == ["e0", "e1", "e2"]
