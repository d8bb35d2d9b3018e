"""The cold-start recommender: language-model vectors for new shoppers and new items,
fused with behaviour as it accumulates.

Candidate sources (`coldrec.recommend.sources`: text, ALS, item-kNN, category, popularity, new
arrivals, the shopper's own past, directed transitions, session-kNN) propose items; one feature function
(`coldrec.recommend.features`) describes every (shopper, candidate) pair; a LambdaRank model weighs
them. It is trained inside `fit`, on a time cut of the data it is given (`coldrec.recommend.training`:
simulated cold shoppers with 0, 1 and 3 known items, onboarding shoppers, warm shoppers), so how much
text or behaviour counts for an item with few interactions is learned from the shop's own past, never
set by hand. A shopper with nothing known gets one list for all: the ranker's or a popularity ordering,
whichever did best on inner-cut first visitors the ranker did not learn from (`coldrec.recommend.firstvisit`).
The behaviour signals are then refit on all the data. Scoring needs no refit: a new event
is a new context. A request is a batch of one through the same code.

On a log without timestamps (`InteractionLog.timed` False) the inner cut is a user split (held-out
users' sequences as the simulated cold shoppers), and what reads time is absent: the features of
`TIMED_FEATURES` and the sources of `TIMED_SOURCES` (30-day and decayed popularity, item age, the
request's gap, new arrivals), rather than computed from positions standing in for times.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from coldrec.data.catalog import ItemCatalog
from coldrec.data.context import UserContext
from coldrec.data.interactions import InteractionLog
from coldrec.data.split import Split
from coldrec.encode.shared import UsesEncoder, item_vectors, normalise
from coldrec.privacy.aggregates import (
    DEFAULT_CONTRIBUTION_BOUND,
    DEFAULT_DELTA,
    DEFAULT_PAIR_SHARE,
    PrivacyBudget,
    simulated_popularity,
)
from coldrec.rank.diversity import diversify, list_exposure, pool_size
from coldrec.rank.learned import LearnedFusion
from coldrec.recommend.base import EncodeTexts, Explanation, Ranked, Recommender, merge_catalog
from coldrec.recommend.explaining import explain_rows
from coldrec.recommend.exposure import exposure_contexts
from coldrec.recommend.features import FEATURE_NAMES, LEGACY_FEATURE_NAMES, POPULARITY, feature_names
from coldrec.recommend.firstvisit import (
    NOISE_DRAWS,
    POPULARITY_LISTS,
    RANKER,
    UNTIMED_POPULARITY_LISTS,
    choose_first_visit_list,
    hold_out_first_visitors,
    nothing_known,
    popularity_ranks,
)
from coldrec.recommend.items import ItemState
from coldrec.recommend.pipeline import CandidatePipeline
from coldrec.recommend.shoppers import describe_shoppers
from coldrec.recommend.signals import BehaviourSignals, popularity_from_release
from coldrec.recommend.sources import DEFAULT_SOURCES, SOURCE_FEATURES, TIMED_SOURCES, Candidates
from coldrec.recommend.training import KnownTexts, inner_split, stated_texts, training_examples
from coldrec.retrieve.index import VectorIndex

#: the sources without the sequential ones (directed transitions, session-kNN)
UNORDERED_SOURCES = tuple(source for source in DEFAULT_SOURCES if source not in SOURCE_FEATURES)
#: A request looking for the most popular allowed items reads the popularity order this many at a time.
POPULAR_CHUNK = 4096
#: Slots for new arrivals (`new_arrival_slots`) start after this many positions of a list.
SLOTS_AFTER = 10
NOT_A_CANDIDATE = np.float32(-1e9)
#: exposure (`exposure_`) counts lists of this length, scored up to this many shoppers (and scores) at a time
EXPOSURE_LIST = 10
EXPOSURE_BATCH = 256
EXPOSURE_SCORES = 20_000_000
FEATURES = FEATURE_NAMES


class ColdStartRecommender(UsesEncoder, Recommender):
    """Text + attributes + behaviour, fused by a ranker learned on the shop's own time cut."""

    name = "coldrec"
    param_grid: Sequence[dict[str, Any]] = (
        {"max_interests": 3, "decay": 0.7},
        {"max_interests": 1, "decay": 0.7},
        # more candidates won on amazon14-office's validation cut (0.0243 -> 0.0266), not on UCI's (0.2161 -> 0.2150)
        {"max_interests": 3, "decay": 0.7, "candidates_per_source": 100},
        # whether order (transitions, session-kNN) earns its place is the shop's validation cut's to say
        {"max_interests": 3, "decay": 0.7, "sources": UNORDERED_SOURCES},
    )
    __transient__ = ("_encoder", "_pop_order")
    diversity: float = 0.0  # models saved before it was a parameter: no diversity
    spread: float = 0.0  # models saved before it was a parameter: no spread (and no `exposure_`)
    exposure_: np.ndarray | None = None
    # models saved before differential privacy: exact aggregates
    epsilon: float | None = None
    contribution_bound: int = DEFAULT_CONTRIBUTION_BOUND
    delta: float = DEFAULT_DELTA
    pair_share: float = DEFAULT_PAIR_SHARE

    def __init__(
        self,
        max_interests: int = 3,
        decay: float = 0.7,
        candidates_per_source: int = 50,
        als_factors: int = 64,
        knn_neighbours: int | None = 200,
        pca_dim: int | None = None,
        max_training_users: int = 2000,
        max_negatives: int = 100,
        training_prefixes: tuple[int, ...] = (1, 3),
        ranker_leaves: int = 7,
        ranker_min_child_samples: int = 200,
        ranker_stopping_splits: int = 3,
        neighbours_for_new_items: int = 0,
        new_arrival_slots: int = 0,
        diversity: float = 0.0,
        spread: float = 0.0,
        transition_window: int = 3,
        session_neighbours: int = 100,
        sources: tuple[str, ...] = DEFAULT_SOURCES,
        epsilon: float | None = None,
        contribution_bound: int = DEFAULT_CONTRIBUTION_BOUND,
        delta: float = DEFAULT_DELTA,
        pair_share: float = DEFAULT_PAIR_SHARE,
        random_state: int = 0,
        encoder=None,
    ):
        self.max_interests = max_interests
        self.decay = decay
        self.candidates_per_source = candidates_per_source
        self.als_factors = als_factors
        self.knn_neighbours = knn_neighbours
        self.pca_dim = pca_dim
        self.max_training_users = max_training_users
        self.max_negatives = max_negatives
        self.training_prefixes = tuple(training_prefixes)
        self.ranker_leaves = ranker_leaves
        self.ranker_min_child_samples = ranker_min_child_samples
        self.ranker_stopping_splits = ranker_stopping_splits
        self.neighbours_for_new_items = neighbours_for_new_items
        self.new_arrival_slots = new_arrival_slots
        self.diversity = diversity
        self.spread = spread
        self.transition_window = transition_window
        self.session_neighbours = session_neighbours
        self.sources = tuple(sources)
        self.epsilon = epsilon
        self.contribution_bound = contribution_bound
        self.delta = delta
        self.pair_share = pair_share
        self.random_state = random_state
        self._encoder = encoder

    # ------------------------------------------------------------------ fitting
    def _fit(self, log: InteractionLog, catalog: ItemCatalog, profiles) -> None:
        self._privacy_budget()  # bad settings fail before the work
        self._items = ItemState(catalog, self._text_vectors(catalog))
        sources = self.sources if log.timed else tuple(s for s in self.sources if s not in TIMED_SOURCES)
        switched_off = [f for source, names in SOURCE_FEATURES.items() if source not in sources for f in names]
        self._pipeline = CandidatePipeline(sources, feature_names(log.timed, leave_out=switched_off))
        inner = inner_split(log, catalog, onboarding=self._items.has_categories, prefixes=self.training_prefixes)
        learn, first_visitors = hold_out_first_visitors(inner)
        self._use_signals(self._behaviour(inner.past, catalog, inner.cut))
        examples = self._examples(learn, self.training_prefixes)
        self._fusion = self._fit_ranker(examples)
        self.first_visit_list_, self.first_visit_ndcg_ = choose_first_visit_list(
            self._first_visit_lists(inner, log.timed), first_visitors, inner.tie_break)
        if first_visitors is not None:  # the choice is made: the ranker learns from the held-out visitors too
            try:
                held_out = self._examples(replace(inner, segments={first_visitors.name: first_visitors}), ())
            except ValueError:  # none of them has a target among its candidates: nothing more to learn
                held_out = None
            if held_out is not None:
                features, labels, groups = (np.concatenate(parts) for parts in zip(examples, held_out, strict=True))
                self._fusion = self._fit_ranker((features, labels, groups))
        self._use_signals(self._behaviour(log, catalog, self.now))
        self.exposure_ = self._list_exposure(log)

    def _list_exposure(self, log: InteractionLog) -> np.ndarray:
        """How much of the lists a sample of the log's shoppers get each item takes (`coldrec.recommend.exposure`):
        the ranking's own lists, before any re-rank."""
        from coldrec.retrieve.ranking import top_n

        contexts = exposure_contexts(log, self.now, self.random_state)
        lists = []
        size = max(1, min(EXPOSURE_BATCH, EXPOSURE_SCORES // max(1, len(self._items))))  # scores held at once
        for start in range(0, len(contexts), size):
            batch = contexts[start : start + size]
            top, scores = top_n(self.score(batch), EXPOSURE_LIST, exclude=[context.items for context in batch])
            lists.append(np.where(scores > NOT_A_CANDIDATE, top, -1))
        return list_exposure(np.concatenate(lists) if lists else np.zeros((0, 0), np.int64), len(self._items))

    def _examples(self, inner: Split, prefixes: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        with threadpool_limits(1, "blas"):  # many small products: BLAS threads would only contend
            return training_examples(
                inner, self._featurizer(inner), len(self._items), prefixes=prefixes,
                max_users=self.max_training_users, max_negatives=self.max_negatives, random_state=self.random_state,
            )

    def _featurizer(self, inner: Split) -> _Featurizer:
        """`candidate_features` for `inner`'s shoppers, with their stated texts encoded beforehand: picklable (no
        encoder, no ranker), so partitions of the shoppers can be featurised by Ray workers."""
        texts = stated_texts(inner)
        vectors = self.encode_texts(texts) if texts else np.zeros((0, self._items.vectors.shape[1]), np.float32)
        model = copy.copy(self)
        model._encoder = None
        model.__dict__.pop("_fusion", None)
        return _Featurizer(model, KnownTexts(texts, vectors))

    def _fit_ranker(self, examples: tuple[np.ndarray, np.ndarray, np.ndarray]) -> LearnedFusion:
        return LearnedFusion(
            num_leaves=self.ranker_leaves, min_child_samples=self.ranker_min_child_samples,
            random_state=self.random_state, stopping_splits=self.ranker_stopping_splits,
        ).fit(*examples, list(self._pipeline.feature_names))

    def _first_visit_lists(self, inner: Split, timed: bool) -> dict[str, np.ndarray]:
        """What a shopper with nothing known could get, as scores over every position: the ranker's list, then
        each popularity ordering (ties in those: all-time popularity).

        Under differential privacy only the popularity orderings, so that the one list every first visitor sees
        is read off the release alone (the ranker is fitted on the raw log), each as `NOISE_DRAWS` draws of what
        the inner cut's release could give: the choice is then made by what a list keeps at this noise level,
        not by how one draw fell (on amazon14-office, single draws chose the ranker's, the decayed or the 30-day
        list, and its first visitors got 0.0015, 0.0034 or 0.0043 NDCG@10)."""
        names = POPULARITY_LISTS if timed else UNTIMED_POPULARITY_LISTS
        budget = self._privacy_budget()
        if budget is not None:
            draws = [popularity_from_release(popularity, timed) for popularity in simulated_popularity(
                inner.past, len(self._items), inner.cut if timed else None, budget, NOISE_DRAWS, self.random_state)]
            return {name: np.stack([popularity_ranks(draw[name], draw["pop"]) for draw in draws]) for name in names}
        lists = {RANKER: self.score([UserContext()], first_visit=RANKER)[0]}
        for name in names:
            values = self._first_visit_popularity(name)
            assert values is not None  # a popularity list's name, never the ranker's
            lists[name] = values
        return lists

    def _behaviour(self, log: InteractionLog, catalog: ItemCatalog, now: int) -> BehaviourSignals:
        signals = BehaviourSignals(log, catalog, now, self._items.category, als_factors=self.als_factors,
                                   knn_neighbours=self.knn_neighbours, transition_window=self.transition_window,
                                   session_neighbours=self.session_neighbours, random_state=self.random_state,
                                   privacy=self._privacy_budget())
        if self.neighbours_for_new_items:
            signals.borrow_for_new_items(self._items.vectors, self.neighbours_for_new_items)
        return signals

    def _privacy_budget(self) -> PrivacyBudget | None:
        return PrivacyBudget.of(self.epsilon, self.contribution_bound, self.delta, self.pair_share)

    def _use_signals(self, signals: BehaviourSignals) -> None:
        self._signals = signals
        self._pipeline.fit(self._items, signals)

    def _text_vectors(self, catalog: ItemCatalog) -> np.ndarray:
        vectors = item_vectors(self.encoder, catalog.texts())
        self._pca = None
        if self.pca_dim and self.pca_dim < vectors.shape[1]:
            from sklearn.decomposition import PCA

            self._pca = PCA(self.pca_dim, random_state=self.random_state).fit(vectors)
        return np.ascontiguousarray(self.to_model_space(vectors), dtype=np.float32)

    # ------------------------------------------------------------------ the model's text space
    @property
    def item_vectors(self) -> np.ndarray:
        """Each catalog position's text vector in the model's space (unit length)."""
        return self._items.vectors

    @property
    def item_index(self) -> VectorIndex:
        """The vector index over `item_vectors` (a server shares it with search when the spaces agree)."""
        return self._items.index

    @property
    def reduces_vectors(self) -> bool:
        """Is the model's text space a reduction of the encoder's (`pca_dim`)?"""
        return getattr(self, "_pca", None) is not None

    def to_model_space(self, vectors: np.ndarray) -> np.ndarray:
        """Encoder vectors in the model's space: PCA-reduced and re-normalised when a PCA is fitted."""
        pca = getattr(self, "_pca", None)
        if pca is None:
            return vectors
        return normalise(pca.transform(vectors).astype(np.float32))

    def encode_texts(self, texts: list[str], encoder=None) -> np.ndarray:
        """Stated interests or queries as vectors in the model's space."""
        encoded = np.asarray((encoder or self.encoder).encode(texts, show_progress=False), np.float32)
        return self.to_model_space(encoded)

    @property
    def signals(self) -> BehaviourSignals:
        """The behaviour evidence the model ranks with (read-only by convention: popularity, factors, co-buys)."""
        return self._signals

    def new_arrivals(self) -> np.ndarray:
        """The new-arrivals source's pool: listed items nobody has bought yet, the latest first."""
        source = self._pipeline.source("new_arrivals")
        return source.arrivals()[0] if source is not None else np.zeros(0, np.int64)  # type: ignore[attr-defined]

    @property
    def privacy_release(self) -> dict | None:
        """What the differentially private release of the published aggregates spent (epsilon, delta, the
        contribution bound, ...; `coldrec.privacy.aggregates.Release`), None when they are exact (epsilon off).
        The inner cut's release, which only the ranker's training saw, is not counted: see the README."""
        return getattr(self._signals, "privacy_release", None)

    def popularity(self) -> np.ndarray:
        """Each position's popularity (a share of the best seller's, log scale)."""
        return self._signals.pop

    def is_new(self, positions: np.ndarray) -> np.ndarray:
        """Has nobody bought these items yet?"""
        return self._signals.events[positions] == 0

    # ------------------------------------------------------------------ scoring
    def candidate_features(
        self, contexts: Sequence[UserContext], encode_texts: EncodeTexts | None = None, extra: Candidates | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(shopper row, item, feature row) for the union of every source's candidates (and `extra`)."""
        shoppers = describe_shoppers(contexts, self._items, self._signals, encode_texts or self.encode_texts,
                                     self.decay, self.max_interests)
        k = min(self.candidates_per_source, len(self._items))
        pairs = self._pipeline.pairs(shoppers, k, extra)
        return pairs.rows, pairs.items, self._pipeline.features_of(pairs)

    def score(self, contexts: Sequence[UserContext], first_visit: str | None = None) -> np.ndarray:
        """Scores over every position (`NOT_A_CANDIDATE` outside a shopper's candidates). A shopper with nothing
        known gets the first-visit list (`first_visit`, default the one chosen in fit)."""
        out = np.full((len(contexts), len(self._items)), NOT_A_CANDIDATE, np.float32)
        batch = max(1, min(256, 20_000_000 // max(1, self.max_interests * len(self._items))))
        for start in range(0, len(contexts), batch):
            with threadpool_limits(1, "blas"):
                users, items, features = self.candidate_features(contexts[start : start + batch])
            out[start + users, items] = self._fusion.predict(features)
        popularity = self._first_visit_popularity(first_visit)
        if popularity is not None:
            first = [row for row, context in enumerate(contexts) if nothing_known(context)]
            out[first] = np.where(self._items.removed, NOT_A_CANDIDATE, popularity)
        return out

    def _first_visit_popularity(self, first_visit: str | None = None) -> np.ndarray | None:
        """The popularity ordering a shopper with nothing known gets; None: the ranker's list."""
        name = str(first_visit or getattr(self, "first_visit_list_", RANKER))  # saved before the choice: ranker
        if name == RANKER:
            return None
        values = np.asarray(getattr(self._signals, name)[: len(self._items)], np.float32)
        if self.privacy_release is None:
            return values
        return popularity_ranks(values, self._signals.pop)

    def rank(
        self, context: UserContext, n: int | None = None, allowed: np.ndarray | None = None,
        encode_texts: EncodeTexts | None = None,
    ) -> Ranked:
        """One shopper through the batch code. With `allowed`, its most popular items join the candidates (in
        case the sources' tops hold too few of them); the ranked list holds only allowed items."""
        popularity = self._first_visit_popularity() if nothing_known(context) else None
        if popularity is not None:
            keep = ~self._items.removed & (True if allowed is None else allowed)
            candidates = np.flatnonzero(keep)
            order = candidates[np.lexsort((candidates, -self._signals.pop[candidates], -popularity[candidates]))][:n]
            return Ranked(order, popularity[order])
        extra = None
        if allowed is not None:
            popular = self._popular_among(allowed, max(n or 0, self.candidates_per_source))
            extra = Candidates(np.zeros(len(popular), np.int64), popular, np.zeros(len(popular), np.float32))
        _, items, features = self.candidate_features([context], encode_texts, extra)
        scores = self._fusion.predict(features, num_threads=1)
        keep = np.ones(len(items), bool) if allowed is None else allowed[items]
        order = np.flatnonzero(keep)[np.lexsort((items[keep], -scores[keep]))][:n]
        return Ranked(items[order], scores[order], features[order])

    def _popular_among(self, allowed: np.ndarray, k: int) -> np.ndarray:
        """The k most popular allowed (and not removed) items: the first of the popularity order that pass, read
        in chunks (a request reads a few thousand positions, not the catalog; ties: lower position first)."""
        order = self._popularity_order()
        found, count = [], 0
        for start in range(0, len(order), POPULAR_CHUNK):
            part = order[start : start + POPULAR_CHUNK]
            part = part[allowed[part] & ~self._items.removed[part]]
            found.append(part)
            count += len(part)
            if count >= k:
                break
        return np.concatenate(found)[:k] if found else np.zeros(0, np.int64)

    def _popularity_order(self) -> np.ndarray:
        """Every position, most popular first: sorted once per catalog state, not per request."""
        key = (id(self._signals), len(self._items), self._items.version)
        cached = self.__dict__.get("_pop_order")
        if cached is None or cached[0] != key:
            pop = self._signals.pop[: len(self._items)]
            cached = self._pop_order = (key, np.argsort(-pop, kind="stable"))
        return cached[1]

    def explain(self, context: UserContext, ranked: Ranked,
                encode_texts: EncodeTexts | None = None) -> list[Explanation]:
        """Each item's feature contributions (LightGBM's SHAP values on its feature row), summed per group."""
        if not len(ranked):
            return []
        if nothing_known(context) and self._first_visit_popularity() is not None:
            return [Explanation({POPULARITY: float(score)}, is_new=bool(new))
                    for score, new in zip(ranked.scores, self.is_new(ranked.items), strict=True)]
        evidence = ranked.evidence
        if evidence is None:
            evidence = self._evidence(context, ranked, encode_texts)
        contributions = self._in_feature_layout(self._fusion.contributions(evidence))
        return explain_rows(self._items, self._signals, context, ranked.items, contributions,
                            encode_texts or self.encode_texts)

    def _in_feature_layout(self, values: np.ndarray) -> np.ndarray:
        """Per-feature columns of the model's features as columns of `FEATURE_NAMES` (0 for a feature the model
        does not use, e.g. the time-derived ones on an untimed log), the layout `explain_rows` reads."""
        names = tuple(getattr(self._pipeline, "feature_names", LEGACY_FEATURE_NAMES))
        if names == FEATURE_NAMES:
            return values
        out = np.zeros((len(values), len(FEATURE_NAMES)), values.dtype)
        out[:, [FEATURE_NAMES.index(name) for name in names]] = values
        return out

    def _evidence(self, context: UserContext, ranked: Ranked, encode_texts: EncodeTexts | None) -> np.ndarray:
        """The feature rows of `ranked`'s items (for a list ranked without them), aligned with its items."""
        extra = Candidates(np.zeros(len(ranked), np.int64), ranked.items, np.zeros(len(ranked), np.float32))
        _, items, features = self.candidate_features([context], encode_texts, extra)
        return features[np.searchsorted(items, ranked.items)]

    def similar_items(self, position: int, n: int = 10, allowed: np.ndarray | None = None) -> Ranked:
        """The nearest items by text vector (inner product), the item itself left out."""
        index, total = self._items.index, len(self._items.index)
        query = np.ascontiguousarray(self._items.vectors[[position]], np.float32)
        k = min(total, n + 11)
        while True:
            scores, found = index.search(query, k)
            scores, found = scores[0], found[0]
            keep = (found >= 0) & (found != position)
            keep[keep] &= ~self._items.removed[found[keep]] & (True if allowed is None else allowed[found[keep]])
            if keep.sum() >= n or k >= total:
                return Ranked(found[keep][:n], scores[keep][:n])
            k = min(total, 4 * k)

    def list_pool(self, n: int) -> int:
        return pool_size(n) if self._rearranges else n

    @property
    def _rearranges(self) -> bool:
        return self.diversity > 0 or self.spread > 0

    def arrange(self, top: np.ndarray, scores: np.ndarray, exclude: Sequence[np.ndarray] | None = None,
                n: int | None = None, contexts: Sequence[UserContext] | None = None) -> np.ndarray:
        """With `diversity` or `spread` > 0: each list re-ranked from its pool (`coldrec.rank.diversity`); spread
        leaves out first visitors (`contexts` with nothing known: one list for them all, so there is nothing to
        spread, and exposure would only push the best sellers down it). With
        `new_arrival_slots` = s: the s positions right after the first SLOTS_AFTER of each list go to the
        shopper's best-scored new arrivals not already listed (exposure that items nobody has bought yet cannot
        earn from behaviour); the first SLOTS_AFTER positions never change for that."""
        n = top.shape[1] if n is None else n
        if self._rearranges:
            spreads = [self._spread_for(context) for context in contexts] if contexts is not None else None
            top = self._diversified(top, scores, n, spreads)
        else:
            top = top[:, :n]
        pool = self.new_arrivals()
        if not self.new_arrival_slots or top.shape[1] <= SLOTS_AFTER or not len(pool):
            return top
        out = top.copy()
        for row in range(len(top)):
            values = scores[row, pool].astype(np.float32, copy=True)
            values[values <= NOT_A_CANDIDATE] = -np.inf
            if exclude is not None and len(exclude[row]):
                values[np.isin(pool, exclude[row])] = -np.inf
            out[row] = self._slotted(top[row], pool, values)
        return out

    def _spread_for(self, context: UserContext | None) -> float:
        return 0.0 if context is not None and nothing_known(context) else self.spread

    def _diversified(self, top: np.ndarray, scores: np.ndarray, n: int, spreads: Sequence[float] | None) -> np.ndarray:
        """Lists of n chosen from each row's pool (`top`, best first, -1 padded) by `diversify` (`spreads`: each
        row's spread, None: the model's); candidates only, then the rest of the pool in order where candidates are
        too few."""
        out = np.full((len(top), min(n, top.shape[1])), -1, np.int64)
        for row in range(len(top)):
            items = top[row][top[row] >= 0]
            values = scores[row, items]
            candidate = values > NOT_A_CANDIDATE
            spread = self.spread if spreads is None else spreads[row]
            chosen = items[candidate][self._diverse_order(items[candidate], values[candidate], n, self.diversity,
                                                          spread)]
            rest = items[~np.isin(items, chosen)]
            listed = np.concatenate([chosen, rest])[: out.shape[1]]
            out[row, : len(listed)] = listed
        return out

    def _diverse_order(self, items: np.ndarray, scores: np.ndarray, n: int, strength: float,
                       spread: float) -> np.ndarray:
        """`items` (best first) re-ranked for diversity at `strength` and `spread`: the indices into `items` of the
        chosen n, in order."""
        brands = np.where(self._items.has_brand[items], self._items.brand[items], -1)
        exposure = self._exposure_of(items) if spread > 0 else None
        return diversify(scores, self._items.vectors[items], n, strength, self._items.category[items], brands,
                         exposure, spread)

    def _exposure_of(self, items: np.ndarray) -> np.ndarray | None:
        """`exposure_` of `items`; 0 for items added since the fit (no list holds them yet)."""
        exposure = self.exposure_
        if exposure is None:
            return None
        out = np.zeros(len(items), np.float32)
        known = items < len(exposure)
        out[known] = exposure[items[known]]
        return out

    def arrange_ranked(self, ranked: Ranked, n: int, diversity: float | None = None,
                       context: UserContext | None = None) -> tuple[Ranked, np.ndarray]:
        """`arrange` on one ranked list (`diversity`: this request's strength, None: the model's; `context`: the
        shopper's, no spread for a first visit): the re-ranked top n from the first `pool_size(n)`; the slotted new
        arrivals come from the ranked items only."""
        strength = self.diversity if diversity is None else float(diversity)
        spread = self._spread_for(context)
        if (strength > 0 or spread > 0) and len(ranked) > 1:
            head = ranked.take(slice(0, pool_size(n)))
            first = self._diverse_order(head.items, head.scores, n, strength, spread)  # rows of the head
            rest = np.ones(len(ranked), bool)
            rest[first] = False  # a first visit's list is the whole catalog: no sort of it
            ranked = ranked.take(np.concatenate([first, np.flatnonzero(rest)]))
        pool = self.new_arrivals()
        top = ranked.take(slice(0, n))
        if not self.new_arrival_slots or len(top) <= SLOTS_AFTER or not len(pool):
            return top, np.zeros(len(top), bool)
        values = np.full(len(pool), -np.inf, np.float32)
        slot_of = np.full(len(self._items), -1, np.int64)
        slot_of[pool] = np.arange(len(pool))
        listed = slot_of[ranked.items] >= 0
        values[slot_of[ranked.items[listed]]] = ranked.scores[listed]
        arranged = self._slotted(top.items, pool, values)
        row_of = np.full(len(self._items), -1, np.int64)
        row_of[ranked.items] = np.arange(len(ranked))
        chosen_rows = ranked.take(row_of[arranged])
        return chosen_rows, ~np.isin(chosen_rows.items, top.items)

    def _slotted(self, top: np.ndarray, pool: np.ndarray, values: np.ndarray) -> np.ndarray:
        """One list (-1 padded) with the `new_arrival_slots` after its first SLOTS_AFTER given to the pool items
        of the highest finite `values` not in its head (ties: pool order)."""
        values = values.copy()
        values[np.isin(pool, top[:SLOTS_AFTER])] = -np.inf
        order = np.argsort(-values, kind="stable")[: self.new_arrival_slots]
        chosen = pool[order[np.isfinite(values[order])]]
        if not len(chosen):
            return top
        rest = top[SLOTS_AFTER:]
        rest = rest[(rest >= 0) & ~np.isin(rest, chosen)]
        tail = np.concatenate([chosen, rest])[: len(top) - SLOTS_AFTER]
        out = top.copy()
        out[SLOTS_AFTER : SLOTS_AFTER + len(tail)] = tail
        return out

    # ------------------------------------------------------------------ live catalog
    def add_items(self, items: ItemCatalog | pd.DataFrame, vectors: np.ndarray | None = None) -> np.ndarray:
        """Add new items, or re-encode existing ids in place; no refit. Returns their positions.

        A new item gets its text vector, category and brand codes (unseen ones get new codes) and no
        behaviour: zero popularity and events, no age, zero ALS factors, an empty item-kNN row and column.
        It is scored by text and attributes at once; scores of the existing items for existing contexts do
        not change. `vectors`: the rows' vectors in the model's space, encoded beforehand (a server encodes
        outside its lock)."""
        frame = (items.frame if isinstance(items, ItemCatalog) else ItemCatalog(items).frame).drop_duplicates(
            "item_id", keep="last"
        )
        if vectors is not None and len(vectors) != len(frame):
            raise ValueError(f"{len(frame)} distinct items but {len(vectors)} vectors")
        rows = ItemCatalog(frame)
        vectors = self.encode_texts(rows.texts()) if vectors is None else np.asarray(vectors, np.float32)
        catalog, positions = merge_catalog(self.catalog, frame)
        self._signals.grow(len(catalog) - len(self.catalog))
        self._items.put(positions, rows, vectors)
        self.catalog = catalog
        return positions

    def reserve(self, count: int) -> None:
        self._items.reserve(count)
        self._signals.reserve(count)

    def remove_items(self, positions: Sequence[int]) -> None:
        """Never rank these items again (they keep their positions, vectors and factors)."""
        self._items.remove(np.asarray(positions, np.int64))

    @property
    def removed(self) -> np.ndarray:
        return self._items.removed

    def explain_importance(self) -> dict[str, Any]:
        """Share of the ranker's total gain per feature: which sources the shop's data trusts."""
        return self._fusion.importance()


class _Featurizer:
    def __init__(self, model: ColdStartRecommender, texts: KnownTexts):
        self.model, self.texts = model, texts

    def __call__(self, contexts: Sequence[UserContext]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.model.candidate_features(contexts, self.texts)


class FreshColdStartRecommender(ColdStartRecommender):
    """coldrec with positions 11 on of each list partly kept for new arrivals (`new_arrival_slots`): the same
    top 10, more exposure for items nobody has bought yet. How many slots is chosen on validation by Recall@20
    over every segment, cold items included (each segment counts once)."""

    name = "coldrec-fresh"
    param_grid = tuple(
        {"max_interests": 3, "decay": 0.7, "candidates_per_source": k, "new_arrival_slots": s}
        for k in (50, 100) for s in (2, 4, 6)
    )
    tuning_metric = "recall@20"
    tune_on_cold_items = True


def _without(*names: str) -> tuple[str, ...]:
    return tuple(source for source in DEFAULT_SOURCES if source not in names)


#: an ablation's grid: the model's own, less the points that choose the sources
_ABLATION_GRID = tuple(point for point in ColdStartRecommender.param_grid if "sources" not in point)


class WithoutTransitions(ColdStartRecommender):
    """Ablation: coldrec without the directed-transitions source and feature."""

    name = "coldrec-notransitions"
    param_grid = _ABLATION_GRID

    def __init__(self, sources: tuple[str, ...] = _without("transitions"), **kwargs):
        super().__init__(sources=sources, **kwargs)


class WithoutSessionKNN(ColdStartRecommender):
    """Ablation: coldrec without the session-kNN source and feature."""

    name = "coldrec-nosknn"
    param_grid = _ABLATION_GRID

    def __init__(self, sources: tuple[str, ...] = _without("session_knn"), **kwargs):
        super().__init__(sources=sources, **kwargs)


class WithoutSequentialEvidence(ColdStartRecommender):
    """Ablation: coldrec with unordered behaviour only (neither transitions nor session-kNN): the model before
    the sequential evidence, with the same first-visit choice."""

    name = "coldrec-unordered"
    param_grid = _ABLATION_GRID

    def __init__(self, sources: tuple[str, ...] = UNORDERED_SOURCES, **kwargs):
        super().__init__(sources=sources, **kwargs)
