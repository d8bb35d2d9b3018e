"""Erasure that leaves nothing on disk: delete the rows, rewrite the file without them (VACUUM), truncate the WAL.

secure_delete alone is not enough (see `Erasure._scrub`), and the WAL keeps older images of the pages an erasure
rewrote until a checkpoint that no earlier reader holds back (see `Erasure._purge`). When such a reader outlasts
the wait, the erasure raises `ErasurePending` and a background thread finishes the purge.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .connections import Connections
from .schema import BUSY_TIMEOUT_S, COUNT_ERASURE, ERASE_ROWS

#: How long an erasure waits for readers that started before it (their snapshot still holds the rows).
PURGE_WAIT_S = 10.0
PURGE_ATTEMPT_S = 0.25  # a checkpoint waiting for readers holds off every writer: wait in short turns
PURGE_RETRY_S = 1.0  # between background attempts after an erasure gave up waiting

log = logging.getLogger("coldrec.serve.store")


class ErasurePending(RuntimeError):
    """The erased rows are gone from every query and the database was rewritten without them, but a read that
    began before the erasure kept their old copies in the files past the wait; a background purge removes them
    once it ends. `counts`: what was erased. Repeating the erasure is safe and waits again."""

    def __init__(self, counts: dict[str, int], path: Path):
        super().__init__(f"erased {counts}, but a long read keeps old copies in the files of {path}; retry shortly")
        self.counts = counts


class Erasure(Connections):
    """`_erase`: rows of one pseudonymised key out of the tables and out of every file of the store."""

    def __init__(self, path: str | Path, purge_wait_s: float = PURGE_WAIT_S) -> None:
        super().__init__(path)
        self.purge_wait_s = purge_wait_s
        self._closing = threading.Event()
        self._purger: threading.Thread | None = None
        self._purges_wanted = 0

    def close(self) -> None:
        self._closing.set()
        purger = self._purger
        if purger is not None:
            purger.join(timeout=PURGE_ATTEMPT_S + 1)
        self._closing.clear()
        super().close()

    def _finish_erasures(self, connection: sqlite3.Connection) -> None:
        """Complete an erasure that a crash (or an older version) left in the file; the WAL: one try, no waiting."""
        self._scrub(connection)
        self._purge(connection, 0)

    def _erase(self, key_of: Callable[[sqlite3.Connection], str], tables: tuple[str, ...]) -> dict[str, int]:
        """Erase the rows of the key `key_of` gives inside the erasing transaction (so at the store's key version
        then: a key rotation cannot slip in between)."""
        with self._write() as connection:
            key = key_of(connection)
            counts = {table: connection.execute(ERASE_ROWS.format(table=table), (key,)).rowcount
                      for table in tables}
            if any(counts.values()):
                connection.execute(COUNT_ERASURE)
        self._finish_erasure(connection, counts)
        return counts

    def _finish_erasure(self, connection: sqlite3.Connection, counts: dict[str, int]) -> None:
        """After rows left the tables (an erasure, a purge, a re-keying): out of the files too."""
        self._scrub(connection)
        # even when nothing was deleted now: repeating an erasure that raised ErasurePending retries the purge
        if not self._purge(connection, self.purge_wait_s):
            self._purge_later()
            raise ErasurePending(counts, self.path)

    def _scrub(self, connection: sqlite3.Connection) -> None:
        """Rewrite the database file from its live rows (VACUUM) if an erasure deleted rows since the last rewrite.

        secure_delete zeroes the cells a delete removes and the pages it frees, but not the
        stale copies b-tree rebalancing leaves behind: a page rebuilt after its cells moved to
        a sibling keeps their old bytes in its unallocated space, so a row can outlive its own
        deletion there. Costs a pass over the file (about 0.7 s for a million events), writers waiting.
        """
        (erasures, scrubbed), = connection.execute(
            "SELECT (SELECT value FROM meta WHERE key = 'erasures'), (SELECT value FROM meta WHERE key = 'scrubbed')"
        ).fetchall()
        if erasures == scrubbed:
            return
        with self._write_lock:
            connection.execute("VACUUM")  # into the WAL: the purge then writes it to the database file
        with self._write() as writer:
            writer.execute("UPDATE meta SET value = max(value, ?) WHERE key = 'scrubbed'", (erasures,))

    def _purge(self, connection: sqlite3.Connection, wait_s: float) -> bool:
        """Copy the WAL into the database file and truncate it to zero bytes; False if readers kept it past `wait_s`.

        The WAL keeps the older images of the pages an erasure rewrote, and the database file
        keeps them until a checkpoint. Only TRUNCATE removes them: a WAL reset (RESTART) merely
        overwrites frames from the start, leaving the rest until journal_size_limit cuts it, and
        a limit of 0 on every connection made each commit about 50% slower (a growing file to
        fsync), so no limit is set. A checkpoint cannot pass a reader whose snapshot predates the
        delete (that reader may still read the rows), so it waits, in short turns.
        """
        deadline = time.monotonic() + wait_s
        try:
            while True:
                turn = max(0.0, min(deadline - time.monotonic(), PURGE_ATTEMPT_S))
                connection.execute(f"PRAGMA busy_timeout = {int(turn * 1000)}")
                try:
                    busy = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
                except sqlite3.OperationalError as error:
                    if error.sqlite_errorcode not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                        raise
                    busy = 1
                if not busy:
                    return True
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.01)  # writers held off by the attempt commit in between
        finally:
            connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_S * 1000}")

    def _purge_later(self) -> None:
        """Retry the purge in the background until it succeeds (for every erasure asked so far) or the store closes."""
        with self._open_lock:
            self._purges_wanted += 1
            if self._purger is None:
                self._purger = threading.Thread(target=self._keep_purging, name="coldrec-store-purge", daemon=True)
                self._purger.start()

    def _keep_purging(self) -> None:
        connection = self._connect()
        try:
            purged = None  # the count of erasures asked for when the last successful attempt began
            while True:
                with self._open_lock:  # decided and cleared at once, so an erasure giving up now starts a new purger
                    if purged == self._purges_wanted or self._closing.is_set():
                        self._purger = None
                        return
                    wanted = self._purges_wanted
                self._closing.wait(PURGE_RETRY_S)
                if not self._closing.is_set() and self._purge(connection, PURGE_ATTEMPT_S):
                    log.info("the WAL of %s no longer holds erased rows", self.path)
                    purged = wanted
        finally:
            with self._open_lock:
                if self._purger is threading.current_thread():  # left on an error
                    self._purger = None
            connection.close()
