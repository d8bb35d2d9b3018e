"""Ranking metrics per user and the paired bootstrap."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

CUTOFFS = {"ndcg@10": 10, "recall@20": 20, "hr@10": 10}
_DISCOUNT = 1.0 / np.log2(np.arange(2, 102))


def hit_matrix(top: np.ndarray, targets: Sequence[np.ndarray]) -> np.ndarray:
    """hits[u, r] is True when the item at rank r of user u is one of u's targets."""
    rows = np.repeat(np.arange(len(targets)), [len(t) for t in targets])
    cols = np.concatenate(targets) if len(targets) else np.zeros(0, np.int64)
    n_items = max(int(top.max(initial=0)), int(cols.max(initial=0))) + 1
    is_target = np.zeros((len(targets), n_items), dtype=bool)
    is_target[rows, cols] = True
    valid = top >= 0
    return np.where(valid, np.take_along_axis(is_target, np.where(valid, top, 0), axis=1), False)


def user_metrics(top: np.ndarray, targets: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """NDCG@10 (binary gains), Recall@20 (hits / min(|T|, 20)) and HR@10, one value per user."""
    hits = hit_matrix(top[:, :20], targets)
    if hits.shape[1] < 20:  # a catalog of fewer than 20 items: the missing ranks hold nothing
        hits = np.pad(hits, ((0, 0), (0, 20 - hits.shape[1])))
    n_targets = np.array([len(t) for t in targets], dtype=np.float64)
    dcg = (hits[:, :10] * _DISCOUNT[:10]).sum(axis=1)
    ideal = np.cumsum(_DISCOUNT[:10])[np.minimum(n_targets, 10).astype(int) - 1]
    return {
        "ndcg@10": dcg / ideal,
        "recall@20": hits[:, :20].sum(axis=1) / np.minimum(n_targets, 20),
        "hr@10": hits[:, :10].any(axis=1).astype(np.float64),
    }


def coverage(top: np.ndarray, n_items: int, k: int = 10) -> float:
    items = top[:, :k]
    return float(np.unique(items[items >= 0]).size / n_items)


def paired_bootstrap(a: np.ndarray, b: np.ndarray, resamples: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of a - b over the units (users, queries) where both are defined, and its 95% interval."""
    diff = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    diff = diff[~np.isnan(diff)]
    if not len(diff):
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(resamples, len(diff)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(diff.mean()), float(low), float(high)
