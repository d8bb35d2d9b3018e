"""A shopper as a few interest vectors rather than one average.

Known items are weighted by recency (position decay) and event type (a purchase says
more than a view); the weighted item vectors are clustered into at most `max_interests`
groups, so a shopper who buys toner and also desk chairs keeps both interests instead
of a blurred mean between them. Stated interests and queries form one more vector.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from coldrec.data.context import UserContext
from coldrec.data.interactions import EventType

EVENT_WEIGHTS = {
    EventType.VIEW: 0.25,
    EventType.CLICK: 0.5,
    EventType.SEARCH: 0.5,
    EventType.CART: 0.75,
    EventType.PURCHASE: 1.0,
    EventType.RATING: 1.0,
}
_EVENT_WEIGHT = np.array([EVENT_WEIGHTS[EventType(e)] for e in range(len(EventType))], np.float32)


@dataclass
class InterestProfiles:
    """Per shopper: interest vectors (users x m x d, unit or zero), their weights (sum 1 per
    shopper with history), the recency-weighted mean vector, and the stated-interest vector."""

    interests: np.ndarray
    weights: np.ndarray
    mean: np.ndarray
    stated: np.ndarray
    has_history: np.ndarray
    has_stated: np.ndarray


def item_weights(context: UserContext, decay: float) -> np.ndarray:
    """Weight of each known item: decay ** (age in positions, 0 = most recent) x event weight."""
    n = len(context.items)
    age = np.arange(n - 1, -1, -1, dtype=np.float64)
    return (decay**age * _EVENT_WEIGHT[np.clip(context.events, 0, len(_EVENT_WEIGHT) - 1)]).astype(np.float32)


def _normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 1e-12).astype(np.float32)


def cluster_interests(
    vectors: np.ndarray, weights: np.ndarray, k: int, iterations: int = 8
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted spherical k-means of one shopper's item vectors into at most k interests.

    Deterministic: seeds are the heaviest item, then repeatedly the item farthest from all
    seeds. Returns (k' x d unit centroids, k' weights summing to 1), heaviest first.
    """
    n = len(vectors)
    if n <= k:
        centroids, mass = vectors, weights
    else:
        seeds = [int(np.argmax(weights))]
        closeness = vectors @ vectors[seeds[0]]
        for _ in range(1, k):
            seeds.append(int(np.argmin(closeness)))
            closeness = np.maximum(closeness, vectors @ vectors[seeds[-1]])
        centroids = vectors[seeds]
        for _ in range(iterations):
            assign = np.argmax(vectors @ centroids.T, axis=1)
            sums = np.zeros_like(centroids)
            np.add.at(sums, assign, vectors * weights[:, None])
            mass = np.bincount(assign, weights=weights, minlength=len(centroids)).astype(np.float32)
            keep = mass > 0
            new = _normalise(sums[keep])
            if len(new) == len(centroids) and np.allclose(new, centroids, atol=1e-5):
                centroids = new
                break
            centroids, mass = new, mass[keep]
    order = np.argsort(-mass, kind="stable")
    total = mass.sum()
    return _normalise(centroids[order]), (mass[order] / total if total > 0 else mass[order])


def build_interest_profiles(
    contexts: Sequence[UserContext],
    item_vectors: np.ndarray,
    encode_texts: Callable[[list[str]], np.ndarray] | None,
    decay: float = 0.7,
    max_interests: int = 3,
) -> InterestProfiles:
    n, d = len(contexts), item_vectors.shape[1]
    interests = np.zeros((n, max_interests, d), np.float32)
    weights = np.zeros((n, max_interests), np.float32)
    mean = np.zeros((n, d), np.float32)
    has_history = np.zeros(n, bool)
    for row, context in enumerate(contexts):
        if not len(context.items):
            continue
        has_history[row] = True
        w = item_weights(context, decay)
        # one entry per distinct item: repeated purchases add weight, not new points
        items, inverse = np.unique(context.items, return_inverse=True)
        w = np.bincount(inverse, weights=w).astype(np.float32)
        vectors = item_vectors[items]
        mean[row] = _normalise((w[:, None] * vectors).sum(axis=0, keepdims=True))[0]
        centroids, mass = cluster_interests(vectors, w, max_interests)
        interests[row, : len(centroids)] = centroids
        weights[row, : len(centroids)] = mass
    stated = np.zeros((n, d), np.float32)
    has_stated = np.zeros(n, bool)
    rows, texts = [], []
    for row, context in enumerate(contexts):
        for text in [*context.interests, *context.queries]:
            if text and text.strip():
                rows.append(row)
                texts.append(text.strip())
    if texts and encode_texts is not None:
        distinct, inverse = np.unique(np.array(texts, dtype=str), return_inverse=True)
        encoded = np.asarray(encode_texts(distinct.tolist()), np.float32)
        np.add.at(stated, np.array(rows), encoded[inverse])
        stated = _normalise(stated)
        has_stated[np.array(rows)] = True
    return InterestProfiles(interests, weights, mean, stated, has_history, has_stated)
