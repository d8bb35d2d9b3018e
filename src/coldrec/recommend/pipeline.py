"""`CandidatePipeline`: sources -> the union of their candidates per shopper -> one feature row per pair.

The same code runs for a batch of simulated shoppers (training, evaluation) and for one request. The
feature columns are the pipeline's `feature_names` (all of `FEATURES`, or those without timestamps for a
model fitted on an untimed log).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from coldrec.model.registry import register_class
from coldrec.recommend.features import FEATURE_NAMES, LEGACY_FEATURE_NAMES, Pairs, feature_matrix, features_named
from coldrec.recommend.items import ItemState
from coldrec.recommend.shoppers import ShopperBatch
from coldrec.recommend.signals import BehaviourSignals
from coldrec.recommend.sources import SOURCES, Candidates, CandidateSource


@register_class
class CandidatePipeline:
    def __init__(self, sources: Sequence[str], features: Sequence[str] = FEATURE_NAMES):
        unknown = [name for name in sources if name not in SOURCES]
        if unknown:
            raise ValueError(f"unknown candidate sources {unknown}; known: {', '.join(SOURCES)}")
        self.sources: list[CandidateSource] = [SOURCES[name]() for name in sources]
        features_named(tuple(features))  # unknown names fail here, not at the first request
        self.feature_names = tuple(features)

    def fit(self, state: ItemState, signals: BehaviourSignals) -> CandidatePipeline:
        self.state, self.signals = state, signals
        for source in self.sources:
            source.fit(state, signals)
        return self

    def source(self, name: str) -> CandidateSource | None:
        return next((s for s in self.sources if s.name == name), None)

    def pairs(self, shoppers: ShopperBatch, k: int, extra: Candidates | None = None) -> Pairs:
        """Every source's candidates (and `extra`), each (shopper, item) once, removed items left out;
        ordered by shopper row, then item position."""
        found = Candidates.concat([source.candidates(shoppers, k) for source in self.sources]
                                  + ([extra] if extra else []))
        n_items = len(self.state)
        keys = np.unique(found.rows * n_items + found.items)
        rows, items = keys // n_items, keys % n_items
        keep = ~self.state.removed[items]
        return Pairs(rows[keep], items[keep], shoppers, self.state, self.signals)

    def features_of(self, pairs: Pairs) -> np.ndarray:
        return feature_matrix(pairs, features_named(getattr(self, "feature_names", LEGACY_FEATURE_NAMES)))
