"""`BehaviourSignals`: the behaviour-side evidence fitted on one log (the inner cut, then everything).

Popularity overall, in the last 30 days and decayed, each item's event count and age, its share of
its category's popularity, implicit ALS item factors (a shopper is folded in per request) and the
item-kNN co-occurrence matrix, the directed transitions (what came next after each item) and each
user's recent sequence (the neighbours of session-kNN, `coldrec.recommend.sequential`). Popularities
are scale-free (a share of the most popular item's), so a ranker trained on a shorter past applies
unchanged to the whole past. On a log without
timestamps (`InteractionLog.timed` False) the time-derived arrays (30-day and decayed popularity,
age) are NaN: not computed from positions standing in for times, and no feature reads them.

With a `PrivacyBudget` the popularity arrays (overall, 30-day, decayed, per category, the event counts) and the
item-kNN co-occurrence come from one differentially private release (`coldrec.privacy.aggregates`; the account
is `privacy_release`) instead of the exact counts, and item age (the time of an item's first event: one shopper's
event) is not computed. ALS factors, transitions and sequences are fitted on the log as it is.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from coldrec.data.catalog import ItemCatalog
from coldrec.data.interactions import InteractionLog
from coldrec.model.registry import register_class
from coldrec.privacy.aggregates import NoisyPopularity, PrivacyBudget
from coldrec.recommend.rows import grow_fields, reserve_fields
from coldrec.recommend.sequential import (
    directed_transitions,
    recent_sequences,
    sequences_by_item,
    with_more_columns,
)

DAY = 86_400

#: per-item arrays and their value for an item without behaviour
PER_ITEM = (
    ("pop", 0.0), ("pop30", 0.0), ("events", 0.0), ("decayed_pop", 0.0), ("category_pop_share", 0.0),
    ("borrowed_pop", 0.0), ("age_days", np.nan), ("item_factors", 0.0),
)


@register_class
class BehaviourSignals:
    """Behaviour evidence per catalog position; `fold_in` turns a shopper's known items into ALS factors."""

    __transient__ = ("_buffers", "_gram", "_sequences_by_item")

    def __init__(
        self,
        log: InteractionLog,
        catalog: ItemCatalog,
        now: int,
        category: np.ndarray,
        *,
        als_factors: int = 64,
        knn_neighbours: int | None = 200,
        transition_window: int = 3,
        sequence_length: int = 50,
        session_neighbours: int = 100,
        random_state: int = 0,
        privacy: PrivacyBudget | None = None,
    ):
        from coldrec.recommend.baselines.als import ALSRecommender
        from coldrec.recommend.baselines.itemknn import ItemKNNRecommender, knn_similarity

        n = len(catalog)
        self.now = int(now)
        #: were the events timestamped? (else the time-derived arrays below are NaN)
        self.timed = bool(log.timed)
        #: what the differentially private release spent and gave (None: exact counts)
        self.privacy_release: dict | None = None
        if privacy is not None:
            from coldrec.privacy.aggregates import release

            popularity, co_counts, account = release(log, n, self.now if self.timed else None, privacy)
            self.privacy_release = account.to_dict()
            buyers = popularity.distinct
            for name, values in popularity_from_release(popularity, self.timed).items():
                setattr(self, name, values)
            self.events = np.log1p(buyers)
        else:
            self.pop = _share_of_max(np.log1p(log.distinct_users_per_item(n)))
            self.events = np.log1p(np.bincount(log.item, minlength=n).astype(np.float32))
            if self.timed:
                self._fit_times(log, n)
        if not self.timed:
            self.pop30, self.age_days, self.decayed_pop = (np.full(n, np.nan, np.float32) for _ in range(3))
        elif privacy is not None:
            self.age_days = np.full(n, np.nan, np.float32)
        sold = np.expm1(self.pop)
        by_category = np.bincount(category, weights=sold, minlength=int(category.max(initial=0)) + 1)
        self.category_pop_share = (sold / np.maximum(by_category[category], 1e-9)).astype(np.float32)
        als = ALSRecommender(factors=als_factors, regularization=0.1, alpha=10.0, random_state=random_state)
        als.fit(log, catalog, now=now)
        self.item_factors = np.ascontiguousarray(als.item_factors, np.float32)
        self.regularization, self.alpha = float(als.regularization), float(als.alpha)
        #: (known item, target item): a shopper's item-kNN scores are the sum of their known items' rows
        if privacy is None:
            self.similarity = ItemKNNRecommender(neighbours=knn_neighbours, shrink=10.0).fit(
                log, catalog, now=now).similarity
        else:  # buyers at least 1: a released pair's items were bought, whatever noise their own counts drew
            self.similarity = knn_similarity(co_counts, np.maximum(buyers, 1.0), 10.0, knn_neighbours)
        self.borrowed_pop = self.pop.copy()
        #: (from item, to item) shares of what followed each item within `transition_window` steps
        self.transitions = directed_transitions(log, n, transition_window, now=now)
        #: (user, item) each user's last `sequence_length` distinct items
        self.sequences = recent_sequences(log, n, sequence_length)
        #: how many of those sequences a shopper's session-kNN scores come from
        self.session_neighbours = int(session_neighbours)

    def _fit_times(self, log: InteractionLog, n: int) -> None:
        """Popularity in the last 30 days, with a 90-day half-life, and each item's age, at `now`."""
        now = self.now
        recent = (log.time > now - 30 * DAY) & (log.time <= now)
        self.pop30 = _share_of_max(np.log1p(log.select(recent).distinct_users_per_item(n)))
        first = np.full(n, np.inf)
        np.minimum.at(first, log.item, log.time.astype(np.float64))
        self.age_days = np.where(np.isfinite(first), (now - first) / DAY, np.nan).astype(np.float32)
        # popularity with a 90-day half-life: what sells now, smoother than a 30-day window
        decay = np.exp2(-(now - log.time) / (90 * DAY)).astype(np.float32)
        self.decayed_pop = _share_of_max(np.log1p(np.bincount(log.item, weights=decay, minlength=n)))

    def __len__(self) -> int:
        return len(self.pop)

    def borrow_for_new_items(self, vectors: np.ndarray, k: int) -> None:
        """Pseudo-behaviour for items nobody has bought yet, from their nearest established items.

        A new item's ALS factors, co-occurrence rows and columns and popularity are the
        text-similarity-weighted mean of those of its k nearest established items (by the
        encoder's vectors), so "bought with X" evidence reaches a new variant of X the moment it
        is listed. `events` stays 0: the ranker still knows it is new.
        """
        established = np.flatnonzero(self.events > 0)
        new = np.flatnonzero(self.events == 0)
        if not len(new) or not len(established):
            return
        k = min(k, len(established))
        similarity = vectors[new] @ vectors[established].T
        top = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
        weights = np.clip(np.take_along_axis(similarity, top, axis=1), 0, None)
        weights /= np.maximum(weights.sum(axis=1, keepdims=True), 1e-12)
        n = len(self.events)
        # borrow[i, j]: how much item i takes from item j (identity for established items)
        borrow = sp.csr_matrix(
            (
                np.concatenate([np.ones(len(established), np.float32), weights.ravel().astype(np.float32)]),
                (np.concatenate([established, np.repeat(new, k)]),
                 np.concatenate([established, established[top].ravel()])),
            ),
            shape=(n, n),
        )
        self.item_factors[new] = borrow[new] @ self.item_factors
        self.similarity = sp.csr_matrix(borrow @ self.similarity @ borrow.T, dtype=np.float32)
        self.borrowed_pop = (borrow @ self.pop).astype(np.float32)
        self._gram: tuple[int, np.ndarray] | None = None  # (items, the factors' Gram matrix + regularisation)

    def fold_in(self, known: np.ndarray) -> np.ndarray:
        """One shopper's ALS factors from their distinct known items: implicit's least-squares solve
        (confidence alpha per known item), as `implicit` computes it for a new user."""
        y = np.asarray(self.item_factors[known], np.float64)
        gram = getattr(self, "_gram", None)
        if gram is None or gram[0] != len(self.item_factors):
            factors = np.asarray(self.item_factors, np.float64)
            gram = self._gram = (len(self.item_factors),
                                 factors.T @ factors + self.regularization * np.eye(factors.shape[1]))
        a = gram[1] + (self.alpha - 1.0) * (y.T @ y)
        return np.linalg.solve(a, self.alpha * y.sum(axis=0)).astype(np.float32)

    @property
    def sequences_by_item(self) -> sp.csr_matrix:
        """(items x sequences) the session-kNN neighbours by item (`coldrec.recommend.sequential.sequences_by_item`),
        built on first use and again after the catalog grows."""
        by_item = self.__dict__.get("_sequences_by_item")
        if by_item is None:
            by_item = self._sequences_by_item = sequences_by_item(self.sequences)
        return by_item

    def grow(self, count: int) -> None:
        """`count` more positions without behaviour (a new item: no popularity, events, age, factors or co-buyers)."""
        if not count:
            return
        grow_fields(self, PER_ITEM, count)
        self.similarity = with_more_columns(self.similarity, count, rows_too=True)
        if hasattr(self, "transitions"):  # a model saved before the sequential evidence has neither
            self.transitions = with_more_columns(self.transitions, count, rows_too=True)
            self.sequences = with_more_columns(self.sequences, count)
            self.__dict__.pop("_sequences_by_item", None)

    def reserve(self, count: int) -> None:
        """Room for `count` more positions (contents unchanged: safe while others read)."""
        reserve_fields(self, PER_ITEM, count)


def popularity_from_release(popularity: NoisyPopularity, timed: bool) -> dict[str, np.ndarray]:
    """The popularity arrays read off a release: `pop`, and on a timed log `pop30` and `decayed_pop`."""
    out = {"pop": _share_of_max(np.log1p(popularity.distinct))}
    if timed:
        out["pop30"] = _share_of_max(np.log1p(popularity.recent))
        out["decayed_pop"] = _share_of_max(np.log1p(popularity.decayed))
    return out


def _share_of_max(values: np.ndarray) -> np.ndarray:
    top = values.max() if len(values) else 0.0
    return (values / top if top > 0 else values).astype(np.float32)
