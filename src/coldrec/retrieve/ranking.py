"""Exact top-n over full-catalog score matrices, with deterministic tie-breaking."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def sortable_keys(scores: np.ndarray, tie_break: np.ndarray | None, n_ranks: int | None = None) -> np.ndarray:
    """int64 keys whose order is (score desc, then tie_break rank asc), exact for float32.

    The float32 score's bits are mapped to an order-preserving int32 and put in the high
    half; the low half holds the inverted tie-break rank. A single argpartition on these
    keys then gives exactly the order a full lexicographic sort would.
    """
    scores = np.ascontiguousarray(scores, dtype=np.float32) + np.float32(0)  # -0.0 ties with 0.0
    scores = np.where(np.isnan(scores), np.float32(-np.inf), scores)  # NaN ranks last
    bits = scores.view(np.int32).astype(np.int64)
    ordered = np.where(bits < 0, bits ^ 0x7FFFFFFF, bits)  # negative floats: reverse their bit order
    n_items = scores.shape[-1]
    if tie_break is None:
        tie_break = np.arange(n_items)
    n_ranks = n_items if n_ranks is None else n_ranks  # tie-break ranks lie in 0..n_ranks-1
    return (ordered << 32) | (np.int64(n_ranks) - 1 - np.asarray(tie_break, np.int64))


def top_n(
    scores: np.ndarray,
    n: int,
    exclude: Sequence[np.ndarray] | None = None,
    tie_break: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Item positions (users x n) by descending score; ties by `tie_break` rank (lower first).

    `exclude[u]` lists item positions never to return for user u. NaN scores rank last.
    """
    scores = np.array(scores, dtype=np.float32, copy=True)
    scores[np.isnan(scores)] = -np.inf
    if exclude is not None:
        rows = np.repeat(np.arange(len(exclude)), [len(e) for e in exclude])
        cols = np.concatenate([np.asarray(e, dtype=np.int64) for e in exclude]) if len(exclude) else np.zeros(0, int)
        scores[rows, cols] = -np.inf
        allowed = scores.shape[1] - np.array([len(np.unique(e)) for e in exclude])
    else:
        allowed = np.full(scores.shape[0], scores.shape[1])
    n = min(n, scores.shape[1])
    if n <= 0 or not len(scores):
        return np.zeros((len(scores), max(n, 0)), np.int64), np.zeros((len(scores), max(n, 0)), np.float32)
    keys = sortable_keys(scores, tie_break)
    if n < scores.shape[1]:
        part = np.argpartition(-keys, n - 1, axis=1)[:, :n]
    else:
        part = np.tile(np.arange(n), (scores.shape[0], 1))
    order = np.argsort(-np.take_along_axis(keys, part, axis=1), axis=1, kind="stable")
    items = np.take_along_axis(part, order, axis=1)
    top_scores = np.take_along_axis(scores, items, axis=1)
    # users with fewer than n allowed items: pad with -1 rather than return an excluded item
    short = allowed < n
    if short.any():
        mask = np.arange(n)[None, :] >= allowed[:, None]
        items = np.where(mask, -1, items)
        top_scores = np.where(mask, -np.inf, top_scores)
    return items.astype(np.int64), top_scores
