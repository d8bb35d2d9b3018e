"""Rows in and out of the store: what `add_events` reports, the checks an event must pass, and the conversions
between catalog frames / numpy columns and the values SQLite holds."""

from __future__ import annotations

import dataclasses
import json
import math
import sqlite3
from typing import Any

import numpy as np
import pandas as pd

from .schema import EVENT_CODES


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


def stored_event_ids(connection: sqlite3.Connection, event_ids: list[str]) -> list[str]:
    """The given event ids that are stored."""
    return [event_id for (event_id,) in connection.execute(
        "SELECT event_id FROM events WHERE event_id IN (SELECT value FROM json_each(?))", (json.dumps(event_ids),)
    )]


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
