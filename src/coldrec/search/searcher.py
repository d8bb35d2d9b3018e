"""`Searcher`: one object that answers shoppers' queries over a catalog.

Three signals are computed over the whole catalog for each query:

- ``bm25``: word BM25 (`coldrec.retrieve.BM25Index`: stemming, stop words; jieba for Chinese);
- ``ngram``: BM25 over character 3-grams of each word (``#drill#`` -> ``#dr dri ril ill ll#``),
  which still matches misspelt words ("drlil", "cordles") — the typo-tolerant signal (English only);
- ``dense``: the cosine of encoder vectors (default: the packaged MiniLM, ONNX); its top
  ``depth`` comes from an exact FAISS scan (``dense_index="exact"``) or, faster, from a FAISS
  IVF index (``"ivf"``: sqrt(n) lists, ``nprobe`` probed; approximate candidates, exact cosines).

Candidates are the union of each signal's top ``depth`` (lexical signals: matching items
only). Fusion:

- ``"weighted"``: ``w_bm25 * bm25 / max_bm25 + w_ngram * ngram / max_ngram + w_dense * cosine``,
  the maxima taken per query over the whole catalog (0 when nothing matches);
- ``"rrf"``: sum over signals of ``1 / (rrf_k + rank)`` (rank from 1 in that signal's top ``depth``);
- ``"learned"``: a LightGBM LambdaRank model over per-(query, product) features (the signals, their
  ranks, title coverage, numbers and units, a product prior from judged queries; see
  `coldrec.search.ltr`), fitted by `Searcher.fit_ranker` on judged queries (the tuning half),
  its candidates the union of each signal's top ``ranker.depth`` (300).

Personalised re-rank: `search` / `score` take an optional shopper profile per query (a vector in
the item-vector space: e.g. the mean of the vectors of the shopper's recent items and stated
interests). The candidates' fused scores get ``profile_weight * spread * cos(profile, item)``,
``spread`` the max - min fused score over the query's candidates: bounded to ``profile_weight``
(default `PROFILE_WEIGHT` = 0.1) of the query's score range, so it reorders close matches but
cannot lift a poor match over a clearly better one. Without a profile, results are unchanged.

Ties are broken by catalog position ascending. The weights and ``rrf_k`` are chosen by
`Searcher.tune` on the *tuning* half of homedepot-search (never the reporting half).

Queries are normalised before scoring (`normalize_query`: Unicode NFKC, lowercase,
punctuation to spaces, whitespace collapsed, cut at `MAX_QUERY_CHARS`); the dense encoder
gets the NFKC, whitespace-collapsed, cut text (case and punctuation kept: the encoder
has its own tokenizer). Empty, punctuation-only, very long and non-Latin queries are
answered (lexical scores 0, the dense signal still ranks).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from coldrec.encode.shared import UsesEncoder
from coldrec.retrieve.lexical import BM25Index

#: Queries are cut to this many characters (after NFKC) before scoring.
MAX_QUERY_CHARS = 512
#: Queries scored together (bounds the (batch, n_items) score matrices).
BATCH = 256
SIGNALS = ("bm25", "ngram", "dense")
FUSIONS = ("weighted", "rrf", "learned")
#: Default weight of the shopper-profile term (`Searcher.search` ``profiles``): a share of the query's score range.
PROFILE_WEIGHT = 0.1
#: What `tune` picked on the homedepot-search tuning half (retrieve NDCG@10); `tune` overwrites them.
DEFAULT_WEIGHTS = {"bm25": 0.2, "ngram": 0.4, "dense": 0.4}

_NON_WORD = re.compile(r"[^\w\s]+|_+")
_WORD = re.compile(r"\w+")


def _clean(text) -> str:
    text = "" if text is None else str(text)
    text = unicodedata.normalize("NFKC", text[: 4 * MAX_QUERY_CHARS])
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    return " ".join(text.split())[:MAX_QUERY_CHARS]


def normalize_query(text) -> str:
    """NFKC, lowercase, punctuation -> space, whitespace collapsed, at most `MAX_QUERY_CHARS`."""
    return " ".join(_NON_WORD.sub(" ", _clean(text).lower()).split())


def char_ngrams(text: str, n: int = 3) -> list[str]:
    """Character n-grams of each word, padded with '#': 'Drill' -> ['#dr', 'dri', 'ril', 'ill', 'll#']."""
    out: list[str] = []
    for word in _WORD.findall(normalize_query(text)):
        padded = f"#{word}#"
        if len(padded) <= n:
            out.append(padded)
        else:
            out.extend(padded[i:i + n] for i in range(len(padded) - n + 1))
    return out


class CharNgramBM25(BM25Index):
    """`BM25Index` whose tokens are the words' character n-grams (`char_ngrams`)."""

    def __init__(self, n: int = 3, k1: float = 1.2, b: float = 0.75, method: str = "lucene") -> None:
        super().__init__(language="en", k1=k1, b=b, method=method)
        self.n = n

    def _tokens(self, texts: Sequence[str]) -> list[list[str]]:
        return [char_ngrams(t, self.n) for t in texts]


@dataclass
class Candidates:
    """One query's candidates (catalog positions, ascending) and their per-signal evidence."""

    items: np.ndarray  # int64
    features: np.ndarray  # (n, n_signals): bm25/max, ngram/max, cosine
    rrf: np.ndarray  # (n, n_signals): 1/(rrf_k + rank) without the k: rank (0 = not in that top list)
    maxima: np.ndarray | None = None  # (2,): the query's raw catalog maxima of bm25 and ngram (0: no match)


def ranks_within(items: np.ndarray, features: np.ndarray) -> np.ndarray:
    """Rank (1 = best) of each candidate under each signal, ties by catalog position: RRF's input."""
    ranks = np.zeros_like(features)
    for j in range(features.shape[1]):
        order = np.lexsort((items, -features[:, j]))
        ranks[order, j] = np.arange(1, len(items) + 1)
    return ranks


def _top(cols: np.ndarray, vals: np.ndarray, depth: int) -> np.ndarray:
    """The ``depth`` columns of largest value, value desc then column asc."""
    if len(cols) > depth:
        part = np.argpartition(-vals, depth - 1)[:depth]
        keep = vals >= vals[part].min()  # every tie at the cut, ordered exactly below
        cols, vals = cols[keep], vals[keep]
    return cols[np.lexsort((cols, -vals))[:depth]]


class Searcher(UsesEncoder):
    """BM25 + character 3-gram BM25 + dense search over a catalog, fused; see the module docstring."""

    def __init__(self, encoder=None, fusion: str = "weighted", weights: dict[str, float] | None = None,
                 rrf_k: float = 60.0, depth: int = 200, language: str = "en", ngram: bool | None = None,
                 query_encoder=None, batch_size: int = 64, dense_index: str = "exact", nprobe: int = 16,
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
        if dense_index not in ("exact", "ivf"):
            raise ValueError(f"unknown dense_index {dense_index!r}; choose exact or ivf")
        self.dense_index = dense_index
        self.nprobe = int(nprobe)
        self._dense = None  # DenseIndex (exact) or a FAISS IVF index
        #: signals summed by RRF fusion
        self.rrf_signals: tuple[str, ...] = ("bm25", "dense")
        self.bm25: BM25Index | None = None
        self.ngram: CharNgramBM25 | None = None
        self.vectors: np.ndarray | None = None
        self.texts: list[str] = []
        self._matcher = None  # TitleMatcher, built on first use by the learned ranker
        self.tuning: list[dict] = []  # grid results of the last tune()

    # ------------------------------------------------------------------ fitting

    @property
    def query_encoder(self):
        return self._query_encoder if self._query_encoder is not None else self.encoder

    @property
    def n_items(self) -> int:
        return 0 if self.vectors is None else len(self.vectors)

    def fit(self, catalog, vectors: np.ndarray | None = None) -> Searcher:
        """Index an `ItemCatalog` (its ``texts()``) or a list of texts; ``vectors``: precomputed item vectors."""
        texts = list(catalog.texts()) if hasattr(catalog, "texts") else [str(t) for t in catalog]
        self.texts = texts
        self._matcher = None
        self.bm25 = BM25Index(language=self.language).fit(texts)
        self.ngram = CharNgramBM25().fit(texts) if self.use_ngram else None
        if vectors is None:
            vectors = self.encoder.encode(texts, batch_size=self.batch_size, show_progress=False) if texts else None
        if vectors is None:
            self.vectors = np.zeros((0, 1), np.float32)
        else:
            v = np.asarray(vectors, np.float32)
            norms = np.linalg.norm(v, axis=1, keepdims=True)
            self.vectors = np.ascontiguousarray(v / np.where(norms > 0, norms, 1), dtype=np.float32)
        self._dense = self._build_dense() if len(self.vectors) else None
        return self

    @property
    def matcher(self):
        """Per-title evidence for the learned ranker's coverage features (`coldrec.search.ltr.TitleMatcher`)."""
        if self._matcher is None:
            from coldrec.search.ltr import TitleMatcher

            self._matcher = TitleMatcher(self.texts)
        return self._matcher

    @property
    def title_stems(self) -> np.ndarray:
        """Distinct BM25 terms per title."""
        if getattr(self, "_title_stems", None) is None or len(self._title_stems) != self.n_items:
            w = self.bm25._weights if self.bm25 is not None else None
            self._title_stems = (np.zeros(self.n_items) if w is None or w.shape[0] == 0
                                 else np.asarray((w > 0).sum(axis=0)).ravel().astype(np.float64))
        return self._title_stems

    def _build_dense(self):
        from coldrec.retrieve.dense import DenseIndex

        n, dim = self.vectors.shape
        nlist = max(1, int(np.sqrt(n)))
        if self.dense_index == "exact" or n < 39 * nlist:
            return DenseIndex(normalize=False).add(self.vectors)
        import faiss

        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = 0
        index.train(self.vectors)
        index.add(self.vectors)
        index.nprobe = self.nprobe
        return index

    def _dense_top(self, q: np.ndarray, depth: int) -> np.ndarray:
        """(n, <=depth) dense top positions (exact: ties by position; IVF: approximate, -1 padded)."""
        from coldrec.retrieve.dense import DenseIndex

        if isinstance(self._dense, DenseIndex):
            return self._dense.search(q, depth)[0]
        scores, positions = self._dense.search(np.ascontiguousarray(q, np.float32), depth)
        order = np.lexsort((positions, -scores), axis=-1)
        return np.take_along_axis(positions.astype(np.int64), order, axis=1)

    # ------------------------------------------------------------------ signals

    def _signals(self, queries: Sequence[str]) -> dict[str, np.ndarray]:
        """Per batch of raw queries: sparse (n, n_items) lexical scores and the normalised query vectors."""
        if self.vectors is None:
            raise RuntimeError("Searcher is not fitted; call fit(catalog) first")
        lexical = [normalize_query(q) for q in queries]
        n, n_items = len(queries), self.n_items
        out = {"bm25": self._lexical(self.bm25, lexical, n, n_items)}
        if self.ngram is not None:
            out["ngram"] = self._lexical(self.ngram, lexical, n, n_items)
        if n_items:
            q = self.query_encoder.encode([_clean(t) for t in queries], batch_size=self.batch_size, show_progress=False)
            q = np.asarray(q, np.float32)
            norms = np.linalg.norm(q, axis=1, keepdims=True)
            out["query"] = np.ascontiguousarray(q / np.where(norms > 0, norms, 1), dtype=np.float32)
        else:
            out["query"] = np.zeros((n, 1), np.float32)
        return out

    @staticmethod
    def _lexical(index: BM25Index, queries: list[str], n: int, n_items: int) -> sp.csr_matrix:
        if index is None or index.vocab == {}:
            return sp.csr_matrix((n, n_items), dtype=np.float32)
        m = index.score_all(queries).tocsr()
        m.sum_duplicates()  # also sorts the column indices of each row
        return m

    @staticmethod
    def _row(m: sp.csr_matrix, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Column indices (ascending) and values of row i, positive values only."""
        lo, hi = m.indptr[i], m.indptr[i + 1]
        cols, vals = m.indices[lo:hi].astype(np.int64), m.data[lo:hi]
        keep = vals > 0
        return (cols, vals) if keep.all() else (cols[keep], vals[keep])

    def _features(self, sig: dict[str, np.ndarray], i: int, items: np.ndarray) -> np.ndarray:
        cols = []
        for name in SIGNALS:
            if name == "dense":
                cols.append((self.vectors[items] @ sig["query"][i]).astype(np.float64) if len(items) else np.zeros(0))
                continue
            if name not in sig:
                cols.append(np.zeros(len(items), np.float64))
                continue
            ind, data = self._row(sig[name], i)
            vals = np.zeros(len(items), np.float64)
            if len(ind) and len(items):
                at = np.minimum(np.searchsorted(ind, items), len(ind) - 1)
                hit = ind[at] == items
                vals[hit] = data[at[hit]] / float(data.max())
            cols.append(vals)
        return np.stack(cols, axis=1) if len(items) else np.zeros((0, len(SIGNALS)))

    def _maxima(self, sig: dict[str, np.ndarray], i: int) -> np.ndarray:
        out = np.zeros(2)
        for j, name in enumerate(("bm25", "ngram")):
            if name in sig:
                vals = self._row(sig[name], i)[1]
                out[j] = float(vals.max()) if len(vals) else 0.0
        return out

    def _given_candidates(self, queries: Sequence[str], candidates: Sequence[np.ndarray]) -> list[Candidates]:
        """`Candidates` of given item sets (re-ranking): ranks are taken within each set."""
        out: list[Candidates] = []
        cands = [np.asarray(c, np.int64).ravel() for c in candidates]
        for start in range(0, len(queries), BATCH):
            sig = self._signals(list(queries[start:start + BATCH]))
            for i, items in enumerate(cands[start:start + BATCH]):
                feats = self._features(sig, i, items)
                out.append(Candidates(items, feats, ranks_within(items, feats), self._maxima(sig, i)))
        return out

    def _candidates(self, queries: Sequence[str], depth: int) -> list[Candidates]:
        out: list[Candidates] = []
        for start in range(0, len(queries), BATCH):
            batch = list(queries[start:start + BATCH])
            sig = self._signals(batch)
            dense_top = self._dense_top(sig["query"], depth)
            for i in range(len(batch)):
                tops = {name: _top(*self._row(sig[name], i), depth) for name in ("bm25", "ngram") if name in sig}
                tops["dense"] = dense_top[i][dense_top[i] >= 0]
                items = np.unique(np.concatenate([t for t in tops.values()] or [np.zeros(0, np.int64)])).astype(np.int64)
                ranks = np.zeros((len(items), len(SIGNALS)))
                for j, name in enumerate(SIGNALS):
                    if name in tops and len(tops[name]):
                        where = np.searchsorted(items, tops[name])
                        ranks[where, j] = np.arange(1, len(tops[name]) + 1)
                out.append(Candidates(items, self._features(sig, i, items), ranks, self._maxima(sig, i)))
        return out

    # ------------------------------------------------------------------ fusion

    def _weight_vector(self, weights: dict[str, float] | None = None) -> np.ndarray:
        w = self.weights if weights is None else weights
        return np.array([float(w.get(name, 0.0)) for name in SIGNALS])

    def fuse(self, features: np.ndarray, ranks: np.ndarray, fusion: str | None = None,
             weights: dict[str, float] | None = None, rrf_k: float | None = None) -> np.ndarray:
        """Fused scores of candidates from their features (weighted) or ranks (rrf)."""
        fusion = fusion or self.fusion
        if fusion == "weighted":
            return features @ self._weight_vector(weights)
        k = self.rrf_k if rrf_k is None else rrf_k
        active = np.array([name in self.rrf_signals for name in SIGNALS], np.float64)
        contrib = np.where(ranks > 0, 1.0 / (k + np.maximum(ranks, 1)), 0.0)
        return contrib @ active

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
        """One unit vector (or None: no profile) per query."""
        if profiles is None:
            return [None] * n
        if len(profiles) != n:
            raise ValueError(f"{n} queries but {len(profiles)} profiles")
        out: list[np.ndarray | None] = []
        for p in profiles:
            if p is None:
                out.append(None)
                continue
            p = np.asarray(p, np.float64).ravel()
            norm = np.linalg.norm(p) if np.isfinite(p).all() else 0.0
            if p.shape[0] != self.vectors.shape[1] and norm > 0:
                raise ValueError(f"profile dimension {p.shape[0]} != item vector dimension {self.vectors.shape[1]}")
            out.append(p / norm if norm > 0 else None)
        return out

    def personalise(self, items: np.ndarray, fused: np.ndarray, profile: np.ndarray | None,
                    weight: float | None = None) -> np.ndarray:
        """``fused + weight * spread * cos(profile, item)``; ``spread`` is the max - min fused score over
        the candidates (1 if they all tie), so a profile moves a score by at most ``weight`` of the
        query's score range whatever the fusion: it reorders close lexical matches, it cannot lift a
        poor match over a clearly better one. No profile (None): ``fused`` unchanged."""
        if profile is None or not len(items):
            return fused
        weight = self.profile_weight if weight is None else float(weight)
        spread = float(fused.max() - fused.min())
        sim = self.vectors[items] @ profile.astype(np.float32)
        return fused + weight * (spread if spread > 0 else 1.0) * np.clip(sim.astype(np.float64), -1.0, 1.0)

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
        for row, (head, values) in enumerate(zip(heads, self._reranker_scores(queries, heads))):
            positions[row, : len(head)] = head[np.argsort(-values, kind="stable")]

    def _reranker_scores(self, queries: list[str], candidates: Sequence[np.ndarray]) -> list[np.ndarray]:
        scores = self.reranker.predict(*self._pairs(queries, candidates))
        return np.split(scores, np.cumsum([len(c) for c in candidates])[:-1])

    def _pairs(self, queries: Sequence[str], candidates: Sequence[np.ndarray]) -> tuple[list[str], list[str]]:
        """(query, product text) pairs, one a candidate, queries in order."""
        return ([q for q, c in zip(queries, candidates) for _ in c],
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
        return [self.personalise(c.items, b, rows[i], profile_weight) for i, (c, b) in enumerate(zip(given, base))]

    def fit_ranker(self, queries: Sequence[str], judged: Sequence[np.ndarray], relevance: Sequence[np.ndarray],
                   **params) -> Searcher:
        """Fit a `coldrec.search.ltr.LearnedRanker` on judged queries (tuning data only) and switch
        to ``fusion="learned"``; ``params`` go to `LearnedRanker`."""
        from coldrec.search.ltr import LearnedRanker

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
             ngram_grid: Sequence[float] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5), rrf_grid: Sequence[float] = (10, 30, 60, 100),
             metric: str = "ndcg@10") -> dict:
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
        grid_ngram = tuple(ngram_grid) if self.ngram is not None else (0.0,)
        points = []
        for wb in weight_grid:
            for wn in grid_ngram:
                wd = round(1.0 - wb - wn, 10)
                if wd >= 0:
                    wd = max(wd, 0.0) + 0.0  # no -0.0
                    points.append(("weighted", {"bm25": float(wb), "ngram": float(wn), "dense": wd}, None))
        points += [("rrf", dict(self.weights), float(k)) for k in rrf_grid]
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


__all__ = ["PROFILE_WEIGHT", "CharNgramBM25", "Searcher", "char_ngrams", "normalize_query"]
