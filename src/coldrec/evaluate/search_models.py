"""The search models of the `homedepot-search` protocol (`coldrec.evaluate.search`): a query -> product scorer
each, scoring given candidates (re-rank) or ranking the catalog (retrieve)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from coldrec.evaluate.queries import RECALL_K, rank_candidates, retrieve_metrics, search_queries
from coldrec.retrieve.ranking import fuse_rankings, ranks_within, reciprocal_rank_fusion

if TYPE_CHECKING:
    from coldrec.retrieve.dense import DenseIndex


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
        ranked = (np.stack([rng.choice(self.n_items, k, replace=False) for _ in queries]) if len(queries)
                  else np.zeros((0, k), np.int64))
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
        self.index: DenseIndex | None = None

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

    def _fitted(self) -> DenseIndex:
        if self.index is None:
            raise RuntimeError("DenseModel is not fitted; call fit(catalog) first")
        return self.index

    def score_candidates(self, queries, candidates):
        return self._fitted().score(self._encode(queries), list(candidates))

    def retrieve(self, queries, k):
        return self._fitted().search(self._encode(queries), k)


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
        per_model = [m.score_candidates(queries, candidates) for m in self.models]
        return [reciprocal_rank_fusion(ranks_within(c, np.stack(s, axis=1)), self.k)
                for c, *s in zip(candidates, *per_model, strict=True)]

    def retrieve(self, queries, k):
        lists = [m.retrieve(queries, max(k, self.depth))[0] for m in self.models]
        positions = np.zeros((len(queries), k), np.int64)
        scores = np.zeros((len(queries), k), np.float32)
        for i in range(len(queries)):
            items, fused = fuse_rankings([top[i] for top in lists], self.k)
            order = rank_candidates(items, fused)[:k]
            positions[i, : len(order)], scores[i, : len(order)] = items[order], fused[order]
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


__all__ = ["MODELS", "BM25Model", "CrossModel", "DenseModel", "LTRModel", "RRFModel", "RandomModel", "SearchModel",
           "WeightedModel", "make_model"]
