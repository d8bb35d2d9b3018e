"""The HTTP API's request and response bodies (pydantic); unknown fields are refused everywhere."""

import math
import time
from datetime import UTC, datetime
from typing import Annotated, Literal

import pandas as pd
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

#: Event times may run this far ahead of the server's clock (clock skew), no further.
MAX_FUTURE_S = 24 * 3600


def _addressable(value: str) -> str:
    """An id must be usable in a URL path: no control characters, not a dot segment, no surrounding spaces
    (clients drop or normalise these, so such an id could be written but never erased)."""
    if value in (".", ".."):
        raise ValueError("an id cannot be '.' or '..'")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("an id cannot hold control characters")
    if value != value.strip():
        raise ValueError("an id cannot start or end with whitespace")
    return value


Id = Annotated[str, Field(min_length=1, max_length=256), AfterValidator(_addressable)]
Text = Annotated[str, Field(max_length=10_000)]
Price = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Attributes = dict[Annotated[str, Field(max_length=200)], str | int | float | bool]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Event(Strict):
    event_id: Id
    user_id: Id | None = None
    session_id: Id | None = None
    item_id: Id | None = Field(None, description="Required except for search events.")
    type: Literal["view", "click", "cart", "purchase", "search"]
    time: float | None = Field(None, ge=0, allow_inf_nan=False,
                               description=f"Unix seconds, at most {MAX_FUTURE_S // 3600} h ahead of the server; "
                                           "now when absent.")
    query: Annotated[str, Field(max_length=1000)] | None = None
    ad: Annotated[str, Field(max_length=2000)] | None = Field(
        None, description="On a click on a sponsored result: that result's `ad`; the click is charged to its campaign "
                          "once (by event_id), never past the campaign's daily budget.")

    @field_validator("time")
    @classmethod
    def _not_in_the_future(cls, value: float | None) -> float | None:
        if value is not None and value > time.time() + MAX_FUTURE_S:
            raise ValueError(f"time is in the future (more than {MAX_FUTURE_S // 3600} h ahead of the server's clock)")
        return value

    @model_validator(mode="after")
    def _who_and_what(self) -> "Event":
        if (self.user_id is None) == (self.session_id is None):
            raise ValueError("give exactly one of user_id and session_id")
        if self.item_id is None and self.type != "search":
            raise ValueError(f"item_id is required for {self.type} events")
        return self


def _plausible_date(value: datetime | None) -> datetime | None:
    if value is not None and not 1900 <= value.year <= 2200:
        raise ValueError("created_at must fall between the years 1900 and 2200")
    return value


CreatedAt = Annotated[datetime | None, AfterValidator(_plausible_date)]


class Item(Strict):
    """A whole product record: POST /items adds it or replaces the stored one (PATCH changes single fields)."""

    item_id: Id
    title: Annotated[str, Field(min_length=1, max_length=10_000, description="Required: a product needs a name.")]
    description: Text = ""
    brand: Annotated[str, Field(max_length=1000)] = ""
    category: Annotated[str, Field(max_length=1000, description='Path, levels joined by " > ".')] = ""
    price: Price | None = None
    available: bool = True
    created_at: CreatedAt = None
    attributes: Attributes | None = None

    @field_validator("title")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("title must not be blank")
        return value


class ItemPatch(Strict):
    """Fields to change on one stored product; every field left out keeps its value."""

    title: Annotated[str, Field(min_length=1, max_length=10_000)] | None = None
    description: Text | None = None
    brand: Annotated[str, Field(max_length=1000)] | None = None
    category: Annotated[str, Field(max_length=1000)] | None = None
    price: Price | None = None
    available: bool | None = None
    created_at: CreatedAt = None
    attributes: Attributes | None = None

    @model_validator(mode="after")
    def _something_and_no_nulls(self) -> "ItemPatch":
        if not self.model_fields_set:
            raise ValueError("give at least one field to change")
        for name in self.model_fields_set & {"title", "available"}:
            if getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        if self.title is not None and not self.title.strip():
            raise ValueError("title must not be blank")
        return self

    def changes(self) -> dict:
        """The given fields only (null clears description, brand, category, price, created_at, attributes)."""
        return {name: getattr(self, name) for name in self.model_fields_set}


class StoredItem(BaseModel):
    item_id: str
    title: str
    description: str
    brand: str
    category: str
    price: float | None
    available: bool
    created_at: datetime | None
    attributes: dict | None

    @classmethod
    def from_row(cls, row: pd.Series) -> "StoredItem":
        def text(name: str) -> str:
            value = row[name]
            return value if isinstance(value, str) else ""

        price, created = row["price"], row["created_at"]
        return cls(
            item_id=str(row["item_id"]), title=text("title"), description=text("description"), brand=text("brand"),
            category=text("category"), price=None if price is None or pd.isna(price) else float(price),
            available=bool(row["available"]),
            created_at=None if pd.isna(created) else pd.Timestamp(created).to_pydatetime().replace(tzinfo=UTC),
            attributes=row["attributes"] if isinstance(row["attributes"], dict) else None,
        )


class Profile(Strict):
    interests: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(max_length=100)


class RuleIn(Strict):
    """A merchandising rule (coldrec.rank.rules): boost, bury, pin or exclude one item, a category or a brand,
    optionally between two times."""

    action: Literal["boost", "bury", "pin", "exclude"]
    item_id: Id | None = None
    category: Annotated[str, Field(min_length=1, max_length=1000)] | None = None
    brand: Annotated[str, Field(min_length=1, max_length=1000)] | None = None
    position: int | None = Field(None, ge=1, le=1000, description="pin: the list position, 1 = first.")
    weight: float = Field(1.0, gt=0, le=100, allow_inf_nan=False,
                          description="boost / bury: an item ranked r-th competes as if ranked r / (1 + weight) "
                                      "(boost) or r x (1 + weight) (bury).")
    starts_at: datetime | None = Field(None, description="Active from (ISO 8601; default: now).")
    ends_at: datetime | None = Field(None, description="Active until, exclusive (default: no end).")

    def problems(self) -> list[tuple[str, str]]:
        """(field, what is wrong) for each rule between fields that does not hold (the API answers 422 naming
        the field)."""
        found = []
        targets = [name for name in ("item_id", "category", "brand") if getattr(self, name) is not None]
        if len(targets) != 1:
            found.append((targets[1] if len(targets) > 1 else "item_id",
                          "give exactly one of item_id, category and brand"))
        if self.action == "pin" and self.item_id is None:
            found.append(("item_id", "a pin moves one item: give item_id"))
        if self.action == "pin" and self.position is None:
            found.append(("position", "a pin needs a position (1 = first)"))
        if self.action != "pin" and self.position is not None:
            found.append(("position", f"position is for pins, not {self.action}"))
        if "weight" in self.model_fields_set and self.action not in ("boost", "bury"):
            found.append(("weight", f"weight is for boost and bury, not {self.action}"))
        if self.starts_at is not None and self.ends_at is not None and self.ends_at <= self.starts_at:
            found.append(("ends_at", "ends_at must be after starts_at"))
        return found

    def stored(self) -> dict:
        """The rule's fields as the store keeps them (times as unix seconds)."""
        body = self.model_dump(exclude_none=True)
        for name in ("starts_at", "ends_at"):
            value = getattr(self, name)
            if value is not None:
                body[name] = (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
        return body


class RuleOut(BaseModel):
    rule_id: str
    action: str
    item_id: str | None = None
    category: str | None = None
    brand: str | None = None
    position: int | None = None
    weight: float | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    active: bool

    @classmethod
    def of(cls, stored: dict, now: float) -> "RuleOut":
        times = {name: datetime.fromtimestamp(stored[name], UTC) for name in ("starts_at", "ends_at")
                 if stored.get(name) is not None}
        active = ((stored.get("starts_at") is None or stored["starts_at"] <= now)
                  and (stored.get("ends_at") is None or now < stored["ends_at"]))
        return cls(**{**stored, **times}, active=active)


class Rules(BaseModel):
    rules: list[RuleOut]


class Rejected(BaseModel):
    index: int = Field(description="The event's position in the batch (0-based).")
    event_id: str
    field: str = Field(description="The offending input, e.g. events[3].item_id.")
    reason: str


class Accepted(BaseModel):
    accepted: int = Field(description="Events stored by this request.")
    duplicates: int = Field(description="Events whose event_id was already stored (nothing to resend).")
    rejected: list[Rejected] = Field(
        default_factory=list,
        description="Events NOT stored (e.g. an unknown or deleted item). Resend only these, once fixed "
                    "(add the item first); every other event of the batch is stored.",
    )


class Added(BaseModel):
    added: list[str]


class Erased(BaseModel):
    events: int
    profiles: int


class ExportedEvent(BaseModel):
    event_id: str
    item_id: str | None
    time: float  # unix seconds
    type: str
    query: str | None


class Exported(BaseModel):
    """Everything the store holds about a user (`GET /users/{id}/export`): the pseudonymised key its rows are
    stored under, its stated interests and its events, oldest first."""

    user_id: str
    user_key: str
    interests: list[str]
    events: list[ExportedEvent]


class Recommended(BaseModel):
    item_id: str
    title: str
    score: float
    reason: str
    category: str
    price: float | None
    sponsored: bool = Field(False, description="A paid placement (its reason says why it is relevant too).")
    ad: str | None = Field(None, description="Sponsored only: send it back as the `ad` of the click event on this "
                                             "item, so that the click is charged to its campaign.")


class Results(BaseModel):
    items: list[Recommended]

    @classmethod
    def of(cls, found, ads: dict[int, str] | None = None) -> "Results":
        """Engine results as JSON-safe rows: NaN prices and missing text never reach the encoder. `ads`: the
        token of each sponsored result, by its place in `found`."""
        ads = ads or {}
        return cls(items=[
            Recommended(
                item_id=str(r.item_id),
                title=r.title if isinstance(r.title, str) else "",
                score=float(r.score) if math.isfinite(r.score) else 0.0,
                reason=r.reason if isinstance(r.reason, str) else "",
                category=r.category if isinstance(r.category, str) else "",
                price=float(r.price) if r.price is not None and math.isfinite(r.price) else None,
                sponsored=at in ads,
                ad=ads.get(at),
            )
            for at, r in enumerate(found)
        ])


Money = Annotated[float, Field(gt=0, le=1e9, allow_inf_nan=False)]
Words = list[Annotated[str, Field(min_length=1, max_length=200)]]


class CampaignIn(Strict):
    """A sponsored-products campaign: its items bid `bid` per click, spending at most `daily_budget` a (UTC) day."""

    items: list[Id] = Field(min_length=1, max_length=10_000)
    bid: Money = Field(description="Per click, in the shop's currency: the most a click may cost.")
    daily_budget: Money = Field(description="The most spent on clicks in one UTC day; spread over the day.")
    categories: Words = Field(default_factory=list, max_length=100,
                              description="Shown only to shoppers in these categories (empty: everyone).")
    keywords: Words = Field(default_factory=list, max_length=1000,
                            description="In search, shown only for queries holding one of these (empty: any).")
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    paused: bool = False

    def values(self) -> dict:
        return {"campaign_id": "", "items": self.items, "bid": self.bid, "daily_budget": self.daily_budget,
                "categories": self.categories, "keywords": self.keywords, "start": _unix(self.starts_at),
                "end": _unix(self.ends_at), "paused": self.paused}


class CampaignPatch(Strict):
    """Pause or resume a campaign, or change its bid, budget, end or targeting; fields left out keep their value."""

    paused: bool | None = None
    bid: Money | None = None
    daily_budget: Money | None = None
    ends_at: datetime | None = None
    categories: Words | None = None
    keywords: Words | None = None

    @model_validator(mode="after")
    def _something_and_no_nulls(self) -> "CampaignPatch":
        if not self.model_fields_set:
            raise ValueError("give at least one field to change")
        for name in self.model_fields_set - {"ends_at"}:
            if getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self

    def changes(self) -> dict:
        values = {name: getattr(self, name) for name in self.model_fields_set}
        if "ends_at" in values:
            values["end"] = _unix(values.pop("ends_at"))
        return values


class CampaignOut(BaseModel):
    campaign_id: str
    items: list[str]
    bid: float
    daily_budget: float
    categories: list[str]
    keywords: list[str]
    starts_at: datetime | None
    ends_at: datetime | None
    paused: bool
    running: bool = Field(description="Not paused and within its dates.")
    impressions: int
    clicks: int
    spend: float
    spend_today: float
    budget_left_today: float

    @classmethod
    def of(cls, campaign, stats: dict, now: float) -> "CampaignOut":
        values = campaign.to_dict()
        return cls(campaign_id=values["campaign_id"], items=values["items"], bid=values["bid"],
                   daily_budget=values["daily_budget"], categories=values["categories"],
                   keywords=values["keywords"], starts_at=_moment(values["start"]), ends_at=_moment(values["end"]),
                   paused=values["paused"], running=campaign.running(now),
                   **{k: stats[k] for k in ("impressions", "clicks", "spend", "spend_today", "budget_left_today")})


class Campaigns(BaseModel):
    campaigns: list[CampaignOut]


def _unix(moment: datetime | None) -> float | None:
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _moment(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)
