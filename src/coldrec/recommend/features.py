"""The one feature function over (shopper, candidate) pairs: batch evaluation and a single request alike.

Each `Feature` names itself, says which kind of evidence it is (`group`: the reasons a served
item gives are read from the groups) and computes its column for any set of pairs. Adding a
feature is one entry in `FEATURES`. Every column is computed pair by pair (element-wise
products and row sums, no matrix products across pairs), so a shopper's values do not depend on
which other shoppers share the batch: a request is a batch of one, with the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from coldrec.recommend.items import ItemState
from coldrec.recommend.shoppers import ShopperBatch
from coldrec.recommend.signals import BehaviourSignals

#: the groups a reason can come from
HISTORY, STATED, CATEGORY, POPULARITY, NEWNESS, SHOPPER = "history", "stated", "category", "popularity", "newness", "shopper"
#: pairs per chunk of the (pairs x dim) products: bounds their memory on big batches
CHUNK = 8192


@dataclass
class Pairs:
    """(shopper row, item position) pairs with everything a feature reads."""

    rows: np.ndarray
    items: np.ndarray
    shoppers: ShopperBatch
    state: ItemState
    signals: BehaviourSignals

    def dot(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        """Row-wise inner products of `left[rows]` (per shopper) and `right[items]` (per item)."""
        out = np.zeros(len(self.rows), np.float32)
        for start in range(0, len(self.rows), CHUNK):
            part = slice(start, start + CHUNK)
            out[part] = (left[self.rows[part]] * right[self.items[part]]).sum(axis=-1)
        return out

    @cached_property
    def interest_scores(self) -> np.ndarray:
        """(pairs x interests): the item's cosine to each of the shopper's interest vectors (0 for an empty slot)."""
        interests = self.shoppers.profiles.interests
        out = np.zeros((len(self.rows), interests.shape[1]), np.float32)
        vectors = self.state.vectors
        for start in range(0, len(self.rows), CHUNK):
            part = slice(start, start + CHUNK)
            out[part] = (interests[self.rows[part]] * vectors[self.items[part]][:, None, :]).sum(axis=-1)
        return out

    def per_shopper(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(values, np.float32)[self.rows]

    def gather(self, matrix) -> np.ndarray:
        """Entries (row, item) of a sparse (shoppers x items) matrix."""
        return np.asarray(matrix[self.rows, self.items], np.float32).ravel()


@dataclass(frozen=True)
class Feature:
    name: str
    group: str
    compute: Callable[[Pairs], np.ndarray]


def _interest_max(p: Pairs) -> np.ndarray:
    return p.interest_scores.max(axis=1)


def _interest_weight(p: Pairs) -> np.ndarray:
    best = np.argmax(p.interest_scores, axis=1)
    return p.shoppers.profiles.weights[p.rows, best]


def _text_last(p: Pairs) -> np.ndarray:
    last = p.shoppers.last
    values = p.dot(p.state.vectors[np.maximum(last, 0)], p.state.vectors)
    return np.where(last[p.rows] >= 0, values, 0.0)


FEATURES: tuple[Feature, ...] = (
    Feature("text_interest_max", HISTORY, _interest_max),
    Feature("text_interest_weight", HISTORY, _interest_weight),
    Feature("text_mean", HISTORY, lambda p: p.dot(p.shoppers.profiles.mean, p.state.vectors)),
    Feature("text_last", HISTORY, _text_last),
    Feature("text_stated", STATED, lambda p: p.dot(p.shoppers.profiles.stated, p.state.vectors)),
    Feature("category_share", CATEGORY, lambda p: p.shoppers.category_share[p.rows, p.state.category[p.items]]),
    Feature("brand_share", HISTORY,
            lambda p: p.shoppers.brand_share[p.rows, p.state.brand[p.items]] * p.state.has_brand[p.items]),
    Feature("als", HISTORY, lambda p: p.dot(p.shoppers.user_factors, p.signals.item_factors)),
    Feature("itemknn", HISTORY, lambda p: p.gather(p.shoppers.knn)),
    Feature("seen_weight", HISTORY, lambda p: p.gather(p.shoppers.seen)),
    Feature("log_pop", POPULARITY, lambda p: p.signals.pop[p.items]),
    Feature("log_pop30", POPULARITY, lambda p: p.signals.pop30[p.items]),
    Feature("log_item_events", NEWNESS, lambda p: p.signals.events[p.items]),
    Feature("borrowed_pop", POPULARITY, lambda p: p.signals.borrowed_pop[p.items]),
    Feature("item_age_days", NEWNESS, lambda p: p.signals.age_days[p.items]),
    Feature("decayed_pop", POPULARITY, lambda p: p.signals.decayed_pop[p.items]),
    Feature("category_pop_share", POPULARITY, lambda p: p.signals.category_pop_share[p.items]),
    Feature("log_user_items", SHOPPER, lambda p: p.per_shopper(np.log1p(p.shoppers.n_known))),
    Feature("request_gap_days", SHOPPER, lambda p: p.per_shopper(p.shoppers.gap_days)),
    Feature("has_stated", STATED, lambda p: p.per_shopper(p.shoppers.has_stated)),
)
FEATURE_NAMES = tuple(feature.name for feature in FEATURES)


def feature_matrix(pairs: Pairs, features: tuple[Feature, ...] = FEATURES) -> np.ndarray:
    """(pairs x features) float32, columns in `features` order."""
    out = np.zeros((len(pairs.rows), len(features)), np.float32)
    for column, feature in enumerate(features):
        out[:, column] = feature.compute(pairs)
    return out


def columns_of(group: str, features: tuple[Feature, ...] = FEATURES) -> np.ndarray:
    """Column numbers of the features in `group`."""
    return np.array([i for i, feature in enumerate(features) if feature.group == group], np.int64)
