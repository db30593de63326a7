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
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from safetensors.numpy import load_file
from tokenizers import Tokenizer

from loomflow.memory.recall.embedding import LocalEmbedder, Matrix, normalise_rows
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
        self._table = np.ascontiguousarray(load_file(str(folder / _WEIGHTS))["embedding.weight"][:, : self._dim])
        self._tokenizer = Tokenizer.from_file(str(folder / _TOKENIZER))
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()

    async def start(self) -> None:
        self.load()

    def embed_many(self, texts: Sequence[str]) -> Matrix:
        self.load()
        table, tokenizer = self._table, self._tokenizer
        assert table is not None
        assert tokenizer is not None
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        if not texts:
            return out
        encoded = tokenizer.encode_batch([content_words(t) for t in texts], add_special_tokens=False)
        for row, encoding in enumerate(encoded):
            ids = encoding.ids
            if ids:
                out[row] = table[ids].astype(np.float32).mean(axis=0)
        return normalise_rows(out)
