"""Reading tabular files (CSV/TSV, JSON Lines, Parquet) with line numbers for error messages."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from coldrec.data.errors import LoadReport, RowChecker

# Bytes that fail to decode become U+FFFD (errors="replace"), so a bad byte is reported
# against the exact row and field it sits in. (Arrow-backed strings cannot hold the lone
# surrogates of "surrogateescape".) A U+FFFD already in a file is a past decoding loss
# and is reported the same way.
_UNDECODABLE = "\ufffd"


@dataclass
class RawTable:
    """A file's records as strings, with where each record came from."""

    frame: pd.DataFrame
    lines: np.ndarray  # line (text files) or row (Parquet) number of each record, from 1
    unit: str  # "line" or "row"
    report: LoadReport

    def checker(self, skip_bad: bool) -> RowChecker:
        """A RowChecker that has already rejected undecodable text."""
        checker = RowChecker(self.report, self.lines, skip_bad, self.unit)
        for column in self.frame.columns:
            values = self.frame[column]
            if values.dtype == object or pd.api.types.is_string_dtype(values):
                bad = values.astype("string").str.contains(_UNDECODABLE, regex=False, na=False)
                checker.check(bad.to_numpy(), column, "undecodable text")
        return checker


def read_table(
    path: str | Path,
    *,
    columns: list[str] | None = None,
    sep: str | None = None,
    encoding: str = "utf-8",
    header: bool = True,
    skip_bad: bool = False,
) -> RawTable:
    """Read a CSV/TSV (by `sep` or extension), JSON Lines or Parquet file as strings.

    `columns` names the columns of a header-less text file, or selects columns.
    """
    path = Path(path)
    report = LoadReport(source=path.name)
    suffix = "".join(path.suffixes[-2:]).lower() if path.suffix == ".gz" else path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        frame = pd.read_parquet(path, columns=columns)
        return RawTable(frame, np.arange(1, len(frame) + 1), "row", report)
    if suffix in (".jsonl", ".ndjson", ".json"):
        return _read_json_lines(path, columns, encoding, report, skip_bad)
    if sep is None:
        sep = "\t" if suffix in (".tsv", ".tab", ".text") else ","
    text = path.read_bytes().decode(encoding, errors="replace")
    frame = pd.read_csv(
        io.StringIO(text),
        sep=sep,
        dtype=str,
        keep_default_na=False,
        header=0 if header else None,
        names=None if header else columns,
        usecols=columns if header and columns else None,
        skip_blank_lines=False,
        quoting=3 if sep == "\t" else 0,  # TSV: quotes are part of product titles
        engine="c",
    )
    if not header and columns is None:
        frame.columns = [str(c) for c in frame.columns]
    first = 2 if header else 1
    lines = np.arange(first, first + len(frame))
    blank = (frame == "").all(axis=1).to_numpy()  # kept above only to keep line numbers exact
    return RawTable(frame[~blank].reset_index(drop=True), lines[~blank], "line", report)


def _read_json_lines(path, columns, encoding, report, skip_bad) -> RawTable:
    records, lines = [], []
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            text = raw.decode(encoding, errors="replace")
            try:
                record = json.loads(text)
                if not isinstance(record, dict):
                    raise ValueError("not a JSON object")
            except ValueError as error:
                checker = RowChecker(report, np.array([number]), skip_bad)
                checker.check(np.array([True]), "<record>", f"invalid JSON: {error}")
                continue
            records.append(record)
            lines.append(number)
    frame = pd.DataFrame.from_records(records, columns=columns)
    frame = frame.map(lambda v: "" if v is None else v)
    return RawTable(frame, np.asarray(lines, dtype=np.int64), "line", report)
