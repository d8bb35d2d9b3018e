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


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of each row of a dense (n, n_items) score matrix.

    Scores descending, ties by position ascending (NaN ranks last). ``k`` larger than
    the row length returns the whole row, ordered.
    """
    from coldrec.retrieve.ranking import top_n

    return top_n(np.atleast_2d(np.asarray(scores, dtype=np.float32)), int(k))


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
