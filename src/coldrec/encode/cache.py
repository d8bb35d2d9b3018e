"""On-disk embedding cache keyed by (encoder fingerprint, text hash), and `CachedEncoder`.

Layout: ``<directory>/<fingerprint>/<shard>.npz`` with ``keys`` (n, 2) uint64 (a 16-byte
blake2b of the text) and ``vecs`` (n, dim) float32. Shards are append-only and written to
a temp file then ``os.replace``d, so a crash leaves either a whole shard or none. All
shards of a fingerprint are read once into memory and searched with ``np.searchsorted``.
New vectors go to a small in-memory overlay, merged into the big sorted store only when the
overlay outgrows an eighth of it: a single added text (a product added live) costs the overlay,
not a rebuild of the whole cache (240 ms at a few hundred thousand vectors).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .base import TextEncoder, as_text_list

#: Above this many shards, loading merges them into one.
MAX_SHARDS = 64
#: The in-memory overlay of new vectors is merged into the sorted store above max(this, store size / 8).
OVERLAY_MERGE_AT = 4096


def text_keys(texts: Sequence[str]) -> np.ndarray:
    """16-byte blake2b of each text's UTF-8 bytes, as an (n, 2) uint64 array."""
    blob = b"".join(
        hashlib.blake2b(t.encode("utf-8", "surrogatepass"), digest_size=16).digest() for t in texts
    )
    return np.frombuffer(blob, dtype="<u8").reshape(-1, 2)


def _unique_rows(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the first occurrence of each distinct key, and each row's group id."""
    packed = np.ascontiguousarray(keys).view(np.dtype([("hi", "<u8"), ("lo", "<u8")])).ravel()
    _, first, inverse = np.unique(packed, return_index=True, return_inverse=True)
    return first, inverse.ravel()


@dataclass
class _Store:
    hi: np.ndarray  # sorted by (hi, lo)
    lo: np.ndarray
    vecs: np.ndarray
    n_shards: int

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Row index into ``vecs`` for each key, and whether it was found."""
        if len(self.hi) == 0:
            return np.zeros(len(keys), dtype=np.int64), np.zeros(len(keys), dtype=bool)
        pos = np.searchsorted(self.hi, keys[:, 0])
        np.minimum(pos, len(self.hi) - 1, out=pos)
        found = (self.hi[pos] == keys[:, 0]) & (self.lo[pos] == keys[:, 1])
        return pos, found

    @classmethod
    def build(cls, keys: np.ndarray, vecs: np.ndarray, n_shards: int) -> _Store:
        first, _ = _unique_rows(keys)  # sorted by (hi, lo), duplicates dropped
        return cls(keys[first, 0].copy(), keys[first, 1].copy(), vecs[first], n_shards)


class EmbeddingCache:
    """Persistent (fingerprint, text) -> vector store; see the module docstring for the layout."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self._stores: dict[str, _Store] = {}
        self._overlays: dict[str, _Store] = {}  # recent additions, not yet merged into _stores

    def get_many(self, fingerprint: str, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Vectors of the cached texts (in input order) and a boolean hit mask over ``texts``."""
        return self.lookup_keys(fingerprint, text_keys(texts))

    def put_many(self, fingerprint: str, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Store vectors for texts; texts already cached are skipped."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(texts):
            raise ValueError(f"expected {len(texts)} vectors, got shape {vectors.shape}")
        self.put_keys(fingerprint, text_keys(texts), vectors)

    def put_keys(self, fingerprint: str, keys: np.ndarray, vectors: np.ndarray) -> None:
        store = self._store(fingerprint)
        dim = self._dim(fingerprint)
        if dim is not None and dim != vectors.shape[1]:
            raise ValueError(f"dim {vectors.shape[1]} does not match cached dim {dim} for {fingerprint}")
        _, found = self.lookup_keys(fingerprint, keys)
        keys, vectors = keys[~found], vectors[~found]
        if len(keys) == 0:
            return
        first, _ = _unique_rows(keys)
        keys, vectors = keys[first], vectors[first]
        self._write_shard(fingerprint, keys, vectors)
        store.n_shards += 1
        overlay = self._overlays.get(fingerprint)
        if overlay is not None:
            keys = np.concatenate([np.stack([overlay.hi, overlay.lo], axis=1), keys])
            vectors = np.concatenate([overlay.vecs, vectors])
        if len(keys) <= max(OVERLAY_MERGE_AT, len(store.hi) // 8):
            self._overlays[fingerprint] = _Store.build(keys, vectors, 0)
            return
        self._overlays.pop(fingerprint, None)
        self._stores[fingerprint] = _Store.build(
            np.concatenate([np.stack([store.hi, store.lo], axis=1), keys]),
            np.concatenate([store.vecs.reshape(-1, vectors.shape[1]), vectors]),
            store.n_shards,
        )

    def lookup_keys(self, fingerprint: str, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Like `get_many` but for precomputed `text_keys`."""
        store = self._store(fingerprint)
        pos, found = store.lookup(keys)
        overlay = self._overlays.get(fingerprint)
        if overlay is None:
            return store.vecs[pos[found]], found
        overlay_pos, in_overlay = overlay.lookup(keys)
        in_overlay &= ~found
        hit = found | in_overlay
        vecs = np.empty((int(hit.sum()), overlay.vecs.shape[1]), np.float32)
        if found.any():
            vecs[found[hit]] = store.vecs[pos[found]]
        vecs[in_overlay[hit]] = overlay.vecs[overlay_pos[in_overlay]]
        return vecs, hit

    def __len__(self) -> int:
        return sum(len(s.hi) for s in self._stores.values()) + sum(len(s.hi) for s in self._overlays.values())

    def count(self, fingerprint: str) -> int:
        overlay = self._overlays.get(fingerprint)
        return len(self._store(fingerprint).hi) + (len(overlay.hi) if overlay is not None else 0)

    def _dim(self, fingerprint: str) -> int | None:
        for store in (self._store(fingerprint), self._overlays.get(fingerprint)):
            if store is not None and len(store.hi):
                return store.vecs.shape[1]
        return None

    def _store(self, fingerprint: str) -> _Store:
        store = self._stores.get(fingerprint)
        if store is None:
            store = self._stores[fingerprint] = self._load(fingerprint)
        return store

    def _load(self, fingerprint: str) -> _Store:
        folder = self.directory / fingerprint
        shards = sorted(folder.glob("*.npz")) if folder.is_dir() else []
        keys: list[np.ndarray] = []
        vecs: list[np.ndarray] = []
        for shard in shards:
            try:
                with np.load(shard, allow_pickle=False) as z:
                    k, v = z["keys"], z["vecs"]
                if k.ndim != 2 or k.shape[1] != 2 or k.dtype != np.uint64 or v.ndim != 2 or len(v) != len(k):
                    raise ValueError(f"bad shapes {k.shape} / {v.shape}")
                if vecs and v.shape[1] != vecs[0].shape[1]:
                    raise ValueError(f"dim {v.shape[1]} != {vecs[0].shape[1]}")
            except Exception as exc:  # unreadable shard: set it aside, re-encode those texts
                warnings.warn(f"ignoring corrupt embedding cache shard {shard}: {exc}", stacklevel=3)
                os.replace(shard, shard.with_suffix(".corrupt"))
                continue
            keys.append(k)
            vecs.append(v.astype(np.float32, copy=False))
        if not keys:
            return _Store(np.empty(0, np.uint64), np.empty(0, np.uint64), np.empty((0, 0), np.float32), 0)
        store = _Store.build(np.concatenate(keys), np.concatenate(vecs), len(keys))
        if len(keys) > MAX_SHARDS:
            self._compact(fingerprint, store, shards)
        return store

    def _compact(self, fingerprint: str, store: _Store, old: list[Path]) -> None:
        self._write_shard(fingerprint, np.stack([store.hi, store.lo], axis=1), store.vecs)
        for shard in old:
            shard.unlink(missing_ok=True)
        store.n_shards = 1

    def _write_shard(self, fingerprint: str, keys: np.ndarray, vecs: np.ndarray) -> Path:
        folder = self.directory / fingerprint
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns():020d}-{os.getpid()}-{os.urandom(4).hex()}.npz"
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, keys=np.ascontiguousarray(keys, dtype=np.uint64), vecs=vecs)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, folder / name)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return folder / name


class CachedEncoder(TextEncoder):
    """Wraps an encoder: cached texts are looked up, only distinct misses are encoded and stored."""

    def __init__(self, encoder: TextEncoder, cache: EmbeddingCache) -> None:
        self.encoder = encoder
        self.cache = cache
        self.name = encoder.name

    @property
    def dim(self) -> int:
        return self.encoder.dim

    @property
    def fingerprint(self) -> str:
        return self.encoder.fingerprint

    def encode(
        self, texts: Sequence[str], batch_size: int | None = None, show_progress: bool | None = None
    ) -> np.ndarray:
        texts = as_text_list(texts)
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        fp = self.fingerprint
        keys = text_keys(texts)
        hits, found = self.cache.lookup_keys(fp, keys)
        if found.all():
            return hits
        miss = np.flatnonzero(~found)
        first, inverse = _unique_rows(keys[miss])
        order = np.argsort(first)  # encode misses in input order, not hash order
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        todo = miss[first[order]]
        vecs = self.encoder.encode([texts[i] for i in todo], batch_size, show_progress)
        self.cache.put_keys(fp, keys[todo], vecs)
        out = np.empty((len(texts), vecs.shape[1]), dtype=np.float32)
        if found.any():
            out[found] = hits
        out[miss] = vecs[rank[inverse]]
        return out

    def __repr__(self) -> str:
        return f"CachedEncoder({self.encoder!r}, {self.cache.directory})"
