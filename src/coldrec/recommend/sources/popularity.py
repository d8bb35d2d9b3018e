"""Popularity: the shop's best sellers, overall and in the last 30 days; and the new arrivals.

Without timestamps there is no last 30 days (the popularity source proposes the overall best sellers
alone) and no "latest listed" (coldrec leaves the new-arrivals source out: `TIMED_SOURCES`).
"""

from __future__ import annotations

import numpy as np

from coldrec.recommend.shoppers import ShopperBatch
from coldrec.recommend.sources.base import Candidates, CandidateSource, per_row, top_positive

#: The new-arrivals source looks at most this many of the latest items nobody has bought yet.
NEW_ARRIVALS_POOL = 2048
#: sources whose idea needs timestamps: left out of a model fitted on a log without them
TIMED_SOURCES = frozenset({"new_arrivals"})


class PopularitySource(CandidateSource):
    """The k most popular items overall and the k most popular of the last 30 days (timed logs), for every
    shopper."""

    name = "popularity"

    def popular(self, k: int) -> np.ndarray:
        def build():
            return {}

        cache = self._derived(build)
        if k not in cache:
            n = len(self.state)
            timed = getattr(self.signals, "timed", True)
            pops = (self.signals.pop, self.signals.pop30) if timed else (self.signals.pop,)
            top = [np.argsort(-p[:n], kind="stable")[:k] for p in pops]
            cache[k] = np.unique(np.concatenate(top))
        return cache[k]

    def candidates(self, shoppers: ShopperBatch, k: int) -> Candidates:
        items = self.popular(k)
        return Candidates(np.repeat(np.arange(len(shoppers)), len(items)), np.tile(items, len(shoppers)),
                          np.zeros(len(shoppers) * len(items), np.float32))


class NewArrivalsSource(CandidateSource):
    """Among the latest items nobody has bought yet (listed, not removed; `NEW_ARRIVALS_POOL` at most), the k
    closest to the shopper's interests or stated words. Only text reaches them otherwise, through lists ranked
    over the whole catalog where established items crowd them out."""

    name = "new_arrivals"

    def arrivals(self) -> tuple[np.ndarray, np.ndarray]:
        """The pool (latest listed first) and its vectors (contiguous: gathered once, not per request)."""

        def build():
            n = len(self.state)
            new = np.flatnonzero((self.signals.events[:n] == 0) & ~self.state.removed)
            new = np.ascontiguousarray(new[::-1][:NEW_ARRIVALS_POOL])
            return new, np.ascontiguousarray(self.state.vectors[new])

        return self._derived(build)

    def candidates(self, shoppers: ShopperBatch, k: int) -> Candidates:
        pool, vectors = self.arrivals()
        if not len(pool):
            return Candidates.empty()
        profiles = shoppers.profiles
        queries = np.concatenate([profiles.interests, profiles.stated[:, None]], axis=1)  # (shoppers, m + 1, d)
        closeness = (vectors @ queries.reshape(-1, queries.shape[-1]).T).reshape(len(pool), len(shoppers), -1)
        best = closeness.max(axis=2)  # (pool, shoppers)
        lists, values = [], []
        for row in range(len(shoppers)):
            picked = top_positive(best[:, row], k)
            lists.append(pool[picked])
            values.append(best[picked, row])
        return per_row(lists, values)
