"""Shared helpers for the baselines: context matrices, item feature matrices, threads."""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Sequence
from contextlib import contextmanager

import numpy as np
import scipy.sparse as sp

from coldrec.data.catalog import ItemCatalog
from coldrec.recommend.base import UserContext


def n_threads() -> int:
    """CPU cores this process may use (the affinity mask, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


@contextmanager
def single_threaded_blas():
    """BLAS on one thread (implicit and LightFM parallelise themselves) and implicit's warnings off."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, "blas"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*threadpool.*", category=RuntimeWarning)
        warnings.filterwarnings("ignore", message=".*GPU.*")
        warnings.filterwarnings("ignore", message=".*OpenMP.*")
        yield


def context_matrix(
    contexts: Sequence[UserContext], n_items: int, decay: float = 1.0, binary: bool = True
) -> sp.csr_matrix:
    """Contexts x items, float32.

    With `decay` == 1 every known item weighs 1; otherwise the item at position p of k
    (time order, last = most recent) weighs decay ** (k - 1 - p). `binary` keeps the largest
    weight of a repeated item instead of summing the repeats.
    """
    lengths = np.array([len(c.items) for c in contexts], dtype=np.int64)
    total = int(lengths.sum())
    rows = np.repeat(np.arange(len(contexts), dtype=np.int64), lengths)
    cols = np.concatenate([c.items for c in contexts]).astype(np.int64) if total else np.zeros(0, np.int64)
    if total and (cols.min() < 0 or cols.max() >= n_items):
        raise ValueError(f"context item positions must lie in 0..{n_items - 1}")
    if decay == 1.0:
        data = np.ones(total, np.float32)
    else:
        ends = np.repeat(np.cumsum(lengths), lengths)
        age = ends - 1 - np.arange(total)  # 0 for the most recent item of each context
        data = np.power(np.float64(decay), age).astype(np.float32)
    if binary and total:
        # repeated (row, item): keep the largest weight (the most recent occurrence)
        key = rows * n_items + cols
        order = np.lexsort((-data, key))
        first = np.ones(total, bool)
        first[1:] = key[order][1:] != key[order][:-1]
        keep = order[first]
        rows, cols, data = rows[keep], cols[keep], data[keep]
    return sp.csr_matrix((data, (rows, cols)), shape=(len(contexts), n_items), dtype=np.float32)


def row_normalise(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """Rows scaled to sum 1 (empty rows stay empty)."""
    sums = np.asarray(matrix.sum(axis=1)).ravel()
    scale = np.divide(1.0, sums, out=np.zeros_like(sums), where=sums > 0).astype(np.float32)
    return sp.csr_matrix(sp.diags(scale) @ matrix, dtype=np.float32)


def top_k_per_row(matrix: sp.csr_matrix, k: int | None) -> sp.csr_matrix:
    """Keep the k largest entries of every row (ties: lower column first), vectorised."""
    matrix = sp.csr_matrix(matrix)
    matrix.sort_indices()
    if k is None or matrix.nnz == 0:
        return matrix
    row_of = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
    order = np.lexsort((matrix.indices, -matrix.data, row_of))
    rank = np.empty(matrix.nnz, np.int64)
    rank[order] = np.arange(matrix.nnz) - matrix.indptr[row_of[order]]
    keep = rank < k
    return sp.csr_matrix(
        (matrix.data[keep], (row_of[keep], matrix.indices[keep])), shape=matrix.shape, dtype=matrix.dtype
    )


# a small English stop list plus shop noise; sklearn's list is used when available
_STOP = {
    "a", "an", "and", "the", "of", "for", "with", "in", "on", "to", "by", "or", "at", "from", "x",
    "pack", "count", "per", "inch", "inches", "in.", "ea", "each", "pk", "ct",
}  # fmt: skip
_TOKEN = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")


def _stop_words() -> set[str]:
    try:
        from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

        return set(ENGLISH_STOP_WORDS) | _STOP
    except ImportError:  # pragma: no cover
        return _STOP


def title_tokens(titles: Sequence[str]) -> list[list[str]]:
    """Lowercased word tokens of each title, stop words and pure numbers dropped, distinct."""
    stop = _stop_words()
    out = []
    for title in titles:
        tokens = _TOKEN.findall((title or "").lower())
        out.append(sorted({t for t in tokens if t not in stop and not t.isdigit() and len(t) > 1}))
    return out


def item_feature_matrix(
    catalog: ItemCatalog,
    identity_items: np.ndarray | None = None,
    min_items: int = 2,
    max_words: int = 3000,
) -> tuple[sp.csr_matrix, list[str]]:
    """Items x features (float32, rows sum to 1) and the feature names.

    Features: an identity column per catalog item (set only for the items in
    `identity_items`, all when None; items without history then rest on their metadata),
    the leaf category, the brand, and title words found in at least `min_items` items
    (the `max_words` most frequent; ties alphabetical).
    """
    n = len(catalog)
    frame = catalog.frame
    blocks, names = [], []

    identity = np.arange(n) if identity_items is None else np.asarray(identity_items, np.int64)
    blocks.append(
        sp.csr_matrix((np.ones(len(identity), np.float32), (identity, identity)), shape=(n, n), dtype=np.float32)
    )
    names += [f"item:{i}" for i in catalog.ids]

    for prefix, values in (
        ("cat", catalog.leaf_categories()),
        ("brand", frame["brand"].fillna("").astype(str).str.strip().str.lower().to_numpy(dtype=object)),
    ):
        values = np.array([str(v).strip().lower() for v in values], dtype=object)
        present = values != ""
        vocab, codes = np.unique(values[present].astype(str), return_inverse=True)
        rows = np.flatnonzero(present)
        blocks.append(
            sp.csr_matrix((np.ones(len(rows), np.float32), (rows, codes)), shape=(n, len(vocab)), dtype=np.float32)
        )
        names += [f"{prefix}:{v}" for v in vocab]

    tokens = title_tokens(frame["title"].fillna("").astype(str).tolist())
    lengths = np.array([len(t) for t in tokens], np.int64)
    flat = np.array([w for t in tokens for w in t], dtype=object)
    if len(flat):
        vocab, codes = np.unique(flat.astype(str), return_inverse=True)
        doc_freq = np.bincount(codes, minlength=len(vocab))
        eligible = np.flatnonzero(doc_freq >= min_items)
        eligible = eligible[np.lexsort((eligible, -doc_freq[eligible]))][:max_words]
        eligible.sort()
        new_code = np.full(len(vocab), -1, np.int64)
        new_code[eligible] = np.arange(len(eligible))
        rows = np.repeat(np.arange(n), lengths)
        cols = new_code[codes]
        keep = cols >= 0
        blocks.append(
            sp.csr_matrix(
                (np.ones(int(keep.sum()), np.float32), (rows[keep], cols[keep])),
                shape=(n, len(eligible)),
                dtype=np.float32,
            )
        )
        names += [f"word:{w}" for w in vocab[eligible]]

    features = sp.hstack(blocks, format="csr", dtype=np.float32)
    return row_normalise(features), names
