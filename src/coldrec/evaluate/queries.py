"""The judged queries of the `homedepot-search` protocol: the MD5 half split and per-query metrics.

Metrics come from `coldrec.evaluate.metrics` with graded gains ``2^(rel-1) - 1``; a product is
relevant (for recall) at ``rel >= 2.5``. See `coldrec.evaluate.search` for the protocol's choices.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from coldrec.evaluate.metrics import NDCG, Judgments, RankedGains, Recall, evaluate_rankings
from coldrec.retrieve.ranking import order_by_score

DATASET = "homedepot-search"
MIN_JUDGED = 5
RELEVANT = 2.5
NDCG_K = 10
RECALL_K = 100
HALVES = ("tune", "report")


def query_half(query: str) -> str:
    """'tune' if the MD5 of the UTF-8 query, as an integer, is even, else 'report'."""
    return "tune" if int(hashlib.md5(query.encode("utf-8")).hexdigest(), 16) % 2 == 0 else "report"


@dataclass
class SearchQueries:
    """The queries of one half with their judged products (catalog positions) and relevance."""

    queries: list[str]
    judged: list[np.ndarray]  # int64 positions, ascending
    relevance: list[np.ndarray]  # float64, aligned with judged

    def __len__(self) -> int:
        return len(self.queries)

    def judgments(self) -> Judgments:
        """Graded judgements: gain ``2^(rel-1) - 1``, relevant at ``rel >= RELEVANT``."""
        return Judgments(self.judged, [gain(r) for r in self.relevance], [r >= RELEVANT for r in self.relevance])


def search_queries(judgments: pd.DataFrame, half: str = "report", min_judged: int = MIN_JUDGED) -> SearchQueries:
    """Queries of ``half`` ("tune", "report" or "all") with at least ``min_judged`` judged products."""
    if half not in (*HALVES, "all"):
        raise ValueError(f"unknown half {half!r}; choose from {HALVES + ('all',)}")
    j = judgments[judgments["item"] >= 0]
    pairs = j.groupby(["query", "item"], sort=True)["relevance"].mean().reset_index()  # duplicates averaged
    queries, judged, relevance = [], [], []
    for key, group in pairs.groupby("query", sort=True):
        query = str(key)
        if len(group) < min_judged or (half != "all" and query_half(query) != half):
            continue
        queries.append(query)
        judged.append(group["item"].to_numpy(np.int64))
        relevance.append(group["relevance"].to_numpy(np.float64))
    return SearchQueries(queries, judged, relevance)


def gain(relevance: np.ndarray) -> np.ndarray:
    return np.power(2.0, np.asarray(relevance, np.float64) - 1.0) - 1.0


def ndcg_at_k(ranked_gains: np.ndarray, judged_gains: np.ndarray, k: int = NDCG_K) -> float:
    """DCG@k of the ranked gains over DCG@k of the judged gains sorted descending (NaN if that is 0)."""
    ranked_gains = np.asarray(ranked_gains, np.float64)
    n = len(judged_gains)
    judged = Judgments([np.arange(n)], [np.asarray(judged_gains, np.float64)], [np.zeros(n, bool)])
    ranked = RankedGains(ranked_gains[None, :], np.zeros((1, len(ranked_gains)), bool), judged)
    return float(NDCG(k).compute(ranked)[0])


def recall_at_k(ranked: np.ndarray, relevant: np.ndarray, k: int = RECALL_K) -> float:
    """Share of ``relevant`` items among the first k of ``ranked`` (NaN if none is relevant)."""
    relevant = np.unique(np.asarray(relevant, np.int64))
    judged = Judgments([relevant], [np.ones(len(relevant))], [np.ones(len(relevant), bool)])
    return float(Recall(k)([np.asarray(ranked, np.int64)], judged)[0])


def rank_candidates(candidates: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Indices into ``candidates`` by score descending, ties by item position ascending."""
    return order_by_score(candidates, scores)


def rerank_metrics(qs: SearchQueries, scores: Sequence[np.ndarray], k: int = NDCG_K) -> dict[str, np.ndarray]:
    """NDCG@k of each query's judged products ordered by the model's scores."""
    ranked = [items[rank_candidates(items, s)] for items, s in zip(qs.judged, scores, strict=True)]
    return evaluate_rankings(ranked, qs.judgments(), [NDCG(k)])


def retrieve_metrics(qs: SearchQueries, ranked: np.ndarray | Sequence[np.ndarray], ndcg_k: int = NDCG_K,
                     recall_k: int = RECALL_K) -> dict[str, np.ndarray]:
    """NDCG@ndcg_k (unjudged products gain 0) and Recall@recall_k of each query's ranked catalog positions."""
    return evaluate_rankings(ranked, qs.judgments(), [NDCG(ndcg_k), Recall(recall_k)])


__all__ = ["DATASET", "HALVES", "MIN_JUDGED", "NDCG_K", "RECALL_K", "RELEVANT", "SearchQueries", "gain",
           "ndcg_at_k", "query_half", "rank_candidates", "recall_at_k", "rerank_metrics", "retrieve_metrics",
           "search_queries"]
