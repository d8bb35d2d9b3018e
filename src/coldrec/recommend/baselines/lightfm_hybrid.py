"""LightFM (WARP) hybrid: items are the sum of identity, category, brand and title-word features."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from coldrec.data.catalog import ItemCatalog
from coldrec.data.interactions import InteractionLog
from coldrec.recommend.base import Recommender, UserContext
from coldrec.recommend.baselines.features import (
    context_matrix,
    item_feature_matrix,
    n_threads,
    row_normalise,
    single_threaded_blas,
)


class LightFMRecommender(Recommender):
    """`lightfm.LightFM(loss="warp")` with item features; users folded in from their items.

    Training: past users (identity features) x items bought in the past, with item
    features = identity (past items only) + leaf category + brand + title words, rows
    normalised to sum 1. Items without history are represented by their metadata alone,
    which is what carries them. A shopper is the mean of the representations of their
    known items: score = mean(e_i) . e_j + b_j; no known items: all zeros.

    With `num_threads` > 1 LightFM trains Hogwild-style, so scores may differ slightly
    between runs; `num_threads=1` is exactly reproducible for a given `random_state`.
    """

    name = "lightfm"
    param_grid = (
        {"no_components": 32, "epochs": 40},
        {"no_components": 64, "epochs": 20},
        {"no_components": 64, "epochs": 40},
        {"no_components": 64, "epochs": 80},
        {"no_components": 128, "epochs": 40},
    )

    def __init__(
        self,
        no_components: int = 64,
        learning_rate: float = 0.05,
        epochs: int = 40,
        item_alpha: float = 0.0,
        max_words: int = 3000,
        random_state: int = 0,
        num_threads: int | None = 1,
    ):
        self.no_components = no_components
        self.learning_rate = learning_rate
        self.epochs = epochs
        self.item_alpha = item_alpha
        self.max_words = max_words
        self.random_state = random_state
        self.num_threads = num_threads

    def _fit(self, log: InteractionLog, catalog: ItemCatalog, profiles) -> None:
        from lightfm import LightFM

        n_items = len(catalog)
        user_items = log.user_item_matrix(n_items, binary=True)
        users = np.flatnonzero(np.diff(user_items.indptr))
        items = np.flatnonzero(np.asarray(user_items.sum(axis=0)).ravel() > 0)
        features, self._feature_names = item_feature_matrix(catalog, identity_items=items, max_words=self.max_words)
        self._model = LightFM(
            no_components=self.no_components,
            learning_rate=self.learning_rate,
            loss="warp",
            item_alpha=self.item_alpha,
            random_state=np.random.RandomState(self.random_state),
        )
        if len(users) and len(items):
            interactions = sp.coo_matrix(user_items[users][:, items], dtype=np.float32)
            with single_threaded_blas():
                self._model.fit(
                    interactions,
                    item_features=features[items],
                    epochs=self.epochs,
                    num_threads=self.num_threads or n_threads(),
                )
            bias, embedding = self._model.get_item_representations(features)
        else:  # nothing to learn from
            bias = np.zeros(n_items, np.float32)
            embedding = np.zeros((n_items, self.no_components), np.float32)
        self._item_bias = np.asarray(bias, np.float32)
        self._item_embedding = np.asarray(embedding, np.float32)

    def score(self, contexts: Sequence[UserContext]) -> np.ndarray:
        known = row_normalise(context_matrix(contexts, self.fitted_items_))
        users = np.asarray(known @ self._item_embedding, np.float32)
        scores = users @ self._item_embedding.T + self._item_bias[None, :]
        scores[np.diff(known.indptr) == 0] = 0.0
        return scores.astype(np.float32)
