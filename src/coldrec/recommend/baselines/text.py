"""Zero-shot language-model baseline: cosine between item texts and what is known of the shopper."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from coldrec.data.catalog import ItemCatalog
from coldrec.data.interactions import InteractionLog
from coldrec.recommend.base import Recommender, UserContext
from coldrec.recommend.baselines.features import context_matrix

log = logging.getLogger(__name__)

_DEFAULT_ENCODER: Any = None
_LOCK = threading.Lock()
# (encoder fingerprint, texts digest) -> item vectors; a few catalogs at most
_ITEM_VECTORS: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
_ITEM_VECTORS_MAX = 4


def default_encoder():
    """The packaged encoder on the default cache dir: ONNX, else torch; loaded once per process."""
    global _DEFAULT_ENCODER
    with _LOCK:
        if _DEFAULT_ENCODER is None:
            from coldrec.encode import default_cache_dir, load_encoder

            try:
                _DEFAULT_ENCODER = load_encoder("onnx", cache_dir=default_cache_dir())
            except Exception as error:  # noqa: BLE001 - any backend failure falls back to torch
                log.warning("onnx encoder unavailable (%s); using the torch backend", error)
                _DEFAULT_ENCODER = load_encoder("torch", cache_dir=default_cache_dir())
        return _DEFAULT_ENCODER


def _normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


def item_vectors(encoder, texts: list[str]) -> np.ndarray:
    """Encoded item texts, cached in memory by (encoder fingerprint, texts)."""
    digest = hashlib.sha1("\x1f".join(texts).encode("utf-8")).hexdigest()
    key = (str(encoder.fingerprint), digest)
    with _LOCK:
        cached = _ITEM_VECTORS.get(key)
        if cached is not None:
            _ITEM_VECTORS.move_to_end(key)
            return cached
    vectors = _normalise(np.asarray(encoder.encode(texts, show_progress=False), np.float32))
    vectors.setflags(write=False)
    with _LOCK:
        _ITEM_VECTORS[key] = vectors
        while len(_ITEM_VECTORS) > _ITEM_VECTORS_MAX:
            _ITEM_VECTORS.popitem(last=False)
    return vectors


class TextZeroShotRecommender(Recommender):
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

    @property
    def encoder(self):
        if self._encoder is None:
            self._encoder = default_encoder()
        return self._encoder

    def _fit(self, log: InteractionLog, catalog: ItemCatalog, profiles) -> None:
        self._item_vectors = item_vectors(self.encoder, catalog.texts())

    def user_vectors(self, contexts: Sequence[UserContext]) -> np.ndarray:
        n = len(contexts)
        weights = context_matrix(contexts, len(self.catalog), decay=float(self.decay))
        users = np.asarray(weights @ self._item_vectors, np.float32)
        has_items = np.diff(weights.indptr) > 0
        # shoppers without items: the mean of their interest and query texts
        rows, texts = [], []
        for row in np.flatnonzero(~has_items):
            for text in list(contexts[row].interests) + list(contexts[row].queries):
                if text and text.strip():
                    rows.append(row)
                    texts.append(text.strip())
        if texts:
            distinct, inverse = np.unique(np.array(texts, dtype=object).astype(str), return_inverse=True)
            encoded = _normalise(np.asarray(self.encoder.encode(distinct.tolist(), show_progress=False), np.float32))
            pick = sp.csr_matrix(
                (np.ones(len(rows), np.float32), (rows, inverse)), shape=(n, len(distinct)), dtype=np.float32
            )
            users[~has_items] = np.asarray(pick @ encoded, np.float32)[~has_items]
        return _normalise(users)

    def score(self, contexts: Sequence[UserContext]) -> np.ndarray:
        return (self.user_vectors(contexts) @ self._item_vectors.T).astype(np.float32)
