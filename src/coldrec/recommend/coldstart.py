"""The cold-start recommender: language-model vectors for new shoppers and new items,
fused with behaviour as it accumulates.

Sources of evidence, each cheap to compute for a batch of shoppers:
- text: the shopper's interest vectors (clustered history, see `coldrec.profile`) and
  stated interests / queries against the encoder's item vectors (candidates from FAISS);
- attributes: how much of the shopper's history (or stated interest) shares the item's
  category and brand;
- behaviour: implicit ALS folded in from the known items, item-kNN co-occurrence, and
  whether the shopper already bought the item (repeat purchases);
- popularity overall and in the last 30 days, the item's interaction count and age.

Candidates are the union of each source's top items; a LambdaRank model weighs the
sources per (shopper, item). It is trained inside `fit`, on a time cut of the data it
is given (the benchmark rule applied to the fit data: simulated cold shoppers with 0, 1
and 3 known items, onboarding shoppers, warm shoppers), so how much text or behaviour
counts for an item with few interactions is learned from the shop's own past, never set
by hand. The sources are then refit on all the data. Scoring needs no refit: a new event
is a new context.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from coldrec.data.catalog import ItemCatalog
from coldrec.data.context import UserContext
from coldrec.data.interactions import InteractionLog
from coldrec.data.split import build_split, future_prefix_segment
from coldrec.encode.shared import UsesEncoder, item_vectors, normalise
from coldrec.profile import build_interest_profiles
from coldrec.profile.interests import item_weights
from coldrec.rank.learned import LearnedFusion
from coldrec.recommend.base import Recommender
from coldrec.recommend.rows import append_rows
from coldrec.recommend.baselines.als import ALSRecommender
from coldrec.recommend.baselines.itemknn import ItemKNNRecommender

if TYPE_CHECKING:
    import pandas as pd

DAY = 86_400
#: The new-arrivals source looks at most this many of the latest items nobody has bought yet.
NEW_ARRIVALS_POOL = 2048
#: Slots for new arrivals (`new_arrival_slots`) start after this many positions of a list.
SLOTS_AFTER = 10
NOT_A_CANDIDATE = np.float32(-1e9)
FEATURES = (
    "text_interest_max",
    "text_interest_weight",
    "text_mean",
    "text_last",
    "text_stated",
    "category_share",
    "brand_share",
    "als",
    "itemknn",
    "seen_weight",
    "log_pop",
    "log_pop30",
    "log_item_events",
    "borrowed_pop",
    "item_age_days",
    "decayed_pop",
    "category_pop_share",
    "log_user_items",
    "request_gap_days",
    "has_stated",
)


class _Signals:
    """The behaviour-side sources fitted on one log (the inner cut, then everything)."""

    def __init__(self, log: InteractionLog, catalog: ItemCatalog, now: int, owner: ColdStartRecommender):
        n = len(catalog)
        self.now = now
        # scale-free (share of the most popular item), so a ranker trained on a shorter
        # past applies unchanged to the whole past
        self.pop = _share_of_max(np.log1p(log.distinct_users_per_item(n)))
        recent = (log.time > now - 30 * DAY) & (log.time <= now)
        self.pop30 = _share_of_max(np.log1p(log.select(recent).distinct_users_per_item(n)))
        self.events = np.log1p(np.bincount(log.item, minlength=n).astype(np.float32))
        first = np.full(n, np.inf)
        np.minimum.at(first, log.item, log.time.astype(np.float64))
        self.age_days = np.where(np.isfinite(first), (now - first) / DAY, np.nan).astype(np.float32)
        # popularity with a 90-day half-life: what sells now, smoother than a 30-day window
        decay = np.exp2(-(now - log.time) / (90 * DAY)).astype(np.float32)
        self.decayed_pop = _share_of_max(np.log1p(np.bincount(log.item, weights=decay, minlength=n)))
        by_category = np.bincount(owner._category, weights=np.expm1(self.pop), minlength=int(owner._category.max()) + 1)
        self.category_pop_share = (np.expm1(self.pop) / np.maximum(by_category[owner._category], 1e-9)).astype(np.float32)
        self.als = ALSRecommender(factors=owner.als_factors, regularization=0.1, alpha=10.0,
                                  random_state=owner.random_state).fit(log, catalog, now=now)
        self.knn = ItemKNNRecommender(neighbours=owner.knn_neighbours, shrink=10.0).fit(log, catalog, now=now)
        self.borrowed_pop = self.pop.copy()
        if owner.neighbours_for_new_items:
            self._borrow_for_new_items(owner._item_vectors, owner.neighbours_for_new_items)

    def _borrow_for_new_items(self, vectors: np.ndarray, k: int) -> None:
        """Pseudo-behaviour for items nobody has bought yet, from their nearest established items.

        A new item's collaborative factors, co-occurrence rows and columns and popularity
        are the text-similarity-weighted mean of those of its k nearest established items
        (by the encoder's vectors), so "bought with X" evidence reaches a new variant of X
        the moment it is listed. `log_item_events` stays 0: the ranker still knows it is new.
        """
        established = np.flatnonzero(self.events > 0)
        new = np.flatnonzero(self.events == 0)
        if not len(new) or not len(established):
            return
        k = min(k, len(established))
        similarity = vectors[new] @ vectors[established].T
        top = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
        weights = np.clip(np.take_along_axis(similarity, top, axis=1), 0, None)
        weights /= np.maximum(weights.sum(axis=1, keepdims=True), 1e-12)
        n = len(self.events)
        # borrow[i, j]: how much item i takes from item j (identity for established items)
        borrow = sp.csr_matrix(
            (
                np.concatenate([np.ones(len(established), np.float32), weights.ravel().astype(np.float32)]),
                (np.concatenate([established, np.repeat(new, k)]), np.concatenate([established, established[top].ravel()])),
            ),
            shape=(n, n),
        )
        factors = self.als._model.item_factors
        factors[new] = borrow[new] @ factors
        self.als._model._YtY = None
        similarity_matrix = self.knn._similarity  # (known item, target item)
        self.knn._similarity = sp.csr_matrix(borrow @ similarity_matrix @ borrow.T, dtype=np.float32)
        self.borrowed_pop = (borrow @ self.pop).astype(np.float32)


class ColdStartRecommender(UsesEncoder, Recommender):
    """Text + attributes + behaviour, fused by a ranker learned on the shop's own time cut."""

    name = "coldrec"
    param_grid = (
        {"max_interests": 3, "decay": 0.7},
        {"max_interests": 1, "decay": 0.7},
        # more candidates won on amazon14-office's validation cut (0.0243 -> 0.0266), not on UCI's (0.2161 -> 0.2150)
        {"max_interests": 3, "decay": 0.7, "candidates_per_source": 100},
    )

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
        self.random_state = random_state
        self._encoder = encoder

    # ------------------------------------------------------------------ fitting
    def _fit(self, log: InteractionLog, catalog: ItemCatalog, profiles) -> None:
        self._item_vectors = self._text_vectors(catalog)
        leaves = np.char.lower(catalog.leaf_categories().astype(str))
        self._category_names, self._category = np.unique(leaves, return_inverse=True)
        self._category_lookup = {name: code for code, name in enumerate(self._category_names) if name}
        brands = np.char.lower(catalog.frame["brand"].fillna("").to_numpy(dtype=str))
        _, self._brand = np.unique(brands, return_inverse=True)
        self._has_brand = brands != ""
        has_categories = bool((leaves != "").mean() > 0.5)

        inner = build_split(log, catalog, remove_seen=False, onboarding=has_categories)
        self._signals = _Signals(inner.past, catalog, inner.cut, self)
        self._arrivals_cache = None
        self._fusion = LearnedFusion(
            num_leaves=self.ranker_leaves, min_child_samples=self.ranker_min_child_samples, random_state=self.random_state,
            stopping_splits=self.ranker_stopping_splits,
        ).fit(*self._training_examples(inner, len(catalog)), list(FEATURES))
        self._signals = _Signals(log, catalog, self.now, self)
        self._arrivals_cache = None  # the inner cut's never-bought items are not the whole log's

    def _training_examples(self, inner, n_items: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Candidate rows, labels and group sizes from the inner cut's simulated shoppers."""
        rng = np.random.default_rng(self.random_state)
        segments = [s for name, s in inner.segments.items() if not name.startswith("cold k=") or name == "cold k=0"]
        # stating every future shopper's first category as onboarding was tried and lost on
        # validation (objective 0.0214 against 0.0250 without): only real onboarding users
        segments += [future_prefix_segment(inner, k) for k in self.training_prefixes]
        features, labels, groups = [], [], []
        for segment in segments:
            rows = np.arange(len(segment))
            if len(rows) > self.max_training_users:
                rows = np.sort(rng.choice(rows, self.max_training_users, replace=False))
            # 256 shoppers per batch of dense (shoppers x items) matrices; fewer on big catalogs
            size = max(1, min(256, 10_000_000 // max(1, n_items)))
            for start in range(0, len(rows), size):
                batch = rows[start : start + size]
                users, items, x = self._candidate_features([segment.contexts[r] for r in batch])
                is_target = np.zeros((len(batch), n_items), bool)
                for row, r in enumerate(batch):
                    is_target[row, segment.targets[r]] = True
                y = is_target[users, items]
                positive_users = np.unique(users[y])
                # groups without a positive teach nothing; negatives are sampled per shopper
                keep = np.isin(users, positive_users) & (y | (rng.random(len(y)) < self._negative_rate(users, y)))
                features.append(x[keep])
                labels.append(y[keep].astype(np.int32))
                groups.append(np.bincount(users[keep], minlength=len(batch))[positive_users])
        return np.concatenate(features), np.concatenate(labels), np.concatenate(groups)

    def _negative_rate(self, users: np.ndarray, is_target: np.ndarray) -> np.ndarray:
        negatives = np.bincount(users[~is_target], minlength=users.max(initial=0) + 1)
        return np.minimum(1.0, self.max_negatives / np.maximum(negatives, 1))[users]

    def _text_vectors(self, catalog: ItemCatalog) -> np.ndarray:
        vectors = item_vectors(self.encoder, catalog.texts())
        self._pca = None
        if self.pca_dim and self.pca_dim < vectors.shape[1]:
            from sklearn.decomposition import PCA

            self._pca = PCA(self.pca_dim, random_state=self.random_state).fit(vectors)
        return np.ascontiguousarray(self._reduced(vectors), dtype=np.float32)

    def _encode_texts(self, texts: list[str], encoder=None) -> np.ndarray:
        return self._reduced(np.asarray((encoder or self.encoder).encode(texts, show_progress=False), np.float32))

    def _reduced(self, vectors: np.ndarray) -> np.ndarray:
        """Encoder vectors in the model's space: PCA-reduced and re-normalised when a PCA is fitted."""
        if getattr(self, "_pca", None) is None:
            return vectors
        return normalise(self._pca.transform(vectors).astype(np.float32))

    # ------------------------------------------------------------------ scoring
    def _source_scores(self, contexts: Sequence[UserContext]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Dense (shoppers x items) matrices of every source for one batch, and each shopper's category shares."""
        n_items = len(self._item_vectors)
        profiles = build_interest_profiles(contexts, self._item_vectors, self._encode_texts, self.decay, self.max_interests)
        per_interest = np.einsum("umd,nd->umn", profiles.interests, self._item_vectors, optimize=True)
        best = np.argmax(per_interest, axis=1)
        text_max = np.take_along_axis(per_interest, best[:, None, :], axis=1)[:, 0, :]
        text_weight = np.take_along_axis(profiles.weights, best, axis=1)
        last = np.array([c.items[-1] if len(c.items) else -1 for c in contexts])
        text_last = np.where((last >= 0)[:, None], self._item_vectors[np.maximum(last, 0)] @ self._item_vectors.T, 0)

        weights = self._known_item_weights(contexts, n_items)
        totals = np.asarray(weights.sum(axis=1)).ravel()
        shares = sp.diags(np.divide(1.0, totals, out=np.zeros_like(totals), where=totals > 0)) @ weights
        category_of_user = np.asarray((shares @ _one_hot(self._category, len(self._category_names))).todense())
        for row, context in enumerate(contexts):  # a stated interest naming a category counts in full
            for text in context.interests:
                code = self._category_lookup.get(text.strip().lower())
                if code is not None:
                    category_of_user[row, code] = 1.0
        brand_count = int(self._brand.max()) + 1 if len(self._brand) else 1
        brand_of_user = np.asarray((shares @ _one_hot(self._brand, brand_count)).todense())
        signals = self._signals
        return {
            "text_interest_max": text_max,
            "text_interest_weight": text_weight,
            "text_mean": profiles.mean @ self._item_vectors.T,
            "text_last": text_last,
            "text_stated": profiles.stated @ self._item_vectors.T,
            "category_share": category_of_user[:, self._category],
            "brand_share": brand_of_user[:, self._brand] * self._has_brand,
            "als": signals.als.score(contexts),
            "itemknn": signals.knn.score(contexts),
            "seen_weight": weights.toarray(),
        }, category_of_user

    def _known_item_weights(self, contexts: Sequence[UserContext], n_items: int) -> sp.csr_matrix:
        rows = np.repeat(np.arange(len(contexts)), [len(c.items) for c in contexts])
        cols = np.concatenate([c.items for c in contexts]) if len(rows) else np.zeros(0, np.int64)
        data = np.concatenate([item_weights(c, self.decay) for c in contexts]) if len(rows) else np.zeros(0, np.float32)
        return sp.csr_matrix((data, (rows, cols)), shape=(len(contexts), n_items), dtype=np.float32)

    def _candidate_features(self, contexts: Sequence[UserContext]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(shopper row, item, feature row) for the union of every source's top items."""
        scores, category_of_user = self._source_scores(contexts)
        signals = self._signals
        n_users, n_items = len(contexts), len(self._item_vectors)
        k = min(self.candidates_per_source, n_items)
        candidate = np.zeros((n_users, n_items), bool)
        rows = np.arange(n_users)[:, None]
        arrivals = self._new_arrivals()
        sources = [(scores[name], None) for name in ("text_interest_max", "text_mean", "text_stated", "als", "itemknn")]
        if len(arrivals):  # the new-arrivals source: the arrivals closest to the interests or stated words
            sources.append((np.maximum(scores["text_interest_max"], scores["text_stated"])[:, arrivals], arrivals))
        for values, among in sources:
            depth = min(k, values.shape[1])
            top = np.argpartition(-values, depth - 1, axis=1)[:, :depth]
            useful = np.take_along_axis(values, top, axis=1) > 0
            items = top[useful] if among is None else among[top[useful]]
            candidate[np.broadcast_to(rows, top.shape)[useful], items] = True
        for row in range(n_users):
            candidate[row, self._category_candidates(category_of_user[row], k)] = True
        for popularity in (signals.pop, signals.pop30):
            candidate[:, np.argsort(-popularity, kind="stable")[:k]] = True
        candidate |= scores["seen_weight"] > 0
        removed = getattr(self, "_removed", None)
        if removed is not None and removed.any():
            candidate[:, removed] = False
        users, items = np.nonzero(candidate)
        n_known = np.array([len(np.unique(c.items)) for c in contexts], np.float32)
        has_stated = np.array([bool(c.interests or c.queries) for c in contexts], np.float32)
        # how long after the signals' cut the shopper arrives: later shoppers buy newer items
        gap_days = np.array([((c.now or signals.now) - signals.now) / DAY for c in contexts], np.float32)
        columns = {name: matrix[users, items] for name, matrix in scores.items()}
        columns.update(
            log_pop=signals.pop[items],
            log_pop30=signals.pop30[items],
            log_item_events=signals.events[items],
            borrowed_pop=signals.borrowed_pop[items],
            item_age_days=signals.age_days[items],
            decayed_pop=signals.decayed_pop[items],
            category_pop_share=signals.category_pop_share[items],
            log_user_items=np.log1p(n_known)[users],
            request_gap_days=gap_days[users],
            has_stated=has_stated[users],
        )
        features = np.column_stack([columns[name].astype(np.float32) for name in FEATURES])
        return users, items, features

    def score(self, contexts: Sequence[UserContext]) -> np.ndarray:
        n_items = len(self._item_vectors)
        out = np.full((len(contexts), n_items), NOT_A_CANDIDATE, np.float32)
        batch = max(1, min(256, 20_000_000 // max(1, self.max_interests * n_items)))
        for start in range(0, len(contexts), batch):
            chunk = contexts[start : start + batch]
            users, items, features = self._candidate_features(chunk)
            out[start + users, items] = self._fusion.predict(features)
        return out

    def arrange(self, top: np.ndarray, scores: np.ndarray, exclude: Sequence[np.ndarray] | None = None) -> np.ndarray:
        """With `new_arrival_slots` = s: the s positions right after the first SLOTS_AFTER of each list go to
        the shopper's best-scored new arrivals not already listed (exposure that items nobody has bought yet
        cannot earn from behaviour); the first SLOTS_AFTER positions never change."""
        slots = getattr(self, "new_arrival_slots", 0)
        arrivals = self._new_arrivals()
        if not slots or top.shape[1] <= SLOTS_AFTER or not len(arrivals):
            return top
        out = top.copy()
        for row in range(len(top)):
            values = scores[row, arrivals].astype(np.float32, copy=True)
            values[values <= NOT_A_CANDIDATE] = -np.inf
            if exclude is not None and len(exclude[row]):
                values[np.isin(arrivals, exclude[row])] = -np.inf
            values[np.isin(arrivals, top[row, :SLOTS_AFTER])] = -np.inf
            order = np.argsort(-values, kind="stable")[:slots]
            chosen = arrivals[order[np.isfinite(values[order])]]
            if not len(chosen):
                continue
            rest = top[row, SLOTS_AFTER:]
            rest = rest[(rest >= 0) & ~np.isin(rest, chosen)]
            tail = np.concatenate([chosen, rest])[: top.shape[1] - SLOTS_AFTER]
            out[row, SLOTS_AFTER : SLOTS_AFTER + len(tail)] = tail
        return out

    # ------------------------------------------------------------------ one shopper, fast
    def rank_candidates(
        self,
        context: UserContext,
        nearest: Callable[[np.ndarray, int], np.ndarray] | None = None,
        extra: np.ndarray | None = None,
        encode_texts: Callable[[list[str]], np.ndarray] | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One shopper's candidates (ascending positions), their feature rows and ranker scores.

        The same candidates and scores as `score` (up to float rounding), without its dense
        (1 x n_items) text products: the text sources' top items come from `nearest(queries,
        k)` ((q, k) positions, -1 padded; exact numpy by default, a FAISS index when serving),
        and every feature is computed on the candidates only. `extra` items join the candidates;
        `encode_texts` replaces `_encode_texts` for stated interests and queries (a cache).
        """
        vectors, signals = self._item_vectors, self._signals
        k = min(self.candidates_per_source, len(vectors))
        encode = encode_texts or self._encode_texts
        profiles = build_interest_profiles([context], vectors, encode, self.decay, self.max_interests)
        interests = profiles.interests[0]
        queries = np.vstack([interests, profiles.mean, profiles.stated])
        found = (nearest or self._exact_nearest)(queries, k)
        pool = np.unique(found[found >= 0])
        per_interest = interests @ vectors[pool].T
        best = np.argmax(per_interest, axis=0)
        text_max = per_interest[best, np.arange(len(pool))]

        known = np.asarray(context.items, np.int64)
        weights = item_weights(context, self.decay)
        seen, occurrence = np.unique(known, return_inverse=True)
        seen_weight = np.bincount(occurrence, weights=weights, minlength=len(seen)).astype(np.float32)
        total = float(seen_weight.sum())
        category_of_user = np.zeros(len(self._category_names), np.float64)
        brand_of_user = np.zeros(int(self._brand.max()) + 1 if len(self._brand) else 1, np.float64)
        if total > 0:
            np.add.at(category_of_user, self._category[seen], seen_weight / total)
            np.add.at(brand_of_user, self._brand[seen], seen_weight / total)
        for text in context.interests:
            code = self._category_lookup.get(text.strip().lower())
            if code is not None:
                category_of_user[code] = 1.0
        item_factors = signals.als._model.item_factors
        user_factors = self._fold_in(seen) if len(seen) else None
        # only items with factors can score above 0: the ALS top-k is taken among them (a fraction of a big catalog)
        with_factors, factors_with = self._items_with_factors(item_factors)
        # item-kNN: the sparse sum of the known items' rows (only co-bought items are non-zero)
        knn = sp.csr_matrix((np.ones(len(seen), np.float32), (np.zeros(len(seen), np.int64), seen)), shape=(1, len(vectors)))
        knn = knn @ signals.knn._similarity
        knn.sum_duplicates()

        def top(values: np.ndarray, among: np.ndarray | None = None) -> np.ndarray:
            return _top_positive(values, k, among)

        parts = [
            top(text_max, pool),
            top(profiles.mean[0] @ vectors[pool].T, pool),
            top(profiles.stated[0] @ vectors[pool].T, pool),
            top(factors_with @ user_factors, with_factors) if user_factors is not None else [],
            top(knn.data, knn.indices),
            self._category_candidates(category_of_user, k),
            self._popular_items(k),
            seen,
        ]
        arrivals = self._new_arrivals()
        if len(arrivals):
            # the new-arrivals source: the arrivals closest to the shopper's interests or stated words
            text = (self._arrival_vectors() @ np.vstack([interests, profiles.stated]).T).max(axis=1)
            parts.append(top(text, arrivals))
        if extra is not None:
            parts.append(np.asarray(extra, np.int64))
        items = np.unique(np.concatenate([np.asarray(p, np.int64) for p in parts]))
        removed = getattr(self, "_removed", None)
        if removed is not None:
            items = items[~removed[items]]

        item_vectors_ = vectors[items]
        per_interest = interests @ item_vectors_.T
        best = np.argmax(per_interest, axis=0)
        last = int(known[-1]) if len(known) else -1
        seen_weights = np.zeros(len(items), np.float32)
        present = np.isin(seen, items)
        seen_weights[np.searchsorted(items, seen[present])] = seen_weight[present]
        now = context.now or signals.now
        columns = {
            "text_interest_max": per_interest[best, np.arange(len(items))],
            "text_interest_weight": profiles.weights[0][best],
            "text_mean": item_vectors_ @ profiles.mean[0],
            "text_last": item_vectors_ @ vectors[last] if last >= 0 else np.zeros(len(items)),
            "text_stated": item_vectors_ @ profiles.stated[0],
            "category_share": category_of_user[self._category[items]],
            "brand_share": brand_of_user[self._brand[items]] * self._has_brand[items],
            "als": item_factors[items] @ user_factors if user_factors is not None else np.zeros(len(items), np.float32),
            "itemknn": knn[:, items].toarray()[0],
            "seen_weight": seen_weights,
            "log_pop": signals.pop[items],
            "log_pop30": signals.pop30[items],
            "log_item_events": signals.events[items],
            "borrowed_pop": signals.borrowed_pop[items],
            "item_age_days": signals.age_days[items],
            "decayed_pop": signals.decayed_pop[items],
            "category_pop_share": signals.category_pop_share[items],
            "log_user_items": np.full(len(items), np.log1p(np.float32(len(seen)))),
            "request_gap_days": np.full(len(items), np.float32((now - signals.now) / DAY)),
            "has_stated": np.full(len(items), np.float32(bool(context.interests or context.queries))),
        }
        features = np.column_stack([np.asarray(columns[name]).astype(np.float32) for name in FEATURES])
        return items, features, self._fusion.predict(features, num_threads=1)

    def _exact_nearest(self, queries: np.ndarray, k: int) -> np.ndarray:
        scores = queries @ self._item_vectors.T
        return np.argpartition(-scores, k - 1, axis=1)[:, :k]

    def _items_with_factors(self, item_factors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions whose ALS factors are not all zero (items nobody bought have none) and their factor rows
        (contiguous: gathering them per request cost more than the product); cached per factor matrix."""
        key = (id(item_factors), item_factors.shape)
        cached = getattr(self, "_with_factors_cache", None)
        if cached is None or cached[0] != key:
            positions = np.flatnonzero(np.any(item_factors != 0, axis=1))
            cached = (key, positions, np.ascontiguousarray(item_factors[positions]))
            self._with_factors_cache = cached
        return cached[1], cached[2]

    def _category_candidates(self, shares: np.ndarray, k: int) -> np.ndarray:
        """The category source: up to k items of the shopper's categories (`shares` per category code), the
        highest share first, and within a category its most popular items first. Reads only those categories'
        item lists, never the whole catalog; the batch and the single-request paths share it."""
        codes = np.flatnonzero(shares > 0)
        if not len(codes) or k <= 0:
            return np.zeros(0, np.int64)
        starts, order = self._items_by_category()
        picked, need = [], k
        for code in codes[np.lexsort((codes, -shares[codes]))]:
            members = order[starts[code] : starts[code + 1]][:need]
            picked.append(members)
            need -= len(members)
            if need <= 0:
                break
        return np.concatenate(picked) if picked else np.zeros(0, np.int64)

    def _items_by_category(self) -> tuple[np.ndarray, np.ndarray]:
        """Positions grouped by category code, each group by popularity (then position): (group starts, positions)."""
        cached = getattr(self, "_by_category_cache", None)
        key = (len(self._category), len(self._category_names), id(self._signals.pop))
        if cached is None or cached[0] != key:
            order = np.lexsort((np.arange(len(self._category)), -self._signals.pop, self._category))
            starts = np.searchsorted(self._category[order], np.arange(len(self._category_names) + 1))
            cached = (key, starts, order)
            self._by_category_cache = cached
        return cached[1], cached[2]

    def _fold_in(self, known: np.ndarray) -> np.ndarray:
        """One shopper's ALS factors from their distinct known items: implicit's least-squares
        solve (confidence alpha per known item), without its per-call thread-pool set-up."""
        model = self._signals.als._model
        y = np.asarray(model.item_factors[known], np.float64)
        gram = getattr(self, "_als_gram", None)
        if gram is None or gram[0] is not model.item_factors:
            factors = np.asarray(model.item_factors, np.float64)
            gram = self._als_gram = (model.item_factors, factors.T @ factors + model.regularization * np.eye(factors.shape[1]))
        a = gram[1] + (model.alpha - 1.0) * (y.T @ y)
        return np.linalg.solve(a, model.alpha * y.sum(axis=0)).astype(np.float32)

    def _new_arrivals(self) -> np.ndarray:
        """Items nobody has bought yet (listed, not removed), the latest listed first, at most NEW_ARRIVALS_POOL:
        the pool of the new-arrivals source. Only text reaches them otherwise, through sources ranked over the
        whole catalog where established items crowd them out; cached per signals and catalog size."""
        key = (id(self._signals), len(self._item_vectors))
        cached = getattr(self, "_arrivals_cache", None)
        if cached is None or cached[0] != key:
            new = np.flatnonzero(self._signals.events[: len(self._item_vectors)] == 0)
            removed = getattr(self, "_removed", None)
            if removed is not None:
                new = new[~removed[new]]
            new = np.ascontiguousarray(new[::-1][:NEW_ARRIVALS_POOL])
            # their vectors, contiguous: gathering 2,048 rows per request cost more than the product
            cached = (key, new, np.ascontiguousarray(self._item_vectors[new]))
            self._arrivals_cache = cached
        return cached[1]

    def _arrival_vectors(self) -> np.ndarray:
        """The new arrivals' text vectors (rows in `_new_arrivals` order)."""
        self._new_arrivals()
        return self._arrivals_cache[2]

    def _popular_items(self, k: int) -> np.ndarray:
        cached = getattr(self, "_popular_cache", None)
        if cached is None or cached[0] != (k, len(self._item_vectors)):
            signals = self._signals
            top = [np.argsort(-p, kind="stable")[:k] for p in (signals.pop, signals.pop30)]
            cached = ((k, len(self._item_vectors)), np.unique(np.concatenate(top)))
            self._popular_cache = cached
        return cached[1]

    # ------------------------------------------------------------------ live catalog
    def add_items(self, items: ItemCatalog | pd.DataFrame, vectors: np.ndarray | None = None) -> np.ndarray:
        """Add new items, or re-encode existing ids in place; no refit. Returns their positions.

        A new item gets its text vector, category and brand codes (unseen ones get new
        codes) and no behaviour: zero popularity and events, no age, zero ALS factors, an
        empty item-kNN row and column. It is scored by text and attributes at once. Scores
        of the existing items for existing contexts do not change. `vectors`: the rows' text
        vectors in the model's space, encoded beforehand (a server encodes outside its lock).
        """
        import pandas as pd

        frame = (items.frame if isinstance(items, ItemCatalog) else ItemCatalog(items).frame).drop_duplicates(
            "item_id", keep="last"
        )
        if vectors is not None and len(vectors) != len(frame):
            raise ValueError(f"{len(frame)} distinct items but {len(vectors)} vectors")
        old = self.catalog
        n_old = len(old)
        self.prepare_live_updates()
        at = old.index_of(frame["item_id"])
        updated, fresh = frame[at >= 0], frame[at < 0]
        merged = old.frame.copy()
        for column in merged.columns:
            merged.iloc[at[at >= 0], merged.columns.get_loc(column)] = updated[column].to_numpy()
        catalog = ItemCatalog(pd.concat([merged, fresh], ignore_index=True))
        m = len(fresh)
        positions = at.copy()
        positions[at < 0] = n_old + np.arange(m)

        rows = ItemCatalog(frame)
        vectors = self._item_text_vectors(rows.texts()) if vectors is None else np.asarray(vectors, np.float32)
        leaves = np.char.lower(rows.leaf_categories().astype(str))
        brands = np.char.lower(rows.frame["brand"].fillna("").to_numpy(dtype=str))
        category = np.array([self._code(leaf, "_category_names") for leaf in leaves], np.int64)
        brand = np.array([self._code(b, "_brand_names") for b in brands], np.int64)
        self._category_lookup = {name: code for code, name in enumerate(self._category_names) if name}

        self._grow_item_arrays(m)
        self._item_vectors[positions] = vectors
        self._category[positions], self._brand[positions], self._has_brand[positions] = category, brand, brands != ""
        signals = self._signals
        signals.als._model._YtY = None
        sim = signals.knn._similarity
        n = n_old + m
        signals.knn._similarity = sp.csr_matrix(
            (sim.data, sim.indices, np.concatenate([sim.indptr, np.full(m, sim.indptr[-1])])), shape=(n, n)
        )
        self._removed[positions] = False
        self.catalog = signals.als.catalog = signals.knn.catalog = catalog
        self._popular_cache = self._by_category_cache = self._arrivals_cache = None
        return positions

    def prepare_live_updates(self) -> None:
        """The state `add_items` and `remove_items` keep (brand names, the removed mask, room to grow the
        per-item arrays); built once, so a server's first add is as quick as its later ones."""
        if not hasattr(self, "_brand_names"):
            self._brand_names = np.unique(np.char.lower(self.catalog.frame["brand"].fillna("").to_numpy(dtype=str)))
        if not hasattr(self, "_removed"):
            self._removed = np.zeros(len(self._item_vectors), bool)
        if not getattr(self, "_row_buffers", None):
            self._grow_item_arrays(0)

    # every per-item array and its value for an item without behaviour
    _GROWN_ARRAYS = (
        ("_item_vectors", 0), ("_category", 0), ("_brand", 0), ("_has_brand", False), ("_removed", False),
        ("_signals.pop", 0), ("_signals.pop30", 0), ("_signals.events", 0), ("_signals.decayed_pop", 0),
        ("_signals.category_pop_share", 0), ("_signals.borrowed_pop", 0), ("_signals.age_days", np.nan),
        ("_signals.als._model.item_factors", 0),
    )

    def _grow_item_arrays(self, count: int) -> None:
        """Append `count` rows (no behaviour yet) to every per-item array, in place when their buffers have room."""
        if not hasattr(self, "_row_buffers"):
            self._row_buffers = {}
        for path, fill in self._GROWN_ARRAYS:
            *parents, name = path.split(".")
            owner = self
            for parent in parents:
                owner = getattr(owner, parent)
            grown = append_rows(self._row_buffers, path, np.asarray(getattr(owner, name)), count, fill)
            setattr(owner, name, grown)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_row_buffers", None)  # a view pickles as its own rows; the spare room is not saved
        state.pop("_arrivals_cache", None)
        return state

    def remove_items(self, positions: Sequence[int]) -> None:
        """Never rank these items again (they keep their positions, vectors and factors)."""
        self.prepare_live_updates()
        self._removed[np.asarray(positions, np.int64)] = True
        self._arrivals_cache = None

    @property
    def removed(self) -> np.ndarray:
        """Mask of removed items (one entry per catalog position)."""
        self.prepare_live_updates()
        return self._removed

    def _code(self, name: str, vocabulary: str) -> int:
        names = getattr(self, vocabulary)
        found = np.flatnonzero(names == name)
        if len(found):
            return int(found[0])
        setattr(self, vocabulary, np.append(names, name))
        return len(names)

    def _item_text_vectors(self, texts: list[str]) -> np.ndarray:
        return self._reduced(normalise(np.asarray(self.encoder.encode(texts, show_progress=False), np.float32)))

    def explain_importance(self) -> dict[str, Any]:
        """Share of the ranker's total gain per feature: which sources the shop's data trusts."""
        return self._fusion.importance()


def _share_of_max(values: np.ndarray) -> np.ndarray:
    top = values.max() if len(values) else 0.0
    return (values / top if top > 0 else values).astype(np.float32)


def _top_positive(values: np.ndarray, k: int, among: np.ndarray | None = None) -> np.ndarray:
    """Up to k positions of the largest values (unordered), those above 0 only; mapped through `among` if given."""
    picked = np.argpartition(-values, k - 1)[:k] if len(values) > k else np.arange(len(values))
    picked = picked[values[picked] > 0]
    return picked if among is None else among[picked]


def _one_hot(codes: np.ndarray, width: int) -> sp.csr_matrix:
    return sp.csr_matrix(
        (np.ones(len(codes), np.float32), (np.arange(len(codes)), codes)), shape=(len(codes), width), dtype=np.float32
    )


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
