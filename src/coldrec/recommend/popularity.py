"""Popularity recommenders: overall, recent, and within the shopper's stated categories."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from coldrec.data.catalog import ItemCatalog
from coldrec.data.interactions import InteractionLog
from coldrec.recommend.base import Recommender, UserContext

DAY = 86_400


class PopularityRecommender(Recommender):
    """Most popular in the past: distinct users per item."""

    name = "pop"

    def _fit(self, log, catalog, profiles):
        self.popularity_ = log.distinct_users_per_item(len(catalog))

    def score(self, contexts: Sequence[UserContext]) -> np.ndarray:
        return np.broadcast_to(self.popularity_, (len(contexts), len(self.popularity_))).copy()


class RecentPopularityRecommender(PopularityRecommender):
    """Most popular in the window (now - window_days, now]."""

    name = "pop30"

    def __init__(self, window_days: int = 30):
        self.window_days = window_days

    def _fit(self, log, catalog, profiles):
        recent = (log.time > self.now - self.window_days * DAY) & (log.time <= self.now)
        self.popularity_ = log.select(recent).distinct_users_per_item(len(catalog))


class CategoryPopularityRecommender(Recommender):
    """Most popular within the shopper's categories, then everything else by popularity.

    Categories are the stated interests matching a catalog leaf category (case-insensitive);
    a shopper who stated none is given the categories of the items they interacted with.
    """

    name = "popcat"

    def _fit(self, log: InteractionLog, catalog: ItemCatalog, profiles):
        self.popularity_ = log.distinct_users_per_item(len(catalog))
        leaves = np.char.lower(catalog.leaf_categories().astype(str))
        self.category_names_, self.item_category_ = np.unique(leaves, return_inverse=True)
        self.lookup_ = {name: code for code, name in enumerate(self.category_names_)}

    def score(self, contexts: Sequence[UserContext]) -> np.ndarray:
        n_items = len(self.popularity_)
        rows, cols = [], []
        for row, context in enumerate(contexts):
            codes = {self.lookup_[t.lower()] for t in context.interests if t.lower() in self.lookup_}
            if not codes and len(context.items):
                codes = set(self.item_category_[context.items].tolist())
            rows += [row] * len(codes)
            cols += sorted(codes)
        user_categories = sp.csr_matrix(
            (np.ones(len(rows), np.float32), (rows, cols)), shape=(len(contexts), len(self.category_names_))
        )
        item_categories = sp.csr_matrix(
            (np.ones(n_items, np.float32), (self.item_category_, np.arange(n_items))),
            shape=(len(self.category_names_), n_items),
        )
        in_category = (user_categories @ item_categories).toarray() > 0
        return (in_category * (self.popularity_.max() + 1) + self.popularity_).astype(np.float32)
