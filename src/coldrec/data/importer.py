"""Turning raw tables into an ItemCatalog and an InteractionLog, with validation.

The generic importer (any CSV / JSON Lines / Parquet plus a column mapping) and the
loaders of the bundled data sets share these two functions, so every source gets the
same checks: missing ids, unparseable times and numbers, unknown items, bad text.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from coldrec.data.catalog import CATALOG_COLUMNS, ItemCatalog
from coldrec.data.interactions import EventType, InteractionLog
from coldrec.data.tables import RawTable, read_table

CATALOG_FIELDS = tuple(CATALOG_COLUMNS)
EVENT_FIELDS = ("user_id", "item_id", "time", "event", "weight", "query")


def mapped_columns(table: RawTable, mapping: Mapping[str, str], allowed: tuple[str, ...]) -> dict[str, str]:
    """Our field -> the table's column, identity for columns already named like our fields."""
    unknown = set(mapping) - set(allowed)
    if unknown:
        raise ValueError(f"unknown field(s) in column mapping: {sorted(unknown)}; allowed: {allowed}")
    resolved = {f: c for f, c in mapping.items()}
    for name in allowed:
        if name not in resolved and name in table.frame.columns:
            resolved[name] = name
    missing_columns = [c for c in resolved.values() if c not in table.frame.columns]
    if missing_columns:
        raise ValueError(
            f"{table.report.source}: column(s) {missing_columns} not found; "
            f"the file has {list(table.frame.columns)}"
        )
    return resolved


def text_column(frame: pd.DataFrame, column: str | None) -> pd.Series:
    if column is None:
        return pd.Series([""] * len(frame), dtype="string")
    return frame[column].astype("string").fillna("").str.strip()


def parse_times(values: pd.Series, unit: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Unix seconds and a mask of unparseable values.

    Numbers are unix timestamps in `unit` ("s" by default, or "ms"); anything else is
    parsed as a date/time string (ISO 8601 and the common formats pandas reads).
    """
    text = values.astype("string").str.strip()
    numeric = pd.to_numeric(text, errors="coerce")
    is_number = numeric.notna().to_numpy()
    scale = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[unit or "s"]
    seconds = np.zeros(len(text), dtype=np.int64)
    seconds[is_number] = numeric[is_number].to_numpy(dtype=np.float64) // scale
    bad = np.zeros(len(text), dtype=bool)
    if not is_number.all():
        parsed = pd.to_datetime(text[~is_number], errors="coerce", utc=True, format="mixed")
        bad[~is_number] = parsed.isna().to_numpy()
        since_epoch = (parsed - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
        seconds[~is_number] = since_epoch.fillna(0).to_numpy(dtype=np.int64)
    return seconds, bad


def catalog_from_table(
    table: RawTable, mapping: Mapping[str, str] | None = None, skip_bad: bool = False
) -> ItemCatalog:
    columns = mapped_columns(table, mapping or {}, CATALOG_FIELDS)
    if "item_id" not in columns:
        raise ValueError(f"{table.report.source}: no column is mapped to 'item_id'")
    frame = table.frame
    check = table.checker(skip_bad)
    item_id = text_column(frame, columns["item_id"])
    check.check((item_id == "").to_numpy(), columns["item_id"], "missing item id")
    check.check(
        (item_id.duplicated(keep="first") & (item_id != "")).to_numpy(),
        columns["item_id"],
        "duplicate item id",
        item_id.to_numpy(),
    )
    price = pd.Series(np.nan, index=frame.index)
    if "price" in columns:
        raw = text_column(frame, columns["price"])
        price = pd.to_numeric(raw.str.replace(r"^[$€£]", "", regex=True), errors="coerce")
        check.check(((raw != "") & (price.isna() | (price < 0))).to_numpy(), columns["price"],
                    "not a non-negative number", raw.to_numpy())
    created = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[s]")
    if "created_at" in columns:
        raw = text_column(frame, columns["created_at"])
        given = (raw != "").to_numpy()
        seconds, bad = parse_times(raw.where(given, "0"))
        check.check(bad & given, columns["created_at"], "unparseable time", raw.to_numpy())
        created = pd.Series(pd.to_datetime(np.where(given & ~bad, seconds, 0), unit="s")).where(given & ~bad)
    available = pd.Series(True, index=frame.index)
    if "available" in columns:
        raw = text_column(frame, columns["available"]).str.lower()
        truth = raw.map({"true": True, "1": True, "yes": True, "in stock": True, "": True,
                         "false": False, "0": False, "no": False, "out of stock": False})
        check.check(truth.isna().to_numpy(), columns["available"], "not a boolean", raw.to_numpy())
        available = truth.fillna(True).astype(bool)
    attributes = None
    if "attributes" in columns:
        attributes = frame[columns["attributes"]].map(_as_attributes)
        check.check(attributes.isna().to_numpy() & (frame[columns["attributes"]].astype(str) != "").to_numpy(),
                    columns["attributes"], "not a JSON object of attributes")
    keep = check.finish()
    result = pd.DataFrame(
        {
            "item_id": item_id,
            "title": text_column(frame, columns.get("title")),
            "description": text_column(frame, columns.get("description")),
            "brand": text_column(frame, columns.get("brand")),
            "category": text_column(frame, columns.get("category")),
            "price": price.astype("float64"),
            "available": available,
            "created_at": created,
            "attributes": attributes if attributes is not None else None,
        }
    )
    return ItemCatalog(result[keep])


def _as_attributes(value):
    import json

    if isinstance(value, dict):
        return value
    if value is None or value == "":
        return None
    try:
        parsed = json.loads(value)
    except (TypeError, ValueError):
        return None
    return parsed if isinstance(parsed, dict) else None


def events_from_table(
    table: RawTable,
    catalog: ItemCatalog,
    mapping: Mapping[str, str] | None = None,
    *,
    skip_bad: bool = False,
    time_unit: str | None = None,
    default_event: str = "purchase",
) -> InteractionLog:
    """Validate events against the catalog; rows are kept in file order."""
    columns = mapped_columns(table, mapping or {}, EVENT_FIELDS)
    for required in ("user_id", "item_id", "time"):
        if required not in columns:
            raise ValueError(f"{table.report.source}: no column is mapped to '{required}'")
    frame = table.frame
    check = table.checker(skip_bad)
    user = text_column(frame, columns["user_id"])
    check.check((user == "").to_numpy(), columns["user_id"], "missing user id")
    item_id = text_column(frame, columns["item_id"])
    check.check((item_id == "").to_numpy(), columns["item_id"], "missing item id")
    item = catalog.index_of(item_id.to_numpy())
    check.check((item < 0) & (item_id != "").to_numpy(), columns["item_id"], "unknown item", item_id.to_numpy())
    raw_time = text_column(frame, columns["time"])
    seconds, bad_time = parse_times(raw_time, time_unit)
    check.check(bad_time | (raw_time == "").to_numpy(), columns["time"], "unparseable time", raw_time.to_numpy())
    if "event" in columns:
        raw_event = text_column(frame, columns["event"])
        event = EventType.parse(raw_event.where(raw_event != "", default_event).to_numpy())
        check.check(event < 0, columns["event"], f"unknown event type (known: {[e.name.lower() for e in EventType]})",
                    raw_event.to_numpy())
    else:
        event = np.full(len(frame), EventType.parse(np.array([default_event]))[0], np.int8)
    weight = np.ones(len(frame), np.float32)
    if "weight" in columns:
        raw_weight = text_column(frame, columns["weight"])
        parsed = pd.to_numeric(raw_weight.where(raw_weight != "", "1"), errors="coerce")
        check.check(parsed.isna().to_numpy(), columns["weight"], "not a number", raw_weight.to_numpy())
        weight = parsed.fillna(1).to_numpy(np.float32)
    query = None
    if "query" in columns:
        query = text_column(frame, columns["query"]).to_numpy(dtype=object)
        query = np.where(query == "", np.array(None, dtype=object), query)
    keep = check.finish()
    log = InteractionLog.from_arrays(
        user[keep].to_numpy(dtype=object),
        item[keep],
        seconds[keep],
        event[keep],
        weight[keep],
        None if query is None else query[keep],
    )
    log.order = np.flatnonzero(keep).astype(np.int64)
    return log


def import_catalog(path: str | Path, mapping: Mapping[str, str] | None = None, *, skip_bad: bool = False,
                   **read_options) -> tuple[ItemCatalog, RawTable]:
    """Load a catalog from CSV / TSV / JSON Lines / Parquet. `mapping`: our field -> file column."""
    table = read_table(path, skip_bad=skip_bad, **read_options)
    return catalog_from_table(table, mapping, skip_bad), table


def import_events(path: str | Path, catalog: ItemCatalog, mapping: Mapping[str, str] | None = None, *,
                  skip_bad: bool = False, time_unit: str | None = None, default_event: str = "purchase",
                  **read_options) -> tuple[InteractionLog, RawTable]:
    """Load events from CSV / TSV / JSON Lines / Parquet. `mapping`: our field -> file column."""
    table = read_table(path, skip_bad=skip_bad, **read_options)
    log = events_from_table(table, catalog, mapping, skip_bad=skip_bad, time_unit=time_unit,
                            default_event=default_event)
    return log, table
