"""Packaged local embedding models: weights installed with a Python package, never downloaded.

WordLlama (``wordllama`` package) is a static embedding model: a 32,000-token
table of 256-dimensional vectors distilled from LLM token embeddings. A text's
vector is the mean of its tokens' rows, L2-normalised, with English stop words
left out of the mean (recall@5 of the vector ranking alone 0.85 -> 0.88 on
bench/data/recall_quality.yaml): ~20 µs per short text
in process, no inference runtime, and it knows synonyms (car/automobile 0.67,
doctor/physician 0.64, doctor/banana -0.04). Its dimensions are Matryoshka
ordered, so the first 128 or 64 are a smaller model of their own.

The weights and tokenizer are read straight from the installed package folder
(found without importing the package, whose import configures root logging and
whose loader would try the network for a file it ships): nothing here opens a
socket (tests/memory/test_embedders.py proves it).
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import numpy.typing as npt
from safetensors.numpy import load_file
from tokenizers import Tokenizer

from loomflow.memory.recall.embedding import LocalEmbedder, Matrix, Vector
from loomflow.memory.recall.text import content_words

WORDLLAMA_DIMS = (256, 128, 64)
_WEIGHTS = "weights/l2_supercat_256.safetensors"
_TOKENIZER = "tokenizers/l2_supercat_tokenizer_config.json"


def package_folder(name: str) -> Path:
    """Where an installed package lives, without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"the {name!r} package is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


class WordLlamaEmbedder(LocalEmbedder):
    def __init__(self, dim: int = 256) -> None:
        if dim not in WORDLLAMA_DIMS:
            raise ValueError(f"wordllama dimensions are one of {WORDLLAMA_DIMS}, not {dim}")
        self._dim = dim
        self._table: npt.NDArray[np.float16] | None = None
        self._tokenizer: Tokenizer | None = None
        self._ids_of = lru_cache(maxsize=200_000)(self._word_ids)

    @property
    def name(self) -> str:
        return f"wordllama-{self._dim}"

    @property
    def dim(self) -> int:
        return self._dim

    def load(self) -> None:
        if self._table is not None:
            return
        folder = package_folder("wordllama")
        # Kept as stored (float16, 16 MB): only the rows a text uses are widened, which spares start-up a
        # conversion of the whole table.
        table = np.ascontiguousarray(load_file(str(folder / _WEIGHTS))["embedding.weight"][:, : self._dim])
        if len(table) > np.iinfo(np.uint16).max + 1:
            raise ValueError(f"{_WEIGHTS}: {len(table)} rows do not fit the uint16 token ids cached per word")
        self._table = table
        self._tokenizer = Tokenizer.from_file(str(folder / _TOKENIZER))
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()

    async def start(self) -> None:
        self.load()

    def _word_ids(self, word: str) -> bytes:
        """The word's token ids as uint16s (the table has 32,000 rows): cached as one small bytes object,
        not a tuple of ints (~36 bytes per id; a random id-like word of a dozen tokens held ~0.5 KB)."""
        assert self._tokenizer is not None
        return np.asarray(self._tokenizer.encode(word, add_special_tokens=False).ids, dtype=np.uint16).tobytes()

    def _embed_one(self, table: npt.NDArray[np.float16], text: str) -> Vector:
        # Word by word through a cache: a Recall's query costs dictionary lookups, not a tokenizer run.
        ids = b"".join([self._ids_of(word) for word in content_words(text).split()])
        if not ids:
            return np.zeros(self._dim, dtype=np.float32)
        rows = np.frombuffer(ids, dtype=np.uint16)
        # The sum, not the mean: normalising makes them the same vector, in fewer numpy calls.
        vector: Vector = np.add.reduce(table[rows], axis=0, dtype=np.float32)  # .sum's own work, minus its wrappers
        norm = math.sqrt(float(vector @ vector))
        return vector / norm if norm > 0 else vector

    def embed(self, text: str) -> Vector:
        self.load()
        assert self._table is not None
        return self._embed_one(self._table, text)

    def embed_many(self, texts: Sequence[str]) -> Matrix:
        self.load()
        table = self._table
        assert table is not None
        if len(texts) == 1:  # a Recall's query: a view, not a stacked copy
            return self._embed_one(table, texts[0])[np.newaxis]
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        return np.stack([self._embed_one(table, text) for text in texts])
