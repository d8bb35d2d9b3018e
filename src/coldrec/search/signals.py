"""A batch of queries' evidence over the catalog, from which `Searcher` builds each query's `Candidates`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from coldrec.retrieve.lexical import BM25Index
from coldrec.retrieve.ranking import ranks_within
from coldrec.search.fusion import SIGNALS, Candidates, top_columns

LEXICAL = ("bm25", "ngram")


def lexical_scores(index: BM25Index | None, queries: list[str], n_items: int) -> sp.csr_matrix:
    """(n_queries, n_items) BM25 scores, each row's columns ascending (an empty index: all 0)."""
    if index is None or index.vocab == {}:
        return sp.csr_matrix((np.zeros(0, np.float32), np.zeros(0, np.int32), np.zeros(len(queries) + 1, np.int32)),
                             shape=(len(queries), n_items))
    m = index.score_all(queries).tocsr()
    m.sum_duplicates()  # also sorts the column indices of each row
    return m


@dataclass
class QuerySignals:
    """Lexical scores (only matching items are stored) and unit query vectors of a batch of queries."""

    lexical: dict[str, sp.csr_matrix]  # "bm25" and, when the n-gram index is on, "ngram"
    query: np.ndarray  # (n_queries, dim)

    def matches(self, name: str, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Items (ascending) that query i matches under a lexical signal, and their positive scores."""
        m = self.lexical[name]
        lo, hi = m.indptr[i], m.indptr[i + 1]
        cols, vals = m.indices[lo:hi].astype(np.int64), m.data[lo:hi]
        keep = vals > 0
        return (cols, vals) if keep.all() else (cols[keep], vals[keep])

    def features(self, i: int, items: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        """(len(items), len(SIGNALS)): each lexical score over the query's catalog maximum, and the cosine."""
        if not len(items):
            return np.zeros((0, len(SIGNALS)))
        cols = []
        for name in SIGNALS:
            vals = np.zeros(len(items), np.float64)
            if name == "dense":
                vals = (vectors[items] @ self.query[i]).astype(np.float64)
            elif name in self.lexical:
                ind, data = self.matches(name, i)
                if len(ind):
                    at = np.minimum(np.searchsorted(ind, items), len(ind) - 1)
                    hit = ind[at] == items
                    vals[hit] = data[at[hit]] / float(data.max())
            cols.append(vals)
        return np.stack(cols, axis=1)

    def maxima(self, i: int) -> np.ndarray:
        """The raw catalog maxima of query i's lexical scores (0: no match)."""
        out = np.zeros(len(LEXICAL))
        for j, name in enumerate(LEXICAL):
            if name in self.lexical:
                vals = self.matches(name, i)[1]
                out[j] = float(vals.max()) if len(vals) else 0.0
        return out

    def given(self, i: int, items: np.ndarray, vectors: np.ndarray) -> Candidates:
        """Query i's `Candidates` among given items (re-ranking): ranks are taken within the set."""
        feats = self.features(i, items, vectors)
        return Candidates(items, feats, ranks_within(items, feats), self.maxima(i))

    def candidates(self, i: int, dense_top: np.ndarray, depth: int, vectors: np.ndarray) -> Candidates:
        """Query i's `Candidates`: the union of each lexical signal's top ``depth`` and the dense top list."""
        tops = {name: top_columns(*self.matches(name, i), depth) for name in LEXICAL if name in self.lexical}
        tops["dense"] = dense_top[dense_top >= 0]
        items = np.unique(np.concatenate([t for t in tops.values()] or [np.zeros(0, np.int64)])).astype(np.int64)
        ranks = np.zeros((len(items), len(SIGNALS)))
        for j, name in enumerate(SIGNALS):
            if name in tops and len(tops[name]):
                ranks[np.searchsorted(items, tops[name]), j] = np.arange(1, len(tops[name]) + 1)
        return Candidates(items, self.features(i, items, vectors), ranks, self.maxima(i))


__all__ = ["QuerySignals", "lexical_scores"]
