"""Sponsored-product campaigns in the store, and the ledger of what their clicks cost: the same statements and
promises on both backends (`AdLedger`, a base of `Store` and `PostgresStore`).

Money is held in integer millionths (micros), so a sum is exact and a budget is never passed by a rounding. A
click is charged once, by the id of its event (`ad_clicks` is keyed by it), in the transaction that stores the
event, and never past the campaign's daily budget: the day's spend row is locked (PostgreSQL: FOR UPDATE; SQLite:
the one writer), read, and raised by at most what is left of that budget, so any number of workers and hosts
booking at once cannot overspend. Impressions are counted per campaign and day in batches from each serving
process (`count_impressions`). No user key is kept here: an ad click's shopper is in its event.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator, Sequence
from typing import Any

from coldrec.ads.campaigns import Campaign, CampaignError
from coldrec.ads.pacing import day_of
from coldrec.ads.tokens import AdToken

from .statements import Run, Statements

MICROS = 1_000_000

LEDGER_TABLES = """
CREATE TABLE IF NOT EXISTS campaigns (
    campaign_id TEXT PRIMARY KEY,
    campaign TEXT NOT NULL,  -- JSON: coldrec.ads.Campaign's fields
    daily_budget BIGINT NOT NULL,  -- micros: the cap a click's booking reads
    created {real} NOT NULL
);
CREATE TABLE IF NOT EXISTS ad_spend (
    campaign_id TEXT NOT NULL,
    day BIGINT NOT NULL,  -- UTC day number
    spend BIGINT NOT NULL DEFAULT 0,  -- micros
    clicks BIGINT NOT NULL DEFAULT 0,
    impressions BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (campaign_id, day)
);
CREATE TABLE IF NOT EXISTS ad_clicks (
    event_id TEXT PRIMARY KEY,  -- the click event's id: a click is charged once
    campaign_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    day BIGINT NOT NULL,
    price BIGINT NOT NULL,  -- micros: the second price the auction set
    charged BIGINT NOT NULL  -- micros: what was booked (less than price when the budget ran out)
);
CREATE TABLE IF NOT EXISTS ad_signing (secret TEXT NOT NULL);
"""
INSERT_SECRET = "INSERT INTO ad_signing (secret) SELECT ? WHERE NOT EXISTS (SELECT 1 FROM ad_signing)"
CAMPAIGNS_VERSION = "SELECT value FROM meta WHERE key = 'campaigns_version'"
BUMP_CAMPAIGNS_VERSION = "UPDATE meta SET value = value + 1 WHERE key = 'campaigns_version'"
SPEND_ROW = ("INSERT INTO ad_spend (campaign_id, day) VALUES (?, ?) "
             "ON CONFLICT (campaign_id, day) DO NOTHING")


def ledger_tables(real: str) -> str:
    """The tables, with `real` as the floating-point type's name."""
    return LEDGER_TABLES.format(real=real)


def new_secret() -> str:
    return secrets.token_hex(32)


def micros(amount: float) -> int:
    return round(float(amount) * MICROS)


class AdLedger(Statements):
    """Campaign and ledger methods over a backend's `Statements`; `_lock_row` is the clause that locks a row read
    for update ("" where writers are serialised)."""

    _lock_row = ""

    # campaigns

    def add_campaign(self, campaign: Campaign) -> Campaign:
        """Store a new campaign under a new id (the one given is ignored); a CampaignError names an item that is
        not a live item of the catalog."""
        stored = Campaign.from_dict({**campaign.to_dict(), "campaign_id": f"c_{secrets.token_hex(8)}",
                                     "created": time.time()})
        with self._transaction() as run:
            self._check_items(run, stored.items)
            run("INSERT INTO campaigns (campaign_id, campaign, daily_budget, created) VALUES (?, ?, ?, ?)",
                (stored.campaign_id, json.dumps(stored.to_dict()), micros(stored.daily_budget), stored.created))
            run(BUMP_CAMPAIGNS_VERSION, ())
        return stored

    @staticmethod
    def _check_items(run: Run, items: Sequence[str]) -> None:
        for at, item_id in enumerate(items):
            rows, _ = run("SELECT 1 FROM items WHERE item_id = ? AND deleted = 0", (item_id,))
            if not rows:
                raise CampaignError(f"items[{at}]", f"unknown or deleted item {item_id!r}")

    def campaign(self, campaign_id: str) -> Campaign | None:
        with self._reads() as run:
            rows, _ = run("SELECT campaign FROM campaigns WHERE campaign_id = ?", (campaign_id,))
        return Campaign.from_dict(json.loads(rows[0][0])) if rows else None

    def campaigns(self) -> list[Campaign]:
        """Every campaign, oldest first."""
        with self._reads() as run:
            rows, _ = run("SELECT campaign FROM campaigns ORDER BY created, campaign_id", ())
        return [Campaign.from_dict(json.loads(row[0])) for row in rows]

    def update_campaign(self, campaign_id: str, fields: dict[str, Any]) -> Campaign | None:
        """Change the given fields (`coldrec.ads.campaigns.MUTABLE`) in one transaction: the campaign after it, or
        None when there is none by that id. A lowered daily budget holds from the next click on."""
        with self._transaction() as run:
            rows, _ = run(f"SELECT campaign FROM campaigns WHERE campaign_id = ?{self._lock_row}", (campaign_id,))
            if not rows:
                return None
            changed = Campaign.from_dict(json.loads(rows[0][0])).changed(fields)
            run("UPDATE campaigns SET campaign = ?, daily_budget = ? WHERE campaign_id = ?",
                (json.dumps(changed.to_dict()), micros(changed.daily_budget), campaign_id))
            run(BUMP_CAMPAIGNS_VERSION, ())
        return changed

    def campaigns_version(self) -> int:
        """Grows with every campaign added or changed (by any process sharing the store)."""
        with self._reads() as run:
            rows, _ = run(CAMPAIGNS_VERSION, ())
        return int(rows[0][0])

    # the ledger

    def ad_secret(self) -> bytes:
        """The key ad tokens are signed with: drawn once per store, so every host sharing it can check a token."""
        secret = getattr(self, "_ad_secret_bytes", None)
        if secret is None:
            with self._reads() as run:
                rows, _ = run("SELECT secret FROM ad_signing", ())
            secret = self._ad_secret_bytes = bytes.fromhex(rows[0][0])
        return secret

    def spend_today(self, now: float | None = None) -> dict[str, float]:
        """Each campaign's spend on the UTC day of `now` (default: the clock), for pacing."""
        with self._reads() as run:
            rows, _ = run("SELECT campaign_id, spend FROM ad_spend WHERE day = ?",
                          (day_of(time.time() if now is None else now),))
        return {str(campaign_id): spend / MICROS for campaign_id, spend in rows}

    def campaign_stats(self, campaign_id: str, now: float | None = None) -> dict[str, float | int]:
        """A campaign's impressions, clicks and spend, in all and today (UTC), and what is left of today's budget.
        Impressions are those the serving processes have written so far (each writes its count every second)."""
        day = day_of(time.time() if now is None else now)
        with self._reads() as run:
            (total,), _ = run("SELECT COALESCE(SUM(impressions), 0), COALESCE(SUM(clicks), 0), "
                              "COALESCE(SUM(spend), 0) FROM ad_spend WHERE campaign_id = ?", (campaign_id,))
            today, _ = run("SELECT impressions, clicks, spend FROM ad_spend WHERE campaign_id = ? AND day = ?",
                           (campaign_id, day))
            budget, _ = run("SELECT daily_budget FROM campaigns WHERE campaign_id = ?", (campaign_id,))
        impressions, clicks, spend = today[0] if today else (0, 0, 0)
        return {"impressions": int(total[0]), "clicks": int(total[1]), "spend": int(total[2]) / MICROS,
                "impressions_today": int(impressions), "clicks_today": int(clicks), "spend_today": spend / MICROS,
                "budget_left_today": max(0, int(budget[0][0]) - int(spend)) / MICROS if budget else 0.0}

    def count_impressions(self, counts: dict[str, int], now: float | None = None) -> None:
        """Add impressions per campaign id to the day of `now`."""
        if not counts:
            return
        day = day_of(time.time() if now is None else now)
        with self._transaction() as run:
            for campaign_id, count in sorted(counts.items()):
                run(SPEND_ROW, (campaign_id, day))
                run("UPDATE ad_spend SET impressions = impressions + ? WHERE campaign_id = ? AND day = ?",
                    (int(count), campaign_id, day))

    def clicks_booked(self, campaign_id: str) -> dict[str, float]:
        """Each charged click of a campaign: event id -> what it was charged."""
        with self._reads() as run:
            rows, _ = run("SELECT event_id, charged FROM ad_clicks WHERE campaign_id = ?", (campaign_id,))
        return {str(event_id): charged / MICROS for event_id, charged in rows}

    def _book_clicks(self, run: Run, clicks: Iterator[tuple[str, AdToken]], now: float) -> None:
        """Charge each (event id, token) click not charged before, inside the caller's transaction (the one that
        stored the events): at the token's price, or what is left of the day's budget if less."""
        day = day_of(now)
        for event_id, token in clicks:
            budget, _ = run("SELECT daily_budget FROM campaigns WHERE campaign_id = ?", (token.campaign_id,))
            if not budget:
                continue  # a token for a campaign since removed from the store: nothing to charge
            price = micros(token.price)
            _, inserted = run("INSERT INTO ad_clicks (event_id, campaign_id, item_id, day, price, charged) "
                              "VALUES (?, ?, ?, ?, ?, 0) ON CONFLICT (event_id) DO NOTHING",
                              (event_id, token.campaign_id, token.item_id, day, price))
            if not inserted:
                continue
            run(SPEND_ROW, (token.campaign_id, day))
            (spent,), _ = run(f"SELECT spend FROM ad_spend WHERE campaign_id = ? AND day = ?{self._lock_row}",
                              (token.campaign_id, day))
            charged = max(0, min(price, int(budget[0][0]) - int(spent[0])))
            run("UPDATE ad_spend SET spend = spend + ?, clicks = clicks + 1 WHERE campaign_id = ? AND day = ?",
                (charged, token.campaign_id, day))
            run("UPDATE ad_clicks SET charged = ? WHERE event_id = ?", (charged, event_id))
