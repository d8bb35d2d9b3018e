"""`Searcher`: one object that answers shoppers' queries over a catalog.

Three signals are computed over the whole catalog for each query:

- ``bm25``: word BM25 (`coldrec.retrieve.BM25Index`: stemming, stop words; jieba for Chinese);
- ``ngram``: BM25 over character 3-grams of each word (``#drill#`` -> ``#dr dri ril ill ll#``),
  which still matches misspelt words ("drlil", "cordles") — the typo-tolerant signal (English only);
- ``dense``: the cosine of encoder vectors (default: the packaged MiniLM, ONNX); its top ``depth``
  comes from a `coldrec.retrieve.index.VectorIndex`: an exact FAISS scan (``dense_index="exact"``),
  a FAISS IVF index (``"ivf"``: 4 sqrt(n) lists, ``nprobe`` probed; approximate candidates, exact
  cosines), or IVF from 20,000 items on (``"auto"``).

Candidates are the union of each signal's top ``depth`` (lexical signals: matching items
only). Fusion (`coldrec.search.fusion`): ``"weighted"`` (a weighted sum of per-query normalised
scores), ``"rrf"`` (reciprocal-rank fusion) or ``"learned"``: a LightGBM LambdaRank model over
per-(query, product) features (the signals, their ranks, title coverage, numbers and units, a
product prior from judged queries; see `coldrec.search.ltr`), fitted by `Searcher.fit_ranker` on
judged queries (the tuning half), its candidates the union of each signal's top ``ranker.depth`` (300).

Personalised re-rank: `search` / `score` take an optional shopper profile per query, which can
reorder close matches but not lift a poor match over a clearly better one (`coldrec.search.profiles`).

Ties are broken by catalog position ascending. The weights and ``rrf_k`` are chosen by
`Searcher.tune` on the *tuning* half of homedepot-search (never the reporting half).

Queries are normalised before scoring (`coldrec.search.text`). Empty, punctuation-only, very long
and non-Latin queries are answered (lexical scores 0, the dense signal still ranks).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from coldrec.encode.shared import UsesEncoder
from coldrec.model.registry import register_class
from coldrec.retrieve.index import NPROBE, VectorIndex
from coldrec.retrieve.lexical import BM25Index
from coldrec.retrieve.ranking import ranks_within
from coldrec.search.fusion import (
    DEFAULT_WEIGHTS,
    FUSIONS,
    SIGNALS,
    Candidates,
    fusion_grid,
    rrf_fusion,
    weighted_fusion,
)
from coldrec.search.ltr import LearnedRanker, TitleMatcher
from coldrec.search.profiles import PROFILE_WEIGHT, personalised, unit_profiles
from coldrec.search.signals import QuerySignals, lexical_scores
from coldrec.search.text import MAX_QUERY_CHARS, CharNgramBM25, _clean, char_ngrams, normalize_query

#: Queries scored together (bounds the (batch, n_items) score matrices).
BATCH = 256
DENSE_INDEXES = ("exact", "ivf", "auto")


@register_class
class Searcher(UsesEncoder):
    """BM25 + character 3-gram BM25 + dense search over a catalog, fused; see the module docstring."""

    #: the encoders are the process's own (a saved searcher holds none); `use_encoder` sets them after a load
    __transient__ = ("_encoder", "_query_encoder")
    _query_encoder = None

    def __init__(self, encoder=None, fusion: str = "weighted", weights: dict[str, float] | None = None,
                 rrf_k: float = 60.0, depth: int = 200, language: str = "en", ngram: bool | None = None,
                 query_encoder=None, batch_size: int = 64, dense_index: str = "exact", nprobe: int = NPROBE,
                 ranker=None, profile_weight: float = PROFILE_WEIGHT, reranker=None, rerank_depth: int = 10) -> None:
        if fusion not in FUSIONS:
            raise ValueError(f"unknown fusion {fusion!r}; choose from {FUSIONS}")
        #: a fitted `coldrec.search.ltr.LearnedRanker` (``fusion="learned"``; `fit_ranker` makes one)
        self.ranker = ranker
        #: a fitted `coldrec.adapt.cross.CrossEncoderScorer` (`fit_reranker` makes one): re-orders the first
        #: ``rerank_depth`` of each list and scores given candidates; None: off (a transformer pass a pair is
        #: tens of ms on a CPU)
        self.reranker = reranker
        self.rerank_depth = int(rerank_depth)
        if not 0.0 <= float(profile_weight) <= 1.0:
            raise ValueError("profile_weight must be in [0, 1]")
        self.profile_weight = float(profile_weight)
        self._encoder = encoder
        self._query_encoder = query_encoder
        self.fusion = fusion
        self.weights = dict(DEFAULT_WEIGHTS if weights is None else weights)
        unknown = set(self.weights) - set(SIGNALS)
        if unknown:
            raise ValueError(f"unknown signals {sorted(unknown)}; choose from {SIGNALS}")
        self.rrf_k = float(rrf_k)
        self.depth = int(depth)
        self.language = language
        self.use_ngram = (language == "en") if ngram is None else bool(ngram)
        self.batch_size = batch_size
        if dense_index not in DENSE_INDEXES:
            raise ValueError(f"unknown dense_index {dense_index!r}; choose from {DENSE_INDEXES}")
        self.dense_index = dense_index
        self.nprobe = int(nprobe)
        self._dense: VectorIndex | None = None
        #: signals summed by RRF fusion
        self.rrf_signals: tuple[str, ...] = ("bm25", "dense")
        self.bm25: BM25Index | None = None
        self.ngram: CharNgramBM25 | None = None
        self.vectors: np.ndarray | None = None
        self.texts: list[str] = []
        self._matcher: TitleMatcher | None = None  # built on first use by the learned ranker
        self._title_stems: np.ndarray | None = None
        self.tuning: list[dict] = []  # grid results of the last tune()

    # ------------------------------------------------------------------ fitting

    @property
    def query_encoder(self):
        return self._query_encoder if self._query_encoder is not None else self.encoder

    @query_encoder.setter
    def query_encoder(self, encoder) -> None:
        self._query_encoder = encoder

    @property
    def n_items(self) -> int:
        return 0 if self.vectors is None else len(self.vectors)

    @property
    def _vectors(self) -> np.ndarray:
        """The item vectors of a fitted searcher."""
        if self.vectors is None:
            raise RuntimeError("Searcher is not fitted; call fit(catalog) first")
        return self.vectors

    def fit(self, catalog, vectors: np.ndarray | None = None) -> Searcher:
        """Index an `ItemCatalog` (its ``texts()``) or a list of texts; ``vectors``: precomputed item vectors."""
        texts = list(catalog.texts()) if hasattr(catalog, "texts") else [str(t) for t in catalog]
        self.texts = texts
        self._matcher = None
        self.bm25 = BM25Index(language=self.language).fit(texts)
        self.ngram = CharNgramBM25().fit(texts) if self.use_ngram else None
        if vectors is None:
            vectors = self.encoder.encode(texts, batch_size=self.batch_size, show_progress=False) if texts else None
        self.vectors = np.zeros((0, 1), np.float32) if vectors is None else _unit_rows(vectors)
        self._dense = self._build_dense() if self.n_items else None
        return self

    def share_vectors(self, vectors: np.ndarray, index: VectorIndex) -> None:
        """Rank the dense signal with another owner's unit item vectors and their index (one copy of each)."""
        self.vectors, self._dense = vectors, index

    def put_vectors(self, positions: np.ndarray, vectors: np.ndarray) -> None:
        """Set the item vectors (normalised here) at ``positions``, new ones past the end included; found at once."""
        positions = np.asarray(positions, np.int64)
        v = _unit_rows(vectors)
        held = self._vectors if self.n_items else np.zeros((0, v.shape[1]), np.float32)
        grow = int(positions.max(initial=-1)) + 1 - len(held)
        if grow > 0:
            held = np.concatenate([held, np.zeros((grow, held.shape[1]), np.float32)])
        held[positions] = v
        self.vectors = held
        if self._dense is None:
            self._dense = self._build_dense()
        else:
            self._dense.add(positions, v)

    @property
    def matcher(self):
        """Per-title evidence for the learned ranker's coverage features (`coldrec.search.ltr.TitleMatcher`)."""
        if self._matcher is None:
            self._matcher = TitleMatcher(self.texts)
        return self._matcher

    @property
    def title_stems(self) -> np.ndarray:
        """Distinct BM25 terms per title."""
        stems = getattr(self, "_title_stems", None)
        if stems is None or len(stems) != self.n_items:
            stems = self._title_stems = self.bm25.terms_per_item() if self.bm25 is not None else np.zeros(self.n_items)
        return stems

    def _build_dense(self) -> VectorIndex:
        return VectorIndex(kind=self.dense_index, nprobe=self.nprobe).fit(self._vectors)

    def dense_top(self, queries: np.ndarray, depth: int) -> np.ndarray:
        """(n, depth) positions of the largest inner products with the unit ``queries``, -1 padded (exact kind:
        ties by position; IVF: approximate)."""
        if self._dense is None:
            return np.full((len(queries), depth), -1, np.int64)
        return self._dense.search(queries, depth)[1]

    # ------------------------------------------------------------------ signals

    def _signals(self, queries: Sequence[str]) -> QuerySignals:
        """One batch of raw queries' lexical scores over the catalog and unit query vectors."""
        if self.vectors is None:
            raise RuntimeError("Searcher is not fitted; call fit(catalog) first")
        lexical = [normalize_query(q) for q in queries]
        scores = {"bm25": lexical_scores(self.bm25, lexical, self.n_items)}
        if self.ngram is not None:
            scores["ngram"] = lexical_scores(self.ngram, lexical, self.n_items)
        if not self.n_items:
            return QuerySignals(scores, np.zeros((len(queries), 1), np.float32))
        q = self.query_encoder.encode([_clean(t) for t in queries], batch_size=self.batch_size, show_progress=False)
        return QuerySignals(scores, _unit_rows(q))

    def _given_candidates(self, queries: Sequence[str], candidates: Sequence[np.ndarray]) -> list[Candidates]:
        """`Candidates` of given item sets (re-ranking): ranks are taken within each set."""
        out: list[Candidates] = []
        cands = [np.asarray(c, np.int64).ravel() for c in candidates]
        for start in range(0, len(queries), BATCH):
            sig = self._signals(list(queries[start:start + BATCH]))
            out += [sig.given(i, items, self._vectors) for i, items in enumerate(cands[start:start + BATCH])]
        return out

    def _candidates(self, queries: Sequence[str], depth: int) -> list[Candidates]:
        """Each query's `Candidates`: the union of each signal's top ``depth``."""
        out: list[Candidates] = []
        for start in range(0, len(queries), BATCH):
            sig = self._signals(list(queries[start:start + BATCH]))
            dense_top = self.dense_top(sig.query, depth)
            out += [sig.candidates(i, dense_top[i], depth, self._vectors) for i in range(len(dense_top))]
        return out

    # ------------------------------------------------------------------ fusion

    def fuse(self, features: np.ndarray, ranks: np.ndarray | None, fusion: str | None = None,
             weights: dict[str, float] | None = None, rrf_k: float | None = None) -> np.ndarray:
        """Fused scores of candidates from their features (weighted) or ranks (rrf; weighted needs none)."""
        if (fusion or self.fusion) == "weighted":
            return weighted_fusion(features, self.weights if weights is None else weights)
        if ranks is None:
            raise ValueError("rrf fusion needs the candidates' ranks")
        return rrf_fusion(ranks, self.rrf_k if rrf_k is None else rrf_k, self.rrf_signals)

    @staticmethod
    def _order(items: np.ndarray, fused: np.ndarray, k: int) -> np.ndarray:
        return np.lexsort((items, -fused))[:k]

    def _fused(self, query: str, cand: Candidates, task: str) -> np.ndarray:
        """Fused scores of one query's candidates under ``self.fusion`` (``task``: the learned model to use)."""
        if self.fusion == "learned":
            if self.ranker is None:
                raise RuntimeError('fusion="learned" needs a fitted ranker: call fit_ranker(...) or pass ranker=')
            return self.ranker.predict(task, self.ranker.features(self, query, cand))
        return self.fuse(cand.features, cand.rrf)

    def _profile_rows(self, profiles, n: int) -> list[np.ndarray | None]:
        return unit_profiles(profiles, n, self.vectors.shape[1] if self.vectors is not None else 0)

    def personalise(self, items: np.ndarray, fused: np.ndarray, profile: np.ndarray | None,
                    weight: float | None = None) -> np.ndarray:
        """``fused`` moved by ``weight`` (default ``self.profile_weight``) of its spread times each candidate's
        cosine to the unit ``profile`` (`coldrec.search.profiles.personalised`); None: ``fused`` unchanged."""
        if profile is None or not len(items):
            return fused
        weight = self.profile_weight if weight is None else float(weight)
        return personalised(fused, self._vectors[items] @ profile.astype(np.float32), weight)

    def search(self, queries: Sequence[str], k: int, user=None, profiles=None,
               profile_weight: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k catalog positions (int64) and fused scores (float32) per query.

        Every row has ``min(k, n_items)`` real positions (the dense signal ranks every
        item). ``profiles``: optional shopper profile per query (a vector in the item-vector
        space, e.g. the mean of the shopper's recent items' and stated interests' vectors;
        None or a zero row: not known), added to the fused score of the candidates by
        `personalise` with ``profile_weight`` (default ``self.profile_weight`` = `PROFILE_WEIGHT`).
        ``user`` (a `coldrec.data.UserContext`) is accepted for the interface and not used.
        """
        if isinstance(queries, str):
            raise TypeError("pass a list of queries, not a single string")
        if self.vectors is None:
            raise RuntimeError("Searcher is not fitted; call fit(catalog) first")
        queries = list(queries)
        rows = self._profile_rows(profiles, len(queries))
        k = max(0, min(int(k), self.n_items))
        positions = np.full((len(queries), k), -1, np.int64)
        scores = np.zeros((len(queries), k), np.float32)
        if k == 0:
            return positions, scores
        depth = max(self.ranker.depth if self.fusion == "learned" and self.ranker is not None else self.depth, k)
        for i, c in enumerate(self._candidates(queries, depth)):
            fused = self.personalise(c.items, self._fused(queries[i], c, "retrieve"), rows[i], profile_weight)
            order = self._order(c.items, fused, k)
            positions[i, : len(order)] = c.items[order]
            scores[i, : len(order)] = fused[order]
        if self.reranker is not None:
            self._rerank_heads(queries, positions)
        return positions, scores

    def _rerank_heads(self, queries: list[str], positions: np.ndarray) -> None:
        """The first `rerank_depth` of each row re-ordered by the reranker, in place (scores stay the fusion's)."""
        heads = [row[: self.rerank_depth][row[: self.rerank_depth] >= 0] for row in positions]
        # strict=False: np.split of no rows at all gives one empty part
        for row, (head, values) in enumerate(zip(heads, self._reranker_scores(queries, heads), strict=False)):
            positions[row, : len(head)] = head[np.argsort(-values, kind="stable")]

    def _reranker_scores(self, queries: list[str], candidates: Sequence[np.ndarray]) -> list[np.ndarray]:
        scores = self.reranker.predict(*self._pairs(queries, candidates))
        return np.split(scores, np.cumsum([len(c) for c in candidates])[:-1])

    def _pairs(self, queries: Sequence[str], candidates: Sequence[np.ndarray]) -> tuple[list[str], list[str]]:
        """(query, product text) pairs, one a candidate, queries in order."""
        return ([q for q, c in zip(queries, candidates, strict=True) for _ in c],
                [self.texts[int(i)] for c in candidates for i in c])

    def score(self, queries: Sequence[str], candidates: Sequence[np.ndarray], profiles=None,
              profile_weight: float | None = None) -> list[np.ndarray]:
        """Fused scores of given candidates (re-ranking); rrf ranks are taken within each candidate set.
        ``profiles`` as in `search`."""
        if len(candidates) != len(queries):
            raise ValueError(f"{len(queries)} queries but {len(candidates)} candidate sets")
        queries = list(queries)
        rows = self._profile_rows(profiles, len(queries))
        given = self._given_candidates(queries, candidates)
        if self.reranker is not None:
            base = self._reranker_scores(queries, [c.items for c in given])
        else:
            base = [self._fused(queries[i], c, "rerank").astype(np.float64) for i, c in enumerate(given)]
        # strict=False: the reranker's np.split of no candidate sets at all gives one empty part
        return [self.personalise(c.items, b, rows[i], profile_weight)
                for i, (c, b) in enumerate(zip(given, base, strict=False))]

    def fit_ranker(self, queries: Sequence[str], judged: Sequence[np.ndarray], relevance: Sequence[np.ndarray],
                   **params) -> Searcher:
        """Fit a `coldrec.search.ltr.LearnedRanker` on judged queries (tuning data only) and switch
        to ``fusion="learned"``; ``params`` go to `LearnedRanker`."""
        self.ranker = LearnedRanker(**params).fit(self, queries, judged, relevance)
        self.fusion = "learned"
        return self

    def fit_reranker(self, queries: Sequence[str], judged: Sequence[np.ndarray], relevance: Sequence[np.ndarray],
                     config=None, on_progress=None) -> Searcher:
        """Fine-tune a cross-encoder (`coldrec.adapt.cross.CrossEncoderScorer`) on judged (query, product) pairs
        (tuning data only; any number of judged products a query) and re-rank with it from now on."""
        from coldrec.adapt.cross import CrossEncoderScorer

        self.reranker = CrossEncoderScorer(config=config).fit(
            *self._pairs(queries, judged), np.concatenate([np.asarray(r, np.float64) for r in relevance]), on_progress)
        return self

    # ------------------------------------------------------------------ tuning

    def tune(self, queries: Sequence[str], metrics: Callable[[list[np.ndarray]], dict[str, np.ndarray]],
             depth: int = 100, weight_grid: Sequence[float] = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8),
             ngram_grid: Sequence[float] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5),
             rrf_grid: Sequence[float] = (10, 30, 60, 100), metric: str = "ndcg@10") -> dict:
        """Pick the weights (and ``rrf_k``) maximising ``metric`` over tuning ``queries``.

        ``metrics(ranked)`` scores one top-``depth`` list per query (the caller's judgments:
        this module knows none). Weighted grid: ``w_bm25`` in ``weight_grid``, ``w_ngram`` in
        ``ngram_grid`` (0 only when the n-gram index is off), ``w_dense = 1 - w_bm25 - w_ngram``
        (points with a negative dense weight are skipped). Ties keep the first grid point. Sets
        ``self.weights`` and ``self.rrf_k``, stores every point in ``self.tuning`` and returns
        the best of each.
        """
        if len(queries) == 0:
            return {"weights": dict(self.weights), "rrf_k": self.rrf_k, "n_queries": 0}
        cands = self._candidates(list(queries), max(self.depth, depth))
        points = fusion_grid(self.weights, weight_grid, ngram_grid if self.ngram is not None else (0.0,), rrf_grid)
        self.tuning = []
        for fusion, weights, rrf_k in points:
            ranked = [c.items[self._order(c.items, self.fuse(c.features, c.rrf, fusion, weights, rrf_k), depth)]
                      for c in cands]
            per_query = metrics(ranked)
            self.tuning.append({"fusion": fusion, "weights": weights, "rrf_k": rrf_k, "n_queries": len(queries),
                                **{m: float(np.nanmean(v)) for m, v in per_query.items()}})
        best_w = max((r for r in self.tuning if r["fusion"] == "weighted"), key=lambda r: r[metric])
        best_r = max((r for r in self.tuning if r["fusion"] == "rrf"), key=lambda r: r[metric])
        self.weights = dict(best_w["weights"])
        self.rrf_k = float(best_r["rrf_k"])
        return {"weights": dict(self.weights), "rrf_k": self.rrf_k, "n_queries": len(queries),
                "weighted": best_w, "rrf": best_r}


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    v = np.asarray(vectors, np.float32)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return np.ascontiguousarray(v / np.where(norms > 0, norms, 1), dtype=np.float32)


# re-exported: the names lived here before `coldrec.search.text` and `coldrec.search.fusion`
__all__ = ["BATCH", "DEFAULT_WEIGHTS", "FUSIONS", "MAX_QUERY_CHARS", "PROFILE_WEIGHT", "SIGNALS", "Candidates",
           "CharNgramBM25", "Searcher", "char_ngrams", "normalize_query", "ranks_within"]
