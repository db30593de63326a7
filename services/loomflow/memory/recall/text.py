"""Tokens and term ids shared by BM25 and the hashing embedder."""

from __future__ import annotations

import re
import zlib
from collections import Counter

import numpy as np
import numpy.typing as npt

_WORD = re.compile(r"\w+")


def tokens(text: str) -> list[str]:
    """Lower-cased word tokens (Unicode letters, digits, underscore)."""
    return _WORD.findall(text.lower())


def term_id(token: str) -> int:
    """A stable 32-bit id for a token (CRC-32: deterministic across processes, unlike ``hash``)."""
    return zlib.crc32(token.encode())


def term_counts(text: str) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.float32], int]:
    """A document's distinct term ids, their frequencies, and its length in tokens."""
    words = tokens(text)
    counts = Counter(term_id(w) for w in words)
    ids = np.fromiter(counts.keys(), dtype=np.uint32, count=len(counts))
    tfs = np.fromiter(counts.values(), dtype=np.float32, count=len(counts))
    return ids, tfs, len(words)


def query_terms(text: str) -> npt.NDArray[np.uint32]:
    """A query's distinct term ids (BM25 counts each query term once)."""
    return np.unique(np.fromiter((term_id(w) for w in tokens(text)), dtype=np.uint32))
