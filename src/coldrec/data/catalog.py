"""The product catalog: one row per item, columnar, with a text rendering for the encoder."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from coldrec.model.registry import register_class

CATEGORY_SEPARATOR = " > "

CATALOG_COLUMNS = {
    "item_id": "string",
    "title": "string",
    "description": "string",
    "brand": "string",
    "category": "string",  # path, levels joined by CATEGORY_SEPARATOR
    "price": "float64",  # NaN when unknown
    "available": "bool",
    "created_at": "datetime64[s]",  # NaT when unknown
    "attributes": "object",  # dict of free attributes, or None
}


#: What a catalog column holds where a source does not give it.
CATALOG_DEFAULTS: dict[str, Any] = {
    "title": "",
    "description": "",
    "brand": "",
    "category": "",
    "price": np.nan,
    "available": True,
    "created_at": pd.NaT,
    "attributes": None,
}


@dataclass(frozen=True)
@register_class
class TextTemplate:
    """How an item becomes one string for the language model.

    Fields are joined by `separator`, empty fields are left out, and the description is
    cut to `max_description_chars` so a long description cannot crowd out the title.
    """

    fields: tuple[str, ...] = ("title", "brand", "category", "description")
    separator: str = ". "
    max_description_chars: int = 300

    def render(self, frame: pd.DataFrame) -> list[str]:
        parts = []
        for name in self.fields:
            if name == "category":
                # the leaf carries the meaning; the full path repeats it for every sibling
                values = frame["category"].fillna("").str.split(CATEGORY_SEPARATOR).str[-1]
            elif name == "attributes":
                values = frame["attributes"].map(_attributes_text)
            else:
                values = frame[name].fillna("").astype(str)
            if name == "description":
                values = values.str.slice(0, self.max_description_chars)
            parts.append(values.str.strip().to_numpy(dtype=object))
        rendered = []
        for row in zip(*parts, strict=True):
            rendered.append(self.separator.join(p for p in row if p))
        return rendered


def _attributes_text(attributes) -> str:
    if not attributes:
        return ""
    return ", ".join(f"{k}: {v}" for k, v in attributes.items())


@register_class
class ItemCatalog:
    """Items with their text and attributes. Row order is the item index used everywhere."""

    def __init__(self, frame: pd.DataFrame):
        missing = set(CATALOG_COLUMNS) - set(frame.columns)
        if missing:
            raise ValueError(f"catalog frame lacks columns: {sorted(missing)}")
        frame = frame[list(CATALOG_COLUMNS)].reset_index(drop=True)
        duplicated = frame["item_id"].duplicated()
        if duplicated.any():
            raise ValueError(f"duplicate item_id {frame['item_id'][duplicated].iloc[0]!r}")
        self.frame = frame.astype({k: v for k, v in CATALOG_COLUMNS.items() if k != "attributes"})
        self._index = pd.Index(self.frame["item_id"])

    def __getstate__(self) -> dict:
        return {"frame": self.frame}  # the id index is rebuilt from it

    def __setstate__(self, state: dict) -> None:
        self.frame = state["frame"]
        self._index = pd.Index(self.frame["item_id"])

    @classmethod
    def from_partial(cls, frame: pd.DataFrame) -> ItemCatalog:
        """A catalog from a frame with `item_id` and any of the other columns; missing ones take CATALOG_DEFAULTS."""
        missing = {name: default for name, default in CATALOG_DEFAULTS.items() if name not in frame.columns}
        return cls(frame.assign(**missing) if missing else frame)

    @classmethod
    def from_records(
        cls,
        item_id: Collection[str],
        title: Collection[str] | None = None,
        *,
        description: Collection[str] | None = None,
        brand: Collection[str] | None = None,
        category: Collection[str] | None = None,
        price: Collection[float] | None = None,
        available: Collection[bool] | None = None,
        created_at: Collection[Any] | None = None,
        attributes: Collection[dict | None] | None = None,
    ) -> ItemCatalog:
        """A catalog from one column per field (lists, arrays, Series), all of `item_id`'s length."""
        n = len(item_id)

        def column(values, default):
            return [default] * n if values is None else list(values)

        frame = pd.DataFrame(
            {
                "item_id": [str(i) for i in item_id],
                "title": column(title, ""),
                "description": column(description, ""),
                "brand": column(brand, ""),
                "category": column(category, ""),
                "price": column(price, np.nan),
                "available": column(available, True),
                "created_at": pd.to_datetime(column(created_at, None)),
                "attributes": column(attributes, None),
            }
        )
        return cls(frame)

    def __len__(self) -> int:
        return len(self.frame)

    def __repr__(self) -> str:
        return f"ItemCatalog({len(self):,} items)"

    @property
    def ids(self) -> np.ndarray:
        return self.frame["item_id"].to_numpy(dtype=object)

    def index_of(self, item_ids: Iterable[str]) -> np.ndarray:
        """Positions of the given ids; -1 where an id is not in the catalog."""
        ids = [str(i) for i in item_ids]
        if len(ids) <= 64:  # a shopper's history: per-id hash lookups beat building an Index (0.2 ms)
            index = self._index
            return np.array([index.get_loc(i) if i in index else -1 for i in ids], np.int64)
        return self._index.get_indexer(pd.Index(ids))

    def texts(self, template: TextTemplate | None = None) -> list[str]:
        return (template or TextTemplate()).render(self.frame)

    def leaf_categories(self) -> np.ndarray:
        return self.frame["category"].fillna("").str.split(CATEGORY_SEPARATOR).str[-1].to_numpy(
            dtype=object
        )

    def subset(self, positions: np.ndarray) -> ItemCatalog:
        return ItemCatalog(self.frame.iloc[np.asarray(positions)])

    def id_sort_key(self) -> np.ndarray:
        """Rank of each item id in ascending id order: numeric ids as numbers, others as strings."""
        ids = self.frame["item_id"]
        numeric = pd.to_numeric(ids, errors="coerce")
        if numeric.notna().all():
            order = np.argsort(numeric.to_numpy(), kind="stable")
        else:
            order = np.argsort(ids.to_numpy(dtype=str), kind="stable")
        rank = np.empty(len(ids), dtype=np.int64)
        rank[order] = np.arange(len(ids))
        return rank
