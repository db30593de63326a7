"""Per-embedder recall tuning, measured by bench/recall_quality.py (figures in docs/memory.md).

``lexical_weight`` and ``vector_weight`` weigh the two rankings in the fusion
(the vector weight that gave the best recall@5 on the tuning half of the
labelled set, lexical weight 1). ``min_similarity`` is the cosine below which
the Agent drops a recalled episode sharing no word with the prompt: for the
packaged models, the cosine 90% of labelled answers reach (each embedder's
cosines have their own scale). The hashing embedder keeps the 0.2 it had: its
cosines do not separate answers from other turns at all (median 0.18 for
answers, 0.20 for the other top-5 hits), so its threshold only screens noise.
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
"""Any embedder without measured figures (e.g. an endpoint's model): equal weights, the old threshold."""

BY_EMBEDDER: dict[str, Tuning] = {
    "hashing-256": Tuning(min_similarity=0.2, lexical_weight=1.0, vector_weight=0.5),
    "wordllama-256": Tuning(min_similarity=0.11, lexical_weight=1.0, vector_weight=6.0),
    "wordllama-128": Tuning(min_similarity=0.12, lexical_weight=1.0, vector_weight=10.0),
    "wordllama-64": Tuning(min_similarity=0.12, lexical_weight=1.0, vector_weight=6.0),
}


def tuning_for(embedder: str) -> Tuning:
    """The tuning of an embedder name such as ``wordllama-256`` (DEFAULT for one not measured)."""
    return BY_EMBEDDER.get(embedder, DEFAULT)
