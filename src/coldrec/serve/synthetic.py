"""A synthetic shop of any size for load tests: random words, a hashing encoder, random events.

Item texts are a few random words plus the item's own token, so their vectors (sums of
per-token random vectors) are random unit vectors, a little closer within a category.
The hashing encoder (`coldrec.encode.hashing.HashingEncoder`, imported here too, where it lived first) also
encodes queries and items added live, deterministically.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from coldrec.data.catalog import ItemCatalog
from coldrec.data.interactions import EventType, InteractionLog
from coldrec.encode.hashing import HashingEncoder

if TYPE_CHECKING:
    from coldrec.serve.engine import Engine

__all__ = ["HashingEncoder", "synthetic_engine", "synthetic_shop"]

DAY = 86_400


def synthetic_shop(
    n_items: int = 100_000,
    n_users: int = 20_000,
    events_per_user: int = 10,
    n_departments: int = 20,
    leaves_per_department: int = 10,
    n_brands: int = 500,
    vocabulary: int = 5_000,
    days: int = 180,
    seed: int = 0,
) -> tuple[ItemCatalog, InteractionLog]:
    """A random catalog (categories "Dept > Leaf", brands, prices, stock) and about n_users x events_per_user events."""
    rng = np.random.default_rng(seed)
    n_leaves = n_departments * leaves_per_department
    leaf_names = np.array(
        [f"Department {d:02d} > Shelf {d:02d}-{j:02d}"
         for d in range(n_departments) for j in range(leaves_per_department)]
    )
    words = np.array([f"w{i:04d}" for i in range(vocabulary)])
    leaf_of_item = np.sort(rng.integers(0, n_leaves, n_items))
    # each leaf draws its words from its own slice of the vocabulary, so a category's items share words
    word_of_item = (leaf_of_item[:, None] * 37 + rng.integers(0, 60, (n_items, 3))) % vocabulary
    titles = [f"{a} {b} {c} item{i}" for i, (a, b, c) in enumerate(words[word_of_item])]
    catalog = ItemCatalog.from_records(
        [f"s{i}" for i in range(n_items)],
        titles,
        brand=[f"Brand{b:03d}" for b in rng.integers(0, n_brands, n_items)],
        category=leaf_names[leaf_of_item],
        price=np.round(rng.lognormal(3.0, 1.0, n_items), 2),
        available=rng.random(n_items) < 0.95,
    )
    # shoppers stay in one or two leaves; within a leaf, popularity is Zipf-like
    starts = np.searchsorted(leaf_of_item, np.arange(n_leaves + 1))
    n_events = n_users * events_per_user
    user = np.sort(rng.integers(0, n_users, n_events))
    favourite = rng.integers(0, n_leaves, (n_users, 2))
    leaf = favourite[user, (rng.random(n_events) < 0.3).astype(int)]
    size = np.maximum(starts[leaf + 1] - starts[leaf], 1)
    rank = np.minimum(rng.zipf(1.5, n_events) - 1, size - 1)
    item = np.minimum(starts[leaf] + rank, n_items - 1)
    # items launch over time (a few in the last weeks), so the ranker learns how new items sell
    end = 1_700_000_000
    launch = end - (rng.random(n_items) ** 0.5 * 1.2 * days * DAY).astype(np.int64)
    time = np.maximum(end - rng.integers(0, days * DAY, n_events), launch[item] + rng.integers(0, 7 * DAY, n_events))
    time = np.minimum(time, end)
    kinds = [EventType.VIEW, EventType.CART, EventType.PURCHASE]
    event = rng.choice(kinds, n_events, p=[0.6, 0.15, 0.25]).astype(np.int8)
    order = np.argsort(time, kind="stable")
    log = InteractionLog.from_arrays(
        np.char.add("user", user.astype(str))[order], item[order], time[order], event[order]
    )
    return catalog, log


def synthetic_engine(
    n_items: int = 100_000, dim: int = 384, seed: int = 0, n_users: int | None = None, **model_params: Any
) -> Engine:
    """A fitted `Engine` over `synthetic_shop(n_items)` with a `HashingEncoder(dim)`.

    About 200k events at 100k items.
    """
    from coldrec.serve.engine import Engine

    catalog, log = synthetic_shop(n_items, n_users=n_users or max(200, n_items // 5), seed=seed)
    params = {"max_training_users": 200, "max_negatives": 50, "als_factors": 32, "random_state": seed, **model_params}
    return Engine.build(catalog, log, encoder=HashingEncoder(dim, seed), model_params=params)
