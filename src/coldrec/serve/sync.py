"""`CatalogSync`: keeps one server process's Engine in step with the store's item table.

Several server processes (`coldrec serve --workers N`) share one SQLite store, and an item
written through any of them must reach every engine. Each request that reads the engine first
calls `catch_up`: one indexed read of the store's items_version when nothing changed; else the
rows written since are applied with `Engine.sync_items`, which skips the rows this process
already holds (its own writes), so an item is encoded once per process.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor

from coldrec.serve.engine import Engine
from coldrec.serve.store import Store

logger = logging.getLogger(__name__)


class CatalogSync:
    def __init__(self, engine: Engine, store: Store):
        self.engine = engine
        self.store = store
        self._lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._running: Future | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="coldrec-catch-up")
        # the version first: a write landing during the full read is applied again later, never missed
        self.version = store.items_version()
        engine.sync_items(store.items_frame())

    def applied(self, version: int | None) -> None:
        """This process wrote items_version `version` and applied that write to its engine itself: unless another
        process wrote in between (then `catch_up` reads both back, as usual), there is nothing to read back."""
        if version is None:
            return
        with self._lock:
            if self.version == version - 1:
                self.version = version

    def catch_up_in_background(self) -> tuple[Future, bool]:
        """`catch_up` in this process's catch-up thread: (its future, whether this call started it). Reads go on
        with the engine as it is while another process's big write is encoded here."""
        with self._start_lock:
            if self._running is not None and not self._running.done():
                return self._running, False
            self._running = self._executor.submit(self.catch_up)
            self._running.add_done_callback(_log_failure)
            return self._running, True

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def behind(self) -> bool:
        """Has any process written items since the last `catch_up`? (One indexed read.)"""
        return self.store.items_version() != self.version

    def catch_up(self) -> int:
        """Apply the item writes made (by any process) since the last look; returns how many items changed here."""
        version = self.store.items_version()
        if version == self.version:
            return 0
        with self._lock:
            since = self.version
            if version == since:  # another thread caught up meanwhile
                return 0
            changed = self.engine.sync_items(self.store.items_frame(changed_since=since))
            self.version = version
        return changed


def _log_failure(future: Future) -> None:
    if not future.cancelled() and future.exception() is not None:
        logger.error("catching up with the store's items failed", exc_info=future.exception())
