"""Small generated shops shared by the model tests: two product clusters and a fake encoder."""

from __future__ import annotations

import hashlib

import numpy as np

from coldrec.data import InteractionLog, ItemCatalog
from coldrec.model.registry import register_class

N_PER_CLUSTER = 12
A_ITEMS = np.arange(N_PER_CLUSTER)
B_ITEMS = np.arange(N_PER_CLUSTER, 2 * N_PER_CLUSTER)
NEW_A, NEW_B = 2 * N_PER_CLUSTER, 2 * N_PER_CLUSTER + 1  # listed, never bought
A_WORDS = ["stapler", "paper", "binder", "envelope", "folder", "clip"]
B_WORDS = ["router", "cable", "keyboard", "mouse", "monitor", "adapter"]


@register_class
class FakeEncoder:
    """Deterministic hashed bag-of-words vectors (a stand-in for the language model)."""

    name = "fake"
    dim = 256

    def __init__(self, fingerprint: str = "fake-bow-256"):
        self.fingerprint = fingerprint
        self.calls = 0
        self.texts_encoded = 0

    def _word(self, word: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.md5(word.encode()).digest()[:4], "little")
        return np.random.default_rng(seed).standard_normal(self.dim)

    def encode(self, texts, batch_size=64, show_progress=None):
        self.calls += 1
        self.texts_encoded += len(texts)
        out = np.zeros((len(texts), self.dim))
        for row, text in enumerate(texts):
            for word in text.lower().replace(".", " ").split():
                out[row] += self._word(word)
        norms = np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return (out / norms).astype(np.float32)


def make_catalog() -> ItemCatalog:
    titles, categories, brands = [], [], []
    for cluster, words, category, brand in (
        ("a", A_WORDS, "Office > Paper Goods", "Acme"),
        ("b", B_WORDS, "Office > Electronics", "Bolt"),
    ):
        for j in range(N_PER_CLUSTER):
            titles.append(f"{words[j % 6]} {words[(j + 1) % 6]} model {cluster}{j}")
            categories.append(category)
            brands.append(brand)
    # the new items: same words, category and brand as their cluster
    titles += [f"{A_WORDS[0]} {A_WORDS[2]} new", f"{B_WORDS[0]} {B_WORDS[2]} new"]
    categories += ["Office > Paper Goods", "Office > Electronics"]
    brands += ["Acme", "Bolt"]
    return ItemCatalog.from_records(
        [f"i{j}" for j in range(len(titles))], titles, category=categories, brand=brands
    )


def make_log(n_users: int = 60, seed: int = 0) -> InteractionLog:
    rng = np.random.default_rng(seed)
    users, items, times = [], [], []
    t = 1_000_000
    for u in range(n_users):
        cluster = A_ITEMS if u % 2 == 0 else B_ITEMS
        for item in rng.choice(cluster, size=rng.integers(4, 8), replace=False):
            users.append(f"u{u}")
            items.append(int(item))
            times.append(t)
            t += 60
    return InteractionLog.from_arrays(users, items, times)


def publish_synthetic_model(root):
    """A `coldrec build`-style model folder at `root` (a pathlib.Path): an engine on make_catalog / make_log with the
    hashing encoder, published as version 1. Returns `root`."""
    from coldrec.model.versions import ModelVersions
    from coldrec.serve.engine import Engine
    from coldrec.serve.synthetic import HashingEncoder

    engine = Engine.build(make_catalog(), make_log(), encoder=HashingEncoder(256))
    ModelVersions(root).publish(engine.save)
    return root
