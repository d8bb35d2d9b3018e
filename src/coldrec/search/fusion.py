"""How `Searcher` combines its signals: the candidates' evidence, weighted fusion, RRF and the tuning grid.

- ``"weighted"``: ``w_bm25 * bm25 / max_bm25 + w_ngram * ngram / max_ngram + w_dense * cosine``, the
  maxima taken per query over the whole catalog (0 when nothing matches);
- ``"rrf"``: reciprocal-rank fusion (`coldrec.retrieve.ranking.reciprocal_rank_fusion`) of the signals
  in ``rrf_signals``, each ranked within its top ``depth``;
- ``"learned"``: a LightGBM LambdaRank model over per-candidate features (`coldrec.search.ltr`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from coldrec.retrieve.ranking import ranks_within, reciprocal_rank_fusion

SIGNALS = ("bm25", "ngram", "dense")
FUSIONS = ("weighted", "rrf", "learned")
#: What `Searcher.tune` picked on the homedepot-search tuning half (retrieve NDCG@10); `tune` overwrites them.
DEFAULT_WEIGHTS = {"bm25": 0.2, "ngram": 0.4, "dense": 0.4}


@dataclass
class Candidates:
    """One query's candidates (catalog positions, ascending) and their per-signal evidence."""

    items: np.ndarray  # int64
    features: np.ndarray  # (n, n_signals): bm25/max, ngram/max, cosine
    rrf: np.ndarray  # (n, n_signals): rank in that signal's top list, from 1 (0 = not in it)
    maxima: np.ndarray | None = None  # (2,): the query's raw catalog maxima of bm25 and ngram (0: no match)


def top_columns(cols: np.ndarray, vals: np.ndarray, depth: int) -> np.ndarray:
    """The ``depth`` columns of largest value, value desc then column asc."""
    if len(cols) > depth:
        part = np.argpartition(-vals, depth - 1)[:depth]
        keep = vals >= vals[part].min()  # every tie at the cut, ordered exactly below
        cols, vals = cols[keep], vals[keep]
    return cols[np.lexsort((cols, -vals))[:depth]]


def weight_vector(weights: dict[str, float]) -> np.ndarray:
    return np.array([float(weights.get(name, 0.0)) for name in SIGNALS])


def weighted_fusion(features: np.ndarray, weights: dict[str, float]) -> np.ndarray:
    return features @ weight_vector(weights)


def rrf_fusion(ranks: np.ndarray, k: float, signals: Sequence[str]) -> np.ndarray:
    """RRF over the ``signals`` columns of ``ranks`` (n, len(SIGNALS))."""
    return reciprocal_rank_fusion(ranks[:, [j for j, name in enumerate(SIGNALS) if name in signals]], k)


def fusion_grid(weights: dict[str, float], weight_grid: Sequence[float], ngram_grid: Sequence[float],
                rrf_grid: Sequence[float]) -> list[tuple[str, dict[str, float], float | None]]:
    """(fusion, weights, rrf_k) points for `Searcher.tune`: ``w_bm25`` x ``w_ngram`` with ``w_dense = 1 - both``
    (points with a negative dense weight skipped), then each RRF k with ``weights`` kept."""
    points: list[tuple[str, dict[str, float], float | None]] = []
    for wb in weight_grid:
        for wn in ngram_grid:
            wd = round(1.0 - wb - wn, 10)
            if wd >= 0:
                wd = max(wd, 0.0) + 0.0  # no -0.0
                points.append(("weighted", {"bm25": float(wb), "ngram": float(wn), "dense": wd}, None))
    return points + [("rrf", dict(weights), float(k)) for k in rrf_grid]


__all__ = ["DEFAULT_WEIGHTS", "FUSIONS", "SIGNALS", "Candidates", "fusion_grid", "ranks_within", "rrf_fusion",
           "top_columns", "weight_vector", "weighted_fusion"]
