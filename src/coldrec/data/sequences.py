"""Sequence files, the usual public format of next-item logs: one user a line, their items in time order.

A header line, then one row per user: the user id and the space-separated item ids in time order, in
comma- or tab-separated columns (told apart by the header line). Such a file holds order, not time: the
log is untimed (`InteractionLog.timed` False), each event's `time` its position in the user's sequence,
so only the user split of BENCHMARK.md applies to it.

Bad records follow the loaders' rules (`RowChecker`): a missing or repeated user id, or a line without
item ids, names its file, line and field, or with `skip_bad` is counted and skipped. An unknown item id
inside a sequence names its line, field and the id; with `skip_bad` that item alone is dropped (and
counted), the rest of its sequence kept.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from coldrec.data.catalog import ItemCatalog
from coldrec.data.errors import DataError
from coldrec.data.interactions import InteractionLog
from coldrec.data.tables import RawTable, read_table

SEQUENCE_FIELDS = ("user_id", "item_ids")
UNKNOWN_ITEM = "unknown item id (dropped; the rest of its sequence kept)"
_MAX_EXAMPLES = 5  # as RowChecker keeps


def import_sequences(
    path: str | Path,
    catalog: ItemCatalog,
    mapping: Mapping[str, str] | None = None,
    *,
    skip_bad: bool = False,
) -> tuple[InteractionLog, RawTable]:
    """An untimed log from a sequence file. `mapping`: our field (`user_id`, `item_ids`) -> the file's column;
    by default columns of those names, else the first column is the user and the second the items."""
    path = Path(path)
    table = read_table(path, sep=_separator(path), skip_bad=skip_bad)
    table.frame.columns = [str(c).lstrip("\ufeff").strip() for c in table.frame.columns]  # a BOM, padded names
    user_column, items_column = _columns(table, mapping or {})
    frame = table.frame
    check = table.checker(skip_bad)
    user = frame[user_column].astype("string").fillna("").str.strip()
    check.check((user == "").to_numpy(), user_column, "missing user id")
    check.check((user.duplicated(keep="first") & (user != "")).to_numpy(), user_column,
                "repeated user id (one line per user)", user.to_numpy())
    lists = frame[items_column].astype("string").fillna("").str.split().tolist()
    lengths = np.fromiter(map(len, lists), np.int64, len(lists))
    check.check(lengths == 0, items_column, "no item ids")

    ids = np.array(list(itertools.chain.from_iterable(lists)), dtype=object)
    row_of = np.repeat(np.arange(len(lists)), lengths)
    item = catalog.index_of(ids) if len(ids) else np.zeros(0, np.int64)
    unknown = (item < 0) & check.keep[row_of]
    if unknown.any():
        _unknown_items(table, check.skip_bad, items_column, ids, row_of, lengths, np.flatnonzero(unknown))
    known = check.keep[row_of] & (item >= 0)
    left = np.bincount(row_of[known], minlength=len(lists))
    check.check(left == 0, items_column, "no known item ids")
    keep = check.finish()

    taken = np.flatnonzero(known & keep[row_of])
    rows = row_of[taken]
    starts = np.searchsorted(rows, rows)  # the first kept event of each row (rows ascend)
    position = np.arange(len(taken)) - starts
    log = InteractionLog.from_arrays(user.to_numpy(dtype=object)[rows], item[taken], position, timed=False)
    log.order = taken.astype(np.int64)  # the event's place among the file's item ids
    return log, table


def _separator(path: Path) -> str:
    """Tab when the header line holds one, else comma."""
    with open(path, "rb") as handle:
        header = handle.readline()
    return "\t" if b"\t" in header else ","


def _columns(table: RawTable, mapping: Mapping[str, str]) -> tuple[str, str]:
    unknown = set(mapping) - set(SEQUENCE_FIELDS)
    if unknown:
        raise ValueError(f"unknown field(s) in column mapping: {sorted(unknown)}; allowed: {SEQUENCE_FIELDS}")
    names = list(table.frame.columns)
    resolved = dict(mapping)
    for at, field in enumerate(SEQUENCE_FIELDS):
        if field not in resolved:
            if field in names:
                resolved[field] = field
            elif len(names) > at:
                resolved[field] = names[at]
    missing = [c for c in (resolved.get(f) for f in SEQUENCE_FIELDS) if c is None or c not in names]
    if missing or len(resolved) < len(SEQUENCE_FIELDS):
        raise ValueError(f"{table.report.source}: a sequence file needs a user column and an item-ids column "
                         f"(mapped: {resolved}); the file has {names}")
    if resolved["user_id"] == resolved["item_ids"]:
        raise ValueError(f"{table.report.source}: user_id and item_ids map to the same column "
                         f"{resolved['user_id']!r}")
    return resolved["user_id"], resolved["item_ids"]


def _unknown_items(table: RawTable, skip_bad: bool, field: str, ids: np.ndarray, row_of: np.ndarray,
                   lengths: np.ndarray, at: np.ndarray) -> None:
    """Unknown ids at token positions `at`: the first one raises, or with `skip_bad` all are counted."""
    starts = np.cumsum(lengths) - lengths

    def error(token: int) -> DataError:
        row = int(row_of[token])
        place = int(token - starts[row]) + 1
        return DataError(table.report.source, f"{table.unit} {int(table.lines[row])}", field,
                         f"unknown item id {ids[token]!r} (item {place} of the sequence)")

    if not skip_bad:
        raise error(int(at[0]))
    report = table.report
    report.skipped[(field, UNKNOWN_ITEM)] += len(at)
    for token in at[: max(0, _MAX_EXAMPLES - len(report.examples))]:
        report.examples.append(str(error(int(token))))
