"""`Engine`: a fitted recommender, the searcher and the live catalog, behind the service.

It holds no per-user data: a request brings its shopper as a `UserContext` (built by `context` from
the store's events and profile), so an event changes the next answer with no refit, and erasing a user
needs nothing here. Items can be added, updated and removed live: they are encoded and indexed before
the call returns. Any registered recommender can be served: the engine calls the public interface of
`coldrec.recommend.base.Recommender` only.

Locks: `_lock` guards the state requests read; it is held only while a request ranks (a few ms) or a
write swaps its new rows in. Encoding (new items, uncached interests and queries) happens outside it,
so a write never stalls reads; `_write_lock` serialises the writers (two adds of one id, an add racing
a remove), and a `sync_items` that would wait for a writer is queued and applied right after it.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from coldrec.ads.auction import AdPolicy, place_ads
from coldrec.ads.campaigns import Campaign
from coldrec.ads.click import ClickModel
from coldrec.data.catalog import ItemCatalog
from coldrec.data.context import UserContext
from coldrec.data.interactions import EventType, InteractionLog
from coldrec.encode.shared import normalise
from coldrec.profile import build_interest_profiles
from coldrec.rank import rules as merchandising
from coldrec.rank.rules import Rule
from coldrec.recommend.base import Recommender
from coldrec.serve.itemtable import ItemTable, Recommendation
from coldrec.serve.lexical import LexicalRefitter
from coldrec.serve.matching import floor_from_top1, lexical_matches, probe_queries
from coldrec.serve.reasons import MATCHES_SEARCH, RELATED_TO_SEARCH, reasons
from coldrec.serve.requests import RequestTexts, clean_query, rows_differ, shopper_context
from coldrec.serve.saved import shares_vectors
from coldrec.serve.sponsored import NOTHING_PLACED, CampaignPositions, Placed, auction

logger = logging.getLogger(__name__)

#: A request uses its shopper's most recent events up to this many (the store is asked for no more).
#: Older ones barely count: an event k positions back weighs 0.7**k in the profile (< 1e-7 from 50 on);
#: what they still feed (ALS fold-in, item-kNN, the bought-items filter) is whole for every
#: amazon14-office shopper (at most 94 events) and 95% of UCI Online Retail's (p95: 305 events, p99:
#: 639). On Office a request with 300 events took 9 ms against 4 ms with 10 (100k events: 115 ms).
MAX_HISTORY_EVENTS = 300


class Engine:
    """A fitted `Recommender` + `Searcher` + the live catalog's table. Holds no per-user data."""

    def __init__(self, model: Recommender, searcher, search_floor: float | None = None, fingerprint: str = "",
                 texts: RequestTexts | None = None, click_model: ClickModel | None = None):
        """`texts`: the text-vector caches of an engine this one replaces (same encoder), shared rather than
        refilled. `click_model`: the model's calibrated click probability (`coldrec.ads.click`), fitted on a held-out
        cut; without one, no list holds sponsored items."""
        self.model = model
        self.searcher = searcher
        self.fingerprint = fingerprint
        self.click_model = click_model
        self._campaign_positions = CampaignPositions()
        self._lock = threading.RLock()
        self._write_lock = threading.Lock()
        self._deferred: list[pd.DataFrame] = []  # sync_items rows that arrived while a write ran
        self._deferred_lock = threading.Lock()
        _one_thread_per_request()
        self.encoder = getattr(model, "encoder", None) or searcher.encoder
        own = RequestTexts(self.encoder)
        shared = texts is not None and texts.encoder is own.encoder
        self._texts = texts if texts is not None and shared else own
        searcher.query_encoder = self._texts.queries  # the searcher encodes (cleaned) queries through the LRU
        self._attach_searcher()
        self._lexical = LexicalRefitter(searcher, self._lock, lambda: self.catalog)
        self._table = ItemTable(self.catalog)
        if not shared:
            self._texts.warm(self.categories())
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
        recommender: str = "coldrec",
    ) -> Engine:
        """Fit the registered `recommender` (with `model_params`) and a searcher on the catalog and log."""
        from coldrec.serve.saved import build_engine

        return build_engine(cls, catalog, log, profiles, encoder=encoder, now=now, model_params=model_params,
                            recommender=recommender)

    def save(self, directory: Path) -> None:
        """The model directory (`coldrec.model`): a manifest and the parts as data; no user data, no code."""
        from coldrec.serve.saved import save_engine

        with self._writing(), self._lock:
            save_engine(self, Path(directory))

    @classmethod
    def load(cls, directory: Path, encoder=None, like: Engine | None = None) -> Engine:
        """The engine saved in `directory`. `like`: a served engine this one is to replace (another version of
        its model); when both were fitted with the same encoder (fingerprint), the new one shares its encoder
        and its caches of shoppers' text vectors, so it loads no language model and encodes nothing."""
        from coldrec.model import read_manifest
        from coldrec.serve.saved import load_engine

        directory = Path(directory)
        if like is None or encoder is not None:
            return load_engine(cls, directory, encoder)
        recorded = (read_manifest(directory).extra.get("encoder") or {}).get("fingerprint")
        if not recorded or recorded != str(getattr(like.encoder, "fingerprint", "")):
            return load_engine(cls, directory, None)
        return load_engine(functools.partial(cls, texts=like._texts), directory, like.encoder)

    # ------------------------------------------------------------------ the live catalog
    @property
    def catalog(self) -> ItemCatalog:
        return self.model.catalog

    @property
    def privacy(self) -> dict | None:
        """What the model's differentially private aggregates spent per (re)train (None: exact counts)."""
        return getattr(self.model, "privacy_release", None)

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
        texts = ItemCatalog.from_partial(frame).texts()
        return normalise(np.asarray(self.encoder.encode(texts, show_progress=False), np.float32))

    def _add(self, frame: pd.DataFrame, encoded: np.ndarray | None = None) -> None:
        """add_items' work; the caller holds the write lock."""
        if encoded is None:
            encoded = self.encode_items(frame)
        self.model.reserve(len(frame))  # room for the rows, made outside the read lock
        with self._lock:
            positions = self.model.add_items(frame, vectors=self.model.to_model_space(encoded))
            if shares_vectors(self.model):
                self._attach_searcher()  # the grown arrays are new views
            else:
                self.searcher.put_vectors(positions, encoded)
            self._lexical.changed()
            self._table.refresh(self.catalog, np.asarray(positions, np.int64))


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
        """A model whose text vectors are the encoder's lends them and their index to the searcher (one copy)."""
        if shares_vectors(self.model):
            self.searcher.share_vectors(self.model.item_vectors, self.model.item_index)

    def refit_lexical(self) -> None:
        """Refit the lexical indexes on the catalog now, in this thread (live changes refit in the background)."""
        self._lexical.refit(self.catalog, self._lexical.generation)

    def wait_for_lexical(self, timeout: float = 30.0) -> bool:
        """Block until the lexical indexes hold every added item (True), or `timeout` seconds pass (False)."""
        return self._lexical.wait(timeout)

    def close(self) -> None:
        """Stop the lexical refit's child process, if one runs (the server calls this on shutdown)."""
        self._lexical.close()

    def retire(self) -> None:
        """A newer engine has taken over: close, and drop the one reference cycle through this engine (its
        lexical refitter's view of the catalog), so its memory is freed as soon as the last request still using
        it returns. The cyclic collector would not do it: a server freezes its start-up objects out of its
        reach (`coldrec.serve.app.freeze_startup_objects`). Requests under way still work."""
        self.close()
        catalog = self.catalog
        self._lexical.current = lambda: catalog

    def remove_item(self, item_id: str) -> bool:
        """Never returned afterwards; False when unknown or already removed."""
        with self._writing():
            return self._remove(item_id)

    def _remove(self, item_id: str) -> bool:
        with self._lock:
            if not self.has_item(item_id):
                return False
            self.model.remove_items([int(self.catalog.index_of([item_id])[0])])
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
        deleted = np.zeros(len(items_frame), bool)
        if "deleted" in items_frame:
            deleted = items_frame["deleted"].to_numpy(bool)
        positions = self.catalog.index_of(items_frame["item_id"])
        known = positions >= 0
        stale = ~known
        if known.any():
            ours = self.catalog.frame.iloc[positions[known]].reset_index(drop=True)
            theirs = ItemCatalog.from_partial(items_frame[known].drop(columns="deleted", errors="ignore")).frame
            stale[known] = rows_differ(ours, theirs) | self.model.removed[positions[known]]
        changed = items_frame[stale & ~deleted].drop(columns="deleted", errors="ignore")
        if len(changed):
            self._add(ItemCatalog.from_partial(changed).frame)
        removed = sum(self._remove(str(item_id)) for item_id in items_frame["item_id"][deleted & known])
        return len(changed) + removed

    def categories(self) -> list[str]:
        """Leaf categories, for the demo page's interest picker."""
        return sorted({str(leaf) for leaf in self._table.leaves[~self.model.removed] if leaf})

    # ------------------------------------------------------------------ requests
    def context(self, events, interests: list[str], now: int | None = None) -> UserContext:
        """A shopper's context from the store's events in time order (`coldrec.serve.requests.shopper_context`):
        the last MAX_HISTORY_EVENTS item events, the last MAX_QUERIES queries; unknown or removed ids skipped."""
        with self._lock:
            return shopper_context(events, interests, now, self.catalog, self.model.removed, MAX_HISTORY_EVENTS)

    def prepare_texts(self, texts: list[str]) -> int:
        """Encode a shopper's stated interests into the in-memory cache (those a request uses), so the next
        request need not; returns how many were new. Takes no lock requests wait for."""
        return self._texts.prepare(texts)

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
        diversity: float | None = None,
        rules: Sequence[Rule] = (),
        now: float | None = None,
        campaigns: Sequence[Campaign] = (),
        ad_policy: AdPolicy | None = None,
    ) -> list[Recommendation]:
        """The shopper's top n. Unavailable items only with `include_unavailable` (`in_stock=False`: only them).
        `diversity`: this request's strength in [0, 1] (None: the model's). `rules`: the shop's merchandising
        rules (`coldrec.rank.rules`, those active at `now`, default the clock), applied to the items the list may
        hold: boosts and buries before the model's list rules, pins after. `campaigns`: those bidding for the
        sponsored slots of `ad_policy` (`coldrec.serve.sponsored.auction`; a pinned position is never one), among
        the items the list may hold; none without a click model (`click_model`)."""
        context, encode = self._bounded(context)
        now = time.time() if now is None else now
        with self._lock:
            allowed = self._table.allowed(self.model.removed, category, min_price, max_price, in_stock,
                                          include_unavailable)
            ranked = self.model.rank(context, None, allowed, encode)
            keep = np.ones(len(ranked), bool)
            if not include_bought and len(context.items):
                bought = context.items[np.isin(context.events, (EventType.PURCHASE, EventType.RATING))]
                keep &= ~np.isin(ranked.items, bought)
            ranked = ranked.take(np.flatnonzero(keep))
            # a duplicate listing never follows its twin
            ranked = ranked.take(self._table.distinct_titles(ranked.items))
            boosted = np.zeros(len(ranked), bool)
            if rules:
                order, boosted = merchandising.reorder(ranked.items, rules, self._table, now)
                ranked = ranked.take(order)
            top, slotted = self.model.arrange_ranked(ranked, n, diversity=diversity, context=context)
            pinned_list, pinned = merchandising.pin(top.items, ranked.items, n, rules, self._table, now)
            if not np.array_equal(pinned_list, top.items):
                row_of = np.full(len(self._table), -1, np.int64)
                row_of[ranked.items] = np.arange(len(ranked))
                slotted = np.isin(pinned_list, top.items[slotted])
                top = ranked.take(row_of[pinned_list])
            promoted = np.isin(top.items, ranked.items[boosted])
            placed = NOTHING_PLACED
            if campaigns and self.click_model is not None and ad_policy is not None:
                # a pinned item keeps its place: no ad goes there
                free = tuple(slot for slot in ad_policy.slots if slot >= len(top) or not pinned[slot])
                ad_policy = replace(ad_policy, slots=free)
                placed = auction(self.click_model, self.catalog, self._table, context, ranked,
                                 _rows_of(ranked.items, top.items), campaigns, ad_policy, n, category,
                                 self._campaign_positions)
                placed = placed.take(~np.isin(ranked.items[placed.rows], top.items[pinned]))
            if len(placed.rows):
                shown = place_ads(top.items, ranked.items[placed.rows], ad_policy.slots, n,  # type: ignore[union-attr]
                                  fixed=pinned)
                shown = shown[shown >= 0]
                at = _rows_of(top.items, shown)  # -1: an ad from below the organic list
                slotted, pinned, promoted = (flags[np.maximum(at, 0)] & (at >= 0)
                                             for flags in (slotted, pinned, promoted))
                top = ranked.take(_rows_of(ranked.items, shown))
            explanations = self.model.explain(context, top, encode)
            said = reasons(explanations, context, self._table.titles, self._table.leaves, self._table.ids, top.items)
            said = [merchandising.PINNED if is_pinned else "new arrival" if moved else
                    merchandising.PROMOTED if is_promoted else reason
                    for reason, moved, is_pinned, is_promoted in zip(said, slotted, pinned, promoted, strict=True)]
            results = [self._table.result(int(i), float(s), r) for i, s, r in zip(top.items, top.scores, said,
                                                                                    strict=True)]
            return _mark_sponsored(results, top.items, ranked.items[placed.rows], placed)

    def similar(self, item_id: str, n: int = 10, include_unavailable: bool = False) -> list[Recommendation]:
        """The model's similar items (coldrec: nearest by text vector); KeyError for an unknown or removed id."""
        with self._lock:
            if not self.has_item(item_id):
                raise KeyError(item_id)
            position = int(self.catalog.index_of([item_id])[0])

            def nearest(k: int) -> tuple[np.ndarray, np.ndarray]:
                found = self.model.similar_items(position, k)
                return found.items, found.scores

            found, scores = self._table.listed(nearest, n, n + 11, len(self.catalog), self.model.removed,
                                               include_unavailable, exclude=position)
            title = self._table.titles[position]
            reason = f"similar to {title}"
            return [self._table.result(int(i), float(s), reason) for i, s in zip(found, scores, strict=True)]

    def search(
        self, query: str, n: int = 10, context: UserContext | None = None, include_unavailable: bool = False,
        campaigns: Sequence[Campaign] = (), ad_policy: AdPolicy | None = None,
    ) -> list[Recommendation]:
        """The searcher's top items; with a context, re-ranked by the shopper's text profile (`Searcher.search`).

        Items matching the query lexically (a word, or most of its letters: typos) have reason "matches your
        search"; those found only by meaning must reach the catalog's `search_floor` cosine and have reason
        "related to your search"; nothing found: an empty list (`coldrec.serve.matching`). `campaigns` whose keywords
        the query holds bid for `ad_policy`'s slots among the results relevant to it (`_search_ads`). ValueError for an
        empty or blank query."""
        cleaned = clean_query(query)
        if not cleaned:
            raise ValueError("the query is empty")
        vector = self._texts.query_vector(cleaned)  # encoded outside the lock (or cached)
        encode = None
        if context is not None:
            context, encode = self._bounded(context, model_space=False)
        with self._lock:
            profiles = None
            if context is not None:
                decay = float(self.model.get_params().get("decay", 0.7))
                built = build_interest_profiles([context], self.searcher.vectors, encode, decay, 1)
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

            found, scores = self._table.listed(searched, n, n + 20, self.searcher.n_items, self.model.removed,
                                               include_unavailable, shown=shown)
            matched = last_matched[0][: len(found)] if last_matched else np.zeros(0, bool)
            results = [
                self._table.result(int(i), float(s), MATCHES_SEARCH if lexical else RELATED_TO_SEARCH)
                for i, s, lexical in zip(found, scores, matched, strict=True)
            ]
            bidding = [c for c in campaigns if c.matches_query(query)]
            if not bidding or self.click_model is None or ad_policy is None:
                return results
            # ads come from the results relevant to the query (matched, or as close as the floor), three lists deep
            relevant, relevant_scores = self._table.listed(searched, 3 * n, 3 * n + 20, self.searcher.n_items,
                                                           self.model.removed, include_unavailable, shown=shown)
            relevant_matched = last_matched[0][: len(relevant)] if last_matched else np.zeros(len(relevant), bool)
            return self._search_ads(results, found, relevant, relevant_scores, relevant_matched, context, n,
                                    bidding, ad_policy)

    def _search_ads(self, results: list[Recommendation], found: np.ndarray, relevant: np.ndarray,
                    relevant_scores: np.ndarray, relevant_matched: np.ndarray, context: UserContext | None, n: int,
                    campaigns: Sequence[Campaign], ad_policy: AdPolicy) -> list[Recommendation]:
        """`search`'s results with sponsored items among the `relevant` ones: each valued by the click model on the
        shopper's ranking of the relevant items (their recommendation scores; no search clicks to calibrate on),
        placed as in `recommend`. The caller holds the lock."""
        context = context if context is not None else UserContext()
        context, encode = self._bounded(context)
        allowed = np.zeros(len(self.catalog), bool)
        allowed[relevant] = True
        ranked = self.model.rank(context, None, allowed, encode)
        organic_rows = _rows_of(ranked.items, found)
        placed = auction(self.click_model, self.catalog, self._table, context, ranked,  # type: ignore[arg-type]
                         organic_rows[organic_rows >= 0], campaigns, ad_policy, n,
                         positions_of=self._campaign_positions)
        if not len(placed.rows):
            return results
        ads = ranked.items[placed.rows]
        shown = place_ads(found, ads, ad_policy.slots, n)
        shown = shown[shown >= 0]
        organic = {int(item): result for item, result in zip(found.tolist(), results, strict=True)}
        at = _rows_of(relevant, ads)
        for item, row in zip(ads.tolist(), at.tolist(), strict=True):
            reason = MATCHES_SEARCH if relevant_matched[row] else RELATED_TO_SEARCH
            organic.setdefault(item, self._table.result(item, float(relevant_scores[row]), reason))
        return _mark_sponsored([organic[int(item)] for item in shown], shown, ads, placed)

    # ------------------------------------------------------------------ helpers
    def _bounded(self, context: UserContext, model_space: bool = True):
        """The request's context cut to what a request uses (`RequestTexts.bounded`; the last MAX_HISTORY_EVENTS
        events) and a lookup of its texts' vectors (in the model's space, or the encoder's)."""
        context, lookup = self._texts.bounded(context)
        context = replace(
            context,
            items=context.items[-MAX_HISTORY_EVENTS:],
            times=context.times[-MAX_HISTORY_EVENTS:],
            events=context.events[-MAX_HISTORY_EVENTS:],
        )
        if not model_space or not self.model.reduces_vectors:
            return context, lookup
        to_space = self.model.to_model_space
        return context, lambda texts: to_space(lookup(texts))

    def _measure_search_floor(self) -> float:
        """The dense floor of `search` on this catalog (`coldrec.serve.matching`): meaningless probes' top-1 cosine."""
        if not self.searcher.n_items:
            return 1.0
        vectors = normalise(self._texts.encode_uncached(probe_queries()))
        top = self.searcher.dense_top(vectors, 1)[:, 0]
        top1 = np.einsum("qd,qd->q", self.searcher.vectors[np.maximum(top, 0)], vectors)
        return floor_from_top1(top1[top >= 0])


def _rows_of(items: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """The row of `items` (distinct) holding each of `wanted`; -1 where absent."""
    if not len(items):
        return np.full(len(wanted), -1, np.int64)
    order = np.argsort(items, kind="stable")
    rows = order[np.minimum(np.searchsorted(items[order], wanted), len(items) - 1)]
    return np.where(items[rows] == wanted, rows, -1).astype(np.int64)


def _mark_sponsored(results: list[Recommendation], shown: np.ndarray, ads: np.ndarray,
                    placed: Placed) -> list[Recommendation]:
    """The results with each sponsored item's campaign and price per click, its reason saying it is sponsored."""
    for item, campaign_id, price in zip(ads.tolist(), placed.campaign_ids, placed.prices.tolist(), strict=True):
        at = int(np.flatnonzero(shown == item)[0])
        results[at] = replace(results[at], campaign_id=campaign_id, cost_per_click=float(price),
                              reason=f"sponsored: {results[at].reason}")
    return results


def _one_thread_per_request() -> None:
    """BLAS and FAISS on one thread for this process: a request's work is small, and their
    thread teams spinning against concurrent requests on a few cores cost ten times the work."""
    import faiss
    from threadpoolctl import threadpool_limits

    faiss.omp_set_num_threads(1)
    threadpool_limits(1, "blas")


__all__ = ["MAX_HISTORY_EVENTS", "Engine", "Recommendation"]
