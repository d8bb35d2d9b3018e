"""The candidate-source interface: each source proposes up to k items per shopper of a batch."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, NamedTuple

import numpy as np

from coldrec.model.registry import register_class
from coldrec.recommend.items import ItemState
from coldrec.recommend.shoppers import ShopperBatch
from coldrec.recommend.signals import BehaviourSignals


class Candidates(NamedTuple):
    """(shopper row, item position, the source's own score) triples."""

    rows: np.ndarray
    items: np.ndarray
    scores: np.ndarray

    @classmethod
    def empty(cls) -> Candidates:
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))

    @classmethod
    def concat(cls, parts: list[Candidates]) -> Candidates:
        parts = [p for p in parts if len(p.rows)]
        if not parts:
            return cls.empty()
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in cls._fields))


class CandidateSource(ABC):
    """`fit(state, signals)` once (and again after the model's items change: sources rebuild what they
    derived when `state.version` moves); `candidates(shoppers, k)` for any batch, one shopper included."""

    name: str = "source"
    __transient__ = ("_cache",)

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        register_class(cls)

    def fit(self, state: ItemState, signals: BehaviourSignals) -> CandidateSource:
        self.state, self.signals = state, signals
        self._cache: tuple[tuple[int, int, int, int], Any] | None = None  # (what it was built on, what was built)
        return self

    @abstractmethod
    def candidates(self, shoppers: ShopperBatch, k: int) -> Candidates: ...

    def _derived(self, build):
        """`build()`'s result, rebuilt only when the items or the signals changed."""
        key = (self.state.version, len(self.state), id(self.signals), id(self.signals.pop))
        cache = getattr(self, "_cache", None)
        if cache is None or cache[0] != key:
            cache = self._cache = (key, build())
        return cache[1]


def top_positive(values: np.ndarray, k: int, among: np.ndarray | None = None) -> np.ndarray:
    """Up to k positions of the largest values (unordered), those above 0 only; mapped through `among` if given."""
    picked = np.argpartition(-values, k - 1)[:k] if len(values) > k else np.arange(len(values))
    picked = picked[values[picked] > 0]
    return picked if among is None else among[picked]


def top_per_row(matrix, k: int) -> Candidates:
    """Candidates from a sparse (shoppers x items) score matrix: each row's up to k largest positive entries."""
    lists, values = [], []
    for row in range(matrix.shape[0]):
        data = matrix.data[matrix.indptr[row] : matrix.indptr[row + 1]]
        picked = top_positive(data, k)
        lists.append(matrix.indices[matrix.indptr[row] : matrix.indptr[row + 1]][picked])
        values.append(data[picked])
    return per_row(lists, values)


def per_row(lists: list[np.ndarray], values: list[np.ndarray] | None = None) -> Candidates:
    """Candidates from one item list per shopper row (and their scores, 0 when not given)."""
    lengths = [len(items) for items in lists]
    if not sum(lengths):
        return Candidates.empty()
    rows = np.repeat(np.arange(len(lists)), lengths)
    items = np.concatenate([np.asarray(items, np.int64) for items in lists])
    scores = np.concatenate([np.asarray(v, np.float32) for v in values]) if values else np.zeros(len(items), np.float32)
    return Candidates(rows, items, scores)
