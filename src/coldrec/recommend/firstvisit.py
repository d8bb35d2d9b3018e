"""A first visit: the list a shopper gets when nothing is known about them (no item, no stated interest, no
query). Every such shopper gets the same list, so the choice is between whole lists: the ranker's, or one of
the popularity orderings (all-time; on a timed log also the last 30 days and decayed). It is made on shoppers
of the inner cut's future that the ranker did not learn from (`hold_out_first_visitors`), by NDCG@10, so a
shop's first visitors get at least what its best popularity list gives unless the ranker did better.
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
    """The name of the list (scores over every position) with the best mean NDCG@10 on `shoppers` (ties: the
    earlier in `lists`), and each list's NDCG@10. Without shoppers: the first list."""
    names = list(lists)
    if shoppers is None or not len(shoppers):
        return names[0], {}
    quality = {name: _mean_ndcg(values, shoppers, tie_break) for name, values in lists.items()}
    best = max(names, key=lambda name: (quality[name], -names.index(name)))
    return best, quality


def _mean_ndcg(values: np.ndarray, shoppers: Segment, tie_break: np.ndarray, n: int = 10) -> float:
    order = np.lexsort((tie_break, -np.asarray(values, np.float64)))
    gains = 1.0 / np.log2(np.arange(2, n + 2))
    total = 0.0
    for targets, excluded in zip(shoppers.targets, shoppers.exclude, strict=True):
        head = order[: n + len(excluded)]
        top = head[~np.isin(head, excluded)][:n]
        hits = np.isin(top, targets)
        total += float(gains[: len(top)][hits].sum() / gains[: min(len(np.unique(targets)), n)].sum())
    return total / len(shoppers)
