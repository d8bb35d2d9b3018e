"""Diversity: the top of a ranked list re-ranked so that it is not ten near-identical items.

One knob, `strength` in [0, 1], drives two rules over a pool of the best-scored candidates:

- maximal marginal relevance (Carbonell & Goldstein, 1998) over the item vectors: each next item is the one
  of highest ``(1 - strength) * relevance - strength * max cosine to the items already chosen``, where
  relevance is the score scaled to [0, 1] within the pool;
- a cap per category and per brand: at most ``cap(n, strength)`` of the n items share one (an item with no
  brand is capped by nothing on brand). Where the pool cannot fill the list under the caps, the best of the rest
  fill it in order.

At strength 0 the list is the ranking itself. The pool is the `pool_size(n)` best candidates, so a diversified
list never reaches far below what the ranker would show.
"""

from __future__ import annotations

import math

import numpy as np

#: the pool a list of n is chosen from: the best `POOL_FACTOR * n` candidates, at least `MIN_POOL`
POOL_FACTOR = 5
MIN_POOL = 50


def pool_size(n: int) -> int:
    return max(MIN_POOL, POOL_FACTOR * n)


def cap(n: int, strength: float) -> int:
    """Items of one category (or brand) allowed in a list of n at `strength`: n at 0, down to 2 at 1."""
    if strength <= 0:
        return n
    return max(2, math.ceil(n * (1.0 - strength) ** 2))


def diversify(scores: np.ndarray, vectors: np.ndarray, n: int, strength: float,
              categories: np.ndarray | None = None, brands: np.ndarray | None = None) -> np.ndarray:
    """The order (indices into the pool, best first, at most n) of a pool of candidates given best first:
    `scores` (pool,), `vectors` (pool x d, unit length; float16 allowed), `categories` / `brands` (pool,) integer
    codes, brands < 0 for none."""
    size = len(scores)
    n = min(n, size)
    if strength <= 0 or n <= 1:
        return np.arange(n)
    strength = min(float(strength), 1.0)
    values = np.asarray(scores, np.float64)
    spread = values.max() - values.min()
    relevance = (values - values.min()) / spread if spread > 0 else np.ones(size)
    x = np.asarray(vectors, np.float32)
    limit = cap(n, strength)
    chosen: list[int] = []
    closest = np.full(size, -1.0)  # max cosine to the chosen so far
    available = np.ones(size, bool)
    used_category: dict[int, int] = {}
    used_brand: dict[int, int] = {}
    for _ in range(n):
        allowed = available.copy()
        if categories is not None:
            full = [code for code, count in used_category.items() if count >= limit]
            allowed &= ~np.isin(categories, full)
        if brands is not None:
            full = [code for code, count in used_brand.items() if count >= limit]
            allowed &= ~np.isin(brands, full) | (brands < 0)
        if not allowed.any():
            allowed = available  # the caps cannot be met: the best of the rest
        gain = (1.0 - strength) * relevance - strength * np.maximum(closest, 0.0)
        gain[~allowed] = -np.inf
        pick = int(np.argmax(gain))  # ties: the better-ranked
        chosen.append(pick)
        available[pick] = False
        closest = np.maximum(closest, x @ x[pick])
        if categories is not None:
            used_category[int(categories[pick])] = used_category.get(int(categories[pick]), 0) + 1
        if brands is not None and brands[pick] >= 0:
            used_brand[int(brands[pick])] = used_brand.get(int(brands[pick]), 0) + 1
    return np.asarray(chosen, np.int64)
