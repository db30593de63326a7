"""Embeddings from an OpenAI-compatible ``/v1/embeddings`` endpoint (OpenAI, vLLM, TEI, Ollama).

Texts go in batches of ``batch_size`` per request through the ``openai`` SDK,
which retries 429, 5xx and connection errors with backoff (``attempts``).
The dimension is the configured one, or the one the endpoint answers at start
(one probe request). What the endpoint returns is L2-normalised here, so a dot
product stays a cosine whatever the server does. An endpoint that keeps
failing makes the write or recall UNAVAILABLE, never a silent fallback to
another vector space.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import openai

from loomflow.kernel.errors import Unavailable
from loomflow.memory.recall.embedding import Matrix, normalise_rows


class OpenAIEmbedder:
    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str = "",
        dim: int = 0,
        batch_size: int = 64,
        attempts: int = 3,
        timeout_s: float = 30.0,
    ) -> None:
        if not base_url or not model:
            raise ValueError("an embeddings endpoint needs a base URL and a model")
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self._model = model
        self._dim = dim
        self._batch_size = batch_size
        self._client = openai.AsyncOpenAI(
            base_url=base_url,
            api_key=api_key or "unused",  # local servers (vLLM, TEI, Ollama) take any key
            max_retries=max(0, attempts - 1),
            timeout=timeout_s,
        )

    @property
    def name(self) -> str:
        return f"openai:{self._model}-{self._dim}"

    @property
    def dim(self) -> int:
        if not self._dim:
            raise RuntimeError("the embeddings endpoint's dimension is known after start()")
        return self._dim

    async def start(self) -> None:
        if not self._dim:
            self._dim = int((await self._request(["dimension probe"])).shape[1])

    async def close(self) -> None:
        await self._client.close()

    async def _request(self, texts: Sequence[str]) -> Matrix:
        try:
            response = await self._client.embeddings.create(
                model=self._model, input=list(texts), encoding_format="float"
            )
        except openai.APIError as exc:
            raise Unavailable(f"embeddings endpoint failed: {type(exc).__name__}: {exc}") from exc
        rows = sorted(response.data, key=lambda item: item.index)
        if len(rows) != len(texts):
            raise Unavailable(f"embeddings endpoint returned {len(rows)} vectors for {len(texts)} texts")
        return np.asarray([row.embedding for row in rows], dtype=np.float32)

    async def embed_texts(self, texts: Sequence[str]) -> Matrix:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        # Empty strings are refused by some servers: they embed to zeros, as with the local embedders.
        present = [i for i, t in enumerate(texts) if t.strip()]
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(present), self._batch_size):
            chunk = present[start : start + self._batch_size]
            vectors = await self._request([texts[i] for i in chunk])
            if vectors.shape[1] != self.dim:
                raise Unavailable(f"embeddings endpoint returned dimension {vectors.shape[1]}, expected {self.dim}")
            out[chunk] = vectors
        return normalise_rows(out)
