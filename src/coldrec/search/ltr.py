"""A learned ranker for `Searcher` (``fusion="learned"``): LightGBM LambdaRank over per-(query, product) features.

Features of one candidate (``FEATURES``; computed by `candidate_features`):

- the three signals (``bm25`` and ``ngram`` divided by the query's catalog maximum, ``dense`` cosine),
  their ranks within the query's candidates, the dense cosine's gap to the best candidate, and the
  raw catalog maxima of both BM25 signals (how well the query matches anything at all);
- the default weighted fusion (`DEFAULT_WEIGHTS`) of the three signals;
- title coverage: share of the query's stems in the title, stems missing, share of the query's
  character 3-grams in the title (typo-tolerant), the whole normalised query as a phrase in the
  title, the query's first and last stem (usually the head noun: "angle *bracket*") in the title;
- numbers and units (`number_tokens`: ``1/2 in.``, ``1/2 inch`` and ``1/2"`` are all ``1/2in``):
  share of the query's numbers found in the title with their unit, and as bare numbers (NaN when
  the query has no number);
- query length and title length in stems, number of candidates;
- a product prior (`ProductPrior`): the product's mean relevance over judged queries and how many,
  the behaviour evidence a shop has from its logs. Training rows get it leave-one-query-out, so a
  row never sees its own label; products never judged get NaN / 0.

`LearnedRanker` fits two LambdaRank models on judged queries (the *tuning* half only): one for
the retrieve candidates (union of each signal's top ``depth``; unjudged candidates have gain 0)
and one for re-ranking a given set (the judged products themselves). Labels are the graded
relevance on a 1/12 grid with LightGBM's ``label_gain`` set to the benchmark's gain
``2^(rel-1) - 1``, so the training objective is the metric's NDCG. A fifth of the queries
(random, seeded) is held out for early stopping (`coldrec.rank.learned.LearnedFusion`).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from coldrec.model.registry import register_class
from coldrec.retrieve.lexical import term_presence
from coldrec.retrieve.ranking import ranks_within
from coldrec.search.fusion import DEFAULT_WEIGHTS, SIGNALS
from coldrec.search.text import normalize_query

FEATURES = (
    "bm25", "ngram", "dense",
    "bm25_rank", "ngram_rank", "dense_rank", "dense_gap",
    "bm25_max", "ngram_max", "weighted",
    "stem_cover", "stems_missing", "gram_cover", "phrase", "first_stem", "last_stem",
    "num_unit_match", "num_match",
    "query_stems", "title_stems", "n_candidates",
    "prior_mean", "prior_count",
)
PRIOR_FEATURES = ("prior_mean", "prior_count")
#: label grid: relevance 1..3 in steps of 1/12 (the data's means of 3 or 4 raters: 1.25, 1.33, ...)
LABEL_STEPS = 12

_UNITS = {
    "in": "in", "inch": "in", "inches": "in", '"': "in", "''": "in", "”": "in",
    "ft": "ft", "feet": "ft", "foot": "ft", "'": "ft", "’": "ft",
    "gal": "gal", "gallon": "gal", "gallons": "gal",
    "lb": "lb", "lbs": "lb", "pound": "lb", "pounds": "lb",
    "oz": "oz", "ounce": "oz", "ounces": "oz",
    "qt": "qt", "quart": "qt", "quarts": "qt",
    "yd": "yd", "yard": "yd", "yards": "yd",
    "mm": "mm", "cm": "cm", "m": "m",
    "v": "v", "volt": "v", "volts": "v", "w": "w", "watt": "w", "watts": "w",
    "a": "amp", "amp": "amp", "amps": "amp", "ah": "ah",
    "btu": "btu", "psi": "psi", "gpm": "gpm", "gpf": "gpf", "cc": "cc", "k": "k",
    "sq ft": "sqft", "sqft": "sqft", "cu ft": "cuft", "cuft": "cuft",
    "pc": "pc", "pcs": "pc", "piece": "pc", "pieces": "pc", "pack": "pk", "pk": "pk", "count": "ct", "ct": "ct",
    "gauge": "ga", "ga": "ga", "amp hour": "ah",
}
_UNIT_ALT = "|".join(sorted((re.escape(u).replace(r"\ ", r"\.?\s*") for u in _UNITS), key=len, reverse=True))
_NUMBER = re.compile(
    r"(?<![a-wyz0-9_.])(\d+(?:\.\d+)?(?:[-\s]\d+/\d+)?(?:/\d+)?)[\s-]*(?:(" + _UNIT_ALT + r")(?![a-z]))?\.?",
    re.IGNORECASE)


def number_tokens(text) -> list[str]:
    """Numbers with their canonical unit: '1/2 in. x 10 ft.' -> ['1/2in', '10ft']; '20V' -> ['20v'].

    Mixed numbers keep their parts ('1-1/4 in.' -> '1-1/4in'); a number without a known unit
    stays bare ('Model 300' -> '300').
    """
    text = unicodedata.normalize("NFKC", "" if text is None else str(text)).lower().replace("⁄", "/")
    out = []
    for number, unit in _NUMBER.findall(text):
        number = re.sub(r"\s+", "-", number.strip())
        if "." in number:
            number = number.rstrip("0").rstrip(".") if "/" not in number else number
        unit = "" if not unit else _UNITS.get(re.sub(r"[.\s]+", " ", unit).strip(), "")
        out.append(number + unit)
    return out


def _bare(token: str) -> str:
    return re.sub(r"[a-z]+$", "", token)


@register_class
class TitleMatcher:
    """Per-title evidence for the coverage features: normalised text, stems, numbers."""

    def __init__(self, texts: Sequence[str]) -> None:
        self.padded = [f" {normalize_query(t)} " for t in texts]
        vocab: dict[str, int] = {}
        rows, cols = [], []
        for i, text in enumerate(texts):
            toks = set(number_tokens(text))
            toks |= {"#" + _bare(t) for t in toks}
            for t in toks:
                rows.append(i)
                cols.append(vocab.setdefault(t, len(vocab)))
        self.number_vocab = vocab
        # numbers x titles, 1 where the title has the number token
        self.numbers = sp.csr_matrix((np.ones(len(rows), np.float32), (cols, rows)),
                                     shape=(len(vocab), len(texts)), dtype=np.float32)
        self.numbers.sort_indices()


class ProductPrior:
    """A product's mean relevance over the judged queries it appears in (and how many).

    `lookup(items, exclude=query)` leaves that query's own judgment out (leave-one-query-out),
    so a training row never sees its own label; products with no other judgment get NaN and 0.
    """

    def fit(self, queries: Sequence[str], judged: Sequence[np.ndarray], relevance: Sequence[np.ndarray],
            n_items: int) -> ProductPrior:
        self.n_items = int(n_items)
        self.sum = np.zeros(self.n_items)
        self.count = np.zeros(self.n_items)
        self.own: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for q, items, rel in zip(queries, judged, relevance, strict=True):
            items = np.asarray(items, np.int64)
            rel = np.asarray(rel, np.float64)
            np.add.at(self.sum, items, rel)
            np.add.at(self.count, items, 1.0)
            if q in self.own:  # the same text twice: both judgments are the query's own
                prev_i, prev_r = self.own[q]
                items, rel = np.concatenate([prev_i, items]), np.concatenate([prev_r, rel])
            self.own[q] = (items, rel)
        return self

    def lookup(self, items: np.ndarray, exclude: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        items = np.asarray(items, np.int64)
        s, c = self.sum[items].copy(), self.count[items].copy()
        if exclude is not None and exclude in self.own:
            own_items, own_rel = self.own[exclude]
            for item, rel in zip(own_items.tolist(), own_rel.tolist(), strict=True):
                hit = items == item
                s[hit] -= rel
                c[hit] -= 1.0
        c = np.maximum(c, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(c > 0, s / np.where(c > 0, c, 1.0), np.nan)
        return mean, c


def candidate_features(searcher, query: str, cand, prior: ProductPrior | None = None,
                       exclude: str | None = None) -> np.ndarray:
    """(n_candidates, len(FEATURES)) features of one query's candidates (`Searcher` `Candidates`)."""
    items = cand.items
    n = len(items)
    X = np.full((n, len(FEATURES)), np.nan, np.float32)
    if n == 0:
        return X
    col = {name: j for j, name in enumerate(FEATURES)}
    feats = cand.features
    X[:, 0:3] = feats
    X[:, 3:6] = ranks_within(items, feats)
    X[:, col["dense_gap"]] = feats[:, 2] - feats[:, 2].max()
    maxima = cand.maxima if cand.maxima is not None else np.zeros(2)
    X[:, col["bm25_max"]], X[:, col["ngram_max"]] = maxima[0], maxima[1]
    X[:, col["weighted"]] = feats @ np.array([DEFAULT_WEIGHTS.get(s, 0.0) for s in SIGNALS])

    matcher = searcher.matcher
    bm25 = searcher.bm25
    stems = bm25.tokens([query])[0] if bm25 is not None else []
    distinct = list(dict.fromkeys(stems))
    if distinct and bm25.vocab:
        present = bm25.presence(distinct, items).astype(np.float32)  # unknown stems: rows of 0
        found = present.sum(0)
        X[:, col["stem_cover"]] = found / len(distinct)
        X[:, col["stems_missing"]] = len(distinct) - found
        for name, stem in (("first_stem", stems[0]), ("last_stem", stems[-1])):
            X[:, col[name]] = present[distinct.index(stem)]
    if searcher.ngram is not None and searcher.ngram.vocab:
        grams = list(dict.fromkeys(searcher.ngram.tokens([query])[0]))
        if grams:
            X[:, col["gram_cover"]] = searcher.ngram.presence(grams, items).astype(np.float32).sum(0) / len(grams)
    phrase = normalize_query(query)
    if phrase:
        padded = f" {phrase} "
        X[:, col["phrase"]] = [padded in matcher.padded[i] for i in items.tolist()]
    numbers = list(dict.fromkeys(number_tokens(query)))
    if numbers:
        vocab = matcher.number_vocab
        for name, toks in (("num_unit_match", numbers), ("num_match", ["#" + _bare(t) for t in numbers])):
            ids = [vocab[t] for t in toks if t in vocab]
            X[:, col[name]] = term_presence(matcher.numbers, ids, items).astype(np.float32).sum(0) / len(toks)
    X[:, col["query_stems"]] = len(distinct)
    X[:, col["title_stems"]] = searcher.title_stems[items]
    X[:, col["n_candidates"]] = n
    if prior is not None:
        mean, count = prior.lookup(items, exclude)
        X[:, col["prior_mean"]], X[:, col["prior_count"]] = mean, count
    else:
        X[:, col["prior_count"]] = 0.0
    return X


def relevance_labels(relevance: np.ndarray) -> np.ndarray:
    """Relevance 1..3 -> integer labels 0..24 (1/12 steps); gains are `label_gain`."""
    labels = np.rint((np.asarray(relevance, np.float64) - 1.0) * LABEL_STEPS)
    return np.clip(labels, 0, 2 * LABEL_STEPS).astype(np.int32)


def label_gain() -> list[float]:
    """The benchmark's gain 2^(rel-1) - 1 for each label."""
    return [float(2.0 ** (label / LABEL_STEPS) - 1.0) for label in range(2 * LABEL_STEPS + 1)]


@register_class
class LearnedRanker:
    """Two LambdaRank models (``"retrieve"``, ``"rerank"``) over `FEATURES`; see the module docstring.

    ``prior=False`` leaves the product prior out (text and signal features only). ``rerank_params``
    override the tree settings of the re-rank model (default: 7 leaves, 200 rows a leaf: its
    training sets are small, about 8 judged products a query, and their labels noisy).
    """

    def __init__(self, prior: bool = True, depth: int = 300, n_estimators: int = 500, learning_rate: float = 0.05,
                 num_leaves: int = 31, min_child_samples: int = 50, random_state: int = 0, n_jobs: int = 2,
                 rerank_params: dict | None = None) -> None:
        self.use_prior = prior
        self.depth = depth
        self.params = {"n_estimators": n_estimators, "learning_rate": learning_rate, "num_leaves": num_leaves,
                       "min_child_samples": min_child_samples, "random_state": random_state, "n_jobs": n_jobs}
        #: the re-rank sets are small (about 8 judged products a query) and noisy: smaller, steadier trees
        self.task_params = {"rerank": {"num_leaves": 7, "min_child_samples": 200} if rerank_params is None
                            else dict(rerank_params)}
        self.prior: ProductPrior | None = None
        self.models: dict = {}
        self.info: dict = {}

    @property
    def feature_names(self) -> list[str]:
        return [f for f in FEATURES if self.use_prior or f not in PRIOR_FEATURES]

    def _columns(self, X: np.ndarray) -> np.ndarray:
        return X if self.use_prior else X[:, [FEATURES.index(f) for f in self.feature_names]]

    def features(self, searcher, query: str, cand, exclude: str | None = None) -> np.ndarray:
        return self._columns(candidate_features(searcher, query, cand, self.prior if self.use_prior else None, exclude))

    def fit(self, searcher, queries: Sequence[str], judged: Sequence[np.ndarray], relevance: Sequence[np.ndarray],
            tasks: Sequence[str] = ("retrieve", "rerank")) -> LearnedRanker:
        """Fit on judged queries (the tuning half): ``judged[i]`` catalog positions, ``relevance[i]`` 1..3."""
        from coldrec.rank.learned import LearnedFusion

        queries = list(queries)
        judged = [np.asarray(j, np.int64) for j in judged]
        relevance = [np.asarray(r, np.float64) for r in relevance]
        self.prior = ProductPrior().fit(queries, judged, relevance, searcher.n_items)
        names = self.feature_names
        for task in tasks:
            if task == "retrieve":
                cands = searcher._candidates(queries, self.depth)
            elif task == "rerank":
                cands = searcher._given_candidates(queries, judged)
            else:
                raise ValueError(f"unknown task {task!r}; choose retrieve or rerank")
            blocks, labels, groups = [], [], []
            for q, c, items, rel in zip(queries, cands, judged, relevance, strict=True):
                lab = np.zeros(len(c.items), np.int32)
                where = np.searchsorted(c.items, items)
                inside = where < len(c.items)
                inside[inside] = c.items[where[inside]] == items[inside]
                lab[where[inside]] = relevance_labels(rel[inside])
                if len(c.items) < 2 or lab.max() == 0:
                    continue  # nothing to learn from this query
                blocks.append(self.features(searcher, q, c, exclude=q))
                labels.append(lab)
                groups.append(len(lab))
            model = LearnedFusion(label_gain=label_gain(), **{**self.params, **self.task_params.get(task, {})})
            model.fit(np.concatenate(blocks), np.concatenate(labels), np.asarray(groups), names)
            self.models[task] = model
            self.info[task] = {"queries": len(groups), "rows": int(sum(groups)), "trees": model.best_iteration_,
                               "valid_ndcg@10": model.best_score_, "importance": model.importance()}
        return self

    def predict(self, task: str, X: np.ndarray) -> np.ndarray:
        """Scores of one query's candidates by the ``task`` model (the other one if that was not fitted)."""
        model = self.models.get(task) or next(iter(self.models.values()))
        if not len(X):
            return np.zeros(0)
        # one query's few hundred rows: a second thread costs more than it saves; float64 scores
        # straight from the booster (LearnedFusion.predict rounds to float32, which would add ties)
        threads = 1 if len(X) < 5000 else model.n_jobs
        return model.raw_scores(X, num_threads=threads)


__all__ = ["FEATURES", "LearnedRanker", "ProductPrior", "TitleMatcher", "candidate_features", "label_gain",
           "number_tokens", "relevance_labels"]
