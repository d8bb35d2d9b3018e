"""`ShopperBatch`: what the candidate sources and the features read about a batch of shoppers.

Built once per batch from the shoppers' contexts (a single request is a batch of one): their
interest vectors, the weight of each known item, how much of their history (or a stated
interest) falls in each category and brand, their folded-in ALS factors and item-kNN scores.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.sparse as sp

from coldrec.data.context import UserContext
from coldrec.profile import build_interest_profiles
from coldrec.profile.interests import InterestProfiles, item_weights
from coldrec.recommend.items import ItemState
from coldrec.recommend.sequential import neighbour_shares
from coldrec.recommend.signals import DAY, BehaviourSignals


@dataclass
class ShopperBatch:
    contexts: Sequence[UserContext]
    profiles: InterestProfiles
    #: (shoppers x items) summed recency x event weight of each distinct known item
    seen: sp.csr_matrix
    #: (shoppers x categories), (shoppers x brands): share of the known-item weight; a stated category counts 1
    category_share: np.ndarray
    brand_share: np.ndarray
    #: (shoppers x factors) folded-in ALS factors, zero for a shopper without known items
    user_factors: np.ndarray
    #: (shoppers x items) sum of the known items' item-kNN rows
    knn: sp.csr_matrix
    #: the most recent known item (-1: none)
    last: np.ndarray
    n_known: np.ndarray
    has_stated: np.ndarray
    #: days from the signals' cut to each request: later shoppers buy newer items (NaN without timestamps)
    gap_days: np.ndarray
    signals: BehaviourSignals

    def __len__(self) -> int:
        return len(self.contexts)

    @cached_property
    def following(self) -> sp.csr_matrix:
        """(shoppers x items) what came next after the shopper's known items in others' sequences: their
        transition rows, each weighted as the item is in `seen` (recency x event)."""
        return _sorted(self.seen @ self.signals.transitions)

    @cached_property
    def neighbour_share(self) -> sp.csr_matrix:
        """(shoppers x items) session-kNN: the weighted share of the nearest sequences holding each item."""
        return neighbour_shares(self.seen, self.signals.sequences, self.signals.session_neighbours,
                                self.signals.sequences_by_item)

    def known(self, row: int) -> np.ndarray:
        """The shopper's distinct known items, ascending."""
        return self.seen.indices[self.seen.indptr[row] : self.seen.indptr[row + 1]]


def describe_shoppers(
    contexts: Sequence[UserContext],
    items: ItemState,
    signals: BehaviourSignals,
    encode_texts: Callable[[list[str]], np.ndarray] | None,
    decay: float,
    max_interests: int,
) -> ShopperBatch:
    n_users, n_items = len(contexts), len(items)
    profiles = build_interest_profiles(contexts, items.vectors, encode_texts, decay, max_interests)
    lengths = [len(c.items) for c in contexts]
    rows = np.repeat(np.arange(n_users), lengths)
    cols = np.concatenate([np.asarray(c.items, np.int64) for c in contexts]) if sum(lengths) else np.zeros(0, np.int64)
    data = np.concatenate([item_weights(c, decay) for c in contexts]) if sum(lengths) else np.zeros(0, np.float32)
    seen = sp.csr_matrix((data, (rows, cols)), shape=(n_users, n_items), dtype=np.float32)
    seen.sum_duplicates()
    seen.sort_indices()

    category_share = np.zeros((n_users, len(items.category_names)), np.float64)
    brand_share = np.zeros((n_users, int(items.brand.max(initial=0)) + 1), np.float64)
    factors = np.zeros((n_users, signals.item_factors.shape[1]), np.float32)
    for row, context in enumerate(contexts):
        start, end = seen.indptr[row], seen.indptr[row + 1]
        known, weight = seen.indices[start:end], seen.data[start:end].astype(np.float64)
        total = float(weight.sum())
        if total > 0:
            np.add.at(category_share[row], items.category[known], weight / total)
            np.add.at(brand_share[row], items.brand[known], weight / total)
        for text in context.interests:  # a stated interest naming a category counts in full
            code = items.category_code(text)
            if code is not None:
                category_share[row, code] = 1.0
        if len(known):
            factors[row] = signals.fold_in(known)
    binary = sp.csr_matrix((np.ones(len(seen.data), np.float32), seen.indices, seen.indptr), shape=seen.shape)
    knn = sp.csr_matrix(binary @ signals.similarity, dtype=np.float32)
    knn.sum_duplicates()
    knn.sort_indices()
    last = np.array([int(c.items[-1]) if len(c.items) else -1 for c in contexts], np.int64)
    if getattr(signals, "timed", True):
        gap = np.array([((c.now or signals.now) - signals.now) / DAY for c in contexts], np.float32)
    else:  # no clock: a request has no gap to the fit
        gap = np.full(n_users, np.nan, np.float32)
    return ShopperBatch(
        contexts=contexts,
        profiles=profiles,
        seen=seen,
        category_share=category_share,
        brand_share=brand_share,
        user_factors=factors,
        knn=knn,
        last=last,
        n_known=np.diff(seen.indptr).astype(np.float32),
        has_stated=np.array([bool(c.interests or c.queries) for c in contexts], np.float32),
        gap_days=gap,
        signals=signals,
    )


def _sorted(matrix: sp.csr_matrix) -> sp.csr_matrix:
    out = sp.csr_matrix(matrix, dtype=np.float32)
    out.sum_duplicates()
    out.sort_indices()
    return out
