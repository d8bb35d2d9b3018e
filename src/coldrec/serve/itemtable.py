"""`ItemTable`: per-position ids, titles, category paths, prices and stock, for filters and results.

The server's own view of the live catalog (the model ranks positions; this names them). Rows are
re-read only for the positions a write touched, so an add stays cheap on a big catalog.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from coldrec.data.catalog import CATEGORY_SEPARATOR, ItemCatalog


@dataclass
class Recommendation:
    """One recommended, similar or found item."""

    item_id: str
    title: str
    score: float
    reason: str
    category: str
    price: float | None
    campaign_id: str | None = None  # a sponsored item: the campaign paying for its place
    cost_per_click: float | None = None  # what its click costs that campaign (the auction's second price)


_FILLS = {"ids": "", "titles": "", "brands": "", "paths": "", "price": np.nan, "available": False, "path_code": 0,
          "title_code": -1}


class ItemTable:
    def __init__(self, catalog: ItemCatalog):
        self.ids, self.titles, self.paths, self.brands = (np.zeros(0, object) for _ in range(4))
        self.price, self.available = np.zeros(0), np.zeros(0, bool)
        self.path_names, self.path_code = np.zeros(0, object), np.zeros(0, np.int64)
        self.title_code = np.zeros(0, np.int64)
        self._path_lookup: dict[str, int] = {}  # category path -> code, in first-seen order
        self._title_lookup: dict[str, int] = {}  # normalised title -> code
        self.refresh(catalog)

    def __len__(self) -> int:
        return len(self.ids)

    def refresh(self, catalog: ItemCatalog, positions: np.ndarray | None = None) -> None:
        """(Re)read the rows at `positions` (all when None) from `catalog`."""
        if positions is None:
            frame, positions = catalog.frame, np.arange(len(catalog))
        else:
            frame = catalog.frame.iloc[positions]
        grow = len(catalog) - len(self.ids)
        for name, fill in _FILLS.items():
            array = getattr(self, name)
            setattr(self, name, np.concatenate([array, np.full(grow, fill, array.dtype)]))
        self.ids[positions] = frame["item_id"].to_numpy(dtype=object)
        self.titles[positions] = frame["title"].fillna("").to_numpy(dtype=object)
        self.brands[positions] = frame["brand"].fillna("").to_numpy(dtype=object)
        # one code per title up to case and spacing (-1: no title), to collapse duplicate listings
        normalised = np.array([" ".join(str(t).lower().split()) for t in self.titles[positions]], object)
        inverse, keys = pd.factorize(normalised)
        codes = np.array([self._title_lookup.setdefault(k, len(self._title_lookup)) if k else -1 for k in keys],
                         np.int64)
        self.title_code[positions] = codes[inverse] if len(keys) else inverse
        paths = frame["category"].fillna("").to_numpy(dtype=object)
        self.paths[positions] = paths
        self.price[positions] = frame["price"].to_numpy(dtype=np.float64)
        self.available[positions] = frame["available"].to_numpy(dtype=bool)
        self.all_available = bool(self.available.all())
        inverse, distinct = pd.factorize(paths.astype(str))
        codes = np.array([self._path_lookup.setdefault(path, len(self._path_lookup)) for path in distinct], np.int64)
        self.path_code[positions] = codes[inverse] if len(distinct) else inverse
        self.path_names = np.array(list(self._path_lookup), dtype=object)
        leaf_of_path = np.array([path.split(CATEGORY_SEPARATOR)[-1] for path in self.path_names], dtype=object)
        self.leaves = leaf_of_path[self.path_code] if len(leaf_of_path) else np.zeros(0, object)

    def allowed(
        self, removed: np.ndarray, category=None, min_price=None, max_price=None, in_stock=None,
        include_unavailable: bool = False,
    ) -> np.ndarray | None:
        """The mask of positions the filters admit, or None when nothing is filtered. Unavailable items are
        filtered out unless `include_unavailable` (or `in_stock` says otherwise)."""
        if in_stock is None and not include_unavailable and not self.all_available:
            in_stock = True
        if category is None and min_price is None and max_price is None and in_stock is None:
            return None
        allowed = ~removed
        if category:
            allowed &= self.in_category(category)
        if min_price is not None:
            allowed &= self.price >= min_price
        if max_price is not None:
            allowed &= self.price <= max_price
        if in_stock is not None:
            allowed &= self.available == bool(in_stock)
        return allowed

    def in_category(self, category: str) -> np.ndarray:
        """Mask of positions whose category path is `category`, under it, or has it as a level (any case)."""
        return np.isin(self.path_code, np.flatnonzero(_path_matches(self.path_names, category)))

    def distinct_titles(self, positions: np.ndarray) -> np.ndarray:
        """Mask over ranked `positions`: False where an item's title (up to case and spacing) came earlier."""
        codes = self.title_code[positions]
        keep = codes < 0
        keep[np.unique(codes, return_index=True)[1]] = True
        return keep

    def result(self, position: int, score: float, reason: str) -> Recommendation:
        price = self.price[position]
        return Recommendation(
            item_id=str(self.ids[position]),
            title=str(self.titles[position]),
            score=score,
            reason=reason,
            category=str(self.paths[position]),
            price=None if np.isnan(price) else float(price),
        )

    def listed(
        self,
        fetch: Callable[[int], tuple[np.ndarray, np.ndarray]],
        n: int,
        k: int,
        total: int,
        removed: np.ndarray,
        include_unavailable: bool,
        exclude: int | None = None,
        shown: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The first n of `fetch(k)`'s results (positions, scores; best first, -1 padded) that are neither removed,
        filtered out, `exclude` nor a title listed earlier, and pass `shown`. While fewer than n are left and the
        filters or the duplicates dropped some, fetched again 4x deeper (three tries at most)."""
        allowed = self.allowed(removed, include_unavailable=include_unavailable)
        k = min(total, k)
        for _ in range(3):
            found, scores = fetch(k)
            keep = (found >= 0) & ~removed[np.maximum(found, 0)]
            if allowed is not None:
                keep &= allowed[np.maximum(found, 0)]
            if exclude is not None:
                keep &= found != exclude
            found, scores = found[keep], scores[keep]
            distinct = self.distinct_titles(found)
            found, scores = found[distinct], scores[distinct]
            if shown is not None:
                visible = shown(found)
                found, scores = found[visible], scores[visible]
            if len(found) >= n or k >= total or (keep.all() and distinct.all()):
                break
            k = min(total, 4 * k)
        return found[:n], scores[:n]


def _path_matches(paths: np.ndarray, category: str) -> np.ndarray:
    """Category paths equal to `category`, under it, or having it as one of their levels (case-insensitive)."""
    wanted = category.strip().lower()
    lowered = np.char.lower(paths.astype(str))
    levels = [{level.strip() for level in p.split(CATEGORY_SEPARATOR.strip())} for p in lowered]
    return np.array(
        [p == wanted or p.startswith(wanted + CATEGORY_SEPARATOR) or wanted in lv
         for p, lv in zip(lowered, levels, strict=True)],  # one set of levels a path
        bool,
    )
