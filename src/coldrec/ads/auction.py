"""The generalised second-price auction for a list's sponsored slots.

Each bidder is one (campaign, item) pair with a bid per click and a click probability p; its expected value per
impression is p x bid, and the slots go to the highest expected values. A winner pays per click the least bid
that would have kept its place: the next bidder's expected value divided by its own p, never less than the
reserve and never more than its own bid. Bidders under the reserve, or whose p is under the relevance floor, take
no part (so they set no price either).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AdPolicy:
    """Where sponsored items go and what they must clear: `slots` (0-based positions in a list), the relevance
    `floor` (an ad's click probability must reach this share of the organic list's median) and the `reserve`
    price per click."""

    slots: tuple[int, ...] = (2, 7)
    floor: float = 0.5
    reserve: float = 0.05

    def __post_init__(self) -> None:
        if any(slot < 0 for slot in self.slots) or len(set(self.slots)) != len(self.slots):
            raise ValueError(f"slots are distinct positions >= 0, not {self.slots}")
        if self.floor < 0 or self.reserve < 0:
            raise ValueError("floor and reserve are >= 0")


@dataclass(frozen=True)
class Auctioned:
    """The winners (rows of the bidders' arrays, best first) and the price per click each pays."""

    winners: np.ndarray
    prices: np.ndarray

    def __len__(self) -> int:
        return len(self.winners)


def second_price_auction(p: np.ndarray, bids: np.ndarray, slots: int, reserve: float = 0.0,
                         min_p: float = 0.0, distinct: np.ndarray | None = None) -> Auctioned:
    """Up to `slots` winners among bidders with p >= `min_p` and bid >= `reserve`, by p x bid (ties: lower row
    first). `distinct`: a key per bidder (an item) of which at most one may win (its best bidder; the others
    drop out before prices are set)."""
    p, bids = np.asarray(p, np.float64), np.asarray(bids, np.float64)
    eligible = np.flatnonzero((p >= min_p) & (p > 0) & (bids >= reserve))
    value = p[eligible] * bids[eligible]
    order = eligible[np.lexsort((eligible, -value))]
    if distinct is not None and len(order):
        _, first = np.unique(np.asarray(distinct)[order], return_index=True)
        order = order[np.sort(first)]
    winners = order[:slots]
    following = np.append(p[order[1:]] * bids[order[1:]], 0.0)[: len(winners)]
    prices = np.minimum(bids[winners], np.maximum(reserve, following / p[winners]))
    return Auctioned(winners.astype(np.int64), prices)


def list_auction(p: np.ndarray, organic_rows: np.ndarray, bidder_rows: np.ndarray, bids: np.ndarray,
                 policy: AdPolicy, n: int) -> Auctioned:
    """The auction for the sponsored slots of one list of n: `p` is the click probability of each row of the
    shopper's ranked top, `organic_rows` the rows of the list's organic items, each bidder a row (an item) and a bid.
    The relevance floor is `policy.floor` x the median p of the organic items; an item wins at most once. The
    winners are indices into the bidders."""
    slots = sum(1 for slot in policy.slots if slot < n)
    min_p = policy.floor * float(np.median(p[organic_rows])) if len(organic_rows) else 0.0
    return second_price_auction(p[bidder_rows], bids, slots, policy.reserve, min_p, distinct=bidder_rows)


def place_ads(organic: np.ndarray, ads: np.ndarray, slots: tuple[int, ...], n: int,
              fixed: np.ndarray | None = None) -> np.ndarray:
    """The n shown: `ads` (best first) at `slots` (0-based positions; those past n unused), the organic items in
    their order around them. An organic item that is also an ad is dropped from the organic part (the shopper
    sees it once, as the ad). `fixed`: a mask over `organic` of items that keep their index (pinned by a rule; a
    slot there is not used). -1 pads a list with too few items."""
    shown = np.full(n, -1, np.int64)
    fixed = np.zeros(len(organic), bool) if fixed is None else np.asarray(fixed, bool)
    ads = ads[~np.isin(ads, organic[fixed])]  # a fixed item is shown where it is fixed, not as an ad
    held = np.flatnonzero(fixed[: n])
    shown[held] = organic[held]
    usable = [slot for slot in sorted(slots) if slot < n and shown[slot] < 0]
    for slot, ad in zip(usable, ads, strict=False):
        shown[slot] = ad
    rest = iter(organic[~fixed & ~np.isin(organic, ads)])
    for at in np.flatnonzero(shown < 0):
        shown[at] = next(rest, -1)
    return shown
