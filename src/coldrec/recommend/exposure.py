"""Which items crowd a model's lists: the shoppers whose lists are counted (`exposure_contexts`).

A model's exposure is the share of its lists each item takes (`coldrec.rank.diversity.list_exposure`), counted
over the lists it gives a sample of the fit log's shoppers, each known by a random number (1 to
`MAX_KNOWN_ITEMS`) of their latest items: the mix of one-click, few-click and known shoppers a shop serves. The
`spread` of a list re-rank lowers the items that exposure finds in nearly every list.
"""

from __future__ import annotations

import numpy as np

from coldrec.data.context import UserContext
from coldrec.data.interactions import InteractionLog

#: shoppers sampled from the fit log (all of them where fewer)
SHOPPERS = 2_000
#: a sampled shopper is known by their latest 1 to this many items
MAX_KNOWN_ITEMS = 10


def exposure_contexts(log: InteractionLog, now: int | None = None, random_state: int | None = 0,
                      shoppers: int = SHOPPERS) -> list[UserContext]:
    """Up to `shoppers` of the log's shoppers (seeded), each as a context of their latest 1 to `MAX_KNOWN_ITEMS`
    events in time order (the count drawn per shopper), at request time `now`."""
    if not len(log):
        return []
    order = np.lexsort((log.order, log.time, log.user))
    user, item, when, event = (np.asarray(a)[order] for a in (log.user, log.item, log.time, log.event))
    starts = np.flatnonzero(np.r_[True, user[1:] != user[:-1]])
    ends = np.r_[starts[1:], len(user)]
    rng = np.random.default_rng(random_state)
    chosen = np.sort(rng.choice(len(starts), min(len(starts), shoppers), replace=False))
    known = rng.integers(1, MAX_KNOWN_ITEMS + 1, size=len(chosen))
    contexts = []
    for shopper, count in zip(chosen, known, strict=True):
        first = max(starts[shopper], ends[shopper] - count)
        rows = slice(first, ends[shopper])
        contexts.append(UserContext(items=item[rows], times=when[rows], events=event[rows], now=now))
    return contexts
