"""Per-embedder recall tuning, measured by bench/recall_quality.py (figures in docs/memory.md).

``lexical_weight`` and ``vector_weight`` weigh the two rankings in the fusion;
``min_similarity`` is the cosine below which the Agent drops a recalled episode
that shares no word with the prompt (an embedder's cosines have their own scale:
unrelated texts score ~0 with hashing but ~0.3 with WordLlama).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Tuning:
    min_similarity: float
    lexical_weight: float = 1.0
    vector_weight: float = 1.0

    @property
    def weights(self) -> tuple[float, float]:
        return self.lexical_weight, self.vector_weight


DEFAULT = Tuning(min_similarity=0.2)
"""Hashing embedder, and any embedder without measured figures (e.g. an endpoint's model)."""

BY_FAMILY: dict[str, Tuning] = {
    "hashing": DEFAULT,
    "wordllama": Tuning(min_similarity=0.5, lexical_weight=1.0, vector_weight=1.0),
}


def tuning_for(embedder: str) -> Tuning:
    """The tuning of an embedder name such as ``wordllama-256`` (its family is the part before the last ``-``)."""
    family = embedder.rsplit("-", 1)[0] if embedder[-1:].isdigit() else embedder
    return BY_FAMILY.get(family, DEFAULT)
