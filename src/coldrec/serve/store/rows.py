"""Rows in and out of the store: what `add_events` reports, the checks an event must pass, and the conversions
between catalog frames / numpy columns and the values the tables hold. Everything here but `stored_event_ids`
serves both backends (SQLite and PostgreSQL hold the same values)."""

from __future__ import annotations

import dataclasses
import json
import math
import secrets
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from coldrec.ads.tokens import AdToken, TokenError
from coldrec.data.catalog import ItemCatalog
from coldrec.data.interactions import EventType, InteractionLog
from coldrec.serve.privacy import Pseudonymizer

from .schema import EVENT_CODES, ITEM_FIELDS


@dataclasses.dataclass(frozen=True)
class Rejected:
    """An event `add_events` did not store: its place in the batch, its id, the offending field and why."""

    position: int
    event_id: str
    field: str
    reason: str


@dataclasses.dataclass(frozen=True)
class EventsAdded:
    """What `add_events` did with a batch: accepted + duplicates + len(rejected) == len(batch)."""

    accepted: int
    duplicates: int
    rejected: list[Rejected] = dataclasses.field(default_factory=list)


def event_problem(event: dict) -> tuple[str, str] | None:
    """(field, reason) when an event cannot be stored whatever the catalog holds."""
    if not event.get("event_id"):
        return "event_id", "event_id is required"
    if event.get("user_id") is None and event.get("session_id") is None:
        return "user_id", "give a user_id or a session_id"
    kind = event.get("type")
    if kind not in EVENT_CODES:
        return "type", f"unknown event type {kind!r}"
    if event.get("item_id") is None and kind != "search":
        return "item_id", f"item_id is required for {kind} events"
    moment = event.get("time")
    if moment is not None:
        try:
            if not math.isfinite(float(moment)):
                raise ValueError
        except (TypeError, ValueError):
            return "time", f"time must be unix seconds, not {moment!r}"
    return None


class EventRows:
    """A batch of events checked and keyed (`add_events`): `rows` (position, (event_id, user_key, item_id, time,
    event, query)) of the well-formed ones, `rejected` the malformed ones; then `check_items` and `result`."""

    def __init__(self, events: list[dict], ids: Pseudonymizer, now: float):
        self.size = len(events)
        keys: dict[tuple[str, str], str] = {}

        def key_of(event: dict) -> str:
            if event.get("user_id") is not None:
                kind, value = "user", event["user_id"]
            else:
                kind, value = "session", event["session_id"]
            if (kind, value) not in keys:
                keys[kind, value] = ids.user(value) if kind == "user" else ids.session(value)
            return keys[kind, value]

        self.rejected: list[Rejected] = []
        self.rows: list[tuple[int, tuple]] = []
        self._ads: dict[int, str] = {}  # position -> the ad token of a click on a sponsored result
        for position, e in enumerate(events):
            problem = event_problem(e)
            if problem is not None:
                self.rejected.append(Rejected(position, str(e.get("event_id") or ""), *problem))
                continue
            if e.get("ad") is not None:
                self._ads[position] = str(e["ad"])
            self.rows.append((position, (e["event_id"], key_of(e), e.get("item_id"),
                                         now if e.get("time") is None else float(e["time"]), EVENT_CODES[e["type"]],
                                         e.get("query"))))

    def ad_clicks(self, secret: Callable[[], bytes], now: float) -> dict[str, AdToken]:
        """The checked ad tokens of the well-formed events (event id -> token); an event whose token is not one of
        this store's (`secret()`), has expired, names another item or is not on a click is rejected (field "ad")
        and not stored. Call before `check_items`."""
        if not self._ads:
            return {}
        clicks, kept = {}, []
        click = EVENT_CODES["click"]
        for position, row in self.rows:
            token = self._ads.get(position)
            if token is None:
                kept.append((position, row))
                continue
            try:
                checked = AdToken.verify(token, secret(), now)
                if row[4] != click:
                    raise TokenError("only a click event carries an ad token")
                if checked.item_id != row[2]:
                    raise TokenError(f"the token is for item {checked.item_id!r}, not {row[2]!r}")
            except TokenError as error:
                self.rejected.append(Rejected(position, row[0], "ad", f"ad token: {error}"))
                continue
            clicks[row[0]] = checked
            kept.append((position, row))
        self.rows = kept
        return clicks

    def item_ids(self) -> list[str]:
        """The items the well-formed events name, sorted."""
        return sorted({row[2] for _, row in self.rows if row[2] is not None})

    def check_items(self, deleted: dict[str, int]) -> list[tuple]:
        """The rows to insert, given item id -> its `deleted` flag (absent: unknown); the others are rejected."""
        valid = []
        for position, row in self.rows:
            item_id = row[2]
            if item_id is None or deleted.get(item_id) == 0:
                valid.append(row)
            else:
                state = "deleted" if item_id in deleted else "unknown"
                self.rejected.append(Rejected(position, row[0], "item_id", f"{state} item id {item_id!r}"))
        return valid

    def retried(self) -> list[str]:
        """The ids of rejected events: those already stored are duplicates (a retry after their item went)."""
        return [r.event_id for r in self.rejected if r.event_id]

    def result(self, accepted: int, stored: set[str]) -> EventsAdded:
        rejected = sorted((r for r in self.rejected if r.event_id not in stored), key=lambda r: r.position)
        return EventsAdded(accepted, self.size - accepted - len(rejected), rejected)


def shopper_keys(ids: Pseudonymizer, user_id: str | None, session_id: str | None) -> list[str]:
    """The pseudonymised keys of a user and / or a session."""
    return ([ids.user(user_id)] if user_id is not None else []) + (
        [ids.session(session_id)] if session_id is not None else []
    )


def most_recent(newest: list[tuple], keys: int, limit: int) -> list[tuple]:
    """Rows (time, order, item_id, event, query), newest first per key, to the `limit` newest of all in time order
    as (item_id, time, event, query)."""
    if keys > 1:
        newest = sorted(newest, reverse=True)[:limit]
    return [(item_id, t, event, query) for t, _, item_id, event, query in reversed(newest)]


def item_rows(frame: pd.DataFrame) -> tuple[list[str], list[str], list[tuple]]:
    """A frame of items (item_id and any catalog columns) as the items table stores them: (ids, column names with
    item_id first, rows)."""
    catalog = ItemCatalog.from_partial(frame)
    columns = item_columns(catalog.frame)
    rows = list(zip(*(sql_values(values) for values in columns.values()), strict=True))
    return catalog.ids.tolist(), list(columns), rows


def patch_values(item_id: str, fields: dict) -> tuple[list[str], list[Any]]:
    """The names and stored values of the catalog fields a patch changes (ValueError for a field it cannot)."""
    unknown = sorted(set(fields) - set(ITEM_FIELDS))
    if unknown:
        raise ValueError(f"not catalog fields: {unknown} (item_id cannot change)")
    if "available" in fields and fields["available"] is None:
        raise ValueError("available must be True or False")
    names = list(fields)
    if not names:
        return [], []
    given = ItemCatalog.from_partial(pd.DataFrame({"item_id": [item_id], **{name: [fields[name]] for name in names}}))
    encoded = item_columns(given.frame)
    return names, [sql_values(encoded[name])[0] for name in names]


def items_from_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The items table's columns (`SELECT_ITEMS`) back to catalog columns + "deleted"."""
    frame["created_at"] = pd.to_datetime(pd.to_numeric(frame["created_at"]), unit="s")
    frame["available"] = frame["available"].astype(bool)
    frame["attributes"] = frame["attributes"].map(lambda text: json.loads(text) if isinstance(text, str) else None)
    frame["price"] = frame["price"].astype("float64")
    deleted = frame.pop("deleted").astype(bool).to_numpy()
    frame = ItemCatalog(frame).frame
    frame["deleted"] = deleted
    return frame


def seed_columns(ids: Pseudonymizer, catalog: ItemCatalog, log: InteractionLog) -> list[list[Any]]:
    """A data set's log as event columns (event_id "seed-<row>", user_key, item_id, time, event, query)."""
    user_keys = np.array([ids.user(str(u)) for u in log.users], dtype=object)[log.user]
    event_ids = np.char.add("seed-", log.order.astype(str)).astype(object)
    queries = log.query if log.query is not None else np.full(len(log), None, dtype=object)
    return [event_ids.tolist(), user_keys.tolist(), catalog.ids[log.item].tolist(), log.time.tolist(),
            log.event.tolist(), sql_values(pd.Series(queries, dtype=object))]


def decoded_profiles(rows: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    return {key: json.loads(interests) for key, interests in rows}


def encoded_interests(interests: list[str]) -> str:
    return json.dumps(list(interests))


def stored_event_ids(connection: sqlite3.Connection, event_ids: list[str]) -> list[str]:
    """The given event ids that are stored (SQLite), in the order given, each once."""
    return in_given_order(event_ids, {event_id for (event_id,) in connection.execute(
        "SELECT event_id FROM events WHERE event_id IN (SELECT value FROM json_each(?))", (json.dumps(event_ids),)
    )})


def in_given_order(event_ids: list[str], stored: set[str]) -> list[str]:
    """`stored_event_ids`' answer on every backend: the stored ones of `event_ids`, in their order, each once."""
    return [event_id for event_id in dict.fromkeys(event_ids) if event_id in stored]


def item_columns(table: pd.DataFrame) -> dict[str, pd.Series]:
    """A catalog frame's columns as the items table stores them."""
    created = table["created_at"].astype("datetime64[s]")
    return {
        "item_id": table["item_id"],
        **{name: table[name] for name in ("title", "description", "brand", "category", "price")},
        "available": table["available"].astype(int),
        "created_at": pd.Series(created.to_numpy().astype("int64"), dtype="Int64").mask(created.isna().to_numpy()),
        "attributes": table["attributes"].map(lambda a: json.dumps(a) if a else None),
    }


def sql_values(values: pd.Series) -> list[Any]:
    """Python scalars SQLite accepts: NA and NaN become None."""
    values = pd.Series(values).astype(object)
    return values.where(values.notna(), None).tolist()


def events_columns(rows: list[tuple], columns: list[str]) -> dict[str, np.ndarray]:
    """Rows to typed numpy columns in one pass."""
    values: list[tuple] = list(zip(*rows, strict=True)) if rows else [()] * len(columns)
    data = {name: np.array(column, dtype=object) for name, column in zip(columns, values, strict=True)}
    data["time"] = np.array(values[columns.index("time")], dtype=np.float64).astype(np.int64)
    data["event"] = np.array(values[columns.index("event")], dtype=np.int8)
    return data


def events_frame(rows: list[tuple], columns: list[str]) -> pd.DataFrame:
    return as_frame(events_columns(rows, columns), columns)


def as_frame(data: dict[str, np.ndarray], columns: list[str]) -> pd.DataFrame:
    # object columns through pd.Series keep None as None (a plain DataFrame would turn it into NaN)
    series = {name: pd.Series(values, dtype=values.dtype) for name, values in data.items()}
    return pd.DataFrame(series, columns=columns)


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """The store as of one moment (`Store.snapshot`): what a retrain fits on.

    `items`: every item row in position order, deleted ones included (CATALOG_COLUMNS + "deleted"); `events`:
    every event in time order (user_key, item_id, time, event, query); `profiles`: user_key -> stated interests;
    `items_version` and `erasures`: the store's counters at that moment; `store_id`: which store it is; `timed`:
    False when the store was seeded from a log without timestamps (its times only order the events)."""

    items_version: int
    erasures: int
    items: pd.DataFrame
    events: pd.DataFrame
    profiles: dict[str, list[str]]
    store_id: int
    timed: bool = True


def new_rule_id() -> str:
    return f"rule-{secrets.token_hex(6)}"


def encoded_rule(rule: dict) -> str:
    """A rule's fields as stored (JSON; its id lives in its own column)."""
    return json.dumps({key: value for key, value in rule.items() if key != "rule_id"}, sort_keys=True)


def decoded_rules(rows: list) -> list[dict]:
    """Stored (rule_id, JSON) rows as rule dicts, oldest first."""
    return [{"rule_id": rule_id, **json.loads(body)} for rule_id, body in rows]


def exported(key: str, profile: Sequence[tuple], events: Sequence[tuple]) -> dict:
    """A user's export (`export_user`): its key, stated interests and events (rows of USER_EVENTS_EXPORT)."""
    names = {int(e): e.name.lower() for e in EventType}
    return {
        "user_key": key,
        "interests": json.loads(profile[0][0]) if profile else [],
        "events": [{"event_id": event_id, "item_id": item_id, "time": float(t), "type": names.get(int(code), str(code)),
                    "query": query} for event_id, item_id, t, code, query in events],
    }
