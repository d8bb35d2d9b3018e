"""What one request may cost: its texts' vectors (cached, bounded) and the parts of its context it uses.

Shoppers' interests and queries are per-user data: encoded without the on-disk embedding cache (which
also costs an O(cache) rewrite per new text) and memoised in memory only (`TextVectors`). Vectors here
are the encoder's (not reduced to a model's space).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
import pandas as pd

from coldrec.data.context import UserContext
from coldrec.data.interactions import EventType
from coldrec.serve.textvectors import TextVectors

#: Search queries kept per shopper (most recent last).
MAX_QUERIES = 5
#: Encoded interest and query texts kept in memory.
TEXT_CACHE_SIZE = 10_000
#: Encoded search queries kept in memory (an LRU keyed by the normalised query; never on disk).
QUERY_CACHE_SIZE = 10_000
#: A request uses this many distinct stated interests at most (the first ones). They are summed into
#: one stated vector, so each pulls 1/n of it: on amazon14-office, n random leaf categories stated at
#: once bring 2.6 of 3, 3.8 of 10, 5.5 of 20 and 9.5 of 50 into the stated source's top 50 candidates;
#: past 10 an interest adds a sixth of a category for the same encoding cost.
MAX_STATED_INTERESTS = 10
#: Uncached stated interests and queries one request encodes itself (about 5-30 ms each on a
#: loaded 2-core machine); the others are encoded in the background and used from the next request.
REQUEST_ENCODE_BUDGET = 4


class RequestTexts:
    """The encoder's vectors of shoppers' texts (interests, queries) and of search queries, cached in memory."""

    def __init__(self, encoder):
        from coldrec.encode.cache import CachedEncoder

        self.encoder = encoder.encoder if isinstance(encoder, CachedEncoder) else encoder
        self.texts = TextVectors(self.encode_uncached, TEXT_CACHE_SIZE)
        self.queries = TextVectors(self.encode_uncached, QUERY_CACHE_SIZE)

    def encode_uncached(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.encoder.encode(texts, show_progress=False), np.float32)

    def warm(self, categories: Sequence[str]) -> None:
        """Encode the leaf categories once (the demo's interest picker offers them, so requests need not), and pay
        the encoder's first run (about 0.5 s) at start-up rather than in the first POST /items."""
        if len(categories) <= TEXT_CACHE_SIZE // 2:
            for start in range(0, len(categories), 256):
                self.texts.get(list(categories[start : start + 256]))
        self.encoder.encode(["coldrec start-up"], show_progress=False)

    def prepare(self, texts: Sequence[str]) -> int:
        """Encode the stated interests a request would use into the cache; returns how many were new."""
        wanted = distinct_texts(texts)[:MAX_STATED_INTERESTS]
        missing = [text for text in wanted if text not in self.texts]
        self.texts.get(missing)
        return len(missing)

    def query_vector(self, cleaned: str) -> np.ndarray:
        """A cleaned search query's unit vector; also cached as a shopper text (their next context holds it)."""
        vector = self.queries.get([cleaned])[cleaned]
        if cleaned not in self.texts:
            self.texts.add([cleaned], vector[None])
        return vector / max(float(np.linalg.norm(vector)), 1e-12)

    def bounded(self, context: UserContext) -> tuple[UserContext, Callable[[list[str]], np.ndarray]]:
        """The context's first MAX_STATED_INTERESTS interests and last MAX_QUERIES queries, and a lookup of
        their vectors. Uncached texts are encoded here, REQUEST_ENCODE_BUDGET at most (the most recent query
        first, then the interests in order); the others are left out of this request and encoded in the
        background."""
        interests = distinct_texts(context.interests)[:MAX_STATED_INTERESTS]
        queries = distinct_texts(context.queries[::-1])[:MAX_QUERIES]
        vectors = self.texts.get([*queries[:1], *interests, *queries[1:]], budget=REQUEST_ENCODE_BUDGET)
        bounded = replace(
            context,
            interests=[text for text in interests if text in vectors],
            queries=[text for text in queries[::-1] if text in vectors],
        )
        dim = next(iter(vectors.values())).shape[0] if vectors else 0

        def lookup(texts: list[str]) -> np.ndarray:
            return np.stack([vectors[text] for text in texts]) if len(texts) else np.zeros((0, dim), np.float32)

        return bounded, lookup


def shopper_context(events, interests, now: int | None, catalog, removed: np.ndarray, max_events: int) -> UserContext:
    """A shopper's context from the store's events in time order (a DataFrame or a mapping of columns: item_id,
    time, event, query): the last `max_events` item events and the last MAX_QUERIES queries; item ids unknown to
    `catalog` or `removed` are skipped."""
    if events is None or not len(events["event"]):
        return UserContext(interests=list(interests or []), now=now)
    event = np.asarray(events["event"], np.int8)
    queries: list[str] = []
    if "query" in events:
        searched = np.asarray(events["query"], object)[event == EventType.SEARCH]
        for query in searched[::-1]:
            if isinstance(query, str) and query.strip():
                queries.append(str(query))
                if len(queries) == MAX_QUERIES:
                    break
        queries.reverse()
    raw = np.asarray(events["item_id"], object)
    rows = np.flatnonzero(pd.notna(raw))[-max_events:]
    positions = catalog.index_of([str(i) for i in raw[rows]])
    valid = positions >= 0
    valid[valid] = ~removed[positions[valid]]
    return UserContext(
        items=positions[valid],
        times=np.asarray(events["time"], np.int64)[rows][valid],
        events=event[rows][valid],
        interests=list(interests or []),
        queries=queries,
        now=now,
    )


def distinct_texts(texts) -> list[str]:
    """Non-blank texts, stripped, each once, in order."""
    return list(dict.fromkeys(text.strip() for text in texts or [] if isinstance(text, str) and text.strip()))


def clean_query(query) -> str:
    from coldrec.search.searcher import _clean

    return _clean(query)


def rows_differ(ours: pd.DataFrame, theirs: pd.DataFrame) -> np.ndarray:
    """Row-wise: does any catalog field differ? (Missing values equal each other; times to the second.)"""
    differ = np.zeros(len(ours), bool)
    for name in ours.columns:
        a, b = ours[name], theirs[name]
        if name == "created_at":
            a, b = (pd.to_datetime(x).astype("datetime64[s]") for x in (a, b))
        elif name == "attributes":
            a, b = (x.map(lambda v: json.dumps(v, sort_keys=True, default=str) if v else "") for x in (a, b))
        left, right = (x.astype(object).where(x.notna(), None).to_numpy() for x in (a, b))
        differ |= ~np.asarray(left == right, bool)
    return differ
