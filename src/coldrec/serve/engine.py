"""`Engine`: the fitted recommender, the searcher and a FAISS index over the live catalog.

It holds no per-user data: a request brings its shopper as a `UserContext` (built by
`context` from the store's events and profile), so an event changes the next answer
with no refit, and erasing a user needs nothing here. Items can be added, updated and
removed live: they are encoded and indexed before the call returns.

Locks: `_lock` guards the state requests read; it is held only while a request ranks (a few ms) or
a write swaps its new rows in. Encoding (new items, uncached interests and queries) happens outside
it, so a write never stalls reads; `_write_lock` serialises the writers (two adds of one id, an add
racing a remove), and a `sync_items` that would wait for a writer is queued and applied right after it.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from coldrec.data.catalog import CATEGORY_SEPARATOR, ItemCatalog
from coldrec.data.context import UserContext
from coldrec.data.interactions import EventType, InteractionLog
from coldrec.profile import build_interest_profiles
from coldrec.recommend.coldstart import (
    NOT_A_CANDIDATE,
    SLOTS_AFTER,
    ColdStartRecommender,
)
from coldrec.serve.matching import floor_from_top1, lexical_matches, probe_queries
from coldrec.serve.reasons import MATCHES_SEARCH, RELATED_TO_SEARCH, explain
from coldrec.serve.textvectors import TextVectors

logger = logging.getLogger(__name__)

#: From this many items on, FAISS answers with an IVF index (approximate candidates) instead of a flat scan.
IVF_FROM = 20_000
#: Search queries kept per shopper (most recent last).
MAX_QUERIES = 5
#: The lexical indexes are refit in the background this long after an add (a burst of adds costs one refit).
LEXICAL_DELAY_S = 0.25
#: From this many items on, the background lexical refit runs in a child process.
LEXICAL_PROCESS_FROM = 20_000
#: On shutdown, how long an idle refit child gets to exit by itself before it is stopped.
CHILD_EXIT_GRACE_S = 2.0
#: Encoded interest and query texts kept in memory.
TEXT_CACHE_SIZE = 10_000
#: Encoded search queries kept in memory (an LRU keyed by the normalised query; never on disk).
QUERY_CACHE_SIZE = 10_000
#: A request uses its shopper's most recent events up to this many (the store is asked for no more).
#: Older ones barely count: an event k positions back weighs 0.7**k in the profile (< 1e-7 from 50 on);
#: what they still feed (ALS fold-in, item-kNN, the bought-items filter) is whole for every
#: amazon14-office shopper (at most 94 events) and 95% of UCI Online Retail's (p95: 305 events, p99:
#: 639). On Office a request with 300 events took 9 ms against 4 ms with 10 (100k events: 115 ms).
MAX_HISTORY_EVENTS = 300
#: A request uses this many distinct stated interests at most (the first ones). They are summed into
#: one stated vector, so each pulls 1/n of it: on amazon14-office, n random leaf categories stated at
#: once bring 2.6 of 3, 3.8 of 10, 5.5 of 20 and 9.5 of 50 into the stated source's top 50 candidates;
#: past 10 an interest adds a sixth of a category for the same encoding cost.
MAX_STATED_INTERESTS = 10
#: Uncached stated interests and queries one request encodes itself (about 5-30 ms each on a
#: loaded 2-core machine); the others are encoded in the background and used from the next request.
REQUEST_ENCODE_BUDGET = 4


@dataclass
class Recommendation:
    """One recommended, similar or found item."""

    item_id: str
    title: str
    score: float
    reason: str
    category: str
    price: float | None


class Engine:
    """The fitted ColdStartRecommender + Searcher + FAISS index over the live catalog. Holds no per-user data."""

    def __init__(self, model: ColdStartRecommender, searcher, index=None, live_index=None,
                 search_floor: float | None = None):
        import faiss

        self.model = model
        self.searcher = searcher
        self._lock = threading.RLock()
        self._write_lock = threading.Lock()
        self._deferred: list[pd.DataFrame] = []  # sync_items rows that arrived while a write ran
        self._deferred_lock = threading.Lock()
        # the fitted catalog (IVF on big catalogs: approximate) + the items added live (exact, always found)
        self._index = index if index is not None else self._build_index(model._item_vectors)
        dim = model._item_vectors.shape[1]
        self._live = live_index if live_index is not None else faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self._lexical_generation, self._lexical_running, self._lexical_pool = 0, False, None
        _forget_users(model)
        model.prepare_live_updates()
        _one_thread_per_request()
        # shoppers' interests and queries are per-user data: encoded without the on-disk embedding cache
        # (which also costs an O(cache) rewrite per new text), memoised in memory only
        self._request_encoder = _without_disk_cache(model.encoder)
        self._texts = TextVectors(lambda texts: model._encode_texts(texts, encoder=self._request_encoder), TEXT_CACHE_SIZE)
        self._queries = TextVectors(
            lambda texts: np.asarray(self._request_encoder.encode(texts, show_progress=False), np.float32), QUERY_CACHE_SIZE
        )
        searcher._query_encoder = self._queries  # the searcher encodes (cleaned) queries through the LRU
        self._attach_searcher()
        self._refresh_item_arrays()
        self._warm_text_cache()
        self.search_floor = self._measure_search_floor() if search_floor is None else float(search_floor)

    # ------------------------------------------------------------------ building and storage
    @classmethod
    def build(
        cls,
        catalog: ItemCatalog,
        log: InteractionLog,
        profiles: dict | None = None,
        *,
        encoder=None,
        now: int | None = None,
        model_params: dict | None = None,
    ) -> Engine:
        from coldrec.encode.shared import item_vectors
        from coldrec.search import Searcher

        model = ColdStartRecommender(encoder=encoder, **(model_params or {})).fit(log, catalog, profiles, now=now)
        searcher = Searcher(encoder=model.encoder)
        if getattr(model, "_pca", None) is None:  # the engine's vectors and index serve the dense signal
            engine = cls(model, searcher)
            engine._refit_lexical(catalog, engine._lexical_generation)
            return engine
        searcher.dense_index = "ivf" if len(catalog) >= IVF_FROM else "exact"
        searcher.fit(catalog, vectors=item_vectors(model.encoder, catalog.texts()))
        return cls(model, searcher)

    def save(self, directory: Path) -> None:
        """model.pkl (recommender + searcher, no encoder, no user factors) and items.faiss."""
        import faiss

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with self._writing(), self._lock:
            encoder = self.model._encoder
            kept = _picklable(encoder)
            saved = {"model": self.model, "searcher": self.searcher, "encoder": kept, "search_floor": self.search_floor}
            detached = (self.model._encoder, self.searcher._encoder, self.searcher._query_encoder, self.searcher._dense)
            self.model._encoder = self.searcher._encoder = self.searcher._query_encoder = self.searcher._dense = None
            try:
                payload = pickle.dumps(saved, protocol=pickle.HIGHEST_PROTOCOL)
            finally:
                self.model._encoder, self.searcher._encoder, self.searcher._query_encoder, self.searcher._dense = detached
            (directory / "model.pkl.tmp").write_bytes(payload)
            (directory / "model.pkl.tmp").replace(directory / "model.pkl")
            for index, name in ((self._index, "items.faiss"), (self._live, "items_live.faiss")):
                faiss.write_index(index, str(directory / f"{name}.tmp"))
                (directory / f"{name}.tmp").replace(directory / name)

    @classmethod
    def load(cls, directory: Path, encoder=None) -> Engine:
        import faiss

        directory = Path(directory)
        saved = pickle.loads((directory / "model.pkl").read_bytes())
        model, searcher = saved["model"], saved["searcher"]
        model._encoder = searcher._encoder = encoder if encoder is not None else saved["encoder"]
        index = faiss.read_index(str(directory / "items.faiss"))
        _set_nprobe(index)
        live = directory / "items_live.faiss"
        live_index = faiss.read_index(str(live)) if live.exists() else None
        return cls(model, searcher, index, live_index, search_floor=saved.get("search_floor"))

    @staticmethod
    def _build_index(vectors: np.ndarray):
        import faiss

        vectors = np.ascontiguousarray(vectors, np.float32)
        n, dim = vectors.shape
        if n >= IVF_FROM:
            # 4 sqrt(n) lists, 32 probed: on the 54,667 Home Depot title vectors recall@50 0.968 against
            # exact at 0.16 ms a query, where sqrt(n) lists and 16 probes gave 0.957 at 0.26 ms
            nlist = int(4 * np.sqrt(n))
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
            index.cp.seed, index.cp.niter, index.cp.max_points_per_centroid = 0, 10, 64
            index.train(vectors)
        else:
            index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        index.add_with_ids(vectors, np.arange(n, dtype=np.int64))
        _set_nprobe(index)
        return index

    def _refresh_item_arrays(self, positions: np.ndarray | None = None) -> None:
        """Per-position ids, titles, category paths, prices and stock, for filters and results.

        With `positions`, only those rows are (re)read: an add stays cheap on a big catalog.
        """
        catalog = self.catalog
        if positions is None:
            frame, positions = catalog.frame, np.arange(len(catalog))
            self._ids, self._titles, self._paths = (np.zeros(0, object) for _ in range(3))
            self._price, self._available = np.zeros(0), np.zeros(0, bool)
            self._path_names, self._path_code, self._path_lookup = np.zeros(0, object), np.zeros(0, np.int64), {}
            self._title_code, self._title_lookup = np.zeros(0, np.int64), {}
        else:
            frame = catalog.frame.iloc[positions]
        grow = len(catalog) - len(self._ids)
        fills = {"_ids": "", "_titles": "", "_paths": "", "_price": np.nan, "_available": False, "_path_code": 0,
                 "_title_code": -1}
        for name, fill in fills.items():
            array = getattr(self, name)
            setattr(self, name, np.concatenate([array, np.full(grow, fill, array.dtype)]))
        self._ids[positions] = frame["item_id"].to_numpy(dtype=object)
        self._titles[positions] = frame["title"].fillna("").to_numpy(dtype=object)
        # one code per title up to case and spacing (-1: no title), to collapse duplicate listings
        inverse, keys = pd.factorize(np.array([" ".join(str(t).lower().split()) for t in self._titles[positions]], object))
        codes = np.array([self._title_lookup.setdefault(k, len(self._title_lookup)) if k else -1 for k in keys], np.int64)
        self._title_code[positions] = codes[inverse] if len(keys) else inverse
        paths = frame["category"].fillna("").to_numpy(dtype=object)
        self._paths[positions] = paths
        self._price[positions] = frame["price"].to_numpy(dtype=np.float64)
        self._available[positions] = frame["available"].to_numpy(dtype=bool)
        self._all_available = bool(self._available.all())
        distinct, inverse = np.unique(paths.astype(str), return_inverse=True)
        codes = np.array([self._path_lookup.setdefault(path, len(self._path_lookup)) for path in distinct], np.int64)
        self._path_code[positions] = codes[inverse] if len(distinct) else inverse
        self._path_names = np.array(list(self._path_lookup), dtype=object)
        leaf_of_path = np.array([path.split(CATEGORY_SEPARATOR)[-1] for path in self._path_names], dtype=object)
        self._leaves = leaf_of_path[self._path_code] if len(leaf_of_path) else np.zeros(0, object)

    # ------------------------------------------------------------------ the live catalog
    @property
    def catalog(self) -> ItemCatalog:
        return self.model.catalog

    def has_item(self, item_id: str) -> bool:
        position = int(self.catalog.index_of([item_id])[0])
        return position >= 0 and not self.model.removed[position]

    def busy(self) -> bool:
        """Is a write swapping rows in right now (a read would wait for it)? An event loop then hands its read to a
        thread instead of blocking every other request on the lock."""
        if self._lock.acquire(blocking=False):
            self._lock.release()
            return False
        return True

    def add_items(self, frame: pd.DataFrame, encoded: np.ndarray | None = None) -> list[str]:
        """Encode and index new items (an existing id is updated in place, re-encoded); no refit.

        Encoding runs outside the lock requests take; the new rows are swapped in at the end. `encoded`:
        the rows' vectors from `encode_items`, computed earlier (then only the swap is left)."""
        frame = ItemCatalog.from_partial(frame).frame
        if encoded is not None and len(encoded) != len(frame):
            raise ValueError(f"{len(encoded)} encoded rows for {len(frame)} items")
        with self._writing():
            self._add(frame, encoded)
        return [str(i) for i in frame["item_id"]]

    def encode_items(self, frame: pd.DataFrame) -> np.ndarray:
        """The items' text vectors (normalised), taking no lock: the slow part of `add_items`, done before it."""
        from coldrec.encode.shared import normalise

        texts = ItemCatalog.from_partial(frame).texts()
        return normalise(np.asarray(self.model.encoder.encode(texts, show_progress=False), np.float32))

    def _add(self, frame: pd.DataFrame, encoded: np.ndarray | None = None) -> None:
        """add_items' work; the caller holds the write lock."""
        if encoded is None:
            encoded = self.encode_items(frame)
        vectors = self.model._reduced(encoded)
        with self._lock:
            positions = self.model.add_items(frame, vectors=vectors)
            ids = np.asarray(positions, np.int64)
            self._index.remove_ids(ids)
            self._live.remove_ids(ids)
            self._live.add_with_ids(np.ascontiguousarray(vectors, np.float32), ids)
            self._update_searcher(positions, encoded)
            self._refresh_item_arrays(ids)

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Hold the write lock; on release, the `sync_items` rows queued meanwhile are applied (in a thread)."""
        self._write_lock.acquire()
        try:
            yield
        finally:
            self._release_writer()

    def _release_writer(self) -> None:
        # under the queue's lock: a sync_items either queued its rows before this (they are applied
        # now, in a thread) or finds the write lock free and applies them itself
        with self._deferred_lock:
            self._write_lock.release()
            waiting = bool(self._deferred)
        if waiting:
            threading.Thread(target=self._apply_deferred, daemon=True, name="coldrec-sync").start()

    def _apply_deferred(self) -> None:
        with self._writing():
            with self._deferred_lock:
                frames, self._deferred = self._deferred, []
            if frames:  # the same id in several: the last read from the store wins
                try:
                    self._sync(pd.concat(frames, ignore_index=True).drop_duplicates("item_id", keep="last"))
                except Exception:
                    logger.exception("applying queued item changes failed")

    def _attach_searcher(self) -> None:
        """The searcher's dense signal reads the engine's vectors and FAISS index (one copy of each)."""
        if getattr(self.model, "_pca", None) is None:
            self.searcher.vectors = self.model._item_vectors
            self.searcher._dense = _EngineIndex(self)
        elif self.searcher._dense is None and self.searcher.vectors is not None and len(self.searcher.vectors):
            self.searcher._dense = self.searcher._build_dense()

    def _update_searcher(self, positions: np.ndarray, encoded: np.ndarray) -> None:
        """Dense at once (`encoded`: the items' unit encoder vectors); the lexical indexes are refit in the
        background (`wait_for_lexical`)."""
        if getattr(self.model, "_pca", None) is not None:
            vectors = np.zeros((len(self.catalog), self.searcher.vectors.shape[1]), np.float32)
            vectors[: len(self.searcher.vectors)] = self.searcher.vectors
            vectors[positions] = encoded
            self.searcher.vectors, self.searcher._dense = vectors, None
        self._attach_searcher()
        self._lexical_generation += 1
        if not self._lexical_running:
            # 0.4 s on 2.4k items, seconds on 100k (and again in every worker process): one background
            # worker, which catches up with every add; the dense signal finds the new items meanwhile
            self._lexical_running = True
            threading.Thread(target=self._lexical_catch_up, daemon=True).start()

    def wait_for_lexical(self, timeout: float = 30.0) -> bool:
        """Block until the lexical indexes hold every added item (True), or `timeout` seconds pass (False)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if not self._lexical_running:
                    return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    def _lexical_catch_up(self) -> None:
        behind = True
        try:
            while behind:
                time.sleep(LEXICAL_DELAY_S)
                with self._lock:
                    catalog, generation = self.catalog, self._lexical_generation
                behind = self._refit_lexical(catalog, generation)
        finally:
            if behind:  # an error: the next add starts a new worker
                logger.exception("lexical refit failed")
                with self._lock:
                    self._lexical_running = False

    def _refit_lexical(self, catalog: ItemCatalog, generation: int) -> bool:
        """Refit BM25 and the n-gram index on `catalog`; True when the catalog changed meanwhile
        (else the background worker, if any, is marked stopped, under the same lock)."""
        arguments = (catalog, self.searcher.language, self.searcher.use_ngram)
        fitted = None
        if len(catalog) >= LEXICAL_PROCESS_FROM and self._lexical_pool is not False:
            # seconds of tokenising on a big catalog, much of it in C code that holds the GIL: in a thread it
            # stalled this process's requests (an add took 0.8 s instead of 0.08), so it runs in a child process
            try:
                fitted = self._lexical_process().submit(fit_lexical, *arguments).result()
            except Exception as error:  # noqa: BLE001 - e.g. a main script without the __main__ guard
                logger.warning("lexical refit in a child process failed (%s); refitting in this process", error)
                self._lexical_pool = False
        bm25, ngram = fitted or fit_lexical(*arguments)
        with self._lock:
            self.searcher.bm25, self.searcher.ngram = bm25, ngram
            behind = generation != self._lexical_generation
            self._lexical_running = self._lexical_running and behind
            return behind

    def _lexical_process(self):
        """One spawned child process for big refits, started on first use and kept (False: not usable here)."""
        if self._lexical_pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            self._lexical_pool = ProcessPoolExecutor(
                1, mp_context=multiprocessing.get_context("spawn"), initializer=_exit_with_parent, initargs=(os.getpid(),)
            )
        return self._lexical_pool

    def close(self) -> None:
        """Stop the lexical refit's child process, if one runs (the server calls this on shutdown); later
        refits, if any, run in this process."""
        if self._lexical_pool:
            from multiprocessing.connection import wait

            children = list((self._lexical_pool._processes or {}).values())
            self._lexical_pool.shutdown(wait=False, cancel_futures=True)
            # an idle child exits at once; a busy one would finish its (now unwanted) refit first: stopped
            # outright (killed earlier, an idle child leaves the call queue's lock behind, and a warning)
            wait([child.sentinel for child in children], timeout=CHILD_EXIT_GRACE_S)
            for child in children:
                if child.exitcode is None:
                    child.terminate()
        self._lexical_pool = False

    def remove_item(self, item_id: str) -> bool:
        """Never returned afterwards; False when unknown or already removed."""
        with self._writing():
            return self._remove(item_id)

    def _remove(self, item_id: str) -> bool:
        with self._lock:
            if not self.has_item(item_id):
                return False
            position = int(self.catalog.index_of([item_id])[0])
            self.model.remove_items([position])
            self._index.remove_ids(np.array([position], np.int64))
            self._live.remove_ids(np.array([position], np.int64))
            return True

    def sync_items(self, items_frame: pd.DataFrame) -> int:
        """Reconcile with the store's items (catalog columns + `deleted`): add the missing, re-encode those whose
        fields differ (or that were removed and are back), remove the deleted. Items already in step cost nothing.
        Returns how many items changed here. Never waits for a write under way (e.g. this process's own add
        of the same rows, still encoding): the rows are then queued, applied right after it, and 0 returned."""
        if not len(items_frame):
            return 0
        with self._deferred_lock:
            if not self._write_lock.acquire(blocking=False):
                self._deferred.append(items_frame)
                return 0
        try:
            return self._sync(items_frame)
        finally:
            self._release_writer()

    def _sync(self, items_frame: pd.DataFrame) -> int:
        """sync_items' work; the caller holds the write lock (so the catalog cannot change meanwhile)."""
        deleted = items_frame["deleted"].to_numpy(bool) if "deleted" in items_frame else np.zeros(len(items_frame), bool)
        positions = self.catalog.index_of(items_frame["item_id"])
        known = positions >= 0
        stale = ~known
        if known.any():
            ours = self.catalog.frame.iloc[positions[known]].reset_index(drop=True)
            theirs = ItemCatalog.from_partial(items_frame[known].drop(columns="deleted", errors="ignore")).frame
            stale[known] = _rows_differ(ours, theirs) | self.model.removed[positions[known]]
        changed = items_frame[stale & ~deleted].drop(columns="deleted", errors="ignore")
        if len(changed):
            self._add(ItemCatalog.from_partial(changed).frame)
        removed = sum(self._remove(str(item_id)) for item_id in items_frame["item_id"][deleted & known])
        return len(changed) + removed

    def categories(self) -> list[str]:
        """Leaf categories, for the demo page's interest picker."""
        return sorted({str(leaf) for leaf in self._leaves[~self.model.removed] if leaf})

    # ------------------------------------------------------------------ requests
    def context(self, events, interests: list[str], now: int | None = None) -> UserContext:
        """A shopper's context from the store's events in time order (a DataFrame or a mapping of columns:
        item_id, time, event, query): the last MAX_HISTORY_EVENTS item events, the last MAX_QUERIES queries;
        unknown or removed item ids are skipped."""
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
        rows = np.flatnonzero(pd.notna(raw))[-MAX_HISTORY_EVENTS:]
        with self._lock:
            positions = self.catalog.index_of([str(i) for i in raw[rows]])
            valid = positions >= 0
            valid[valid] = ~self.model.removed[positions[valid]]
        return UserContext(
            items=positions[valid],
            times=np.asarray(events["time"], np.int64)[rows][valid],
            events=event[rows][valid],
            interests=list(interests or []),
            queries=queries,
            now=now,
        )

    def prepare_texts(self, texts: list[str]) -> int:
        """Encode a shopper's stated interests into the in-memory cache (those a request uses: the first
        MAX_STATED_INTERESTS distinct ones), so the next request need not; returns how many were new.
        Takes no lock requests wait for (e.g. PUT /profile calls it in a worker thread)."""
        wanted = _distinct(texts)[:MAX_STATED_INTERESTS]
        missing = [text for text in wanted if text not in self._texts]
        self._texts.get(missing)
        return len(missing)

    def recommend(
        self,
        context: UserContext,
        n: int = 10,
        *,
        category: str | None = None,
        min_price: float | None = None,
        max_price: float | None = None,
        in_stock: bool | None = None,
        include_bought: bool = False,
        include_unavailable: bool = False,
    ) -> list[Recommendation]:
        """The shopper's top n. Unavailable items only with `include_unavailable` (`in_stock=False`: only them)."""
        context, encode = self._bounded(context)
        with self._lock:
            allowed = self._filter(category, min_price, max_price, in_stock, include_unavailable)
            extra = None
            if allowed is not None:  # candidates that pass the filters, in case the sources' tops do not
                extra = self._top_popular(allowed, max(n, self.model.candidates_per_source))
            items, features, scores = self.model.rank_candidates(
                context, nearest=self._nearest, extra=extra, encode_texts=encode
            )
            keep = np.ones(len(items), bool) if allowed is None else allowed[items]
            if not include_bought and len(context.items):
                bought = context.items[np.isin(context.events, (EventType.PURCHASE, EventType.RATING))]
                keep &= ~np.isin(items, bought)
            items, features, scores = items[keep], features[keep], scores[keep]
            ranked = np.lexsort((items, -scores))
            ranked = ranked[self._distinct_titles(items[ranked])]  # a duplicate listing never follows its twin
            order = ranked[:n]
            slotted = np.zeros(len(order), bool)
            if getattr(self.model, "new_arrival_slots", 0) and n > SLOTS_AFTER:  # (older saved models: none)
                dense = np.full(len(self.catalog), NOT_A_CANDIDATE, np.float32)
                # filtered-out, bought and duplicate items are not candidates: never slotted in
                dense[items[ranked]] = scores[ranked]
                by_score = items[order]
                arranged = self.model.arrange(by_score[None], dense[None])[0]
                order = np.searchsorted(items, arranged[arranged >= 0])  # `items` ascend
                slotted = ~np.isin(items[order], by_score)  # listed only because a new-arrival slot holds them
            reasons = explain(self.model, context, items[order], features[order], self._titles, self._leaves, encode)
            reasons = ["new arrival" if moved else reason for reason, moved in zip(reasons, slotted)]
            return [self._result(int(i), float(s), r) for i, s, r in zip(items[order], scores[order], reasons)]

    def similar(self, item_id: str, n: int = 10, include_unavailable: bool = False) -> list[Recommendation]:
        """Nearest items by text vector (inner product); KeyError for an unknown or removed id."""
        with self._lock:
            if not self.has_item(item_id):
                raise KeyError(item_id)
            position = int(self.catalog.index_of([item_id])[0])
            query = np.ascontiguousarray(self.model._item_vectors[[position]], np.float32)

            def nearest(k: int) -> tuple[np.ndarray, np.ndarray]:
                scores, found = self._search(query, k)
                return found[0], scores[0]

            found, scores = self._listed(nearest, n, n + 11, self._index.ntotal + self._live.ntotal,
                                         include_unavailable, exclude=position)
            title = self._titles[position]
            return [self._result(int(i), float(s), f"similar to {title}") for i, s in zip(found, scores)]

    def search(
        self, query: str, n: int = 10, context: UserContext | None = None, include_unavailable: bool = False
    ) -> list[Recommendation]:
        """The searcher's top items; with a context, re-ranked by the shopper's text profile (`Searcher.search`).

        Items matching the query lexically (a word, or most of its letters: typos) have reason "matches your
        search"; those found only by meaning must reach the catalog's `search_floor` cosine and have reason
        "related to your search"; nothing found: an empty list (`coldrec.serve.matching`). ValueError for an
        empty or blank query."""
        cleaned = _clean_query(query)
        if not cleaned:
            raise ValueError("the query is empty")
        vector = self._queries.get([cleaned])[cleaned]  # encoded outside the lock (or cached)
        if getattr(self.model, "_pca", None) is None and cleaned not in self._texts:
            self._texts.add([cleaned], vector[None])  # the same vector when the next request's context holds the query
        vector = vector / max(float(np.linalg.norm(vector)), 1e-12)
        encode = None
        if context is not None:
            context, encode = self._bounded(context)
        with self._lock:
            profiles = None
            if context is not None:
                built = build_interest_profiles(
                    [context], self.model._item_vectors, encode, self.model.decay, self.model.max_interests
                )
                profiles = built.mean + built.stated
            last_matched: list[np.ndarray] = []

            def shown(found: np.ndarray) -> np.ndarray:
                """Lexical matches, and the others as close in meaning as the floor."""
                matched = lexical_matches(self.searcher, query, found)
                visible = matched | (self.searcher.vectors[found] @ vector >= self.search_floor)
                last_matched[:] = [matched[visible]]
                return visible

            def searched(k: int) -> tuple[np.ndarray, np.ndarray]:
                found, scores = self.searcher.search([query], k, profiles=profiles)
                return found[0], scores[0]

            found, scores = self._listed(searched, n, n + 20, self.searcher.n_items, include_unavailable, shown=shown)
            matched = last_matched[0][: len(found)] if last_matched else np.zeros(0, bool)
            return [
                self._result(int(i), float(s), MATCHES_SEARCH if lexical else RELATED_TO_SEARCH)
                for i, s, lexical in zip(found, scores, matched)
            ]

    # ------------------------------------------------------------------ helpers
    def _listed(
        self,
        fetch: Callable[[int], tuple[np.ndarray, np.ndarray]],
        n: int,
        k: int,
        total: int,
        include_unavailable: bool,
        exclude: int | None = None,
        shown: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The first n of `fetch(k)`'s results (positions, scores; best first, -1 padded) that are neither removed,
        filtered out (`_filter`), `exclude` nor a title listed earlier, and pass `shown`. While fewer than n are
        left and the filters or the duplicates dropped some, fetched again 4x deeper (three tries at most).
        The caller holds the lock."""
        allowed = self._filter(None, None, None, None, include_unavailable)
        k = min(total, k)
        for _ in range(3):
            found, scores = fetch(k)
            keep = (found >= 0) & ~self.model.removed[np.maximum(found, 0)]
            if allowed is not None:
                keep &= allowed[np.maximum(found, 0)]
            if exclude is not None:
                keep &= found != exclude
            found, scores = found[keep], scores[keep]
            distinct = self._distinct_titles(found)
            found, scores = found[distinct], scores[distinct]
            if shown is not None:
                visible = shown(found)
                found, scores = found[visible], scores[visible]
            if len(found) >= n or k >= total or (keep.all() and distinct.all()):
                break
            k = min(total, 4 * k)
        return found[:n], scores[:n]

    def _bounded(self, context: UserContext) -> tuple[UserContext, Callable[[list[str]], np.ndarray]]:
        """The request's context cut to what a request uses (the last MAX_HISTORY_EVENTS events, the first
        MAX_STATED_INTERESTS interests, the last MAX_QUERIES queries), and a lookup of its texts' vectors.
        Called outside the lock: uncached texts are encoded here, REQUEST_ENCODE_BUDGET at most (the most
        recent query first, then the interests in order); the others are left out of this request and
        encoded in the background."""
        interests = _distinct(context.interests)[:MAX_STATED_INTERESTS]
        queries = _distinct(context.queries[::-1])[:MAX_QUERIES]
        vectors = self._texts.get([*queries[:1], *interests, *queries[1:]], budget=REQUEST_ENCODE_BUDGET)
        bounded = replace(
            context,
            items=context.items[-MAX_HISTORY_EVENTS:],
            times=context.times[-MAX_HISTORY_EVENTS:],
            events=context.events[-MAX_HISTORY_EVENTS:],
            interests=[text for text in interests if text in vectors],
            queries=[text for text in queries[::-1] if text in vectors],
        )
        dim = self.model._item_vectors.shape[1]

        def encode(texts: list[str]) -> np.ndarray:
            return np.stack([vectors[text] for text in texts]) if len(texts) else np.zeros((0, dim), np.float32)

        return bounded, encode

    def _distinct_titles(self, positions: np.ndarray) -> np.ndarray:
        """Mask over ranked `positions`: False where an item's title (up to case and spacing) came earlier."""
        codes = self._title_code[positions]
        keep = codes < 0
        keep[np.unique(codes, return_index=True)[1]] = True
        return keep

    def _warm_text_cache(self) -> None:
        """Encode the leaf categories once: the demo's interest picker offers them, so requests need not."""
        leaves = self.categories()
        if len(leaves) <= TEXT_CACHE_SIZE // 2:
            for start in range(0, len(leaves), 256):
                self._texts.get(leaves[start : start + 256])
        # the first POST /items would otherwise pay for loading the on-disk embedding cache and the
        # encoder's first run (about 0.5 s): pay it at start-up instead
        self.model.encoder.encode(["coldrec start-up"], show_progress=False)

    def _measure_search_floor(self) -> float:
        """The dense floor of `search` on this catalog (`coldrec.serve.matching`): meaningless probes' top-1 cosine."""
        if not self.searcher.n_items or self.searcher._dense is None:
            return 1.0
        probes = probe_queries()
        vectors = np.asarray(self._request_encoder.encode(probes, show_progress=False), np.float32)
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        top = self.searcher._dense_top(vectors, 1)[:, 0]
        top1 = np.einsum("qd,qd->q", self.searcher.vectors[np.maximum(top, 0)], vectors)
        return floor_from_top1(top1[top >= 0])

    def _nearest(self, queries: np.ndarray, k: int) -> np.ndarray:
        out = np.full((len(queries), k), -1, np.int64)
        asked = np.flatnonzero(np.abs(queries).sum(axis=1) > 0)
        if len(asked):
            out[asked] = self._search(queries[asked], k)[1]
        return out

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (inner products, positions; -1 padded) over the fitted and the live index."""
        queries = np.ascontiguousarray(queries, np.float32)
        scores, found = self._index.search(queries, k)
        if self._live.ntotal:
            live_scores, live_found = self._live.search(queries, min(k, self._live.ntotal))
            scores, found = np.hstack([scores, live_scores]), np.hstack([found, live_found])
            scores = np.where(found >= 0, scores, -np.inf)
            best = np.argsort(-scores, axis=1, kind="stable")[:, :k]
            scores, found = np.take_along_axis(scores, best, axis=1), np.take_along_axis(found, best, axis=1)
        return scores, found

    def _filter(self, category, min_price, max_price, in_stock, include_unavailable: bool = False) -> np.ndarray | None:
        if in_stock is None and not include_unavailable and not self._all_available:
            in_stock = True
        if category is None and min_price is None and max_price is None and in_stock is None:
            return None
        allowed = ~self.model.removed
        if category:
            allowed &= np.isin(self._path_code, np.flatnonzero(_path_matches(self._path_names, category)))
        if min_price is not None:
            allowed &= self._price >= min_price
        if max_price is not None:
            allowed &= self._price <= max_price
        if in_stock is not None:
            allowed &= self._available == bool(in_stock)
        return allowed

    def _top_popular(self, allowed: np.ndarray, k: int) -> np.ndarray:
        candidates = np.flatnonzero(allowed)
        popularity = self.model._signals.pop[candidates]
        if len(candidates) > k:
            candidates = candidates[np.argpartition(-popularity, k - 1)[:k]]
        return candidates

    def _result(self, position: int, score: float, reason: str) -> Recommendation:
        price = self._price[position]
        return Recommendation(
            item_id=str(self._ids[position]),
            title=str(self._titles[position]),
            score=score,
            reason=reason,
            category=str(self._paths[position]),
            price=None if np.isnan(price) else float(price),
        )


def _exit_with_parent(parent_pid: int) -> None:
    """In the refit's child process: exit once the parent is gone. A uvicorn worker ends with os._exit, which skips
    the executor's own shutdown, and a kill -9 skips everything; either left the child running, orphaned."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def fit_lexical(catalog: ItemCatalog, language: str, use_ngram: bool):
    """BM25 and (optionally) the character n-gram index over the catalog's texts (a child process runs this)."""
    from coldrec.retrieve.lexical import BM25Index
    from coldrec.search.searcher import CharNgramBM25

    texts = catalog.texts()
    return BM25Index(language=language).fit(texts), CharNgramBM25().fit(texts) if use_ngram else None


class _EngineIndex:
    """The engine's indexes as the searcher's dense signal (a FAISS-like `search`)."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.engine._search(queries, k)


def _rows_differ(ours: pd.DataFrame, theirs: pd.DataFrame) -> np.ndarray:
    """Row-wise: does any catalog field differ? (Missing values equal each other; times to the second.)"""
    differ = np.zeros(len(ours), bool)
    for name in ours.columns:
        a, b = ours[name], theirs[name]
        if name == "created_at":
            a, b = (pd.to_datetime(x).astype("datetime64[s]") for x in (a, b))
        elif name == "attributes":
            a, b = (x.map(lambda v: json.dumps(v, sort_keys=True, default=str) if v else "") for x in (a, b))
        a, b = (x.astype(object).where(x.notna(), None).to_numpy() for x in (a, b))
        differ |= ~np.asarray(a == b, bool)
    return differ


def _distinct(texts) -> list[str]:
    """Non-blank texts, stripped, each once, in order."""
    return list(dict.fromkeys(text.strip() for text in texts or [] if isinstance(text, str) and text.strip()))


def _clean_query(query) -> str:
    from coldrec.search.searcher import _clean

    return _clean(query)


def _path_matches(paths: np.ndarray, category: str) -> np.ndarray:
    """Category paths equal to `category`, under it, or having it as one of their levels (case-insensitive)."""
    wanted = category.strip().lower()
    lowered = np.char.lower(paths.astype(str))
    levels = [{level.strip() for level in p.split(CATEGORY_SEPARATOR.strip())} for p in lowered]
    return np.array(
        [p == wanted or p.startswith(wanted + CATEGORY_SEPARATOR) or wanted in lv for p, lv in zip(lowered, levels)], bool
    )


def _one_thread_per_request() -> None:
    """BLAS and FAISS on one thread for this process: a request's work is small, and their
    thread teams spinning against concurrent requests on a few cores cost ten times the work."""
    import faiss
    from threadpoolctl import threadpool_limits

    faiss.omp_set_num_threads(1)
    threadpool_limits(1, "blas")


def _forget_users(model: ColdStartRecommender) -> None:
    """Drop the fitted users' ALS factors: per-user data, and never needed (every request is folded in)."""
    als = model._signals.als._model
    als.user_factors = np.zeros((0, als.factors), np.float32)
    for cache in ("_user_norms", "_XtX"):
        if hasattr(als, cache):
            setattr(als, cache, None)


def _picklable(encoder):
    """The encoder itself when it pickles (a small hashing encoder), else None (a language model: reloaded)."""
    if encoder is None:
        return None
    try:
        payload = pickle.dumps(encoder)
    except Exception:  # noqa: BLE001 - any failure: not stored
        return None
    return encoder if len(payload) < 10_000_000 else None


def _without_disk_cache(encoder):
    from coldrec.encode.cache import CachedEncoder

    return encoder.encoder if isinstance(encoder, CachedEncoder) else encoder


def _set_nprobe(index, nprobe: int = 32) -> None:
    if hasattr(index, "nprobe"):
        index.nprobe = nprobe


__all__ = ["Engine", "Recommendation"]
