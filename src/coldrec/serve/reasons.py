"""A short reason per recommended item, from the ranker's per-feature contributions.

LightGBM's SHAP values (`pred_contrib=True`) on the returned rows only are summed per
group of features; the strongest group names the reason:

- history (text similarity to what was seen, co-occurrence, ALS, brand): "because you
  viewed|bought|added to cart X", X the known item closest to the recommended one;
- stated interests and queries: "matches your interest Y", Y the closest interest;
- popularity: "popular in <leaf category>";
- an item without events: "new arrival", unless history or interest explains it more.

Search results say how they match (`coldrec.serve.matching`): `MATCHES_SEARCH` when they share a
word (or most of its letters) with the query, `RELATED_TO_SEARCH` when only their meaning is close.
"""

from __future__ import annotations

import numpy as np

from coldrec.data.context import UserContext
from coldrec.data.interactions import EventType
from coldrec.recommend.coldstart import FEATURES

HISTORY = ("text_interest_max", "text_interest_weight", "text_mean", "text_last", "als", "itemknn", "seen_weight", "brand_share")
STATED = ("text_stated", "has_stated")
POPULARITY = ("log_pop", "log_pop30", "decayed_pop", "category_pop_share", "borrowed_pop")
NEWNESS = ("log_item_events", "item_age_days")
VERBS = {EventType.PURCHASE: "bought", EventType.RATING: "bought", EventType.CART: "added to cart"}
MATCHES_SEARCH = "matches your search"
RELATED_TO_SEARCH = "related to your search"


def _columns(names: tuple[str, ...]) -> np.ndarray:
    return np.array([FEATURES.index(name) for name in names])


def explain(
    model,
    context: UserContext,
    items: np.ndarray,
    features: np.ndarray,
    titles: np.ndarray | None = None,
    leaves: np.ndarray | None = None,
    encode_texts=None,
) -> list[str]:
    """One reason per item (rows of `features` are the ranker's inputs for `items`).

    `titles` and `leaves` (per catalog position) name the items; taken from the model's
    catalog when not given; `encode_texts` encodes interests (the model's encoder by default).
    """
    if not len(items):
        return []
    if titles is None:
        titles = model.catalog.frame["title"].fillna("").to_numpy(dtype=object)
    if leaves is None:
        leaves = model.catalog.leaf_categories()
    contributions = model._fusion.contributions(features)
    category = FEATURES.index("category_share")
    stated_category = _stated_category_mask(model, context, items)
    history = contributions[:, _columns(HISTORY)].sum(axis=1)
    stated = contributions[:, _columns(STATED)].sum(axis=1)
    history += np.where(stated_category, 0.0, contributions[:, category])
    stated += np.where(stated_category, contributions[:, category], 0.0)
    if not len(context.items):
        history[:] = -np.inf
    if not (context.interests or context.queries):
        stated[:] = -np.inf
    popularity = contributions[:, _columns(POPULARITY)].sum(axis=1)
    newness = contributions[:, _columns(NEWNESS)].sum(axis=1) + popularity
    is_new = model._signals.events[items] == 0

    interests = _Interests(model, context, encode_texts or model._encode_texts)
    reasons = []
    for row, item in enumerate(items):
        personal = max(history[row], stated[row])
        if is_new[row] and (personal <= 0 or personal <= newness[row]):
            reasons.append("new arrival")
        elif history[row] >= stated[row] and history[row] > 0 and history[row] >= popularity[row]:
            reasons.append(_because(model, context, int(item), titles))
        elif stated[row] > 0 and stated[row] >= popularity[row]:
            reasons.append(f"matches your interest {interests.closest(int(item))}")
        else:
            leaf = str(leaves[item] or "").strip()
            reasons.append(f"popular in {leaf}" if leaf else "popular right now")
    return reasons


def _stated_category_mask(model, context: UserContext, items: np.ndarray) -> np.ndarray:
    """Items whose category a stated interest names (their category share comes from that interest)."""
    codes = [model._category_lookup.get(text.strip().lower()) for text in context.interests]
    codes = [c for c in codes if c is not None]
    return np.isin(model._category[items], codes) if codes else np.zeros(len(items), bool)


def _because(model, context: UserContext, item: int, titles: np.ndarray) -> str:
    vectors = model._item_vectors
    known = np.asarray(context.items, np.int64)
    similarity = vectors[known] @ vectors[item]
    similarity[known == item] = -np.inf if (known != item).any() else similarity[known == item]
    closest = int(np.argmax(similarity))
    # the most recent event on that item says what the shopper did
    last = np.flatnonzero(known == known[closest])[-1]
    verb = VERBS.get(int(context.events[last]), "viewed")
    title = titles[known[closest]]
    return f"because you {verb} {title or model.catalog.ids[known[closest]]}"


class _Interests:
    """The shopper's stated interests and queries, encoded once (only when a reason needs them)."""

    def __init__(self, model, context: UserContext, encode_texts):
        self.model = model
        self.encode_texts = encode_texts
        self.texts = [text.strip() for text in [*context.interests, *context.queries] if text and text.strip()]
        self._vectors = None

    def closest(self, item: int) -> str:
        leaf = self.model._category_names[self.model._category[item]]
        named = [text for text in self.texts if text.lower() == leaf]
        if named or len(self.texts) == 1:
            return (named or self.texts)[0]
        if self._vectors is None:
            self._vectors = self.encode_texts(self.texts)
        return self.texts[int(np.argmax(self._vectors @ self.model._item_vectors[item]))]
