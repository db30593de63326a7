"""``--memory-embedder``: which embedder a Memory process uses, from its settings."""

from __future__ import annotations

from dataclasses import dataclass

from loomflow.kernel import extras
from loomflow.kernel.config import ConfigError
from loomflow.memory.recall.embedding import Embedder, HashingEmbedder
from loomflow.memory.recall.local import WORDLLAMA_DIMS, WordLlamaEmbedder

DEFAULT_EMBEDDER = "wordllama-256"
CHOICES = ("wordllama-256", "wordllama-128", "wordllama-64", "hashing-256", "openai")


@dataclass(frozen=True)
class EmbedderOptions:
    kind: str = DEFAULT_EMBEDDER
    base_url: str = ""
    api_key: str = ""
    model: str = ""
    dim: int = 0
    batch_size: int = 64
    attempts: int = 3
    timeout_s: float = 30.0


def open_embedder(options: EmbedderOptions) -> Embedder:
    kind = options.kind.strip().lower()
    if kind in ("hashing", "hashing-256"):
        return HashingEmbedder()
    if kind == "wordllama" or kind.startswith("wordllama-"):
        dim = 256 if kind == "wordllama" else kind.removeprefix("wordllama-")
        if str(dim) not in {str(d) for d in WORDLLAMA_DIMS}:
            raise ConfigError(f"LOOMFLOW_MEMORY_EMBEDDER={options.kind!r}: wordllama comes in {WORDLLAMA_DIMS}")
        return WordLlamaEmbedder(int(dim))
    if kind == "openai":
        if not options.base_url or not options.model:
            raise ConfigError(
                "LOOMFLOW_MEMORY_EMBEDDER=openai needs LOOMFLOW_MEMORY_EMBEDDER_BASE_URL "
                "and LOOMFLOW_MEMORY_EMBEDDER_MODEL"
            )
        if options.batch_size < 1 or options.attempts < 1 or options.dim < 0:
            raise ConfigError("LOOMFLOW_MEMORY_EMBEDDER_BATCH_SIZE and _ATTEMPTS must be >= 1, _DIM >= 0")
        extras.require("openai", "LOOMFLOW_MEMORY_EMBEDDER=openai")
        from loomflow.memory.recall.remote import OpenAIEmbedder  # the openai extra: imported only when chosen

        return OpenAIEmbedder(
            options.base_url,
            options.model,
            options.api_key,
            options.dim,
            options.batch_size,
            options.attempts,
            options.timeout_s,
        )
    raise ConfigError(f"LOOMFLOW_MEMORY_EMBEDDER={options.kind!r}: use one of {', '.join(CHOICES)}")
