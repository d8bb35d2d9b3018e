"""`HashingEncoder`: bag-of-tokens vectors without a language model (tests, demos, synthetic load tests).

Each token (a run of word characters, lowercased) is a seeded random vector; a text is the normalised sum of its
tokens' vectors, so texts sharing words are close and nothing else is. Deterministic, fast, and plain data: its
class is registered with `coldrec.model`, so a model directory saves the encoder itself (its dim and seed), not
only its fingerprint. Chinese runs of characters are one token each (no segmentation): it knows no language.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from coldrec.model.registry import register_class

from .base import TextEncoder

_TOKEN = re.compile(r"\w+")


@register_class
class HashingEncoder(TextEncoder):
    """Deterministic bag-of-tokens vectors: each token a seeded random vector; texts their normalised sum."""

    name = "hashing"

    def __init__(self, dim: int = 384, seed: int = 0):
        self._dim = int(dim)
        self.seed = int(seed)
        self._cache: dict[str, np.ndarray] = {}

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def fingerprint(self) -> str:
        return f"hashing-{self._dim}-{self.seed}"

    # the saved state: what a model directory records (the same keys as before the class moved here)
    def __getstate__(self):
        return {"dim": self._dim, "seed": self.seed, "fingerprint": self.fingerprint}

    def __setstate__(self, state):
        self._dim, self.seed, self._cache = int(state["dim"]), int(state["seed"]), {}

    def _token(self, token: str) -> np.ndarray:
        vector = self._cache.get(token)
        if vector is None:
            seed = zlib.crc32(token.encode("utf-8")) ^ self.seed
            vector = self._cache[token] = np.random.default_rng(seed).standard_normal(self._dim).astype(np.float32)
        return vector

    def encode(self, texts: Sequence[str], batch_size: int | None = None,
               show_progress: bool | None = None) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("encode() takes a sequence of strings, not a single string")
        tokens = [_TOKEN.findall(str(text).lower()) for text in texts]
        vocabulary: dict[str, int] = {}
        rows, cols = [], []
        for row, words in enumerate(tokens):
            for word in words:
                rows.append(row)
                cols.append(vocabulary.setdefault(word, len(vocabulary)))
        table = (np.stack([self._token(word) for word in vocabulary]) if vocabulary
                 else np.zeros((0, self._dim), np.float32))
        counts = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(texts), len(vocabulary)))
        out = np.asarray(counts @ table, np.float32).reshape(len(texts), self._dim)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)

    def __repr__(self) -> str:
        return f"HashingEncoder(dim={self._dim}, seed={self.seed})"
