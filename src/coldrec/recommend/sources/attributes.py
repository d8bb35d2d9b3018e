"""Attributes: the most popular items of the shopper's categories, or of their brands."""

from __future__ import annotations

import numpy as np

from coldrec.recommend.shoppers import ShopperBatch
from coldrec.recommend.sources.base import Candidates, CandidateSource, per_row


class _GroupSource(CandidateSource):
    """Up to k items of the shopper's groups (categories or brands), the group with the highest share first,
    and within a group its most popular items first. Reads only those groups' item lists."""

    def _codes(self) -> np.ndarray:
        raise NotImplementedError

    def _shares(self, shoppers: ShopperBatch) -> np.ndarray:
        raise NotImplementedError

    def _grouped(self) -> tuple[np.ndarray, np.ndarray]:
        """Positions grouped by code, each group by popularity (then position): (group starts, positions)."""

        def build():
            codes = self._codes()
            order = np.lexsort((np.arange(len(codes)), -self.signals.pop[: len(codes)], codes))
            starts = np.searchsorted(codes[order], np.arange(int(codes.max(initial=0)) + 2))
            return starts, order

        return self._derived(build)

    def candidates(self, shoppers: ShopperBatch, k: int) -> Candidates:
        shares = self._shares(shoppers)
        return per_row([self._top_of(row_shares, k) for row_shares in shares])

    def _top_of(self, shares: np.ndarray, k: int) -> np.ndarray:
        codes = np.flatnonzero(shares > 0)
        if not len(codes) or k <= 0:
            return np.zeros(0, np.int64)
        starts, order = self._grouped()
        picked, need = [], k
        for code in codes[np.lexsort((codes, -shares[codes]))]:
            if code + 1 >= len(starts):
                continue
            members = order[starts[code] : starts[code + 1]][:need]
            picked.append(members)
            need -= len(members)
            if need <= 0:
                break
        return np.concatenate(picked) if picked else np.zeros(0, np.int64)


class CategorySource(_GroupSource):
    name = "category"

    def _codes(self) -> np.ndarray:
        return self.state.category

    def _shares(self, shoppers: ShopperBatch) -> np.ndarray:
        return shoppers.category_share


class BrandSource(_GroupSource):
    """Items without a brand are never proposed (an empty brand is not a shared brand)."""

    name = "brand"

    def _codes(self) -> np.ndarray:
        # items without a brand go to a group of their own past every real code
        return np.where(self.state.has_brand, self.state.brand, len(self.state.brand_names))

    def _shares(self, shoppers: ShopperBatch) -> np.ndarray:
        shares = shoppers.brand_share.copy()
        empty = np.flatnonzero(self.state.brand_names == "")
        shares[:, empty[empty < shares.shape[1]]] = 0
        return shares
