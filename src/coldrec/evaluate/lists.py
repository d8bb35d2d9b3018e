"""A model's lists for every segment of a split, and what they score: the core the protocol, the tuning and the
diversity sweep share."""

from __future__ import annotations

import time

import numpy as np

from coldrec.data.split import Split
from coldrec.evaluate.metrics import RECOMMENDATION_METRICS, coverage, user_metrics
from coldrec.recommend.base import Recommender

DEPTH = 20  # ranks kept per user: enough for Recall@20
BATCH = 1024
TUNING_METRIC = "ndcg@10"


def rank_split(model: Recommender, split: Split) -> tuple[dict[str, np.ndarray], float, int]:
    """Top-DEPTH lists for every segment, with the scoring time and users scored."""
    tops, seconds, users = {}, 0.0, 0
    for name, segment in split.segments.items():
        parts = []
        for start in range(0, len(segment), BATCH):
            stop = start + BATCH
            began = time.perf_counter()
            top, _ = model.recommend(segment.contexts[start:stop], DEPTH, segment.exclude[start:stop], split.tie_break)
            seconds += time.perf_counter() - began
            parts.append(top)
        tops[name] = np.concatenate(parts) if parts else np.zeros((0, DEPTH), np.int64)
        users += len(segment)
    return tops, seconds, users


def split_metrics(split: Split, tops: dict[str, np.ndarray], n_items: int):
    per_user, covered = {}, {}
    for name, segment in split.segments.items():
        per_user[name] = _metrics(tops[name], segment.targets)
        covered[name] = coverage(tops[name], n_items)
    if split.kind != "time":
        return per_user, covered
    cold = split.cold_items
    cold_top = segment_lists(split, tops, n_items)[cold.name]
    per_user[cold.name] = _metrics(cold_top, cold.targets)
    covered[cold.name] = coverage(cold_top, n_items)
    return per_user, covered


def segment_lists(split: Split, tops: dict[str, np.ndarray], n_items: int) -> dict[str, np.ndarray]:
    """Each segment's lists (`tops`), and on a time split the cold-item segment's: each of its users' list in the
    segment it came from."""
    if split.kind != "time":
        return dict(tops)
    cold = split.cold_items
    width = min(DEPTH, n_items)  # lists are shorter than DEPTH on a tiny catalog
    return {**tops, cold.name: np.array([tops[s][row] for s, row in cold.sources]).reshape(-1, width)}


def _metrics(top, targets):
    if not len(targets):
        return {m.name: np.zeros(0) for m in RECOMMENDATION_METRICS}
    return user_metrics(top, targets)


def segment_means(per_user: dict[str, dict[str, np.ndarray]], metric: str = TUNING_METRIC,
                  cold_items: bool = False) -> dict[str, float]:
    """`metric`'s mean per segment that has users, the cold-item segment included only when asked."""
    return {s: float(np.mean(m[metric])) for s, m in per_user.items()
            if (cold_items or s != "cold items") and len(m[metric])}


def objective(per_user: dict[str, dict[str, np.ndarray]], metric: str = TUNING_METRIC,
              cold_items: bool = False) -> float:
    """Validation objective: `metric` averaged over the user segments (each counts once), the cold-item
    segment included only when asked (a model whose parameters trade other segments for it)."""
    return float(np.mean(list(segment_means(per_user, metric, cold_items).values())))


