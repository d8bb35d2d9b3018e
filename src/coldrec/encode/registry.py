"""`load_encoder`: pick a backend by name, optionally with an on-disk embedding cache.

The encoders a user picks by name (``--encoder minilm|usem3|e5|hashing``) are `coldrec.encode.named`'s.
"""

from __future__ import annotations

from pathlib import Path

from .base import TextEncoder
from .env import CACHE_ENV, DEFAULT_CACHE_DIR, default_cache_dir

__all__ = ["BACKENDS", "CACHE_ENV", "DEFAULT_CACHE_DIR", "default_cache_dir", "load_encoder"]

BACKENDS = ("torch", "onnx", "usem3", "e5")


def load_encoder(
    backend: str = "torch",
    model_path: str | Path | None = None,
    cache_dir: str | Path | None = None,
    device: str | None = None,
) -> TextEncoder:
    """Build an encoder; with ``cache_dir``, wrap it in a `CachedEncoder` on ``cache_dir/embeddings``."""
    if backend == "torch":
        from .torch_backend import SentenceTransformerEncoder

        encoder: TextEncoder = SentenceTransformerEncoder(model_path, device=device)
    elif backend == "onnx":
        from .onnx_backend import OnnxEncoder

        if device not in (None, "cpu"):
            raise ValueError("the onnx backend runs on CPU only")
        onnx_dir = Path(cache_dir) / "onnx" if cache_dir is not None else None
        encoder = OnnxEncoder(model_path, cache_dir=onnx_dir)
    elif backend == "usem3":
        from .usem3_backend import Usem3Encoder

        if model_path is not None:
            raise ValueError("the usem3 backend has a fixed bundled model")
        encoder = Usem3Encoder()
    elif backend == "e5":
        from .e5_backend import E5Encoder

        if model_path is not None:
            raise ValueError("the e5 backend has a fixed bundled model")
        if device not in (None, "cpu"):
            raise ValueError("the e5 backend runs on CPU only")
        encoder = E5Encoder()
    else:
        raise ValueError(f"unknown backend {backend!r}; choose from {BACKENDS}")
    if cache_dir is not None:
        from .cache import CachedEncoder, EmbeddingCache

        encoder = CachedEncoder(encoder, EmbeddingCache(Path(cache_dir) / "embeddings"))
    return encoder
