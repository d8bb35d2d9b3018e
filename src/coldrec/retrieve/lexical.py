"""`BM25Index`: a BM25 (Lucene variant) index built with ``bm25s``, scored as sparse products.

Tokenisation: English lowercases, splits on ``\\b\\w\\w+\\b`` (bm25s' default), drops
bm25s' English stop words and Snowball-stems with PyStemmer; Chinese (``language="zh"``)
segments with jieba (``cut_for_search``), keeps tokens with a word character and drops
bm25s' Chinese stop words, without stemming.

``bm25s`` computes the per-(document, term) BM25 weights; they are kept as a scipy CSR
matrix (terms x documents), so a batch of queries is scored by one sparse product and
only documents sharing a term with the query are ever touched. A query with no known
token (empty, punctuation-only, all stop words, unknown words) scores 0 everywhere.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from functools import cache
from typing import Self

import numpy as np
import scipy.sparse as sp

from coldrec.model.registry import register_class
from coldrec.retrieve.ranking import sortable_keys

LANGUAGES = ("en", "zh")
_EN_TOKEN = re.compile(r"(?u)\b\w\w+\b")
_WORD_CHAR = re.compile(r"\w")
#: Queries scored per sparse product (bounds the memory of the score matrix).
QUERY_BATCH = 512


@cache
def _stopwords(language: str) -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_CHINESE, STOPWORDS_EN

    return frozenset(STOPWORDS_EN if language == "en" else STOPWORDS_CHINESE)


@cache
def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("english")


@cache
def _jieba():
    import jieba

    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()
    return jieba


def tokenize(texts: Sequence[str], language: str = "en") -> list[list[str]]:
    """Token lists for BM25, one per text (possibly empty). See the module docstring."""
    if isinstance(texts, str):
        raise TypeError("tokenize() takes a sequence of strings, not a single string")
    if language not in LANGUAGES:
        raise ValueError(f"unknown language {language!r}; choose from {LANGUAGES}")
    stop = _stopwords(language)
    out: list[list[str]] = []
    if language == "en":
        stem = _stemmer().stemWords
        for text in texts:
            words = [w for w in _EN_TOKEN.findall(str(text or "").lower()) if w not in stop]
            out.append(stem(words) if words else [])
    else:
        jieba = _jieba()
        for text in texts:
            words = jieba.lcut_for_search(str(text or "").lower())
            out.append([w for w in (w.strip() for w in words) if w and _WORD_CHAR.search(w) and w not in stop])
    return out


def term_presence(postings: sp.csr_matrix, term_ids: Sequence[int], items: np.ndarray) -> np.ndarray:
    """(len(term_ids), len(items)) bool from a terms x items CSR matrix: does the item hold the term?"""
    items = np.asarray(items, np.int64)
    out = np.zeros((len(term_ids), len(items)), bool)
    if not len(items):
        return out
    if not postings.has_sorted_indices:
        postings.sort_indices()  # in place: the same matrix
    for row, t in enumerate(term_ids):
        holders = postings.indices[postings.indptr[t]:postings.indptr[t + 1]]
        if len(holders):
            at = np.minimum(np.searchsorted(holders, items), len(holders) - 1)
            out[row] = holders[at] == items
    return out


@register_class
class BM25Index:
    """BM25 over a list of texts; item positions are indices into the fitted list."""

    def __init__(self, language: str = "en", k1: float = 1.5, b: float = 0.75, method: str = "lucene") -> None:
        if language not in LANGUAGES:
            raise ValueError(f"unknown language {language!r}; choose from {LANGUAGES}")
        self.language = language
        self.k1 = k1
        self.b = b
        self.method = method
        self.vocab: dict[str, int] = {}
        self._weights: sp.csr_matrix | None = None  # (n_terms, n_docs)

    @property
    def n_items(self) -> int:
        return 0 if self._weights is None else self._weights.shape[1]

    def _tokens(self, texts: list[str]) -> list[list[str]]:
        """Index terms of each text (subclasses change the analysis, e.g. character n-grams)."""
        return tokenize(texts, self.language)

    def tokens(self, texts: Sequence[str]) -> list[list[str]]:
        """The terms this index's analysis makes of each text (known to the index or not)."""
        if isinstance(texts, str):
            raise TypeError("pass a list of texts, not a single string")
        return self._tokens(list(texts))

    def presence(self, terms: Sequence[str], items: np.ndarray) -> np.ndarray:
        """(len(terms), len(items)) bool: does the item hold the term? Unknown terms and items hold nothing."""
        items = np.asarray(items, np.int64)
        known = [(row, self.vocab[t]) for row, t in enumerate(terms) if t in self.vocab]
        out = np.zeros((len(terms), len(items)), bool)
        if known and len(items) and self._weights is not None:
            rows, ids = zip(*known, strict=True)
            out[list(rows)] = term_presence(self._weights, ids, items)
        return out

    def term_counts(self, terms: Sequence[str], items: np.ndarray) -> np.ndarray:
        """How many of the distinct ``terms`` each item holds (read from the postings; no scoring)."""
        return self.presence(list(dict.fromkeys(terms)), items).sum(axis=0, dtype=np.int64)

    def terms_per_item(self) -> np.ndarray:
        """Distinct index terms of each item (float64)."""
        w = self._weights
        if w is None or w.shape[0] == 0:
            return np.zeros(self.n_items)
        return np.asarray((w > 0).sum(axis=0)).ravel().astype(np.float64)

    def fit(self, texts: Sequence[str]) -> Self:
        import bm25s

        tokens = self._tokens(list(texts))
        n_docs = len(tokens)
        if n_docs == 0 or not any(tokens):
            self.vocab = {}
            # scipy-stubs type a shape-only csr_matrix as float64, whatever the dtype
            self._weights = sp.csr_matrix((0, n_docs), dtype=np.float32)  # type: ignore[arg-type]
            return self
        model = bm25s.BM25(k1=self.k1, b=self.b, method=self.method)
        model.index(tokens, create_empty_token=False, show_progress=False)
        s = model.scores
        n_terms = len(s["indptr"]) - 1
        # bm25s stores a documents x terms CSC matrix: the same arrays read as CSR are terms x documents
        weights = sp.csr_matrix(
            (np.asarray(s["data"], np.float32), np.asarray(s["indices"], np.int32), np.asarray(s["indptr"], np.int64)),
            shape=(n_terms, s["num_docs"]),
        )
        # term ids in sorted term order: bm25s numbers terms in Python's per-process string-hash order, and a
        # query's score sums its terms in id order, so float32 scores would differ in the last bit between runs
        terms = sorted(t for t, i in model.vocab_dict.items() if 0 <= i < n_terms)
        self._weights = weights[np.array([model.vocab_dict[t] for t in terms], np.int64)].tocsr()
        self.vocab = {t: i for i, t in enumerate(terms)}
        return self

    def _query_matrix(self, queries: Sequence[str]) -> sp.csr_matrix:
        """Term counts of the queries (n_queries x n_terms); unknown tokens are dropped."""
        if isinstance(queries, str):
            raise TypeError("pass a list of queries, not a single string")
        rows, cols = [], []
        for i, toks in enumerate(self._tokens(list(queries))):
            ids = [self.vocab[t] for t in toks if t in self.vocab]
            rows += [i] * len(ids)
            cols += ids
        data = np.ones(len(rows), np.float32)
        n_terms = self._require_fit().shape[0]
        q = sp.csr_matrix((data, (rows, cols)), shape=(len(queries), n_terms), dtype=np.float32)
        q.sum_duplicates()
        return q

    def _require_fit(self) -> sp.csr_matrix:
        if self._weights is None:
            raise RuntimeError("BM25Index is not fitted; call fit(texts) first")
        return self._weights

    def score_all(self, queries: Sequence[str]) -> sp.csr_matrix:
        """Sparse (n_queries x n_items) BM25 scores; absent entries are 0."""
        weights = self._require_fit()
        return (self._query_matrix(queries) @ weights).tocsr()

    def search(self, queries: Sequence[str], k: int, fill: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Top-k positions (int64) and scores (float32) per query; ties by position ascending.

        Documents matching no query token are not returned (position -1, score 0) unless
        ``fill`` is set, in which case they complete the ranking with score 0 in position order.
        """
        weights = self._require_fit()
        n_items = weights.shape[1]
        k = max(0, min(int(k), n_items))
        positions = np.full((len(queries), k), -1, np.int64)
        scores = np.zeros((len(queries), k), np.float32)
        for start in range(0, len(queries), QUERY_BATCH):
            block = self.score_all(queries[start:start + QUERY_BATCH])
            block.sum_duplicates()
            for r in range(block.shape[0]):
                lo, hi = block.indptr[r], block.indptr[r + 1]
                cols = block.indices[lo:hi].astype(np.int64)
                vals = block.data[lo:hi]
                keep = vals > 0  # BM25 (lucene) weights are positive; 0 = no match
                cols, vals = cols[keep], vals[keep]
                if len(cols) > k:
                    keys = sortable_keys(vals, tie_break=cols, n_ranks=n_items)
                    sel = np.argpartition(-keys, k - 1)[:k]
                    sel = sel[np.argsort(-keys[sel])]
                elif len(cols):
                    keys = sortable_keys(vals, tie_break=cols, n_ranks=n_items)
                    sel = np.argsort(-keys)
                else:
                    sel = np.zeros(0, np.int64)
                n = len(sel)
                positions[start + r, :n] = cols[sel]
                scores[start + r, :n] = vals[sel]
                if fill and n < k:
                    free = np.arange(k + n, dtype=np.int64)
                    free = free[~np.isin(free, cols)][: k - n]
                    positions[start + r, n:] = free
        return positions, scores

    def score(self, queries: Sequence[str], item_positions) -> list[np.ndarray] | np.ndarray:
        """BM25 scores of given candidates: ``item_positions[i]`` are the items of query i.

        Takes a 2-D array (returns a 2-D float32 array) or a list of 1-D arrays (returns a
        list of float32 arrays).
        """
        weights = self._require_fit()
        if len(item_positions) != len(queries):
            raise ValueError(f"{len(queries)} queries but {len(item_positions)} candidate sets")
        as_array = isinstance(item_positions, np.ndarray) and item_positions.ndim == 2
        sets = [np.asarray(c, dtype=np.int64).ravel() for c in item_positions]
        out: list[np.ndarray] = []
        for start in range(0, len(queries), QUERY_BATCH):
            block = self.score_all(queries[start:start + QUERY_BATCH])
            chunk = sets[start:start + QUERY_BATCH]
            lengths = [len(c) for c in chunk]
            cols = np.concatenate(chunk) if chunk else np.zeros(0, np.int64)
            if len(cols) and (cols.min() < 0 or cols.max() >= weights.shape[1]):
                raise IndexError("candidate position out of range")
            rows = np.repeat(np.arange(len(chunk)), lengths)
            vals = np.asarray(block[rows, cols]).ravel().astype(np.float32) if len(cols) else np.zeros(0, np.float32)
            out += np.split(vals, np.cumsum(lengths)[:-1]) if chunk else []
        return np.vstack(out).astype(np.float32) if as_array and out else out
