"""`ItemState`: what a content-aware model knows of each catalog position without behaviour.

Text vectors (in the model's space) with their vector index, the leaf category and brand as
integer codes, and which positions were removed. Every per-item array grows in place when
items are added live (`coldrec.recommend.rows`), so an add costs the new rows only.
"""

from __future__ import annotations

import numpy as np

from coldrec.data.catalog import ItemCatalog
from coldrec.model.registry import register_class
from coldrec.recommend.rows import grow_fields, reserve_fields
from coldrec.retrieve.index import VectorIndex


def leaf_names(catalog: ItemCatalog) -> np.ndarray:
    return np.char.lower(catalog.leaf_categories().astype(str))


def brand_names(catalog: ItemCatalog) -> np.ndarray:
    return np.char.lower(catalog.frame["brand"].fillna("").to_numpy(dtype=str))


_GROWN = (("vectors", 0.0), ("category", 0), ("brand", 0), ("has_brand", False), ("removed", True))


@register_class
class ItemState:
    """Per-position text vectors, category and brand codes, the removed mask, and the vector index."""

    __transient__ = ("_buffers", "_lookup")
    _lookup: dict[str, int] | None = None

    def __init__(self, catalog: ItemCatalog, vectors: np.ndarray, index: VectorIndex | None = None):
        leaves, brands = leaf_names(catalog), brand_names(catalog)
        self.category_names, self.category = np.unique(leaves, return_inverse=True)
        self.brand_names, self.brand = np.unique(brands, return_inverse=True)
        self.category, self.brand = self.category.astype(np.int64), self.brand.astype(np.int64)
        self.has_brand = brands != ""
        self.vectors = np.ascontiguousarray(vectors, np.float32)
        self.removed = np.zeros(len(catalog), bool)
        self.index = index if index is not None else VectorIndex().fit(self.vectors)
        #: bumped by every change, so derived caches (sources') know when to rebuild
        self.version = 0
        self.has_categories = bool((leaves != "").mean() > 0.5) if len(leaves) else False

    def __len__(self) -> int:
        return len(self.vectors)

    def category_code(self, text: str) -> int | None:
        """The code of the leaf category a stated interest names (case and spaces ignored), else None."""
        lookup = self._lookup
        if lookup is None:  # built once; `_codes` drops it when the category vocabulary grows
            lookup = self._lookup = {name: code for code, name in enumerate(self.category_names) if name}
        return lookup.get(text.strip().lower())

    def put(self, positions: np.ndarray, rows: ItemCatalog, vectors: np.ndarray) -> None:
        """Write `rows` (new positions at the end, or existing ones) with their vectors; unseen names get new codes."""
        positions = np.asarray(positions, np.int64)
        grow = max(0, int(positions.max(initial=-1)) + 1 - len(self))
        self.grow(grow)
        self.vectors[positions] = vectors
        self.category[positions] = self._codes("category_names", leaf_names(rows))
        brands = brand_names(rows)
        self.brand[positions] = self._codes("brand_names", brands)
        self.has_brand[positions] = brands != ""
        self.removed[positions] = False
        self.index.add(positions, np.ascontiguousarray(vectors, np.float32))
        self.version += 1

    def remove(self, positions: np.ndarray) -> None:
        positions = np.asarray(positions, np.int64)
        self.removed[positions] = True
        self.index.remove(positions)
        self.version += 1

    def grow(self, count: int) -> None:
        """`count` more positions, empty (their rows are written by `put`)."""
        if not count:
            return
        grow_fields(self, _GROWN, count)

    def reserve(self, count: int) -> None:
        """Room for `count` more positions (contents unchanged: safe while others read)."""
        reserve_fields(self, _GROWN, count)

    def _codes(self, vocabulary: str, names: np.ndarray) -> np.ndarray:
        """The codes of `names` in the vocabulary, which gains the names it lacks (in order of appearance)."""
        known = getattr(self, vocabulary)
        lookup = {str(name): code for code, name in enumerate(known)}
        new = [name for name in dict.fromkeys(str(n) for n in names) if name not in lookup]
        if new:
            lookup.update((name, len(known) + i) for i, name in enumerate(new))
            setattr(self, vocabulary, np.append(known, new))
            self._lookup = None
        return np.array([lookup[str(name)] for name in names], np.int64)
