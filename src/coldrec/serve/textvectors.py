"""`TextVectors`: shoppers' texts (stated interests, queries) -> vectors, memoised in memory.

Interests and queries are per-user data: they never reach the on-disk embedding cache, only
this LRU. A request encodes at most a few uncached texts itself (`get`'s budget); the rest are
encoded by one background thread and used from the next request on. No lock is held while
encoding, so a request never waits for another one's texts.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np

logger = logging.getLogger(__name__)

#: Texts waiting for the background encoder at most (more are dropped: a later request asks again).
WARM_QUEUE_MAX = 2_000
#: Texts the background encoder encodes per call.
WARM_BATCH = 32


class TextVectors:
    """An LRU of text -> vector over `encode` (a list of texts -> an (n, d) array); thread-safe."""

    def __init__(self, encode: Callable[[list[str]], np.ndarray], size: int):
        self._encode = encode
        self.size = size
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._queue: OrderedDict[str, None] = OrderedDict()  # an ordered set
        self._warming = False

    def __len__(self) -> int:
        return len(self._vectors)

    def __contains__(self, text: str) -> bool:
        return text in self._vectors

    def cached(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """The vectors of those texts already encoded (each becomes the most recently used)."""
        found = {}
        with self._lock:
            for text in texts:
                vector = self._vectors.get(text)
                if vector is not None:
                    self._vectors.move_to_end(text)
                    found[text] = vector
        return found

    def get(self, texts: Sequence[str], budget: int | None = None) -> dict[str, np.ndarray]:
        """Vectors of `texts`; at most `budget` uncached ones are encoded now (None: all), the rest
        are left out of the answer and queued for the background encoder."""
        found = self.cached(texts)
        missing = [text for text in dict.fromkeys(texts) if text not in found]
        now, later = (missing, []) if budget is None else (missing[:budget], missing[budget:])
        if now:
            found.update(self._put(now, self._encode(now)))
        if later:
            self.warm(later)
        return found

    def add(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Store vectors encoded elsewhere."""
        self._put(list(texts), vectors)

    def encode(
        self, texts: Sequence[str], batch_size: int | None = None, show_progress: bool | None = None
    ) -> np.ndarray:
        """Encoder-style: one row per text, every text encoded (e.g. the searcher's query encoder)."""
        found = self.get(list(texts))
        return np.stack([found[text] for text in texts]) if len(texts) else np.zeros((0, 0), np.float32)

    def warm(self, texts: Sequence[str]) -> None:
        """Encode these texts in the background (one daemon thread, started when needed)."""
        with self._lock:
            for text in texts:
                if text not in self._vectors and len(self._queue) < WARM_QUEUE_MAX:
                    self._queue[text] = None
            if not self._queue or self._warming:
                return
            self._warming = True
        threading.Thread(target=self._warm_loop, daemon=True, name="coldrec-text-warm").start()

    def wait_warm(self, timeout: float = 30.0) -> bool:
        """Block until the background encoder is idle (True) or `timeout` seconds pass (False)."""
        import time

        deadline = time.monotonic() + timeout
        while self._warming:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def _warm_loop(self) -> None:
        try:
            while True:
                with self._lock:
                    batch: list[str] = []
                    while self._queue and len(batch) < WARM_BATCH:
                        text = self._queue.popitem(last=False)[0]
                        if text not in self._vectors:
                            batch.append(text)
                    if not batch:
                        self._warming = False
                        return
                self._put(batch, self._encode(batch))
        except Exception:
            logger.exception("background text encoding failed")
            with self._lock:
                self._queue.clear()
                self._warming = False

    def _put(self, texts: list[str], vectors: np.ndarray) -> dict[str, np.ndarray]:
        vectors = np.asarray(vectors, np.float32)
        out = dict(zip(texts, vectors, strict=True))
        with self._lock:
            self._vectors.update(out)
            for text in texts:
                self._vectors.move_to_end(text)
            while len(self._vectors) > self.size:
                self._vectors.popitem(last=False)
        return out
