"""History: the shopper's own known items (repeat purchases)."""

from __future__ import annotations

from coldrec.recommend.shoppers import ShopperBatch
from coldrec.recommend.sources.base import Candidates, CandidateSource, per_row


class OwnPastSource(CandidateSource):
    """The shopper's own known items (repeat purchases)."""

    name = "own_past"

    def candidates(self, shoppers: ShopperBatch, k: int) -> Candidates:
        return per_row([shoppers.known(row) for row in range(len(shoppers))])
