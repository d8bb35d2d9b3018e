"""More training signal from little data; every part can be switched off on its own.

- sequence augmentation: crops, masks and reorders of a history -> next pair's history;
- synthetic queries: title n-grams, category + brand, attribute phrases, with typo noise, -> the item;
- pseudo-labels: a new item (no interactions yet) -> its nearest established items by text.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

import numpy as np

from coldrec.adapt.pairs import NO_ITEM, PairKind, TrainingPairs
from coldrec.data.catalog import ItemCatalog


@dataclass(frozen=True)
class AugmentConfig:
    sequences: bool = True
    crop: bool = True
    mask: bool = True
    reorder: bool = True
    sequence_copies: int = 1
    mask_prob: float = 0.3
    synthetic_queries: bool = True
    queries_per_item: int = 3
    typo_prob: float = 0.3
    pseudo_labels: bool = True
    pseudo_neighbours: int = 2
    pseudo_min_similarity: float = 0.5

    @classmethod
    def off(cls) -> AugmentConfig:
        return cls(sequences=False, synthetic_queries=False, pseudo_labels=False)


# ----------------------------------------------------------------------------- sequences
def augment_history(history: np.ndarray, rng: np.random.Generator, crop: bool = True, mask: bool = True,
                    reorder: bool = True, mask_prob: float = 0.3) -> np.ndarray:
    """One altered copy of a NO_ITEM-left-padded history; at least one item always stays."""
    items = history[history != NO_ITEM]
    if crop and len(items) > 1:
        length = int(rng.integers(1, len(items) + 1))
        start = int(rng.integers(0, len(items) - length + 1))
        items = items[start : start + length]
    if mask and len(items) > 1:
        keep = rng.random(len(items)) >= mask_prob
        keep[rng.integers(len(items))] = True
        items = items[keep]
    if reorder and len(items) > 1:
        items = rng.permutation(items)
    return np.pad(items, (len(history) - len(items), 0), constant_values=NO_ITEM)


def augment_sequences(
    pairs: TrainingPairs, rng: np.random.Generator, config: AugmentConfig = AugmentConfig()
) -> TrainingPairs:
    """`sequence_copies` altered copies of every sequence pair with at least two history items."""
    rows = np.flatnonzero((pairs.kind == PairKind.SEQUENCE) & ((pairs.history != NO_ITEM).sum(axis=1) > 1))
    if not len(rows) or not (config.crop or config.mask or config.reorder):
        return TrainingPairs.empty(pairs.max_history)
    rows = np.repeat(rows, config.sequence_copies)
    history = np.stack([
        augment_history(pairs.history[r], rng, config.crop, config.mask, config.reorder, config.mask_prob) for r in rows
    ])
    return TrainingPairs.from_items(history, pairs.target[rows], PairKind.SEQUENCE, pairs.time[rows])


# ----------------------------------------------------------------------------- synthetic queries
_KEYBOARD_NEIGHBOURS = {
    row[i]: row[max(0, i - 1)] + row[min(len(row) - 1, i + 1)]
    for row in ("qwertyuiop", "asdfghjkl", "zxcvbnm") for i in range(len(row))
}


def typo(text: str, rng: np.random.Generator) -> str:
    """The text with one typing slip in one word of 3+ letters: a swap, a drop, a double or a
    neighbouring key. Always differs from the input when such a word exists."""
    words = text.split(" ")
    candidates = [i for i, w in enumerate(words) if len(w) >= 3 and w.isalpha()]
    if not candidates:
        return text
    index = candidates[int(rng.integers(len(candidates)))]
    word = words[index]
    position = int(rng.integers(len(word) - 1))
    edit = int(rng.integers(4))
    if edit == 0 and word[position] != word[position + 1]:
        noisy = word[:position] + word[position + 1] + word[position] + word[position + 2 :]
    elif edit == 1 or edit == 0:
        noisy = word[:position] + word[position + 1 :]
    elif edit == 2:
        noisy = word[: position + 1] + word[position] + word[position + 1 :]
    else:
        neighbours = _KEYBOARD_NEIGHBOURS.get(word[position].lower(), string.ascii_lowercase)
        replacement = neighbours[int(rng.integers(len(neighbours)))]
        noisy = word[:position] + replacement + word[position + 1 :]
        if noisy == word:
            noisy = word[:position] + word[position + 1 :]
    words[index] = noisy
    return " ".join(words)


def title_ngram(title: str, rng: np.random.Generator, sizes: tuple[int, ...] = (2, 3)) -> str:
    words = re.findall(r"[\w'&-]+", title)
    if len(words) <= min(sizes):
        return " ".join(words)
    size = min(int(rng.choice(sizes)), len(words))
    start = int(rng.integers(0, len(words) - size + 1))
    return " ".join(words[start : start + size])


def item_queries(title: str, category: str, brand: str, attributes: dict | None, rng: np.random.Generator,
                 count: int = 3) -> list[str]:
    """What a shopper might type to find the item: n-grams of the title, category with brand,
    attribute phrases; distinct, lower-case, at most `count`."""
    ngrams = [title_ngram(title, rng) for _ in range(count)]
    options = ngrams[:1] + ([f"{brand} {category}".strip()] if category else [])
    options += [f"{value} {key}" for key, value in (attributes or {}).items()] + ngrams[1:]
    seen, queries = set(), []
    for query in options:
        query = query.lower().strip()
        if query and query not in seen:
            seen.add(query)
            queries.append(query)
    return queries[:count]


def synthetic_queries(catalog: ItemCatalog, rng: np.random.Generator, config: AugmentConfig = AugmentConfig(),
                      max_history: int = 5, items: np.ndarray | None = None) -> TrainingPairs:
    """Synthetic query -> item pairs for `items` (default: the whole catalog, new items included:
    a product is searchable from its text the day it is listed)."""
    frame = catalog.frame
    leaves = catalog.leaf_categories()
    items = np.arange(len(catalog)) if items is None else np.asarray(items)
    texts, targets = [], []
    for item in items:
        row = frame.iloc[int(item)]
        title = row["title"] if isinstance(row["title"], str) else ""
        brand = row["brand"] if isinstance(row["brand"], str) else ""
        attributes = row["attributes"] if isinstance(row["attributes"], dict) else None
        for query in item_queries(title, str(leaves[item] or ""), brand, attributes, rng, config.queries_per_item):
            if rng.random() < config.typo_prob:
                query = typo(query, rng)
            texts.append(query)
            targets.append(int(item))
    return TrainingPairs.from_texts(texts, np.array(targets, np.int64), PairKind.SYNTHETIC_QUERY, max_history)


# ----------------------------------------------------------------------------- pseudo-labels
def pseudo_label_pairs(vectors: np.ndarray, established: np.ndarray, max_history: int = 5, neighbours: int = 2,
                       min_similarity: float = 0.5) -> TrainingPairs:
    """New item -> each of its `neighbours` nearest established items (cosine of `vectors` at
    least `min_similarity`): the bought-with evidence of similar products reaches new ones."""
    established = np.asarray(established, bool)
    new, known = np.flatnonzero(~established), np.flatnonzero(established)
    if not len(new) or not len(known):
        return TrainingPairs.empty(max_history)
    k = min(neighbours, len(known))
    similarity = vectors[new] @ vectors[known].T
    top = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
    close = np.take_along_axis(similarity, top, axis=1) >= min_similarity
    sources = np.repeat(new, k).reshape(-1, k)[close]
    targets = known[top][close]
    history = np.full((len(sources), max_history), NO_ITEM, np.int64)
    history[:, -1] = sources
    return TrainingPairs.from_items(history, targets, PairKind.PSEUDO_LABEL)
