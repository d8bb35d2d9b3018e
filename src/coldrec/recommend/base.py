"""The one interface every recommender follows, for evaluation and for serving alike."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np

from coldrec.data.catalog import ItemCatalog
from coldrec.data.context import UserContext
from coldrec.data.interactions import InteractionLog
from coldrec.data.profile import UserProfile


class Recommender(ABC):
    """Scores every catalog item for a batch of users.

    `fit(log, catalog, profiles, now)` learns from past events only; `score(contexts)`
    returns a float32 matrix (users x catalog items), higher is better; `recommend`
    turns it into top-n lists with exclusions. Subclasses set `name` and may list a
    small `param_grid` (constructor keyword sets) that evaluation tunes on validation.
    """

    name: str = "recommender"
    param_grid: Sequence[dict[str, Any]] = ({},)

    catalog: ItemCatalog
    now: int

    def fit(
        self,
        log: InteractionLog,
        catalog: ItemCatalog,
        profiles: dict[str, UserProfile] | None = None,
        now: int | None = None,
    ) -> Recommender:
        self.catalog = catalog
        self.now = int(now if now is not None else (log.time.max() if len(log) else 0))
        self._fit(log, catalog, profiles or {})
        return self

    @abstractmethod
    def _fit(self, log: InteractionLog, catalog: ItemCatalog, profiles: dict[str, UserProfile]) -> None: ...

    @abstractmethod
    def score(self, contexts: Sequence[UserContext]) -> np.ndarray: ...

    def recommend(
        self,
        contexts: Sequence[UserContext],
        n: int = 10,
        exclude: Sequence[np.ndarray] | None = None,
        tie_break: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-n item positions and scores per user, after `arrange`; excluded items never appear."""
        from coldrec.retrieve.ranking import top_n

        scores = self.score(contexts)
        top, _ = top_n(scores, n, exclude=exclude, tie_break=tie_break)
        top = self.arrange(top, scores, exclude)
        valid = top >= 0
        top_scores = np.where(valid, np.take_along_axis(scores, np.maximum(top, 0), axis=1), np.float32(-np.inf))
        return top, top_scores.astype(np.float32)

    def arrange(self, top: np.ndarray, scores: np.ndarray, exclude: Sequence[np.ndarray] | None = None) -> np.ndarray:
        """Rules over the ranked lists (`top`, users x n, -1 padded) that a score cannot express, such as slots
        kept for some kind of item; never adds an excluded item. None by default."""
        return top

    def get_params(self) -> dict[str, Any]:
        """Constructor hyper-parameters: public attributes, not fitted state (trailing '_')."""
        return {
            k: v
            for k, v in vars(self).items()
            if not k.startswith("_") and not k.endswith("_") and k not in ("catalog", "now")
        }
