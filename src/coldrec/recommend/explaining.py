"""Why coldrec lists an item: its feature contributions summed per kind of evidence, and what it is closest to.

The category-share feature counts as "stated" evidence where a stated interest names the item's category
(its share comes from that interest), as "history" elsewhere.
"""

from __future__ import annotations

import numpy as np

from coldrec.data.context import UserContext
from coldrec.recommend.base import EncodeTexts, Explanation
from coldrec.recommend.features import CATEGORY, HISTORY, NEWNESS, POPULARITY, STATED, columns_of
from coldrec.recommend.items import ItemState
from coldrec.recommend.signals import BehaviourSignals


def explain_rows(
    state: ItemState,
    signals: BehaviourSignals,
    context: UserContext,
    items: np.ndarray,
    contributions: np.ndarray,
    encode_texts: EncodeTexts,
) -> list[Explanation]:
    if not len(items):
        return []
    items = np.asarray(items, np.int64)
    category = contributions[:, columns_of(CATEGORY)].sum(axis=1)
    named = [state.category_code(text) for text in context.interests]
    codes = [c for c in named if c is not None]
    stated_category = np.isin(state.category[items], codes) if codes else np.zeros(len(items), bool)
    history = contributions[:, columns_of(HISTORY)].sum(axis=1) + np.where(stated_category, 0.0, category)
    stated = contributions[:, columns_of(STATED)].sum(axis=1) + np.where(stated_category, category, 0.0)
    popularity = contributions[:, columns_of(POPULARITY)].sum(axis=1)
    newness = contributions[:, columns_of(NEWNESS)].sum(axis=1)
    closest_known = _closest_known(state, context, items)
    closest_interest = _closest_interests(state, context, items, encode_texts)
    is_new = signals.events[items] == 0
    return [
        Explanation(
            {"history": float(history[r]), "stated": float(stated[r]), "popularity": float(popularity[r]),
             "newness": float(newness[r])},
            closest_known=int(closest_known[r]),
            closest_interest=closest_interest[r],
            is_new=bool(is_new[r]),
        )
        for r in range(len(items))
    ]


def _closest_known(state: ItemState, context: UserContext, items: np.ndarray) -> np.ndarray:
    """Per item, the shopper's known item with the closest text (not the item itself unless it is all they know)."""
    known = np.asarray(context.items, np.int64)
    if not len(known):
        return np.full(len(items), -1, np.int64)
    similarity = state.vectors[items] @ state.vectors[known].T  # (items, known)
    itself = items[:, None] == known[None, :]
    others = (~itself).any(axis=1, keepdims=True)
    similarity = np.where(itself & others, -np.inf, similarity)
    return known[np.argmax(similarity, axis=1)]


def _closest_interests(state: ItemState, context: UserContext, items: np.ndarray, encode_texts: EncodeTexts) -> list:
    """Per item, the stated interest or query it matches best: one naming its category, else the closest in text."""
    texts = [text.strip() for text in [*context.interests, *context.queries] if text and text.strip()]
    if not texts:
        return [None] * len(items)
    if len(texts) == 1:
        return texts * len(items)
    leaves = state.category_names[state.category[items]]
    lowered = [text.lower() for text in texts]
    vectors = None
    out = []
    for item, leaf in zip(items, leaves, strict=True):  # one leaf per item
        if leaf in lowered:
            out.append(texts[lowered.index(leaf)])
            continue
        if vectors is None:
            vectors = np.asarray(encode_texts(texts), np.float32)
        out.append(texts[int(np.argmax(vectors @ state.vectors[item]))])
    return out
