"""Candidate retrieval: a lexical (BM25) index and an exact dense (FAISS) index.

Both return ``(positions int64 (n_queries, k), scores float32 (n_queries, k))`` with
scores descending and ties broken by item position ascending. Submodules are
imported lazily, so ``import coldrec.retrieve`` does not load FAISS or jieba.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import numpy as np

_EXPORTS = {"BM25Index": ".lexical", "tokenize": ".lexical", "DenseIndex": ".dense"}
__all__ = ["top_k", *_EXPORTS]

if TYPE_CHECKING:
    from .dense import DenseIndex
    from .lexical import BM25Index, tokenize


def _order_keys(scores: np.ndarray) -> np.ndarray:
    """int64 keys ordered like (float32 score desc, position asc) — a larger key ranks higher."""
    scores = np.ascontiguousarray(scores, dtype=np.float32) + np.float32(0)  # -0.0 ties with 0.0
    scores = np.where(np.isnan(scores), np.float32(-np.inf), scores)
    bits = scores.view(np.int32).astype(np.int64)
    ordered = np.where(bits < 0, bits ^ 0x7FFFFFFF, bits)
    n = scores.shape[-1]
    return (ordered << 32) | (np.int64(n) - 1 - np.arange(n, dtype=np.int64))


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of each row of a dense (n, n_items) score matrix.

    Scores descending, ties by position ascending (NaN ranks last). ``k`` larger than
    the row length returns the whole row, ordered.
    """
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float32))
    n_rows, n_items = scores.shape
    k = max(0, min(int(k), n_items))
    if k == 0 or n_rows == 0:
        return np.zeros((n_rows, k), np.int64), np.zeros((n_rows, k), np.float32)
    keys = _order_keys(scores)
    if k < n_items:
        part = np.argpartition(-keys, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(n_items), (n_rows, n_items))
    order = np.argsort(-np.take_along_axis(keys, part, axis=1), axis=1)  # keys are distinct
    positions = np.take_along_axis(part, order, axis=1).astype(np.int64)
    return positions, np.take_along_axis(scores, positions, axis=1)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
