"""A first visit: the list a shopper gets when nothing is known about them (no item, no stated interest, no
query). Every such shopper gets the same list, so the choice is between whole lists: the ranker's, or one of
the popularity orderings (all-time; on a timed log also the last 30 days and decayed). It is made on shoppers
of the inner cut's future that the ranker did not learn from (`hold_out_first_visitors`), by NDCG@10: a shop's
first visitors get its best popularity list unless the ranker's list was better beyond chance. Under
differential privacy the ranker's list is not a candidate, and each popularity ordering is judged over
simulated draws of the release's noise (`ColdStartRecommender._first_visit_lists`).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from coldrec.data.context import UserContext
from coldrec.data.split import Segment, Split

RANKER = "ranker"
#: the popularity orderings by the `BehaviourSignals` array they read (the timed ones only on a timed log)
POPULARITY_LISTS = ("pop", "pop30", "decayed_pop")
UNTIMED_POPULARITY_LISTS = ("pop",)
FIRST_VISITORS = "cold k=0"
#: under differential privacy, each popularity ordering is judged over this many simulated noise draws
NOISE_DRAWS = 10


def nothing_known(context: UserContext) -> bool:
    return not len(context.items) and not context.interests and not context.queries


def hold_out_first_visitors(inner: Split) -> tuple[Split, Segment | None]:
    """`inner` with every other shopper of its k=0 segment held out (the ranker learns from the rest), and the
    held-out ones (None when the cut has no k=0 segment)."""
    segment = inner.segments.get(FIRST_VISITORS)
    if segment is None or len(segment) < 2:
        return inner, None
    rows = np.arange(len(segment))
    learn, choose = (_subset(segment, rows[rows % 2 == parity]) for parity in (0, 1))
    return replace(inner, segments={**inner.segments, FIRST_VISITORS: learn}), choose


def _subset(segment: Segment, rows: np.ndarray) -> Segment:
    return Segment(segment.name, [segment.contexts[r] for r in rows], [segment.targets[r] for r in rows],
                   [segment.exclude[r] for r in rows])


def choose_first_visit_list(lists: dict[str, np.ndarray], shoppers: Segment | None,
                            tie_break: np.ndarray) -> tuple[str, dict[str, float]]:
    """The name of the list (scores over every position) first visitors get, and each list's mean NDCG@10 on
    `shoppers`. A list may also be several draws of it (draws x positions: what a noisy release could give),
    a shopper's NDCG@10 then being the mean over the draws.

    Popularity is the default: the popularity ordering with the best mean NDCG@10 (ties: the earlier in
    `lists`). The ranker's list replaces it only where it earns it, with the 95% interval of the paired
    per-shopper difference above 0: a few hundred held-out first visitors can favour either by chance, and a
    first visit should not get less than popularity gives. Without shoppers: the first popularity ordering.
    """
    popular = [name for name in lists if name != RANKER]
    if not popular:
        return RANKER, {}
    if shoppers is None or not len(shoppers):
        return popular[0], {}
    gains = {name: np.mean([_ndcg_per_shopper(draw, shoppers, tie_break) for draw in np.atleast_2d(values)], axis=0)
             for name, values in lists.items()}
    quality = {name: float(values.mean()) for name, values in gains.items()}
    best = max(popular, key=lambda name: (quality[name], -popular.index(name)))
    if RANKER in gains and _lower_bound(gains[RANKER] - gains[best]) > 0:
        return RANKER, quality
    return best, quality


def popularity_ranks(values: np.ndarray, pop: np.ndarray) -> np.ndarray:
    """A released (noisy) popularity ordering as scores: noisy counts tie (at 0 above all), broken here as
    `rank` breaks them, by the released all-time popularity `pop`, then position, so that no caller breaks them
    by exact counts."""
    order = np.lexsort((np.arange(len(values)), -np.asarray(pop[: len(values)]), -np.asarray(values)))
    ranks = np.empty(len(values), np.float32)
    ranks[order] = np.arange(len(values), 0, -1, dtype=np.float32) / len(values)
    return ranks


def _lower_bound(differences: np.ndarray, z: float = 1.96) -> float:
    """The lower end of the normal 95% interval of the mean of paired differences (-inf below two)."""
    if len(differences) < 2:
        return float("-inf")
    return float(differences.mean() - z * differences.std(ddof=1) / np.sqrt(len(differences)))


def _ndcg_per_shopper(values: np.ndarray, shoppers: Segment, tie_break: np.ndarray, n: int = 10) -> np.ndarray:
    order = np.lexsort((tie_break, -np.asarray(values, np.float64)))
    gains = 1.0 / np.log2(np.arange(2, n + 2))
    out = np.zeros(len(shoppers))
    for row, (targets, excluded) in enumerate(zip(shoppers.targets, shoppers.exclude, strict=True)):
        head = order[: n + len(excluded)]
        top = head[~np.isin(head, excluded)][:n]
        hits = np.isin(top, targets)
        out[row] = gains[: len(top)][hits].sum() / gains[: min(len(np.unique(targets)), n)].sum()
    return out
