"""Deterministic embeddings by feature hashing: no model, no download, same vector in every process.

Each word contributes its own feature and its character trigrams (so "remember"
and "remembered" land close), hashed with CRC-32 into ``dim`` signed buckets;
the sum is L2-normalised, so a dot product is a cosine. A real sentence
embedder can replace it behind :class:`Embedder`.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from functools import lru_cache
from typing import Protocol

import numpy as np
import numpy.typing as npt

from loomflow.memory.recall.text import tokens

DIM = 256
"""Dimensions of the default embedder (and of the stored vectors)."""

Vector = npt.NDArray[np.float32]

_TRIGRAM_WEIGHT = 0.35


class Embedder(Protocol):
    @property
    def dim(self) -> int: ...

    def embed(self, text: str) -> Vector:
        """An L2-normalised float32 vector of length ``dim`` (all zeros for text without words)."""
        ...


class HashingEmbedder:
    def __init__(self, dim: int = DIM) -> None:
        self._dim = dim
        self._features = lru_cache(maxsize=200_000)(self._token_features)

    @property
    def dim(self) -> int:
        return self._dim

    def _bucket(self, feature: str) -> tuple[int, float]:
        h = zlib.crc32(feature.encode())
        return h % self._dim, (1.0 if h & 0x80000000 else -1.0)

    def _token_features(self, token: str) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float32]]:
        index, sign = self._bucket("w:" + token)
        indices, weights = [index], [sign]
        padded = f"<{token}>"
        for i in range(len(padded) - 2):
            index, sign = self._bucket("c:" + padded[i : i + 3])
            indices.append(index)
            weights.append(sign * _TRIGRAM_WEIGHT)
        return np.asarray(indices, dtype=np.intp), np.asarray(weights, dtype=np.float32)

    def embed(self, text: str) -> Vector:
        words = tokens(text)
        if not words:
            return np.zeros(self._dim, dtype=np.float32)
        parts = [self._features(w) for w in words]
        indices = np.concatenate([p[0] for p in parts])
        weights = np.concatenate([p[1] for p in parts])
        vector = np.bincount(indices, weights=weights, minlength=self._dim).astype(np.float32)
        norm = float(np.linalg.norm(vector))
        return vector / norm if norm > 0 else vector

    def embed_many(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        return np.stack([self.embed(t) for t in texts])


def to_bytes(vector: Vector) -> bytes:
    """Compact storage form: float16 (half the bytes; cosine error < 1e-3)."""
    return vector.astype(np.float16).tobytes()


def from_bytes(raw: bytes) -> npt.NDArray[np.float16]:
    return np.frombuffer(raw, dtype=np.float16)
