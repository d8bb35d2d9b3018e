"""Order: what other shoppers bought next after the shopper's items, and what their nearest sequences hold."""

from __future__ import annotations

from coldrec.recommend.shoppers import ShopperBatch
from coldrec.recommend.sources.base import Candidates, CandidateSource, top_per_row


class TransitionSource(CandidateSource):
    """The top k items by directed transition share from the shopper's known items (the latest counting most)."""

    name = "transitions"

    def candidates(self, shoppers: ShopperBatch, k: int) -> Candidates:
        return top_per_row(shoppers.following, k)


class SessionKNNSource(CandidateSource):
    """The top k items by their share among the sequences nearest to the shopper's (session-kNN)."""

    name = "session_knn"

    def candidates(self, shoppers: ShopperBatch, k: int) -> Candidates:
        return top_per_row(shoppers.neighbour_share, k)
