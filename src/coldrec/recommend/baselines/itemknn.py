"""Item-kNN: cosine similarity between item columns of the past user-item matrix."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from coldrec.data.catalog import ItemCatalog
from coldrec.data.interactions import InteractionLog
from coldrec.recommend.base import Recommender, UserContext
from coldrec.recommend.baselines.features import context_matrix, top_k_per_row


class ItemKNNRecommender(Recommender):
    """score(u, j) = sum over the user's known items i of sim(i, j).

    sim(i, j) = |U_i & U_j| / (sqrt(|U_i|) sqrt(|U_j|) + shrink) on distinct past buyers,
    sim(i, i) = 0, and each target item j keeps only its `neighbours` most similar items
    (None: all). Items without past buyers score 0.
    """

    name = "itemknn"
    param_grid: Sequence[dict[str, Any]] = (
        {"neighbours": 50, "shrink": 0.0},
        {"neighbours": 200, "shrink": 0.0},
        {"neighbours": None, "shrink": 0.0},
        {"neighbours": 50, "shrink": 10.0},
        {"neighbours": 200, "shrink": 10.0},
        {"neighbours": None, "shrink": 10.0},
    )

    def __init__(self, neighbours: int | None = 200, shrink: float = 0.0):
        self.neighbours = neighbours
        self.shrink = shrink

    def _fit(self, log: InteractionLog, catalog: ItemCatalog, profiles) -> None:
        n_items = len(catalog)
        ui = log.user_item_matrix(n_items, binary=True)
        iu = sp.csr_matrix(ui.T, dtype=np.float32)
        co = sp.csr_matrix(iu @ iu.T, dtype=np.float32)  # items x items co-buyer counts
        self._similarity = knn_similarity(co, np.asarray(ui.sum(axis=0), dtype=np.float64).ravel(), self.shrink,
                                          self.neighbours)

    @property
    def similarity(self) -> sp.csr_matrix:
        """(known item, target item) similarities: a shopper's scores are the sum of their known items' rows."""
        return self._similarity

    def score(self, contexts: Sequence[UserContext]) -> np.ndarray:
        known = context_matrix(contexts, self.fitted_items_)
        return np.asarray((known @ self._similarity).toarray(), dtype=np.float32)


def knn_similarity(co: sp.csr_matrix, buyers: np.ndarray, shrink: float, neighbours: int | None) -> sp.csr_matrix:
    """(known item, target item) cosine similarities from co-buyer counts `co` (items x items, symmetric) and
    each item's buyers: co / (sqrt(buyers_i) sqrt(buyers_j) + shrink), the diagonal left out, each target keeping
    its `neighbours` most similar items (None: all). Exact or differentially private counts alike."""
    co = sp.csr_matrix(co, dtype=np.float32)
    co.setdiag(0)
    co.eliminate_zeros()
    norms = np.sqrt(np.clip(np.asarray(buyers, np.float64), 0, None))
    coo = co.tocoo()
    denominator = norms[coo.row] * norms[coo.col] + float(shrink)
    sim = sp.csr_matrix(
        ((coo.data / np.maximum(denominator, 1e-12)).astype(np.float32), (coo.row, coo.col)), shape=co.shape,
        dtype=np.float32,
    )
    # row j of `sim` lists the neighbours of target item j; prune, then store as (known, target)
    pruned = top_k_per_row(sim, neighbours)
    return sp.csr_matrix(pruned.T, dtype=np.float32)
