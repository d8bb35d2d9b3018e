"""The `homedepot-search` protocol of BENCHMARK.md: re-rank and retrieve, BM25 / dense / RRF.

Choices the benchmark text leaves open (all checked against the stated query counts):

- Query text is the loader's (``search_term`` with outer whitespace stripped; the raw
  file has no such whitespace, so stripped and raw texts are identical). The MD5 of its
  UTF-8 bytes, read as a big-endian integer, picks the half: even -> "tune", odd -> "report".
- A (query, product) pair judged more than once would count once, with its relevance
  averaged. The file has no such pair, so counting rows or distinct products both give
  the stated 4,026 (tune) / 3,895 (report) queries with >= 5 judged products.
- Ties in a model's score are broken by item position ascending (catalog order =
  first appearance of the product in the file), in both tasks.
- NDCG@10 uses gain ``2^(rel-1) - 1`` and discount ``1/log2(rank+1)``; the ideal DCG is
  always the query's judged products sorted by gain (in the retrieve task unjudged
  products have gain 0). A query whose ideal DCG is 0 would get NaN and be left out
  (none exists in this data). Recall@100 counts products judged ``rel >= 2.5``, over
  queries having at least one.
- Differences against BM25: paired bootstrap over queries (`scipy.stats.bootstrap`, 1,000
  resamples, seed 0), 95% percentile interval of the mean difference.

The queries and their metrics live in `coldrec.evaluate.queries`, the models in
`coldrec.evaluate.search_models`; every name is importable from here too.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from coldrec.evaluate.metrics import paired_bootstrap
from coldrec.evaluate.queries import (
    DATASET,
    HALVES,
    MIN_JUDGED,
    NDCG_K,
    RECALL_K,
    RELEVANT,
    SearchQueries,
    gain,
    ndcg_at_k,
    query_half,
    rank_candidates,
    recall_at_k,
    rerank_metrics,
    retrieve_metrics,
    search_queries,
)
from coldrec.evaluate.search_models import (
    MODELS,
    BM25Model,
    CrossModel,
    DenseModel,
    LTRModel,
    RandomModel,
    RRFModel,
    SearchModel,
    WeightedModel,
    make_model,
)


def evaluate_search(dataset, models: Iterable[str] = ("bm25", "dense"), half: str = "report", encoder=None,
                    bootstrap_resamples: int = 1000, seed: int = 0) -> list[dict]:
    """Run both tasks for each model on one half of the homedepot-search queries.

    Rows: ``model``, ``task`` ("rerank" / "retrieve"), metric values (mean over queries
    where defined), ``n_queries`` (and ``n_recall`` for Recall@100), ``ms_per_query``
    (wall time of the scoring call, query encoding included, over the queries),
    ``per_query`` (metric -> array aligned with the queries) and, for non-BM25 rows,
    ``vs_bm25`` (metric -> (mean difference, low, high) of a paired bootstrap).
    """
    if dataset.judgments is None:
        raise ValueError(f"data set {dataset.name!r} has no search judgments")
    models = list(models)
    if "bm25" not in models:
        models = ["bm25", *models]  # the reference for the intervals
    qs = search_queries(dataset.judgments, half)
    cache: dict[str, SearchModel] = {}
    fitted: set[int] = set()
    rows: list[dict] = []
    for name in models:
        model = make_model(name, encoder, cache)
        parts = model.models if isinstance(model, RRFModel) else [model]
        for part in parts:
            if id(part) not in fitted:
                part.fit(dataset.catalog)
                fitted.add(id(part))
        tuned, tuning_grid = None, []
        if isinstance(model, WeightedModel):
            if half == "tune":
                raise ValueError("the weighted model is tuned on the tuning half; evaluate it on another half")
            tuned = model.tune(dataset)
            tuning_grid = list(model.searcher.tuning)
        start = time.perf_counter()
        scores = model.score_candidates(qs.queries, qs.judged)
        rerank_ms = (time.perf_counter() - start) * 1000 / max(len(qs), 1)
        start = time.perf_counter()
        ranked, _ = model.retrieve(qs.queries, RECALL_K)
        retrieve_ms = (time.perf_counter() - start) * 1000 / max(len(qs), 1)
        for task, per_query, ms in (("rerank", rerank_metrics(qs, scores), rerank_ms),
                                    ("retrieve", retrieve_metrics(qs, ranked), retrieve_ms)):
            row: dict[str, Any] = {"model": name, "task": task, "half": half, "n_queries": len(qs),
                                   "ms_per_query": ms, "per_query": per_query}
            if tuned is not None:
                row["tuned"] = {"weights": tuned["weights"], "rrf_k": tuned["rrf_k"],
                                "tune_queries": tuned["n_queries"], "grid": list(tuning_grid)}
                if "ltr" in tuned:
                    row["tuned"]["ltr"] = tuned["ltr"]
            for metric, values in per_query.items():
                row[metric] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
                if metric.startswith("recall"):
                    row["n_recall"] = int(np.isfinite(values).sum())
            rows.append(row)
    reference = {r["task"]: r for r in rows if r["model"] == "bm25"}
    for row in rows:
        if row["model"] != "bm25":
            ref = reference[row["task"]]["per_query"]
            row["vs_bm25"] = {m: paired_bootstrap(v, ref[m], bootstrap_resamples, seed)
                              for m, v in row["per_query"].items()}
    return rows


def describe_tuning(row: dict) -> str:
    """One line on what a tuned row's model learned on the tuning half."""
    tuned = row["tuned"]
    if "ltr" in tuned:
        ltr = tuned["ltr"]
        parts = []
        for task in ("retrieve", "rerank"):
            if task in ltr:
                info = ltr[task]
                top = ", ".join(f"{name} {share:.2f}" for name, share in list(info["importance"].items())[:4])
                parts.append(f"{task}: {info['trees']} trees, held-out NDCG@10 {info['valid_ndcg@10']:.4f} "
                             f"({info['queries']:,} queries, {info['rows']:,} rows; top gain: {top})")
        return (f"{row['model']}: LambdaRank fitted on {tuned['tune_queries']:,} tuning-half queries "
                f"(prior {'on' if ltr['prior'] else 'off'}, candidates top {ltr['depth']} a signal); "
                + "; ".join(parts))
    return (f"{row['model']}: weights {tuned['weights']}, rrf k {tuned['rrf_k']:g} "
            f"(tuned on {tuned['tune_queries']:,} tuning-half queries, retrieve NDCG@10)")


def render_search_table(rows: Sequence[dict], title: str | None = None):
    """A rich Table: one line per (model, task), differences against BM25 with 95% intervals."""
    from rich.table import Table

    half = rows[0].get("half", "") if rows else ""
    table = Table(title=title or f"{DATASET} ({half} half)")
    for col in ("model", "task", "NDCG@10", "Δ vs BM25 [95% CI]", "Recall@100", "Δ vs BM25 [95% CI]", "queries",
                "ms/query"):
        table.add_column(col, justify="left" if col in ("model", "task") else "right")

    def diff(row, metric):
        if metric not in row.get("vs_bm25", {}):
            return ""
        mean, low, high = row["vs_bm25"][metric]
        return f"{mean:+.4f} [{low:+.4f}, {high:+.4f}]"

    for row in rows:
        recall = f"{row['recall@100']:.4f}" if "recall@100" in row else ""
        n = f"{row['n_queries']:,}" + (f" ({row['n_recall']:,})" if "n_recall" in row else "")
        table.add_row(row["model"], row["task"], f"{row['ndcg@10']:.4f}", diff(row, "ndcg@10"), recall,
                      diff(row, "recall@100"), n, f"{row['ms_per_query']:.2f}")
    return table


__all__ = [
    "DATASET",
    "HALVES",
    "MIN_JUDGED",
    "MODELS",
    "NDCG_K",
    "RECALL_K",
    "RELEVANT",
    "BM25Model",
    "CrossModel",
    "DenseModel",
    "LTRModel",
    "RRFModel",
    "RandomModel",
    "SearchModel",
    "SearchQueries",
    "WeightedModel",
    "describe_tuning",
    "evaluate_search",
    "gain",
    "make_model",
    "ndcg_at_k",
    "paired_bootstrap",
    "query_half",
    "rank_candidates",
    "recall_at_k",
    "render_search_table",
    "rerank_metrics",
    "retrieve_metrics",
    "search_queries",
]
