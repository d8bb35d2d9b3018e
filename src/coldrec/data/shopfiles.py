"""A shop's own files as a `Dataset`: a catalog, events (rows or sequences) and optional stated interests.

The same column maps as `coldrec data stats` (our field -> the file's column); with `skip_bad`, malformed
records are counted per (field, reason) in the reports and skipped, else the first one stops the load
with its file, line and field.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from coldrec.data.datasets import Dataset
from coldrec.data.importer import import_catalog, import_events, mapped_columns, text_column
from coldrec.data.profile import UserProfile
from coldrec.data.tables import RawTable, read_table

EVENT_FORMATS = ("rows", "sequences")
PROFILE_FIELDS = ("user_id", "interests")


def load_shop(
    catalog: str | Path,
    events: str | Path,
    profiles: str | Path | None = None,
    *,
    catalog_map: Mapping[str, str] | None = None,
    events_map: Mapping[str, str] | None = None,
    profiles_map: Mapping[str, str] | None = None,
    events_format: str = "rows",
    skip_bad: bool = False,
    name: str | None = None,
) -> Dataset:
    """The shop's catalog and events (`events_format`: "rows", one event a record, or "sequences", one user a
    line with their item ids in time order), and the stated interests of `profiles` when given."""
    if events_format not in EVENT_FORMATS:
        raise ValueError(f"unknown events format {events_format!r}; choose from {', '.join(EVENT_FORMATS)}")
    items, items_table = import_catalog(catalog, catalog_map, skip_bad=skip_bad)
    if events_format == "sequences":
        from coldrec.data.sequences import import_sequences

        log, events_table = import_sequences(events, items, events_map, skip_bad=skip_bad)
    else:
        log, events_table = import_events(events, items, events_map, skip_bad=skip_bad)
    reports = [items_table.report, events_table.report]
    stated: dict[str, UserProfile] = {}
    if profiles is not None:
        stated, profiles_table = import_profiles(profiles, profiles_map, skip_bad=skip_bad)
        reports.append(profiles_table.report)
    return Dataset(name or _shop_name(Path(catalog)), items, log, reports=reports, profiles=stated)


def import_profiles(path: str | Path, mapping: Mapping[str, str] | None = None, *,
                    skip_bad: bool = False) -> tuple[dict[str, UserProfile], RawTable]:
    """Stated interests per user: a `user_id` and an `interests` column holding a JSON list of strings or
    names separated by "|" (a user repeated: the interests of every row, in order)."""
    table = read_table(path, skip_bad=skip_bad)
    columns = mapped_columns(table, mapping or {}, PROFILE_FIELDS)
    for required in PROFILE_FIELDS:
        if required not in columns:
            raise ValueError(f"{table.report.source}: no column is mapped to '{required}'; the file has "
                             f"{list(table.frame.columns)}")
    frame = table.frame
    check = table.checker(skip_bad)
    users = text_column(frame, columns["user_id"])
    check.check((users == "").to_numpy(), columns["user_id"], "missing user id")
    raw = frame[columns["interests"]]
    parsed = raw.map(_interests)
    check.check(parsed.isna().to_numpy(), columns["interests"], "not a JSON list of strings or 'a|b' names",
                raw.astype(str).to_numpy())
    keep = check.finish()
    stated: dict[str, list[str]] = {}
    for user, interests in zip(users[keep], parsed[keep], strict=True):
        stated.setdefault(str(user), []).extend(interests)
    return {user: UserProfile(user_id=user, interests=values) for user, values in stated.items()}, table


def _shop_name(catalog: Path) -> str:
    """The folder holding the catalog (a shop's export folder), else the file's stem."""
    return catalog.resolve().parent.name or catalog.stem


def _interests(value) -> list[str] | None:
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    text = str(value).strip()
    if text.startswith("["):
        try:
            loaded = json.loads(text)
        except ValueError:
            return None
        if not isinstance(loaded, list) or not all(isinstance(v, str) for v in loaded):
            return None
        return [v.strip() for v in loaded if v.strip()]
    names = [part.strip() for part in text.split("|") if part.strip()]
    return names or None
