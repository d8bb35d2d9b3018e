"""Zero-shot language-model baseline: cosine between item texts and what is known of the shopper."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from coldrec.data.catalog import ItemCatalog
from coldrec.data.interactions import InteractionLog
from coldrec.encode.shared import UsesEncoder, item_vectors, normalise
from coldrec.recommend.base import Recommender, UserContext
from coldrec.recommend.baselines.features import context_matrix


class TextZeroShotRecommender(UsesEncoder, Recommender):
    """Cosine between the encoder's item vectors and a shopper vector; no training.

    Shopper vector: the position-weighted mean of the vectors of the known items (the
    most recent weighs 1, the one before `decay`, then decay^2, ...; `decay` = 1 is the
    plain mean). A shopper with no known items is the mean of their encoded interests
    and queries; with neither, all scores are zero. The encoder (default: the packaged
    ONNX model, cached on disk) is not a hyper-parameter and is left out of get_params.
    """

    name = "text"
    param_grid = ({"decay": 1.0}, {"decay": 0.7}, {"decay": 0.5})

    def __init__(self, decay: float = 0.7, encoder=None):
        self.decay = decay
        self._encoder = encoder

    def _fit(self, log: InteractionLog, catalog: ItemCatalog, profiles) -> None:
        self._item_vectors = item_vectors(self.encoder, catalog.texts())

    def user_vectors(self, contexts: Sequence[UserContext]) -> np.ndarray:
        n = len(contexts)
        weights = context_matrix(contexts, self.fitted_items_, decay=float(self.decay))
        users = np.asarray(weights @ self._item_vectors, np.float32)
        has_items = np.diff(weights.indptr) > 0
        # shoppers without items: the mean of their interest and query texts
        rows, texts = [], []
        for row in np.flatnonzero(~has_items).tolist():
            for text in list(contexts[row].interests) + list(contexts[row].queries):
                if text and text.strip():
                    rows.append(row)
                    texts.append(text.strip())
        if texts:
            distinct, inverse = np.unique(np.array(texts, dtype=object).astype(str), return_inverse=True)
            encoded = normalise(np.asarray(self.encoder.encode(distinct.tolist(), show_progress=False), np.float32))
            pick = sp.csr_matrix(
                (np.ones(len(rows), np.float32), (rows, inverse)), shape=(n, len(distinct)), dtype=np.float32
            )
            users[~has_items] = np.asarray(pick @ encoded, np.float32)[~has_items]
        return normalise(users)

    def score(self, contexts: Sequence[UserContext]) -> np.ndarray:
        return (self.user_vectors(contexts) @ self._item_vectors.T).astype(np.float32)
