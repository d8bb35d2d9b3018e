"""The one interface every recommender follows, for evaluation and for serving alike.

Evaluation calls `fit` and `recommend` (a batch of shoppers); a server calls `rank` (one shopper,
with an allowed-items mask), `explain`, `similar_items`, `add_items` / `remove_items`. Every model
inherits working defaults for the serving part: a model that learns from behaviour only lists a new
item in its catalog and never ranks it until a refit.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Self

import numpy as np
import pandas as pd

from coldrec.data.catalog import ItemCatalog
from coldrec.data.context import UserContext
from coldrec.data.interactions import InteractionLog
from coldrec.data.profile import UserProfile
from coldrec.model.registry import register_class

#: text -> vectors in the model's space (for stated interests and queries); a server passes a cached one
EncodeTexts = Callable[[list[str]], np.ndarray]


@dataclass
class Ranked:
    """One shopper's ranked items (catalog positions, best first), their scores, and the evidence the
    model kept to explain them (model-specific rows, aligned with `items`; None when it keeps none)."""

    items: np.ndarray
    scores: np.ndarray
    evidence: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.items)

    def take(self, rows) -> Ranked:
        return Ranked(self.items[rows], self.scores[rows], None if self.evidence is None else self.evidence[rows])


@dataclass
class Explanation:
    """Why one item is listed: each kind of evidence's contribution to its score (e.g. "history", "stated",
    "popularity", "newness"), the shopper's known item it is closest to (-1: none), the stated interest or
    query it matches best (None: none), and whether nobody has bought it yet."""

    contributions: dict[str, float] = field(default_factory=dict)
    closest_known: int = -1
    closest_interest: str | None = None
    is_new: bool = False


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

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # every model can be written to a model directory as data (`coldrec.model`)
        super().__init_subclass__(**kwargs)
        register_class(cls)

    def fit(
        self,
        log: InteractionLog,
        catalog: ItemCatalog,
        profiles: dict[str, UserProfile] | None = None,
        now: int | None = None,
    ) -> Self:
        self.catalog = catalog
        self.now = int(now if now is not None else (log.time.max() if len(log) else 0))
        self.fitted_items_ = len(catalog)
        self.removed_ = np.zeros(len(catalog), bool)
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
        top, _ = top_n(scores, max(n, self.list_pool(n)), exclude=exclude, tie_break=tie_break)
        top = self.arrange(top, scores, exclude, n=n, contexts=contexts)[:, :n]
        valid = top >= 0
        top_scores = np.where(valid, np.take_along_axis(scores, np.maximum(top, 0), axis=1), np.float32(-np.inf))
        return top, top_scores.astype(np.float32)

    def list_pool(self, n: int) -> int:
        """How many of the best-scored items `arrange` chooses a list of n from (n: it only reorders). A list
        rule that brings up items from below the top n (diversity) asks for more."""
        return n

    def arrange(self, top: np.ndarray, scores: np.ndarray, exclude: Sequence[np.ndarray] | None = None,
                n: int | None = None, contexts: Sequence[UserContext] | None = None) -> np.ndarray:
        """Rules over the ranked lists that a score cannot express, such as slots kept for some kind of item or
        diversity: the lists (users x at most n, -1 padded) chosen from `top` (users x `list_pool(n)`, best
        first, -1 padded); never adds an excluded item. `contexts`: the shoppers the lists are for, where a rule
        depends on what is known of them. By default the first n."""
        return top if n is None else top[:, :n]

    # ------------------------------------------------------------------ serving
    @property
    def item_vectors(self) -> np.ndarray | None:
        """Each position's text vector in the model's space; None for a model that reads no item text."""
        return None

    @property
    def item_index(self) -> Any:
        """The vector index over `item_vectors` (a `coldrec.retrieve.index.VectorIndex`), or None."""
        return None

    @property
    def reduces_vectors(self) -> bool:
        """Is the model's text space a reduction of the encoder's (so its vectors are not the encoder's own)?"""
        return False

    def to_model_space(self, vectors: np.ndarray) -> np.ndarray:
        """Encoder vectors in the model's text space (unchanged by default)."""
        return vectors

    @property
    def removed(self) -> np.ndarray:
        """Mask of removed items, one entry per catalog position."""
        return self.removed_

    def rank(
        self,
        context: UserContext,
        n: int | None = None,
        allowed: np.ndarray | None = None,
        encode_texts: EncodeTexts | None = None,
    ) -> Ranked:
        """One shopper's items that `allowed` admits (a mask over positions; removed items never), best first
        (ties: lower position first), at most n (None: every item the model would rank).

        Default: `score` over the fitted items; items added since the fit are never ranked."""
        fitted = self.fitted_items_
        known = np.asarray(context.items) < fitted
        context = replace(context, items=context.items[known], times=context.times[known],
                          events=context.events[known])
        scores = np.full(len(self.catalog), -np.inf, np.float32)
        scores[:fitted] = self.score([context])[0]
        keep = ~self.removed & np.isfinite(scores)
        if allowed is not None:
            keep &= allowed
        items = np.flatnonzero(keep)
        order = np.lexsort((items, -scores[items]))[: len(items) if n is None else n]
        return Ranked(items[order], scores[items[order]])

    def arrange_ranked(self, ranked: Ranked, n: int, diversity: float | None = None,
                       context: UserContext | None = None) -> tuple[Ranked, np.ndarray]:
        """The served top n of a ranked list, after the model's own list rules, and a mask of the items a rule
        (not their score) put there. `diversity`: this request's strength, where the model diversifies (None:
        the model's own); `context`: the shopper it is for (as `arrange`'s). Default: the first n."""
        top = ranked.take(slice(0, n))
        return top, np.zeros(len(top), bool)

    def explain(self, context: UserContext, ranked: Ranked,
                encode_texts: EncodeTexts | None = None) -> list[Explanation]:
        """One `Explanation` per ranked item. Default: the whole score is history when the shopper has known
        items (the most recent one named), popularity otherwise."""
        kind = "history" if len(context.items) else "popularity"
        last = int(context.items[-1]) if len(context.items) else -1
        return [Explanation({kind: float(s)}, closest_known=last) for s in ranked.scores]

    def similar_items(self, position: int, n: int = 10, allowed: np.ndarray | None = None) -> Ranked:
        """Items to show next to one item: by default, what the model ranks for a shopper who just viewed it."""
        from coldrec.data.interactions import EventType

        mask = np.ones(len(self.catalog), bool) if allowed is None else allowed.copy()
        mask[position] = False
        context = UserContext(items=np.array([position]), events=np.array([EventType.VIEW], np.int8))
        return self.rank(context, n, mask)

    def add_items(self, items: ItemCatalog | pd.DataFrame, vectors: np.ndarray | None = None) -> np.ndarray:
        """Add new items, or update existing ids in place; no refit. Returns their positions.

        Default: they join the catalog (and updated ones change their fields) but are not ranked until a refit:
        a model that learns from behaviour only has no evidence for them."""
        frame = (items.frame if isinstance(items, ItemCatalog) else ItemCatalog(items).frame).drop_duplicates(
            "item_id", keep="last"
        )
        self.catalog, positions = merge_catalog(self.catalog, frame)
        grow = len(self.catalog) - len(self.removed_)
        self.removed_ = np.concatenate([self.removed_, np.zeros(grow, bool)])
        self.removed_[positions] = False
        return positions

    def reserve(self, count: int) -> None:  # noqa: B027 - an optional hook: by default there is nothing to do
        """Make room for `count` more items ahead of an `add_items` (a server does it before taking the lock
        readers wait for); it changes no answer. Nothing to do by default."""

    def remove_items(self, positions: Sequence[int]) -> None:
        """Never rank these items again (they keep their positions)."""
        self.removed_[np.asarray(positions, np.int64)] = True

    def get_params(self) -> dict[str, Any]:
        """Constructor hyper-parameters: public attributes, not fitted state (trailing '_')."""
        return {
            k: v
            for k, v in vars(self).items()
            if not k.startswith("_") and not k.endswith("_") and k not in ("catalog", "now")
        }

    def set_params(self, **params: Any) -> Recommender:
        unknown = set(params) - set(self.get_params())
        if unknown:
            raise ValueError(f"{self.name} has no parameters {sorted(unknown)}")
        for key, value in params.items():
            setattr(self, key, value)
        return self


def clone(model: Recommender) -> Recommender:
    """A new, unfitted model with `model`'s constructor parameters (scikit-learn's `clone`)."""
    import inspect

    accepted = inspect.signature(type(model)).parameters
    return type(model)(**{k: v for k, v in model.get_params().items() if k in accepted})


def merge_catalog(catalog: ItemCatalog, frame: pd.DataFrame) -> tuple[ItemCatalog, np.ndarray]:
    """`catalog` with `frame`'s rows: existing ids updated in place, new ids appended. Returns it and the rows'
    positions."""
    at = catalog.index_of(frame["item_id"])
    updated, fresh = frame[at >= 0], frame[at < 0]
    merged = catalog.frame.copy()
    for column_at, column in enumerate(merged.columns):  # a catalog's columns are distinct
        merged.iloc[at[at >= 0], column_at] = updated[column].to_numpy()
    positions = at.copy()
    positions[at < 0] = len(catalog) + np.arange(len(fresh))
    return ItemCatalog(pd.concat([merged, fresh], ignore_index=True)), positions
