"""`Statements`: the base of the store methods written once for both backends, over a `Run`.

A backend gives `_transaction()` (one transaction, committed on exit, rolled back on an exception) and `_reads()`
(statements outside a write transaction), each yielding a `Run` that takes the shared statements of `schema` with
`?` placeholders (PostgreSQL's rewrites them). The methods above it (`AdLedger`, `StatedInterests`,
`MerchandisingRules`) then say what they do once, and the two stores differ only where their engines do.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

#: (statement with `?` placeholders, parameters) -> (rows, rowcount): one backend's way to run a statement
Run = Callable[[str, Sequence[Any]], tuple[list[tuple], int]]


class Statements:
    def _transaction(self) -> AbstractContextManager[Run]:
        raise NotImplementedError

    def _reads(self) -> AbstractContextManager[Run]:
        raise NotImplementedError
