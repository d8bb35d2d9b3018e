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
- Differences against BM25: paired bootstrap over queries (1,000 resamples, seed 0),
  95% percentile interval of the mean difference.
"""

from __future__ import annotations

import hashlib
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from coldrec.evaluate.metrics import paired_bootstrap

DATASET = "homedepot-search"
MIN_JUDGED = 5
RELEVANT = 2.5
NDCG_K = 10
RECALL_K = 100
HALVES = ("tune", "report")


# ---------------------------------------------------------------------------- the split


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


def search_queries(judgments: pd.DataFrame, half: str = "report", min_judged: int = MIN_JUDGED) -> SearchQueries:
    """Queries of ``half`` ("tune", "report" or "all") with at least ``min_judged`` judged products."""
    if half not in (*HALVES, "all"):
        raise ValueError(f"unknown half {half!r}; choose from {HALVES + ('all',)}")
    j = judgments[judgments["item"] >= 0]
    pairs = j.groupby(["query", "item"], sort=True)["relevance"].mean().reset_index()  # duplicates averaged
    queries, judged, relevance = [], [], []
    for query, group in pairs.groupby("query", sort=True):
        if len(group) < min_judged or (half != "all" and query_half(query) != half):
            continue
        queries.append(query)
        judged.append(group["item"].to_numpy(np.int64))
        relevance.append(group["relevance"].to_numpy(np.float64))
    return SearchQueries(queries, judged, relevance)


# ---------------------------------------------------------------------------- metrics


def gain(relevance: np.ndarray) -> np.ndarray:
    return np.power(2.0, np.asarray(relevance, np.float64) - 1.0) - 1.0


def _dcg(gains: np.ndarray, k: int) -> float:
    g = np.asarray(gains, np.float64)[:k]
    return float((g / np.log2(np.arange(2, len(g) + 2))).sum())


def ndcg_at_k(ranked_gains: np.ndarray, judged_gains: np.ndarray, k: int = NDCG_K) -> float:
    """DCG@k of the ranked gains over DCG@k of the judged gains sorted descending (NaN if that is 0)."""
    ideal = _dcg(np.sort(np.asarray(judged_gains, np.float64))[::-1], k)
    return _dcg(ranked_gains, k) / ideal if ideal > 0 else float("nan")


def recall_at_k(ranked: np.ndarray, relevant: np.ndarray, k: int = RECALL_K) -> float:
    """Share of ``relevant`` items among the first k of ``ranked`` (NaN if none is relevant)."""
    relevant = np.unique(np.asarray(relevant))
    if len(relevant) == 0:
        return float("nan")
    return float(np.isin(relevant, np.asarray(ranked)[:k]).sum() / len(relevant))


def rank_candidates(candidates: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Indices into ``candidates`` by score descending, ties by item position ascending."""
    scores = np.asarray(scores, np.float64)
    scores = np.where(np.isnan(scores), -np.inf, scores)
    return np.lexsort((np.asarray(candidates), -scores))


def rerank_metrics(qs: SearchQueries, scores: Sequence[np.ndarray], k: int = NDCG_K) -> dict[str, np.ndarray]:
    out = np.empty(len(qs))
    for i, (items, rel, s) in enumerate(zip(qs.judged, qs.relevance, scores)):
        g = gain(rel)
        out[i] = ndcg_at_k(g[rank_candidates(items, s)], g, k)
    return {f"ndcg@{k}": out}


def retrieve_metrics(qs: SearchQueries, ranked: np.ndarray, ndcg_k: int = NDCG_K,
                     recall_k: int = RECALL_K) -> dict[str, np.ndarray]:
    ndcg = np.empty(len(qs))
    recall = np.empty(len(qs))
    for i, (items, rel) in enumerate(zip(qs.judged, qs.relevance)):
        g = gain(rel)
        top = np.asarray(ranked[i][:ndcg_k])
        lookup = dict(zip(items.tolist(), g.tolist()))
        ndcg[i] = ndcg_at_k(np.array([lookup.get(int(p), 0.0) for p in top]), g, ndcg_k)
        recall[i] = recall_at_k(ranked[i], items[rel >= RELEVANT], recall_k)
    return {f"ndcg@{ndcg_k}": ndcg, f"recall@{recall_k}": recall}


# ---------------------------------------------------------------------------- models


class SearchModel(ABC):
    """A query -> product scorer: score given candidates (re-rank) or rank the catalog (retrieve)."""

    name: str = "model"

    @abstractmethod
    def fit(self, catalog) -> SearchModel:
        """Index the catalog's texts."""

    @abstractmethod
    def score_candidates(self, queries: Sequence[str], candidates: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Scores of ``candidates[i]`` (catalog positions) for ``queries[i]``."""

    @abstractmethod
    def retrieve(self, queries: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k catalog positions (int64, no -1) and scores per query; ties by position ascending."""


class RandomModel(SearchModel):
    """The floor of both tasks: seeded uniform scores (re-rank) and k random products (retrieve).

    On the re-rank task most judged products are relevant, so even a random order scores high;
    this row shows how much of a model's NDCG@10 is ordering and how much is that floor.
    """

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.n_items = 0

    def fit(self, catalog) -> RandomModel:
        self.n_items = len(catalog)
        return self

    def score_candidates(self, queries, candidates):
        rng = np.random.default_rng(self.seed)
        return [rng.random(len(c)) for c in candidates]

    def retrieve(self, queries, k):
        rng = np.random.default_rng(self.seed)
        k = min(k, self.n_items)
        ranked = np.stack([rng.choice(self.n_items, k, replace=False) for _ in queries]) if len(queries) else np.zeros((0, k), np.int64)
        return ranked.astype(np.int64), np.zeros(ranked.shape, np.float32)


class BM25Model(SearchModel):
    name = "bm25"

    def __init__(self, language: str = "en", k1: float = 1.5, b: float = 0.75) -> None:
        from coldrec.retrieve.lexical import BM25Index

        self.index = BM25Index(language=language, k1=k1, b=b)

    def fit(self, catalog) -> BM25Model:
        self.index.fit(catalog.texts())
        return self

    def score_candidates(self, queries, candidates):
        return self.index.score(list(queries), list(candidates))

    def retrieve(self, queries, k):
        return self.index.search(list(queries), k, fill=True)


class DenseModel(SearchModel):
    """Cosine similarity of encoder vectors (default: MiniLM via ONNX, cached on disk)."""

    name = "dense"

    def __init__(self, encoder=None, backend: str = "onnx", batch_size: int = 64) -> None:
        self._encoder = encoder
        self.backend = backend
        self.batch_size = batch_size
        self.index = None

    @property
    def encoder(self):
        if self._encoder is None:
            from coldrec.encode import default_cache_dir, load_encoder

            self._encoder = load_encoder(backend=self.backend, cache_dir=default_cache_dir())
        return self._encoder

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        return self.encoder.encode(list(texts), batch_size=self.batch_size, show_progress=False)

    def fit(self, catalog) -> DenseModel:
        from coldrec.retrieve.dense import DenseIndex

        self.index = DenseIndex().add(self._encode(catalog.texts()))
        return self

    def score_candidates(self, queries, candidates):
        return self.index.score(self._encode(queries), list(candidates))

    def retrieve(self, queries, k):
        return self.index.search(self._encode(queries), k)


class RRFModel(SearchModel):
    """Reciprocal-rank fusion: sum over models of 1 / (k + rank), rank from 1, over each model's top ``depth``."""

    name = "rrf"

    def __init__(self, models: Sequence[SearchModel], k: int = 60, depth: int = 1000) -> None:
        self.models = list(models)
        self.k = k
        self.depth = depth

    def fit(self, catalog) -> RRFModel:
        for m in self.models:
            m.fit(catalog)
        return self

    def score_candidates(self, queries, candidates):
        candidates = [np.asarray(c, np.int64) for c in candidates]
        fused = [np.zeros(len(c)) for c in candidates]
        for m in self.models:
            for f, c, s in zip(fused, candidates, m.score_candidates(queries, candidates)):
                ranks = np.empty(len(c))
                ranks[rank_candidates(c, s)] = np.arange(1, len(c) + 1)
                f += 1.0 / (self.k + ranks)
        return fused

    def retrieve(self, queries, k):
        n = len(queries)
        lists = [m.retrieve(queries, max(k, self.depth))[0] for m in self.models]
        depth = lists[0].shape[1]
        contrib = 1.0 / (self.k + np.arange(1, depth + 1, dtype=np.float64))
        positions = np.zeros((n, k), np.int64)
        scores = np.zeros((n, k), np.float32)
        for i in range(n):
            items = np.concatenate([top[i] for top in lists])
            uniq, inverse = np.unique(items, return_inverse=True)
            fused = np.bincount(inverse, weights=np.tile(contrib[: len(lists[0][i])], len(lists)), minlength=len(uniq))
            order = np.lexsort((uniq, -fused))[:k]
            positions[i, : len(order)], scores[i, : len(order)] = uniq[order], fused[order]
        return positions, scores


class WeightedModel(SearchModel):
    """`coldrec.search.Searcher`: BM25 + character 3-gram BM25 + dense, fused by a weighted sum of
    per-query normalised scores (``fusion="weighted"``) or by RRF (``fusion="rrf"``).

    `tune` picks the weights / RRF k on the *tuning* half (`Searcher.tune`); `evaluate_search`
    calls it before scoring any other half.
    """

    name = "weighted"

    def __init__(self, encoder=None, fusion: str = "weighted", name: str | None = None,
                 dense_index: str = "exact") -> None:
        from coldrec.search import Searcher

        self.searcher = Searcher(encoder=encoder, fusion=fusion, dense_index=dense_index)
        self.name = name or fusion
        self.tuned: dict | None = None

    def fit(self, catalog) -> WeightedModel:
        self.searcher.fit(catalog)
        return self

    def tune(self, dataset) -> dict:
        """Fusion weights from the tuning half of the queries only (retrieve NDCG@10)."""
        qs = search_queries(dataset.judgments, "tune")
        self.tuned = self.searcher.tune(qs.queries, lambda ranked: retrieve_metrics(qs, ranked), RECALL_K)
        return self.tuned

    def score_candidates(self, queries, candidates):
        return self.searcher.score(list(queries), list(candidates))

    def retrieve(self, queries, k):
        return self.searcher.search(list(queries), k)


class LTRModel(WeightedModel):
    """`Searcher` with ``fusion="learned"``: LightGBM LambdaRank over per-(query, product) features
    (`coldrec.search.ltr`), candidates the union of each signal's top ``depth``.

    `tune` fits it on the *tuning* half only (the product prior too: leave-one-query-out there);
    a fifth of the tuning queries is held out for early stopping. ``prior=False``: without the
    product prior (text and signal features only).
    """

    def __init__(self, encoder=None, name: str = "ltr", prior: bool = True, depth: int = 300,
                 dense_index: str = "exact") -> None:
        super().__init__(encoder=encoder, fusion="weighted", name=name, dense_index=dense_index)
        self.prior = prior
        self.depth = depth

    def tune(self, dataset) -> dict:
        qs = search_queries(dataset.judgments, "tune")
        self.searcher.fit_ranker(qs.queries, qs.judged, qs.relevance, prior=self.prior, depth=self.depth)
        ranker = self.searcher.ranker
        self.tuned = {"weights": dict(self.searcher.weights), "rrf_k": self.searcher.rrf_k, "n_queries": len(qs),
                      "ltr": {"prior": self.prior, "depth": self.depth, **ranker.info}}
        return self.tuned


class CrossModel(LTRModel):
    """`LTRModel` whose `Searcher` also re-ranks with a cross-encoder (`Searcher.fit_reranker`) fine-tuned on every
    judged pair of the *tuning* half. Re-rank: the cross-encoder's scores of the judged products. Retrieve: the
    learned ranker's list with its first ``rerank_depth`` re-ordered by the cross-encoder (a pass per pair is
    too slow for the whole catalog)."""

    def __init__(self, encoder=None, name: str = "cross", rerank_depth: int = 10, config=None) -> None:
        super().__init__(encoder=encoder, name=name)
        self.searcher.rerank_depth = rerank_depth
        self.config = config

    def tune(self, dataset) -> dict:
        from rich.progress import Progress

        tuned = super().tune(dataset)
        pairs = search_queries(dataset.judgments, "tune", min_judged=1)
        with Progress(transient=True) as progress:
            task = progress.add_task("cross-encoder (tuning half)", total=None)
            self.searcher.fit_reranker(
                pairs.queries, pairs.judged, pairs.relevance, self.config,
                on_progress=lambda step, steps, loss: progress.update(
                    task, completed=step, total=steps, description=f"cross-encoder (tuning half), loss {loss:.3f}"))
        tuned["cross"] = {**self.searcher.reranker.training_, "rerank_depth": self.searcher.rerank_depth}
        self.tuned = tuned
        return tuned


MODELS = ("random", "bm25", "dense", "rrf", "weighted", "weighted-ivf", "ltr", "ltr-noprior", "cross")


def make_model(name: str, encoder=None, cache: dict[str, SearchModel] | None = None) -> SearchModel:
    """'bm25', 'dense', 'rrf' (BM25 + dense), 'weighted' (`WeightedModel`) or 'ltr' (`LTRModel`); ``cache``
    shares fitted base models."""
    cache = {} if cache is None else cache
    if name in cache:
        return cache[name]
    if name == "bm25":
        model: SearchModel = BM25Model()
    elif name == "random":
        model = RandomModel()
    elif name == "dense":
        model = DenseModel(encoder=encoder)
    elif name == "rrf":
        model = RRFModel([make_model("bm25", encoder, cache), make_model("dense", encoder, cache)])
    elif name == "weighted":
        model = WeightedModel(encoder=encoder)
    elif name == "weighted-ivf":  # the same with an approximate (FAISS IVF) dense candidate list
        model = WeightedModel(encoder=encoder, name=name, dense_index="ivf")
    elif name == "ltr":
        model = LTRModel(encoder=encoder)
    elif name == "cross":  # the learned ranker's retrieval, re-ranked by a cross-encoder tuned on the tuning half
        model = CrossModel(encoder=encoder)
    elif name == "ltr-noprior":  # the learned ranker without the product prior: text and signals only
        model = LTRModel(encoder=encoder, name=name, prior=False)
    else:
        raise ValueError(f"unknown search model {name!r}; choose from {', '.join(MODELS)}")
    cache[name] = model
    return model


# ---------------------------------------------------------------------------- the evaluation


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
        tuned = None
        if isinstance(model, WeightedModel):
            if half == "tune":
                raise ValueError("the weighted model is tuned on the tuning half; evaluate it on another half")
            tuned = model.tune(dataset)
        start = time.perf_counter()
        scores = model.score_candidates(qs.queries, qs.judged)
        rerank_ms = (time.perf_counter() - start) * 1000 / max(len(qs), 1)
        start = time.perf_counter()
        ranked, _ = model.retrieve(qs.queries, RECALL_K)
        retrieve_ms = (time.perf_counter() - start) * 1000 / max(len(qs), 1)
        for task, per_query, ms in (("rerank", rerank_metrics(qs, scores), rerank_ms),
                                    ("retrieve", retrieve_metrics(qs, ranked), retrieve_ms)):
            row = {"model": name, "task": task, "half": half, "n_queries": len(qs), "ms_per_query": ms,
                   "per_query": per_query}
            if tuned is not None:
                row["tuned"] = {"weights": tuned["weights"], "rrf_k": tuned["rrf_k"], "tune_queries": tuned["n_queries"],
                                "grid": list(model.searcher.tuning)}
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
            row["vs_bm25"] = {m: paired_bootstrap(v, ref[m], bootstrap_resamples, seed) for m, v in row["per_query"].items()}
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
                f"(prior {'on' if ltr['prior'] else 'off'}, candidates top {ltr['depth']} a signal); " + "; ".join(parts))
    return (f"{row['model']}: weights {tuned['weights']}, rrf k {tuned['rrf_k']:g} "
            f"(tuned on {tuned['tune_queries']:,} tuning-half queries, retrieve NDCG@10)")


def render_search_table(rows: Sequence[dict], title: str | None = None):
    """A rich Table: one line per (model, task), differences against BM25 with 95% intervals."""
    from rich.table import Table

    half = rows[0].get("half", "") if rows else ""
    table = Table(title=title or f"{DATASET} ({half} half)")
    for col in ("model", "task", "NDCG@10", "Δ vs BM25 [95% CI]", "Recall@100", "Δ vs BM25 [95% CI]", "queries", "ms/query"):
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
    "MODELS",
    "BM25Model",
    "DenseModel",
    "LTRModel",
    "RRFModel",
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
    "recall_at_k",
    "render_search_table",
    "search_queries",
]
