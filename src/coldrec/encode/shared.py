"""One encoder and one copy of each catalog's vectors per process, shared by every model."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Any

import numpy as np

_DEFAULT_ENCODER: Any = None
_LOCK = threading.Lock()
# (encoder fingerprint, texts digest) -> item vectors; a few catalogs at most
_ITEM_VECTORS: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
_ITEM_VECTORS_MAX = 4


def default_encoder():
    """This process's encoder, loaded once: the one `set_default_encoder` / `use_default_encoder` chose, else the
    named encoder ``$COLDREC_ENCODER`` (default ``minilm``: ONNX, else torch) on the default cache dir."""
    global _DEFAULT_ENCODER
    with _LOCK:
        if _DEFAULT_ENCODER is None:
            from coldrec.encode.named import default_encoder_name, load_named_encoder

            _DEFAULT_ENCODER = load_named_encoder(default_encoder_name())
        return _DEFAULT_ENCODER


def set_default_encoder(encoder) -> None:
    """Make `encoder` what `default_encoder` returns in this process (None: back to ``$COLDREC_ENCODER``'s)."""
    global _DEFAULT_ENCODER
    with _LOCK:
        _DEFAULT_ENCODER = encoder


def use_default_encoder(name: str):
    """Load the named encoder (`coldrec.encode.named.ENCODER_NAMES`), make it this process's default, return it."""
    from coldrec.encode.named import load_named_encoder

    encoder = load_named_encoder(name)
    set_default_encoder(encoder)
    return encoder


def normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (all-zero rows stay zero)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


def item_vectors(encoder, texts: list[str]) -> np.ndarray:
    """Encoded item texts, cached in memory by (encoder fingerprint, texts)."""
    key = (str(encoder.fingerprint), _digest(texts))
    with _LOCK:
        cached = _ITEM_VECTORS.get(key)
        if cached is not None:
            _ITEM_VECTORS.move_to_end(key)
            return cached
    vectors = normalise(np.asarray(encoder.encode(texts, show_progress=False), np.float32))
    return remember_item_vectors(encoder, texts, vectors)


def remember_item_vectors(encoder, texts: list[str], vectors: np.ndarray) -> np.ndarray:
    """Make `vectors` (unit length, computed elsewhere: `coldrec.encode.partitioned`) what `item_vectors(encoder,
    texts)` returns in this process; returns them read-only."""
    if len(vectors) != len(texts):
        raise ValueError(f"{len(texts)} texts but {len(vectors)} vectors")
    key = (str(encoder.fingerprint), _digest(texts))
    vectors = np.ascontiguousarray(vectors, np.float32)
    vectors.setflags(write=False)
    with _LOCK:
        _ITEM_VECTORS[key] = vectors
        _ITEM_VECTORS.move_to_end(key)
        while len(_ITEM_VECTORS) > _ITEM_VECTORS_MAX:
            _ITEM_VECTORS.popitem(last=False)
    return vectors


def _digest(texts: list[str]) -> str:
    return hashlib.sha1("\x1f".join(texts).encode("utf-8")).hexdigest()


class UsesEncoder:
    """For models taking an optional `encoder`: the process default when none is given.

    The encoder is not a hyper-parameter, so it lives in `_encoder`, out of get_params.
    """

    _encoder = None

    @property
    def encoder(self):
        if self._encoder is None:
            self._encoder = default_encoder()
        return self._encoder

    def use_encoder(self, encoder) -> None:
        """Encode with `encoder` from now on (e.g. after loading a saved model, which holds none)."""
        self._encoder = encoder
