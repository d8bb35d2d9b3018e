"""EASE (Steck, 2019): a closed-form linear item-item model on the past user-item matrix.

Often the strongest co-purchase model on small catalogs. Its weights are kept in item-kNN's
layout (a sparse known item x target item matrix, each target's strongest `neighbours` known
items), so they score, extend and serve like item-kNN's similarities.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from coldrec.data.catalog import ItemCatalog
from coldrec.data.interactions import InteractionLog
from coldrec.recommend.baselines.features import top_k_per_row
from coldrec.recommend.baselines.itemknn import ItemKNNRecommender


def ease_dense(x: sp.csr_matrix, l2: float) -> np.ndarray:
    """The closed-form EASE weights B (items x items, float64) of a binary user-item matrix."""
    gram = (x.T @ x).toarray().astype(np.float64)
    gram[np.diag_indices_from(gram)] += l2
    inverse = np.linalg.inv(gram)
    weights = inverse / -np.diag(inverse)
    weights[np.diag_indices_from(weights)] = 0.0
    return weights


def ease_weights(log: InteractionLog, n_items: int, l2: float, max_items: int = 5000,
                 neighbours: int | None = 200) -> sp.csr_matrix:
    """(known item, target item) EASE weights over the `max_items` items with the most past buyers.

    B minimises ||X - X B||^2 + l2 ||B||^2 with diag(B) = 0 on those items' columns of the binary
    user-item matrix X: B = I - P diag(1 / diag(P)), P = (X^T X + l2 I)^-1. The dense inverse is
    what limits the item count; rarer items get no weights (little co-purchase evidence anyway).
    Each target keeps its `neighbours` largest positive weights (None: every positive weight).
    """
    x = log.user_item_matrix(n_items, binary=True)
    buyers = np.asarray(x.sum(axis=0)).ravel()
    bought = np.flatnonzero(buyers > 0)
    kept = bought[np.argsort(-buyers[bought], kind="stable")[:max_items]]
    if not len(kept):
        # scipy-stubs type a shape-only csr_matrix as float64, whatever the dtype
        return sp.csr_matrix((n_items, n_items), dtype=np.float32)  # type: ignore[arg-type]
    weights = ease_dense(x[:, kept], l2)
    weights[weights < 0] = 0.0  # a known item only ever adds evidence, as in item-kNN
    targets = top_k_per_row(sp.csr_matrix(weights.T.astype(np.float32)), neighbours).tocoo()  # target x known
    return sp.csr_matrix((targets.data, (kept[targets.col], kept[targets.row])), shape=(n_items, n_items),
                         dtype=np.float32)


class EASERecommender(ItemKNNRecommender):
    """score(u, j) = sum over the user's known items i of B[i, j] (see `ease_weights`); item-kNN's scoring
    over EASE's weights instead of cosine similarities.

    Items without past buyers, and items outside the `max_items` most bought, score 0.
    """

    name = "ease"
    param_grid = ({"l2": 100.0}, {"l2": 500.0}, {"l2": 2000.0})

    def __init__(self, l2: float = 500.0, max_items: int = 5000, neighbours: int | None = 200):
        self.l2 = l2
        self.max_items = max_items
        self.neighbours = neighbours

    def _fit(self, log: InteractionLog, catalog: ItemCatalog, profiles) -> None:
        self._similarity = ease_weights(log, len(catalog), self.l2, self.max_items, self.neighbours)
