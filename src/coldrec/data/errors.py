"""Bad input handling shared by every loader: name the record and field, or count and skip."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np


class DataError(ValueError):
    """A record that cannot be accepted, located by source, line and field."""

    def __init__(self, source: str, line: int | str, field_name: str, reason: str):
        self.source = source
        self.line = line
        self.field = field_name
        self.reason = reason
        where = f"line {line}" if isinstance(line, int) else str(line)
        super().__init__(f"{source}: {where}: field '{field_name}': {reason}")


@dataclass
class LoadReport:
    """What one loader accepted, skipped as bad, and filtered by a documented rule."""

    source: str
    read: int = 0
    accepted: int = 0
    skipped: Counter = field(default_factory=Counter)  # (field, reason) -> rows
    filtered: Counter = field(default_factory=Counter)  # rule -> rows (not errors)
    examples: list[str] = field(default_factory=list)  # first few skipped, as messages

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped.values())

    def summary(self) -> str:
        parts = [f"{self.source}: {self.read:,} read, {self.accepted:,} accepted"]
        if self.filtered:
            parts.append(", ".join(f"{n:,} filtered ({rule})" for rule, n in self.filtered.items()))
        if self.skipped:
            parts.append(
                ", ".join(f"{n:,} skipped ({f}: {r})" for (f, r), n in self.skipped.items())
            )
        return "; ".join(parts)


class RowChecker:
    """Vectorised validation of a table's rows.

    Each `check` takes a boolean mask of bad rows. Without `skip_bad` the first bad row
    raises a DataError naming its line and field; with it, bad rows are dropped from
    `keep` and counted in the report. Rows already dropped are not reported twice.
    """

    def __init__(self, report: LoadReport, lines: np.ndarray, skip_bad: bool, unit: str = "line"):
        self.report = report
        self.lines = np.asarray(lines)
        self.skip_bad = skip_bad
        self.unit = unit
        self.keep = np.ones(len(self.lines), dtype=bool)
        report.read += len(self.lines)

    def check(self, bad: np.ndarray, field_name: str, reason: str, values=None) -> None:
        bad = np.asarray(bad, dtype=bool) & self.keep
        if not bad.any():
            return
        rows = np.flatnonzero(bad)
        first = rows[0]
        detail = reason
        if values is not None:
            detail = f"{reason} (got {_short(values[first])})"
        if not self.skip_bad:
            raise DataError(self.report.source, self._where(first), field_name, detail)
        self.report.skipped[(field_name, reason)] += len(rows)
        for row in rows[: max(0, 5 - len(self.report.examples))]:
            value = "" if values is None else f" (got {_short(values[row])})"
            self.report.examples.append(
                str(DataError(self.report.source, self._where(row), field_name, reason + value))
            )
        self.keep &= ~bad

    def _where(self, row: int) -> str:
        return f"{self.unit} {int(self.lines[row])}"

    def filter(self, drop: np.ndarray, rule: str) -> None:
        """Drop rows by a documented cleaning rule: counted, not treated as errors."""
        drop = np.asarray(drop, dtype=bool) & self.keep
        if drop.any():
            self.report.filtered[rule] += int(drop.sum())
            self.keep &= ~drop

    def finish(self) -> np.ndarray:
        self.report.accepted += int(self.keep.sum())
        return self.keep


def _short(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
