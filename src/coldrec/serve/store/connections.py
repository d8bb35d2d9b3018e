"""The store's SQLite connections: one per thread (WAL lets readers run beside the writer), one writer at a time."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .schema import BUSY_TIMEOUT_S


class Connections:
    """Opens `path` once per thread (WAL, synchronous=FULL, secure_delete); `_write` is one committed transaction."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._write_lock = threading.Lock()
        self._open_lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        # autocommit mode: transactions are explicit (BEGIN IMMEDIATE in _write)
        connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_S)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute("PRAGMA secure_delete=ON")  # erased rows (and freed pages) are zeroed, not just unlinked
        return connection

    def _connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._connect()
            self._local.connection = connection
            with self._open_lock:
                self._connections.append(connection)
        return connection

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One transaction, committed on exit (rolled back on an exception)."""
        connection = self._connection()
        with self._write_lock:
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")

    def _read(self, sql: str, parameters: Sequence[Any] = ()) -> list[Any]:
        return self._connection().execute(sql, parameters).fetchall()

    def close(self) -> None:
        """Close every thread's connection; the next call on any thread opens a new one."""
        with self._open_lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()
        self._local = threading.local()

    def journal_mode(self) -> str:
        mode: str = self._read("PRAGMA journal_mode")[0][0]
        return mode
