"""Embedders: the interface, the feature-hashing fallback, and the tagged storage form of a vector.

Every embedder has a ``name`` that includes its dimension (``hashing-256``,
``wordllama-256``, ``openai:<model>-<dim>``). Stores keep each vector with
that name and its dimension (:func:`to_bytes`), and a vector is only ever
compared with a query embedded by the same embedder: a stored vector of another
embedder is treated as missing (:func:`usable`), so switching embedders never
mixes two vector spaces; ``loomflow memory reembed`` then rewrites them.

The hashing embedder needs no model: each word contributes its own feature and
its character trigrams (so "remember" and "remembered" land close), hashed
with CRC-32 into ``dim`` signed buckets; the sum is L2-normalised, so a dot
product is a cosine. It knows no synonyms (car/automobile 0.14): the packaged
models of :mod:`loomflow.memory.recall.local` do.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from functools import lru_cache
from typing import Protocol

import numpy as np
import numpy.typing as npt

from loomflow.memory.recall.text import tokens

DIM = 256
"""Dimensions of the hashing embedder (and of every vector stored before embedders were named)."""

LEGACY_EMBEDDER = f"hashing-{DIM}"
"""The embedder of an untagged stored vector: the only one there was before vectors were tagged."""

Vector = npt.NDArray[np.float32]
Matrix = npt.NDArray[np.float32]

_TRIGRAM_WEIGHT = 0.35


class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors (all zeros for a text without words)."""

    @property
    def name(self) -> str:
        """Identifies the vector space, dimension included: vectors of different names are never compared."""
        ...

    @property
    def dim(self) -> int: ...

    async def embed_texts(self, texts: Sequence[str]) -> Matrix:
        """A (len(texts), dim) matrix; may call a remote model (then it can raise ``Unavailable``)."""
        ...

    async def start(self) -> None:
        """Loads the model or checks the endpoint; local embedders never touch the network."""
        ...

    async def close(self) -> None: ...


def normalise_rows(matrix: Matrix) -> Matrix:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    np.divide(matrix, norms, out=matrix, where=norms > 0)
    return matrix


class LocalEmbedder:
    """Base of the in-process embedders: ``embed_many`` is synchronous and cheap enough for the event loop."""

    @property
    def name(self) -> str:
        raise NotImplementedError

    @property
    def dim(self) -> int:
        raise NotImplementedError

    def embed_many(self, texts: Sequence[str]) -> Matrix:
        raise NotImplementedError

    def embed(self, text: str) -> Vector:
        vector: Vector = self.embed_many([text])[0]
        return vector

    async def embed_texts(self, texts: Sequence[str]) -> Matrix:
        return self.embed_many(texts)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


class HashingEmbedder(LocalEmbedder):
    def __init__(self, dim: int = DIM) -> None:
        self._dim = dim
        self._features = lru_cache(maxsize=200_000)(self._token_features)

    @property
    def name(self) -> str:
        return f"hashing-{self._dim}"

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

    def embed_many(self, texts: Sequence[str]) -> Matrix:
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        return np.stack([self.embed(t) for t in texts])


# -- storage form -------------------------------------------------------------------

_MAGIC = b"LFv\x01"
_HEADER = struct.Struct("<4sHB")
"""magic, dimension, length of the embedder name; then the name (UTF-8), then float16 values."""


def to_bytes(vector: Vector, embedder: str) -> bytes:
    """Compact storage form, tagged with its embedder and dimension: float16 values (cosine error < 1e-3)."""
    name = embedder.encode()
    return _HEADER.pack(_MAGIC, vector.shape[0], len(name)) + name + vector.astype(np.float16).tobytes()


def from_bytes(raw: bytes) -> tuple[str, npt.NDArray[np.float16]]:
    """(embedder name, vector) of a stored vector; an untagged one is a 256-dimension hashing vector."""
    if raw[:4] == _MAGIC and len(raw) >= _HEADER.size:
        _, dim, length = _HEADER.unpack_from(raw)
        start = _HEADER.size + length
        if len(raw) == start + 2 * dim:
            return bytes(raw[_HEADER.size : start]).decode(), np.frombuffer(raw, dtype=np.float16, offset=start)
    return LEGACY_EMBEDDER, np.frombuffer(raw, dtype=np.float16)


def usable(raw: bytes | None, embedder: Embedder) -> npt.NDArray[np.float16] | None:
    """The stored vector when ``embedder`` made it, else None (another vector space: never compared)."""
    if raw is None:
        return None
    name, vector = from_bytes(raw)
    return vector if name == embedder.name and vector.shape[0] == embedder.dim else None


def embedder_of(raw: bytes | None) -> str | None:
    return None if raw is None else from_bytes(raw)[0]
