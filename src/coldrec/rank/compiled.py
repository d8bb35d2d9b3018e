"""LightGBM trees compiled to machine code with lleaves, for scoring many rows at once.

The compiled forest gives LightGBM's own scores (to float64 rounding) several times faster; on amazon14-office's
ranker (390 trees of 7 leaves) about 6x on a million candidate rows. Compiling takes a few seconds, so it is done
once per forest and kept in the cache folder (``$COLDREC_CACHE/trees``, keyed by the hash of the model text): a
loaded model compiles only on its first big batch, and never again on that machine. Where lleaves or its LLVM is
missing, or compiling fails, `compile_trees` says so once and returns None: the caller keeps LightGBM's predict.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from coldrec.encode.env import default_cache_dir

log = logging.getLogger(__name__)

#: below this many rows LightGBM's predict is fast enough, and a first call should not wait for a compile
MIN_ROWS = 20_000
_compiling = threading.Lock()
_warned: set[str] = set()


class CompiledTrees(Protocol):
    def predict(self, data: np.ndarray, n_jobs: int | None = None) -> np.ndarray: ...


def compile_trees(booster: Any, num_iteration: int | None = None, cache: Path | None = None) -> CompiledTrees | None:
    """`booster`'s first `num_iteration` trees (all when None) compiled to a raw-score predictor, or None."""
    text = booster.model_to_string(num_iteration=num_iteration or -1)
    folder = (cache or default_cache_dir()) / "trees"
    with _compiling:
        try:
            import lleaves
        except ImportError as error:  # an optional speed-up: LightGBM still scores
            _warn_once("lleaves", f"LightGBM trees are not compiled (lleaves is not importable: {error})")
            return None
        try:
            return _compiled(lleaves, text, folder, _cache_key(text))
        except Exception as error:  # noqa: BLE001 (any LLVM or file-system failure leaves LightGBM in charge)
            _warn_once(type(error).__name__, f"LightGBM trees are not compiled ({type(error).__name__}: {error})")
            return None


def _cache_key(text: str) -> str:
    """The model text, the lleaves version and this CPU (the object code is compiled for the host's features)."""
    from importlib.metadata import version

    import llvmlite.binding as llvm

    host = f"{llvm.get_host_cpu_name()} {llvm.get_host_cpu_features().flatten()}"
    digest = hashlib.sha256("\0".join((text, version("lleaves"), host)).encode("utf-8"))
    return digest.hexdigest()[:24]


def _compiled(lleaves: Any, text: str, folder: Path, key: str) -> CompiledTrees:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        writable = os.access(folder, os.W_OK)
    except OSError:
        writable = False
    if not writable:  # compile in a temporary folder, without a cache
        with tempfile.TemporaryDirectory() as scratch:
            return _compile_in(lleaves, text, Path(scratch) / key, cache=None)
    return _compile_in(lleaves, text, folder / key, cache=folder / f"{key}.so")


def _compile_in(lleaves: Any, text: str, stem: Path, cache: Path | None) -> CompiledTrees:
    model_file = stem.with_suffix(f".{os.getpid()}.txt")
    model_file.write_text(text, encoding="utf-8")
    try:
        model = lleaves.Model(model_file=str(model_file))
        if cache is None or cache.exists():
            model.compile(cache=None if cache is None else str(cache), raw_score=True)
        else:  # written under another name first: another process may be reading the same cache
            partial = cache.with_suffix(f".{os.getpid()}.partial")
            model.compile(cache=str(partial), raw_score=True)
            os.replace(partial, cache)
        return model
    finally:
        model_file.unlink(missing_ok=True)


def _warn_once(kind: str, message: str) -> None:
    if kind not in _warned:
        _warned.add(kind)
        log.warning(message)
