"""Ranking metrics for recommendation and search, and the paired bootstrap of their differences.

A metric is a small object with a cutoff, ``NDCG(k=10)``, ``Recall(k=20)``, ``HitRate(k=10)``,
``MRR(k=10)``, named like its report column (``"ndcg@10"``), whose `compute` gives one value per
unit (user or query) from `RankedGains`: the gain of the item at each rank of each unit's list,
looked up in the unit's `Judgments`. Judgements are graded (search: gain ``2^(rel-1) - 1``) or
binary (a recommendation's targets: gain 1, `Judgments.binary`); the one DCG serves both:
``sum_r gain_r / log2(r + 1)`` over ranks r from 1, over the same sum of the unit's judged gains
sorted descending (the ideal), NaN where the ideal is 0.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

#: Bootstrap resamples drawn at once are bounded to this many (resample, unit) cells (8 MB of float64 each).
BOOTSTRAP_CELLS = 1 << 20


# ---------------------------------------------------------------------------- judgements and ranked gains


@dataclass(frozen=True)
class Judgments:
    """Each unit's judged items with their gains; ``relevant`` marks those recall, hit rate and MRR count."""

    items: Sequence[np.ndarray]  # int64 positions, each item at most once per unit
    gains: Sequence[np.ndarray]  # float64
    relevant: Sequence[np.ndarray]  # bool

    @classmethod
    def binary(cls, targets: Sequence[np.ndarray]) -> Judgments:
        """Targets of gain 1, all relevant (a recommendation's held-out items)."""
        items = [np.asarray(t, np.int64) for t in targets]
        return cls(items, [np.ones(len(t)) for t in items], [np.ones(len(t), bool) for t in items])

    def __len__(self) -> int:
        return len(self.items)

    def n_relevant(self) -> np.ndarray:
        return np.array([int(np.count_nonzero(r)) for r in self.relevant], np.int64)

    def ideal_gains(self, k: int) -> np.ndarray:
        """(units, k): each unit's k largest gains, descending, 0-padded."""
        lengths = np.array([len(g) for g in self.gains], np.int64)
        out = np.zeros((len(self), k))
        if not lengths.sum() or k <= 0:
            return out
        rows = np.repeat(np.arange(len(self)), lengths)
        gains = np.concatenate([np.asarray(g, np.float64) for g in self.gains])
        order = np.lexsort((-gains, rows))
        rank = np.arange(len(order)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        keep = rank < k
        out[rows[order][keep], rank[keep]] = gains[order][keep]
        return out


@dataclass(frozen=True)
class RankedGains:
    """Ranked lists scored against judgements: what every metric reads."""

    gains: np.ndarray  # (units, depth) gain of the item at each rank (0: unjudged or padding)
    relevant: np.ndarray  # (units, depth) bool
    judgments: Judgments

    @classmethod
    def of(cls, ranked: np.ndarray | Sequence[np.ndarray], judgments: Judgments) -> RankedGains:
        """``ranked[u]``: unit u's item positions, best first (a matrix or one array a unit; -1 is padding).
        An item listed twice counts at its first rank only."""
        ranked = as_ranked_matrix(ranked)
        if len(ranked) != len(judgments):
            raise ValueError(f"{len(ranked)} ranked lists but {len(judgments)} judged units")
        lengths = np.array([len(i) for i in judgments.items], np.int64)
        if not lengths.sum():
            return cls(np.zeros(ranked.shape), np.zeros(ranked.shape, bool), judgments)
        items = np.concatenate(judgments.items).astype(np.int64)
        width = max(int(ranked.max(initial=-1)), int(items.max())) + 1
        # one sorted key per judged (unit, item): a ranked item's judgement is a binary search away
        keys = np.repeat(np.arange(len(judgments), dtype=np.int64), lengths) * width + items
        order = np.argsort(keys, kind="stable")
        keys = keys[order]
        wanted = np.arange(len(ranked), dtype=np.int64)[:, None] * width + np.maximum(ranked, 0)
        at = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
        hit = (ranked >= 0) & (keys[at] == wanted) & ~_repeats(ranked)
        judged = order[at]  # index into the concatenated judgements
        gains = np.where(hit, np.concatenate(judgments.gains).astype(np.float64)[judged], 0.0)
        return cls(gains, hit & np.concatenate(judgments.relevant).astype(bool)[judged], judgments)

    def head(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Gains and relevance of the first k ranks, 0-padded to k columns (a list shorter than k)."""
        gains, relevant = self.gains[:, :k], self.relevant[:, :k]
        if gains.shape[1] < k:
            pad = ((0, 0), (0, k - gains.shape[1]))
            gains, relevant = np.pad(gains, pad), np.pad(relevant, pad)
        return gains, relevant


def _repeats(ranked: np.ndarray) -> np.ndarray:
    """True where a row lists an item it already listed at a better rank."""
    order = np.argsort(ranked, axis=1, kind="stable")
    listed = np.take_along_axis(ranked, order, axis=1)
    again = np.zeros(ranked.shape, bool)
    again[:, 1:] = listed[:, 1:] == listed[:, :-1]
    out = np.zeros(ranked.shape, bool)
    np.put_along_axis(out, order, again, axis=1)
    return out


def as_ranked_matrix(ranked: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """Ranked lists as an int64 matrix, shorter lists padded with -1."""
    if isinstance(ranked, np.ndarray) and ranked.ndim == 2:
        return ranked.astype(np.int64, copy=False)
    rows = [np.asarray(r, np.int64).ravel() for r in ranked]
    out = np.full((len(rows), max((len(r) for r in rows), default=0)), -1, np.int64)
    for u, r in enumerate(rows):
        out[u, : len(r)] = r
    return out


def dcg(gains: np.ndarray) -> np.ndarray:
    """Per row: sum of gain / log2(rank + 1), rank from 1."""
    return (gains / np.log2(np.arange(2, gains.shape[1] + 2))).sum(axis=1)


# ---------------------------------------------------------------------------- the metrics


@dataclass(frozen=True)
class RankingMetric(ABC):
    """One value per unit from its ranked list's first ``k`` ranks; ``name`` labels the metric (``ndcg@10``)."""

    k: int
    label: ClassVar[str]

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"cutoff k must be >= 1, got {self.k}")

    @property
    def name(self) -> str:
        return f"{self.label}@{self.k}"

    @abstractmethod
    def compute(self, ranked: RankedGains) -> np.ndarray:
        """float64 per unit (NaN where undefined)."""

    def __call__(self, ranked: np.ndarray | Sequence[np.ndarray], judgments: Judgments) -> np.ndarray:
        return self.compute(RankedGains.of(ranked, judgments))


@dataclass(frozen=True)
class NDCG(RankingMetric):
    """DCG@k over the ideal DCG@k of the unit's judged gains (NaN where that is 0)."""

    label: ClassVar[str] = "ndcg"

    def compute(self, ranked: RankedGains) -> np.ndarray:
        ideal = dcg(ranked.judgments.ideal_gains(self.k))
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(ideal > 0, dcg(ranked.head(self.k)[0]) / np.where(ideal > 0, ideal, 1.0), np.nan)


@dataclass(frozen=True)
class Recall(RankingMetric):
    """Relevant items in the first k over the unit's relevant items (NaN if none); ``capped``: over
    ``min(relevant, k)``, so that a perfect list scores 1 (the recommendation protocol's Recall@20)."""

    capped: bool = False
    label: ClassVar[str] = "recall"

    def compute(self, ranked: RankedGains) -> np.ndarray:
        n = ranked.judgments.n_relevant().astype(np.float64)
        n = np.minimum(n, self.k) if self.capped else n
        found = ranked.head(self.k)[1].sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n > 0, found / np.where(n > 0, n, 1.0), np.nan)


@dataclass(frozen=True)
class HitRate(RankingMetric):
    """1 if a relevant item is in the first k, else 0."""

    label: ClassVar[str] = "hr"

    def compute(self, ranked: RankedGains) -> np.ndarray:
        return np.asarray(ranked.head(self.k)[1].any(axis=1), np.float64)


@dataclass(frozen=True)
class MRR(RankingMetric):
    """1 / rank of the first relevant item in the first k (0 if none)."""

    label: ClassVar[str] = "mrr"

    def compute(self, ranked: RankedGains) -> np.ndarray:
        relevant = ranked.head(self.k)[1]
        first = relevant.argmax(axis=1)
        return np.where(relevant.any(axis=1), 1.0 / (first + 1.0), 0.0)


def evaluate_rankings(ranked: np.ndarray | Sequence[np.ndarray], judgments: Judgments,
                      metrics: Sequence[RankingMetric]) -> dict[str, np.ndarray]:
    """metric name -> one value per unit; the lists are scored against the judgements once."""
    gains = RankedGains.of(ranked, judgments)
    return {m.name: m.compute(gains) for m in metrics}


# ---------------------------------------------------------------------------- the recommendation protocol's

#: NDCG@10 (binary gains), Recall@20 (hits / min(|T|, 20)) and HR@10.
RECOMMENDATION_METRICS = (NDCG(10), Recall(20, capped=True), HitRate(10))
CUTOFFS = {m.name: m.k for m in RECOMMENDATION_METRICS}


def hit_matrix(top: np.ndarray, targets: Sequence[np.ndarray]) -> np.ndarray:
    """hits[u, r] is True when the item at rank r of user u is one of u's targets."""
    return RankedGains.of(top, Judgments.binary(targets)).relevant


def user_metrics(top: np.ndarray, targets: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """`RECOMMENDATION_METRICS`, one value per user."""
    return evaluate_rankings(top[:, : max(CUTOFFS.values())], Judgments.binary(targets), RECOMMENDATION_METRICS)


def coverage(top: np.ndarray, n_items: int, k: int = 10) -> float:
    items = top[:, :k]
    return float(np.unique(items[items >= 0]).size / n_items)


# ---------------------------------------------------------------------------- intervals


def paired_bootstrap(a: np.ndarray, b: np.ndarray, resamples: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of a - b over the units (users, queries) where both are defined, and its 95% percentile interval.

    `scipy.stats.bootstrap` with ``paired=True`` (units resampled together), seeded; resamples are drawn
    in batches of at most `BOOTSTRAP_CELLS` (resample, unit) cells, which bounds the memory on any number
    of units without changing the draws.
    """
    from scipy.stats import bootstrap

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    both = ~(np.isnan(a) | np.isnan(b))
    a, b = a[both], b[both]
    if not len(a):
        return float("nan"), float("nan"), float("nan")
    mean = float(np.mean(a - b))
    if len(a) < 2:  # nothing to resample
        return mean, mean, mean
    result = bootstrap((a, b), _mean_difference, n_resamples=resamples, batch=max(1, BOOTSTRAP_CELLS // len(a)),
                       vectorized=True, paired=True, method="percentile", rng=np.random.default_rng(seed))
    return mean, float(result.confidence_interval.low), float(result.confidence_interval.high)


def _mean_difference(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(a - b, axis=axis)


__all__ = ["CUTOFFS", "MRR", "NDCG", "RECOMMENDATION_METRICS", "HitRate", "Judgments", "RankedGains",
           "RankingMetric", "Recall", "as_ranked_matrix", "coverage", "dcg", "evaluate_rankings", "hit_matrix",
           "paired_bootstrap", "user_metrics"]
