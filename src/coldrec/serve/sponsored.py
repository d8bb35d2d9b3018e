"""Sponsored slots in served lists: the store's campaigns as bidders, the auction on the engine's ranking, and the
signed tokens and impression counts around it.

`Sponsored` is the service's side: it keeps the running campaigns (re-read when `campaigns_version` moves) and
today's spend (re-read every `REFRESH_S`), leaves out campaigns that have spent their paced share of the day's
budget (`coldrec.ads.pacing`), signs each placed ad's token and counts impressions, written to the store every
`REFRESH_S` by a background thread. The spend read here may lag by `REFRESH_S`; that only decides whether a
campaign bids: what a click costs is booked by the store against the budget itself, so nothing overspends.
`auction` is the engine's side: it runs under the engine's lock on the list being served.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from coldrec.ads.auction import AdPolicy, list_auction
from coldrec.ads.campaigns import Campaign
from coldrec.ads.click import DEPTH, ClickModel, ranked_pairs
from coldrec.ads.pacing import LEAD, paced_budget
from coldrec.ads.tokens import AdToken
from coldrec.data.catalog import ItemCatalog
from coldrec.data.context import UserContext
from coldrec.recommend.base import Ranked
from coldrec.serve.itemtable import ItemTable

logger = logging.getLogger(__name__)

REFRESH_S = 1.0
SPONSORED = "sponsored"


@dataclass(frozen=True)
class Placed:
    """The auction's winners on one list: rows of the ranked list, their campaigns and prices per click."""

    rows: np.ndarray
    campaign_ids: list[str]
    prices: np.ndarray

    def take(self, keep: np.ndarray) -> Placed:
        return Placed(self.rows[keep], [c for c, kept in zip(self.campaign_ids, keep, strict=True) if kept],
                      self.prices[keep])


NOTHING_PLACED = Placed(np.zeros(0, np.int64), [], np.zeros(0))


class CampaignPositions:
    """Each campaign's items as catalog positions, looked up once per campaign (a position never changes; an item
    the catalog lacks is looked up again once the catalog has grown)."""

    def __init__(self) -> None:
        self._known: dict[str, tuple[Campaign, int, np.ndarray]] = {}

    def __call__(self, campaign: Campaign, catalog: ItemCatalog) -> np.ndarray:
        cached = self._known.get(campaign.campaign_id)
        if cached is not None and cached[0] is campaign and (cached[1] == len(catalog) or (cached[2] >= 0).all()):
            return cached[2]
        positions = catalog.index_of(list(campaign.items))
        if len(self._known) > 4 * MAX_CACHED:
            self._known.clear()
        self._known[campaign.campaign_id] = (campaign, len(catalog), positions)
        return positions


MAX_CACHED = 10_000


def auction(click_model: ClickModel, catalog: ItemCatalog, table: ItemTable, context: UserContext, ranked: Ranked,
            organic_rows: np.ndarray, campaigns: Sequence[Campaign], policy: AdPolicy, n: int,
            category: str | None = None, positions_of: CampaignPositions | None = None) -> Placed:
    """The sponsored items for a list of n whose organic part is `organic_rows` of `ranked` (the shopper's ranking,
    filters applied): bidders are the campaigns' items among the first DEPTH of `ranked` that target this shopper
    (or the requested `category`), valued at p(click) x bid, p from `click_model`. `positions_of`: a cache of the
    campaigns' positions kept across requests."""
    if not any(slot < n for slot in policy.slots) or not campaigns or not len(ranked):
        return NOTHING_PLACED
    depth = ranked.take(slice(0, DEPTH))
    row_of = {int(item): row for row, item in enumerate(depth.items)}
    targeted = any(c.categories for c in campaigns)
    shopper = _shopper_categories(table, context, category) if targeted else set()
    targeting = [c for c in campaigns if c.matches_categories(shopper)]
    if not targeting:
        return NOTHING_PLACED
    lookup = positions_of or CampaignPositions()
    positions = np.concatenate([lookup(c, catalog) for c in targeting])
    owner_of = np.repeat(np.arange(len(targeting)), [len(c.items) for c in targeting])
    bidder_rows, bids, owners = [], [], []
    for position, owner in zip(positions.tolist(), owner_of.tolist(), strict=True):
        row = row_of.get(position)
        if row is not None:
            bidder_rows.append(row)
            bids.append(targeting[owner].bid)
            owners.append(targeting[owner].campaign_id)
    if not bidder_rows:
        return NOTHING_PLACED
    p = click_model.predict(ranked_pairs(depth, context))
    organic = np.asarray([row_of[int(item)] for item in ranked.items[organic_rows] if int(item) in row_of], np.int64)
    rows = np.asarray(bidder_rows, np.int64)
    sold = list_auction(p, organic, rows, np.asarray(bids), policy, n)
    return Placed(rows[sold.winners], [owners[w] for w in sold.winners], sold.prices)


def _shopper_categories(table: ItemTable, context: UserContext, category: str | None) -> set[str]:
    """Lower-case category paths that say what the shopper is after: the request's category, the categories of
    their last 10 items, their stated interests."""
    found = {str(path).lower() for path in table.paths[np.asarray(context.items[-10:], np.int64)] if path}
    found |= {interest.lower() for interest in context.interests}
    if category:
        found.add(category.lower())
    return found


class Sponsored:
    """The running campaigns of a store, paced, for the auctions of one serving process; tokens and impressions."""

    def __init__(self, store, lead: float = LEAD, refresh_s: float = REFRESH_S):
        self.store = store
        self.lead = lead
        self.refresh_s = refresh_s
        self._lock = threading.Lock()
        self._version = -1
        self._campaigns: list[Campaign] = []
        self._spend: dict[str, float] = {}
        self._read_at = 0.0
        self._impressions: Counter[str] = Counter()
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None

    def bidding(self, now: float | None = None) -> list[Campaign]:
        """The campaigns that may bid now: running, and under their paced share of today's budget."""
        now = time.time() if now is None else now
        self._refresh(now)
        campaigns, spend = self._campaigns, self._spend
        return [c for c in campaigns if c.running(now)
                and spend.get(c.campaign_id, 0.0) < paced_budget(c.daily_budget, now, self.lead)]

    def _refresh(self, now: float) -> None:
        if time.monotonic() - self._read_at < self.refresh_s:
            return
        with self._lock:
            if time.monotonic() - self._read_at < self.refresh_s:
                return
            version = self.store.campaigns_version()
            if version != self._version:
                self._campaigns, self._version = self.store.campaigns(), version
            self._spend = self.store.spend_today(now) if self._campaigns else {}
            self._read_at = time.monotonic()

    def token(self, campaign_id: str, item_id: str, price: float, now: float | None = None) -> str:
        """The signed token a placed ad carries (its click, sent back as an event's `ad`, is charged `price`);
        counts the impression."""
        with self._lock:
            self._impressions[campaign_id] += 1
        return AdToken(campaign_id, item_id, float(price), time.time() if now is None else now).sign(
            self.store.ad_secret())

    def flush(self) -> None:
        """Write the impressions counted since the last flush."""
        with self._lock:
            counts, self._impressions = dict(self._impressions), Counter()
        if counts:
            try:
                self.store.count_impressions(counts)
            except Exception:  # noqa: BLE001 - counted again next time: a count is worth less than a request
                logger.exception("writing impression counts failed; kept for the next flush")
                with self._lock:
                    self._impressions.update(counts)

    def start(self) -> None:
        """Flush every `refresh_s` in a background thread until `close`."""
        if self._flusher is None:
            self._flusher = threading.Thread(target=self._flush_every, daemon=True, name="coldrec-impressions")
            self._flusher.start()

    def _flush_every(self) -> None:
        while not self._stop.wait(self.refresh_s):
            self.flush()

    def close(self) -> None:
        self._stop.set()
        if self._flusher is not None:
            self._flusher.join(timeout=5)
        self.flush()
