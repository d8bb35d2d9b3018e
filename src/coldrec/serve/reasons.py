"""A short reason per recommended item, from the model's `Explanation` of it.

The strongest kind of evidence names the reason (coldrec sums LightGBM's SHAP values per group of
features; see `coldrec.recommend.explaining`):

- history (text similarity to what was seen, co-occurrence, ALS, brand): "because you
  viewed|bought|added to cart X", X the known item closest to the recommended one;
- stated interests and queries: "matches your interest Y", Y the closest interest;
- popularity: "popular in <leaf category>";
- an item without events: "new arrival", unless history or interest explains it more.

Search results say how they match (`coldrec.serve.matching`): `MATCHES_SEARCH` when they share a
word (or most of its letters) with the query, `RELATED_TO_SEARCH` when only their meaning is close.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from coldrec.data.context import UserContext
from coldrec.data.interactions import EventType
from coldrec.recommend.base import Explanation

#: keyed by the event's int code (an EventType is one)
VERBS: dict[int, str] = {EventType.PURCHASE: "bought", EventType.RATING: "bought", EventType.CART: "added to cart"}
MATCHES_SEARCH = "matches your search"
RELATED_TO_SEARCH = "related to your search"


def reasons(
    explanations: Sequence[Explanation],
    context: UserContext,
    titles: np.ndarray,
    leaves: np.ndarray,
    ids: np.ndarray,
    items: np.ndarray | None = None,
) -> list[str]:
    """One reason per explained item; `titles`, `leaves` and `ids` name catalog positions."""
    said = []
    for row, why in enumerate(explanations):
        history = why.contributions.get("history", 0.0) if len(context.items) else -np.inf
        stated = why.contributions.get("stated", 0.0) if (context.interests or context.queries) else -np.inf
        popularity = why.contributions.get("popularity", 0.0)
        newness = why.contributions.get("newness", 0.0) + popularity
        personal = max(history, stated)
        if why.is_new and (personal <= 0 or personal <= newness):
            said.append("new arrival")
        elif history >= stated and history > 0 and history >= popularity and why.closest_known >= 0:
            said.append(_because(context, why.closest_known, titles, ids))
        elif stated > 0 and stated >= popularity and why.closest_interest:
            said.append(f"matches your interest {why.closest_interest}")
        else:
            position = int(items[row]) if items is not None else -1
            leaf = str(leaves[position] or "").strip() if position >= 0 else ""
            said.append(f"popular in {leaf}" if leaf else "popular with shoppers")  # no time claim: untimed shops too
    return said


def _because(context: UserContext, known_item: int, titles: np.ndarray, ids: np.ndarray) -> str:
    # the most recent event on that item says what the shopper did
    last = np.flatnonzero(np.asarray(context.items) == known_item)[-1]
    verb = VERBS.get(int(context.events[last]), "viewed")
    return f"because you {verb} {titles[known_item] or ids[known_item]}"
