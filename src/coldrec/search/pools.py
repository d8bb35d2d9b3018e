"""Ranking small judged pools (one relevant title among a few) — the zh-multicpr check.

`pool_top1` ranks each query's pool with each model of a fitted `Searcher` (``bm25``,
``dense``, ``weighted``, ``rrf``) and reports the share of queries whose relevant item ranks
first. Ties are counted against the model (``strict``: the relevant item must score strictly
above every other pool item), because the pools list the relevant item first and a
position tie-break would favour it; the share with ties broken by position is reported too.
"""

from __future__ import annotations

import numpy as np

from coldrec.retrieve.ranking import order_by_score, ranks_within
from coldrec.search.fusion import SIGNALS
from coldrec.search.searcher import Searcher

MODELS = ("bm25", "dense", "weighted", "rrf")


def pool_scores(searcher: Searcher, queries: list[str], pools: list[np.ndarray]) -> dict[str, list[np.ndarray]]:
    """Per model, each pool's scores (single signals raw-normalised, fusions as `Searcher.fuse`)."""
    out: dict[str, list[np.ndarray]] = {m: [] for m in MODELS}
    sig = searcher._signals(queries)
    for i, items in enumerate(pools):
        feats = sig.features(i, items, searcher._vectors)
        out["bm25"].append(feats[:, SIGNALS.index("bm25")])
        out["dense"].append(feats[:, SIGNALS.index("dense")])
        out["weighted"].append(searcher.fuse(feats, None, "weighted"))
        out["rrf"].append(searcher.fuse(feats, ranks_within(items, feats), "rrf"))
    return out


def pool_top1(searcher: Searcher, judgments) -> list[dict]:
    """One row per model: ``top1_strict``, ``top1_position_ties``, ``n_queries``."""
    j = judgments[judgments["item"] >= 0]
    queries, pools, relevant = [], [], []
    for query, group in j.groupby("query", sort=True):
        rel = group.loc[group["relevance"] > 0, "item"].to_numpy(np.int64)
        if len(rel) != 1 or len(group) < 2:
            continue
        queries.append(query)
        pools.append(np.sort(group["item"].to_numpy(np.int64)))
        relevant.append(int(rel[0]))
    scores = pool_scores(searcher, queries, pools)
    rows = []
    for model in MODELS:
        strict, ties = [], []
        for items, s, r in zip(pools, scores[model], relevant, strict=True):  # one score array and relevant item a pool
            mine = s[items == r][0]
            others = s[items != r]
            strict.append(bool((mine > others).all()))
            ties.append(int(items[order_by_score(items, s)[0]]) == r)
        rows.append({"model": model, "top1_strict": float(np.mean(strict)), "top1_position_ties": float(np.mean(ties)),
                     "n_queries": len(queries)})
    return rows


__all__ = ["MODELS", "pool_scores", "pool_top1"]
