"""The one feature function over (shopper, candidate) pairs: batch evaluation and a single request alike.

Each `Feature` names itself, says which kind of evidence it is (`group`: the reasons a served
item gives are read from the groups) and computes its column for any set of pairs. Adding a
feature is one entry in `FEATURES`. Features read from timestamps (`TIMED_FEATURES`: a 30-day
window, decayed popularity, item age, the request's gap) are absent where the log has none
(`feature_names(timed=False)`): never computed from positions standing in for times. Every
column is computed shopper by shopper (one small matrix product each for the text and ALS
scores), so a shopper's values do not depend on which other shoppers share the batch: a
request is a batch of one, with the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from coldrec.recommend.items import ItemState
from coldrec.recommend.shoppers import ShopperBatch
from coldrec.recommend.signals import BehaviourSignals

#: the groups a reason can come from
HISTORY, STATED, CATEGORY, POPULARITY, NEWNESS, SHOPPER = (
    "history", "stated", "category", "popularity", "newness", "shopper",
)


@dataclass
class Pairs:
    """(shopper row, item position) pairs with everything a feature reads."""

    rows: np.ndarray
    items: np.ndarray
    shoppers: ShopperBatch
    state: ItemState
    signals: BehaviourSignals

    @cached_property
    def text_scores(self) -> np.ndarray:
        """(pairs x (interests + 3)): the item's cosine to each interest vector (0 for an empty slot), to the
        mean, to the stated vector and to the most recent known item (0 when there is none)."""
        profiles, vectors = self.shoppers.profiles, self.state.vectors
        last = self.shoppers.last
        recent = np.where((last >= 0)[:, None], vectors[np.maximum(last, 0)], 0.0).astype(np.float32)
        queries = np.concatenate(
            [profiles.interests, profiles.mean[:, None], profiles.stated[:, None], recent[:, None]], axis=1
        )
        return self._per_shopper_products(queries, vectors)

    @cached_property
    def als_scores(self) -> np.ndarray:
        """(pairs,): user factors . item factors (0 for a shopper without known items)."""
        return self._per_shopper_products(self.shoppers.user_factors[:, None], self.signals.item_factors)[:, 0]

    def _per_shopper_products(self, queries: np.ndarray, table: np.ndarray) -> np.ndarray:
        """(pairs x q): `table[item] . queries[shopper, j]`, one small matrix product per shopper. A shopper's
        numbers come from the same product whatever else is in the batch: batch and single request agree."""
        out = np.zeros((len(self.rows), queries.shape[1]), np.float32)
        bounds = np.searchsorted(self.rows, np.arange(len(self.shoppers) + 1))
        for row in range(len(self.shoppers)):
            start, end = bounds[row], bounds[row + 1]
            if end > start:
                out[start:end] = table[self.items[start:end]] @ queries[row].T
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


def _interests(p: Pairs) -> np.ndarray:
    return p.text_scores[:, : p.shoppers.profiles.interests.shape[1]]


def _interest_weight(p: Pairs) -> np.ndarray:
    return p.shoppers.profiles.weights[p.rows, np.argmax(_interests(p), axis=1)]


FEATURES: tuple[Feature, ...] = (
    Feature("text_interest_max", HISTORY, lambda p: _interests(p).max(axis=1)),
    Feature("text_interest_weight", HISTORY, _interest_weight),
    Feature("text_mean", HISTORY, lambda p: p.text_scores[:, -3]),
    Feature("text_last", HISTORY, lambda p: p.text_scores[:, -1]),
    Feature("text_stated", STATED, lambda p: p.text_scores[:, -2]),
    Feature("category_share", CATEGORY, lambda p: p.shoppers.category_share[p.rows, p.state.category[p.items]]),
    Feature("brand_share", HISTORY,
            lambda p: p.shoppers.brand_share[p.rows, p.state.brand[p.items]] * p.state.has_brand[p.items]),
    Feature("als", HISTORY, lambda p: p.als_scores),
    Feature("itemknn", HISTORY, lambda p: p.gather(p.shoppers.knn)),
    Feature("seen_weight", HISTORY, lambda p: p.gather(p.shoppers.seen)),
    Feature("transition", HISTORY, lambda p: p.gather(p.shoppers.following)),
    Feature("session_knn", HISTORY, lambda p: p.gather(p.shoppers.neighbour_share)),
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
#: the features of a pipeline saved before pipelines recorded their feature names (all there were then)
LEGACY_FEATURE_NAMES = tuple(name for name in FEATURE_NAMES if name not in ("transition", "session_knn"))
FEATURES_BY_NAME = {feature.name: feature for feature in FEATURES}
#: features that read timestamps (windows, decays, ages, gaps): left out on a log without them
TIMED_FEATURES = frozenset({"log_pop30", "item_age_days", "decayed_pop", "request_gap_days"})


def feature_names(timed: bool = True, leave_out: Collection[str] = ()) -> tuple[str, ...]:
    """The features a model fitted on a timed (or untimed) log uses, in `FEATURES` order, without `leave_out`."""
    absent = set(leave_out) | (set() if timed else TIMED_FEATURES)
    return tuple(name for name in FEATURE_NAMES if name not in absent)


def features_named(names: tuple[str, ...]) -> tuple[Feature, ...]:
    return tuple(FEATURES_BY_NAME[name] for name in names)


def feature_matrix(pairs: Pairs, features: tuple[Feature, ...] = FEATURES) -> np.ndarray:
    """(pairs x features) float32, columns in `features` order."""
    out = np.zeros((len(pairs.rows), len(features)), np.float32)
    for column, feature in enumerate(features):
        out[:, column] = feature.compute(pairs)
    return out


def columns_of(group: str, features: tuple[Feature, ...] = FEATURES) -> np.ndarray:
    """Column numbers of the features in `group`."""
    return np.array([i for i, feature in enumerate(features) if feature.group == group], np.int64)
