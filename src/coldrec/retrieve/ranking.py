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


def order_by_score(items: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Indices into ``items`` by score descending, ties by item position ascending (NaN last)."""
    scores = np.asarray(scores, np.float64)
    return np.lexsort((np.asarray(items), -np.where(np.isnan(scores), -np.inf, scores)))


def ranks_within(items: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Rank (1 = best) of each of ``items`` under each column of ``scores`` (n_items, n_lists), ties by position."""
    ranks = np.zeros(scores.shape, np.float64)
    for j in range(scores.shape[1]):
        ranks[order_by_score(items, scores[:, j]), j] = np.arange(1, len(items) + 1)
    return ranks


def reciprocal_rank_fusion(ranks: np.ndarray, k: float = 60.0) -> np.ndarray:
    """RRF: the sum over the last axis of ``1 / (k + rank)``, rank from 1; rank 0 = not in that list (adds 0)."""
    ranks = np.asarray(ranks, np.float64)
    return np.where(ranks > 0, 1.0 / (k + np.maximum(ranks, 1.0)), 0.0).sum(axis=-1)


def fuse_rankings(rankings: Sequence[np.ndarray], k: float = 60.0) -> tuple[np.ndarray, np.ndarray]:
    """Reciprocal-rank fusion of ranked lists of item positions (best first; negative entries are padding).

    Returns the items of any list (ascending) and their fused scores.
    """
    lists = [np.asarray(r, np.int64)[np.asarray(r) >= 0] for r in rankings]
    items = np.unique(np.concatenate(lists)) if lists else np.zeros(0, np.int64)
    ranks = np.zeros((len(items), len(lists)))
    for j, ranked in enumerate(lists):
        ranks[np.searchsorted(items, ranked), j] = np.arange(1, len(ranked) + 1)
    return items, reciprocal_rank_fusion(ranks, k)
