"""`Campaign`: what an advertiser buys: items, a bid per click, a daily budget, optional targeting and dates."""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, replace
from typing import Any

#: the fields a campaign's owner may change after it is created (PATCH)
MUTABLE = ("bid", "daily_budget", "paused", "end", "categories", "keywords")
_WORD = re.compile(r"\w+")


class CampaignError(ValueError):
    """A campaign field that cannot be accepted; `field` names it."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Campaign:
    """One campaign. `bid` and `daily_budget` are in the shop's currency; `start` / `end` are unix seconds (None:
    open). `categories`: shown only to shoppers in those categories (a list filtered to one of them, or a shopper
    whose recent items or stated interests are in one); `keywords`: in search, shown only for queries holding one
    of them. Empty: no restriction."""

    campaign_id: str
    items: tuple[str, ...]
    bid: float
    daily_budget: float
    categories: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    start: float | None = None
    end: float | None = None
    paused: bool = False
    created: float = 0.0

    def __post_init__(self) -> None:
        if not self.items:
            raise CampaignError("items", "a campaign needs at least one item")
        if len(set(self.items)) != len(self.items):
            raise CampaignError("items", "an item is listed twice")
        for name in ("bid", "daily_budget"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise CampaignError(name, f"must be a positive number, not {value!r}")
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise CampaignError("end", "must come after start")

    def running(self, now: float) -> bool:
        """Not paused, and `now` within its dates."""
        return (not self.paused and (self.start is None or now >= self.start)
                and (self.end is None or now < self.end))

    def matches_query(self, query: str | None) -> bool:
        """No keywords, or the query holds one of them (whole words, any case)."""
        if not self.keywords:
            return True
        if not query:
            return False
        words = " ".join(_WORD.findall(query.lower()))
        return any(re.search(rf"\b{re.escape(' '.join(_WORD.findall(k.lower())))}\b", words) for k in self.keywords)

    def matches_categories(self, categories: set[str]) -> bool:
        """No target categories, or one of `categories` (lower-case paths or leaves) is under one of them."""
        if not self.categories:
            return True
        targets = [c.lower().strip() for c in self.categories]
        return any(c == t or c.startswith(t + " > ") or c.endswith(" > " + t) or c.split(" > ")[-1] == t
                   for c in categories for t in targets)

    def changed(self, fields: dict[str, Any]) -> Campaign:
        """This campaign with `fields` (of MUTABLE) changed; a CampaignError names a field that cannot be."""
        for name in fields:
            if name not in MUTABLE:
                raise CampaignError(name, f"cannot be changed (changeable: {', '.join(MUTABLE)})")
        values: dict[str, Any] = {k: tuple(v) if k in ("categories", "keywords") else v for k, v in fields.items()}
        return replace(self, **values)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["items"], out["categories"], out["keywords"] = (list(out[k]) for k in ("items", "categories", "keywords"))
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Campaign:
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        for name in ("items", "categories", "keywords"):
            if name in known:
                known[name] = tuple(known[name])
        return cls(**known)
