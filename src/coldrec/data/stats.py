"""Descriptive statistics of a loaded data set: what `coldrec data stats` prints."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from coldrec.data.datasets import Dataset

BUCKETS = (1, 2, 3, 5, 10, 20, 50, 100, 1000)


@dataclass
class DatasetStats:
    name: str
    items: int
    users: int | None
    interactions: int | None
    distinct_pairs: int | None
    time_range: tuple[pd.Timestamp, pd.Timestamp] | None
    text_coverage: float  # share of items with a non-empty title
    description_coverage: float
    sparsity: float | None  # 1 - distinct (user, item) pairs / (users * items)
    per_user: dict[str, int] | None  # histogram bucket label -> users
    per_item: dict[str, int] | None  # histogram bucket label -> items (items with no events: "0")
    queries: int | None
    judgments: int | None

    def as_dict(self) -> dict:
        out = dict(self.__dict__)
        if self.time_range is not None:
            out["time_range"] = [str(t) for t in self.time_range]
        return out


def histogram(counts: np.ndarray) -> dict[str, int]:
    """Counts per bucket: 0, 1, 2, 3-4, 5-9, 10-19, 20-49, 50-99, 100-999, 1000+."""
    edges = (0,) + BUCKETS + (np.inf,)
    result = {}
    for low, high in itertools.pairwise(edges):
        label = str(low) if high - low == 1 else (f"{low}+" if np.isinf(high) else f"{low}-{int(high) - 1}")
        n = int(((counts >= low) & (counts < high)).sum())
        if n or low > 0:
            result[label] = n
    return result


def dataset_stats(dataset: Dataset) -> DatasetStats:
    catalog = dataset.catalog
    titles = catalog.frame["title"].fillna("").str.strip()
    descriptions = catalog.frame["description"].fillna("").str.strip()
    stats: dict[str, Any] = dict(
        name=dataset.name,
        items=len(catalog),
        users=None,
        interactions=None,
        distinct_pairs=None,
        time_range=None,
        text_coverage=float((titles != "").mean()) if len(catalog) else 0.0,
        description_coverage=float((descriptions != "").mean()) if len(catalog) else 0.0,
        sparsity=None,
        per_user=None,
        per_item=None,
        queries=None,
        judgments=None,
    )
    log = dataset.log
    if log is not None and len(log):
        users = np.unique(log.user)
        pairs = np.unique(log.user.astype(np.int64) * len(catalog) + log.item)
        stats.update(
            users=len(users),
            interactions=len(log),
            distinct_pairs=len(pairs),
            time_range=(pd.Timestamp(log.time.min(), unit="s"), pd.Timestamp(log.time.max(), unit="s")),
            sparsity=1.0 - len(pairs) / (len(users) * len(catalog)),
            per_user=histogram(np.bincount(log.user)[users]),
            per_item=histogram(np.bincount(log.item, minlength=len(catalog))),
        )
    if dataset.judgments is not None:
        stats.update(queries=int(dataset.judgments["query"].nunique()), judgments=len(dataset.judgments))
    return DatasetStats(**stats)
