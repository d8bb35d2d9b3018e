"""Diversity: the top of a ranked list re-ranked so that it is not ten near-identical items, and so that the
shop's lists together reach more of its catalog.

Two knobs over a pool of the best-scored candidates. `spread` in [0, 1] is about all lists together: an item's
relevance (its score scaled to [0, 1] within the pool) becomes ``(1 - spread) * relevance - spread * exposure``,
where `exposure` (in [0, 1]) says how much of the shop's lists the item already crowds (`list_exposure`). A few
hubs (a best seller, a new arrival, an item whose text is near everything) otherwise take a place in nearly every
list, which keeps coverage of the catalog low: lowering them leaves room for the next-best item of each shopper,
which differs from shopper to shopper. `strength` in [0, 1] is about one list, and drives two rules:

- maximal marginal relevance (Carbonell & Goldstein, 1998) over the item vectors: each next item is the one
  of highest ``(1 - strength) * relevance - strength * max cosine to the items already chosen``, where
  relevance is the score scaled to [0, 1] within the pool;
- a cap per category and per brand: at most ``cap(n, strength)`` of the n items share one (an item with no
  brand is capped by nothing on brand). Where the pool cannot fill the list under the caps, the best of the rest
  fill it in order.

At spread 0 and strength 0 the list is the ranking itself. The pool is the `pool_size(n)` best candidates, so a
re-ranked list never reaches far below what the ranker would show.
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


def list_exposure(lists: np.ndarray, n_items: int) -> np.ndarray:
    """Each item's share of `lists` (rows of item positions, -1 padded) on a log scale: log(1 + times listed) over
    log(1 + the most listed item's), in [0, 1] (float32; 0 for an item never listed)."""
    listed = np.asarray(lists).ravel()
    counts = np.bincount(listed[listed >= 0], minlength=n_items)[:n_items].astype(np.float64)
    top = counts.max(initial=0.0)
    return (np.log1p(counts) / np.log1p(top) if top > 0 else counts).astype(np.float32)


def diversify(scores: np.ndarray, vectors: np.ndarray, n: int, strength: float,
              categories: np.ndarray | None = None, brands: np.ndarray | None = None,
              exposure: np.ndarray | None = None, spread: float = 0.0) -> np.ndarray:
    """The order (indices into the pool, best first, at most n) of a pool of candidates given best first:
    `scores` (pool,), `vectors` (pool x d, unit length; float16 allowed), `categories` / `brands` (pool,) integer
    codes, brands < 0 for none, `exposure` (pool,) in [0, 1] (`list_exposure`), weighed by `spread`."""
    size = len(scores)
    n = min(n, size)
    spread = min(float(spread), 1.0) if exposure is not None else 0.0
    if spread <= 0 and (strength <= 0 or n <= 1):
        return np.arange(n)
    values = np.asarray(scores, np.float64)
    width = values.max() - values.min()
    relevance = (values - values.min()) / width if width > 0 else np.ones(size)
    if spread > 0:
        relevance = (1.0 - spread) * relevance - spread * np.asarray(exposure, np.float64)
    if strength <= 0:
        return np.argsort(-relevance, kind="stable")[:n]  # ties: the better-ranked
    strength = min(float(strength), 1.0)
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
