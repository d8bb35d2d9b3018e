"""Behaviour: the shopper's folded-in ALS factors, and items bought with their known items (item-kNN)."""

from __future__ import annotations

import numpy as np

from coldrec.recommend.shoppers import ShopperBatch
from coldrec.recommend.sources.base import Candidates, CandidateSource, per_row, top_per_row, top_positive


class ALSSource(CandidateSource):
    """The top k items by ALS score (user factors . item factors), among items that have factors."""

    name = "als"

    def _with_factors(self) -> tuple[np.ndarray, np.ndarray]:
        """Positions whose factors are not all zero (items nobody bought have none) and their factor rows,
        contiguous: gathering them per request cost more than the product."""

        def build():
            factors = self.signals.item_factors
            positions = np.flatnonzero(np.any(factors != 0, axis=1))
            return positions, np.ascontiguousarray(factors[positions])

        return self._derived(build)

    def candidates(self, shoppers: ShopperBatch, k: int) -> Candidates:
        positions, factors = self._with_factors()
        lists, values = [], []
        for row in range(len(shoppers)):
            if not shoppers.n_known[row]:
                lists.append(np.zeros(0, np.int64))
                values.append(np.zeros(0, np.float32))
                continue
            scores = factors @ shoppers.user_factors[row]
            picked = top_positive(scores, k)
            lists.append(positions[picked])
            values.append(scores[picked])
        return per_row(lists, values)


class ItemKNNSource(CandidateSource):
    """The top k items by the summed co-occurrence with the shopper's known items."""

    name = "itemknn"

    def candidates(self, shoppers: ShopperBatch, k: int) -> Candidates:
        return top_per_row(shoppers.knn, k)
