"""`ClickModel`: the probability that a shopper clicks (and buys) a listed item, as a calibrated function of the
recommender's own score, so that bids on any items compete on one scale and a new product's probability comes
from what the recommender reads for it (its text) rather than from a click history it does not have.

It is Platt scaling with the score's context: a logistic regression on the score, its gap to the shopper's best
score, the log of its rank and the log of how much is known about the shopper (a ranker's scores are relative
within one shopper's list, so the gap and the rank say what the score alone cannot). Shoppers with nothing known
(a first visit, ranked by popularity) get a model of their own. Fitted on a held-out cut: each shopper's top
`depth` ranked items, labelled by whether the shopper bought them afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from coldrec.data.catalog import ItemCatalog
from coldrec.data.context import UserContext
from coldrec.data.interactions import InteractionLog
from coldrec.data.profile import UserProfile
from coldrec.data.split import Split, build_split
from coldrec.data.usersplit import build_user_split
from coldrec.model.registry import register_class
from coldrec.recommend.base import Ranked, Recommender

#: the ranks of a shopper's list whose items bid in an auction (and that the model is fitted on)
DEPTH = 200
KINDS = ("first_visit", "known")


@dataclass
class ScoredPairs:
    """(shopper, item) pairs as the click model reads them: one row each."""

    score: np.ndarray
    gap: np.ndarray  # the shopper's best score minus this one
    rank: np.ndarray  # 0 = the shopper's best
    known: np.ndarray  # distinct known items + stated interests + queries of the shopper
    first_visit: np.ndarray  # bool: nothing known about the shopper
    labels: np.ndarray | None = None  # 1: bought afterwards

    def __len__(self) -> int:
        return len(self.score)

    def take(self, rows) -> ScoredPairs:
        return ScoredPairs(self.score[rows], self.gap[rows], self.rank[rows], self.known[rows], self.first_visit[rows],
                           None if self.labels is None else self.labels[rows])

    @classmethod
    def concat(cls, parts: list[ScoredPairs]) -> ScoredPairs:
        if not parts:
            return ranked_pairs(Ranked(np.zeros(0, np.int64), np.zeros(0, np.float32)), UserContext())
        labels = None if any(p.labels is None for p in parts) else np.concatenate([p.labels for p in parts])
        def joined(name: str) -> np.ndarray:
            return np.concatenate([getattr(p, name) for p in parts])

        return cls(joined("score"), joined("gap"), joined("rank"), joined("known"), joined("first_visit"), labels)

    def features(self, kind: str) -> np.ndarray:
        columns = [self.score, np.log1p(self.rank)]
        if kind == "known":
            columns += [self.gap, np.log1p(self.known)]
        return np.column_stack(columns).astype(np.float64)


def known_count(context: UserContext) -> int:
    return len(np.unique(context.items)) + len(context.interests) + len(context.queries)


def ranked_pairs(ranked: Ranked, context: UserContext, targets: np.ndarray | None = None) -> ScoredPairs:
    """One shopper's ranked items as pairs (labelled when `targets`, the items bought afterwards, are given)."""
    n = len(ranked)
    scores = np.asarray(ranked.scores, np.float64)
    best = scores.max() if n else 0.0
    rank = np.empty(n)
    rank[np.argsort(-scores, kind="stable")] = np.arange(n)  # a list reordered by rules keeps its score ranks
    known = known_count(context)
    labels = None if targets is None else np.isin(ranked.items, targets).astype(np.int8)
    return ScoredPairs(scores, best - scores, rank, np.full(n, float(known)), np.full(n, known == 0), labels)


@register_class
class ClickModel:
    """p(click) for scored pairs: `fit(pairs)` on labelled pairs of a held-out cut, then `predict(pairs)`."""

    def __init__(self, regularization: float = 1.0, depth: int = DEPTH):
        self.regularization = float(regularization)
        self.depth = int(depth)
        self.coef_: dict[str, np.ndarray] = {}  # kind -> [intercept, weights...] on standardised features
        self.scale_: dict[str, np.ndarray] = {}  # kind -> [mean..., std...]
        self.base_rate_: dict[str, float] = {}
        self.outside_rate_: dict[str, float] = {}  # kind -> the rate of an item past a shopper's top `depth`
        #: the relevance floor and reserve price chosen with it on the same cut (`coldrec.evaluate.ads.choose_policy`,
        #: generated campaigns); None: not chosen
        self.floor_: float | None = None
        self.reserve_: float | None = None

    def fit(self, pairs: ScoredPairs, outside: dict[str, tuple[int, int]] | None = None) -> ClickModel:
        """`pairs`: labelled pairs of shoppers' top `depth`; `outside`: per kind, (items bought, pairs) past it."""
        from sklearn.linear_model import LogisticRegression

        if pairs.labels is None:
            raise ValueError("fitting a click model needs labelled pairs")
        for kind, (bought, count) in (outside or {}).items():
            self.outside_rate_[kind] = (bought + 0.5) / (count + 1.0)
        for kind in KINDS:
            rows = pairs.take(pairs.first_visit == (kind == "first_visit"))
            if not len(rows):
                continue
            labels = rows.labels.astype(np.int64)  # type: ignore[union-attr]
            self.base_rate_[kind] = float(labels.mean())
            if labels.min() == labels.max():  # all one class: the rate itself
                continue
            x = rows.features(kind)
            mean, std = x.mean(axis=0), np.maximum(x.std(axis=0), 1e-9)
            fitted = LogisticRegression(C=self.regularization, max_iter=1000).fit((x - mean) / std, labels)
            self.coef_[kind] = np.concatenate([fitted.intercept_, fitted.coef_[0]])
            self.scale_[kind] = np.concatenate([mean, std])
        if not self.base_rate_:
            raise ValueError("no pairs to fit a click model on")
        return self

    def predict(self, pairs: ScoredPairs) -> np.ndarray:
        out = np.zeros(len(pairs))
        for kind in KINDS:
            rows = np.flatnonzero(pairs.first_visit == (kind == "first_visit"))
            if not len(rows):
                continue
            if kind not in self.coef_:
                out[rows] = self.base_rate_.get(kind, np.mean(list(self.base_rate_.values())))
                continue
            x = pairs.take(rows).features(kind)
            width = x.shape[1]
            z = (x - self.scale_[kind][:width]) / self.scale_[kind][width:]
            out[rows] = 1.0 / (1.0 + np.exp(-(self.coef_[kind][0] + z @ self.coef_[kind][1:])))
        return out

    def outside(self, first_visit: bool) -> float:
        """p for an item past the shopper's top `depth` (or not ranked at all)."""
        kind = KINDS[0] if first_visit else KINDS[1]
        return float(self.outside_rate_.get(kind, 0.0))


@dataclass
class CutRankings:
    """A cut's shoppers as ranked for the click model: per segment, the labelled pairs of each shopper's top
    `depth`, the ranked lists; per kind, (items bought, pairs) past the depth."""

    pairs: dict[str, ScoredPairs]
    lists: dict[str, list[Ranked]]
    outside: dict[str, tuple[int, int]]
    depth: int = DEPTH

    def all_pairs(self) -> ScoredPairs:
        return ScoredPairs.concat(list(self.pairs.values()))

    def click_model(self) -> ClickModel:
        """The click model fitted on these rankings: every segment's pairs, and what lies past the depth."""
        return ClickModel(depth=self.depth).fit(self.all_pairs(), self.outside)


def split_pairs(model: Recommender, split: Split, depth: int = DEPTH,
                on_user: Callable[[], None] | None = None) -> CutRankings:
    """Every segment's shoppers ranked by `model` (fitted on the split's past) as the server ranks them (seen items
    excluded): their top `depth` as labelled pairs, the ranked lists, and what lies past the depth."""
    pairs, lists = {}, {}
    outside = {kind: [0, 0] for kind in KINDS}
    n = len(model.catalog)
    for name, segment in split.segments.items():
        parts, ranked_lists = [], []
        for context, exclude, targets in zip(segment.contexts, segment.exclude, segment.targets, strict=True):
            allowed = np.ones(n, bool)
            allowed[np.asarray(exclude, np.int64)] = False
            ranked = model.rank(context, None, allowed)
            ranked_lists.append(ranked)
            top = ranked.take(slice(0, depth))
            parts.append(ranked_pairs(top, context, targets))
            counts = outside[KINDS[0] if known_count(context) == 0 else KINDS[1]]
            counts[0] += int(np.isin(targets, top.items, invert=True).sum())
            counts[1] += int(allowed.sum()) - len(top)
            if on_user is not None:
                on_user()
        pairs[name], lists[name] = ScoredPairs.concat(parts), ranked_lists
    return CutRankings(pairs, lists, {kind: (bought, count) for kind, (bought, count) in outside.items() if count},
                       depth)


def fit_click_model(model: Recommender, split: Split, depth: int = DEPTH,
                    on_user: Callable[[], None] | None = None) -> ClickModel:
    """A click model for `model`, fitted on `split` (the model fitted on its past): what was bought afterwards
    among each shopper's top `depth`, and past it."""
    return split_pairs(model, split, depth, on_user).click_model()


def held_out_rankings(fresh_model: Callable[[], Recommender], log: InteractionLog, catalog: ItemCatalog,
                      profiles: dict[str, UserProfile] | None = None,
                      depth: int = DEPTH) -> tuple[Split, Recommender, CutRankings]:
    """For a model about to be fitted on all of `log`: the benchmark's time cut of it (the user split where events
    have no times; seen items excluded, as served), a fresh model like it (`fresh_model()`) fitted on its past, and
    the cut's future shoppers ranked by that model."""
    if log.timed:
        split = build_split(log, catalog, remove_seen=True, onboarding=False)
    else:
        split = build_user_split(log, catalog)
    model = fresh_model().fit(split.past, catalog, profiles, now=split.cut)
    return split, model, split_pairs(model, split, depth)


def held_out_click_model(fresh_model: Callable[[], Recommender], log: InteractionLog, catalog: ItemCatalog,
                         profiles: dict[str, UserProfile] | None = None, depth: int = DEPTH) -> ClickModel:
    """The click model of a model about to be fitted on all of `log`, fitted on `held_out_rankings`."""
    _, _, ranked = held_out_rankings(fresh_model, log, catalog, profiles, depth)
    return ranked.click_model()
