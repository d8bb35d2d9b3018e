"""Keeping one server process in step: with the store's item table (`CatalogSync`) and with the model folder's
current version (`LiveEngine`).

Several server processes (`coldrec serve --workers N`, or several hosts on one PostgreSQL store) share one store,
and an item written through any of them must reach every engine. How a process learns of a write depends on the
store. SQLite: each request that reads the engine first looks at the store's items_version (one indexed read).
PostgreSQL: a thread of the process LISTENs for the store's NOTIFY on every item write and starts the catch-up
as it arrives, so requests ask the database nothing (and a host hears a write within milliseconds, not at its next
request). Either way the rows written since are applied with `Engine.sync_items`, which skips the rows this process
already holds (its own writes), so an item is encoded once per process.

A retrain publishes a new model version (`coldrec.model.versions`); each process's `LiveEngine` reads the
version pointer once a second, loads the new engine in its watcher thread (sharing the encoder and the text
caches of the one it replaces, so nothing is encoded), brings it up to the store's items since the retrain's
snapshot, and then replaces the (engine, CatalogSync) pair requests use in one assignment. A request takes the
pair once and uses it to the end, so it is answered by one engine, old or new, never a mix; the old engine is
retired at once and freed when its last request returns. A rollback moves the pointer back: the same switch.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

from coldrec.model.versions import ModelVersions
from coldrec.serve.engine import Engine
from coldrec.serve.store import AnyStore, PostgresStore

logger = logging.getLogger(__name__)

#: How often a server process looks at the model folder's version pointer (one small file read).
WATCH_EVERY_S = 1.0
#: A notified catch-up also reads the store's items_version this often, in case a notification was lost (a dropped
#: listening connection is reopened, and the version read then covers what it missed; this covers the rest).
RECHECK_EVERY_S = 5.0
#: After a failed listening connection, wait this long before opening another.
RELISTEN_AFTER_S = 1.0
#: Python's thread switch interval while a new engine loads: the loading thread lets the request threads run
#: within this long (the default, 5 ms, let a load stretch requests by several times that).
LOAD_SWITCH_INTERVAL_S = 0.0005


class CatalogSync:
    def __init__(self, engine: Engine, store: AnyStore, since: int | None = None, listen: bool = True):
        """`since`: the items_version the engine's catalog is known to match (a retrained version's snapshot):
        only later item writes are applied; None: every stored item is compared. `listen`: where the store can
        notify item writes (`items_listener`, PostgreSQL), hear them in a thread instead of asking the store on
        every request."""
        self.engine = engine
        self.store = store
        self._lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._running: Future | None = None
        self._read_waited = False  # has a request already waited for `_running`?
        self._closed = threading.Event()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="coldrec-catch-up")
        # the version first: a write landing during the full read is applied again later, never missed
        self.version = store.items_version()
        self.notified = self.version
        engine.sync_items(store.items_frame(changed_since=since))
        self._listener: threading.Thread | None = None
        self._notifying = store if listen and isinstance(store, PostgresStore) else None
        if self._notifying is not None:
            self._listener = threading.Thread(target=self._listen, daemon=True, name="coldrec-items-listener")
            self._listener.start()

    @property
    def listening(self) -> bool:
        """Does this process hear item writes from the store's notifications (rather than asking per request)?"""
        return self._listener is not None

    def applied(self, version: int | None) -> None:
        """This process wrote items_version `version` and applied that write to its engine itself: unless another
        process wrote in between (then `catch_up` reads both back, as usual), there is nothing to read back."""
        if version is None:
            return
        with self._lock:
            if self.version == version - 1:
                self.version = version

    def catch_up_in_background(self) -> tuple[Future, bool]:
        """`catch_up` in this process's catch-up thread: (its future, whether the caller is the first request to
        wait for it). Reads go on with the engine as it is while another process's big write is encoded here. Once
        closed (its engine was replaced), a finished future: a request still holding it answers from the engine as
        it is."""
        return self._start(reader=True)

    def _start(self, reader: bool) -> tuple[Future, bool]:
        with self._start_lock:
            if self._closed.is_set():
                done: Future = Future()
                done.set_result(0)
                return done, False
            if self._running is None or self._running.done():
                self._running = self._executor.submit(self.catch_up)
                self._running.add_done_callback(_log_failure)
                self._read_waited = False
            first = reader and not self._read_waited
            self._read_waited = self._read_waited or reader
            return self._running, first

    def close(self) -> None:
        with self._start_lock:
            self._closed.set()
            self._executor.shutdown(wait=False, cancel_futures=True)
        if self._listener is not None and self._listener is not threading.current_thread():
            self._listener.join(timeout=RECHECK_EVERY_S)

    def behind(self) -> bool:
        """Has any process written items since the last `catch_up`? (Listening: what was notified, no read; else one
        indexed read of the store.)"""
        if self._listener is not None:
            return self.notified > self.version
        return self.store.items_version() != self.version

    def _listen(self) -> None:
        """The listener thread: each notified item write starts a catch-up at once; a lost connection is reopened,
        and the store's items_version, read once listening again, covers whatever was written meanwhile."""
        assert self._notifying is not None
        said = ""
        while not self._closed.is_set():
            try:
                with self._notifying.items_listener() as listener:
                    self._heard(self.store.items_version())  # read after LISTEN began: nothing falls in between
                    said = ""
                    checked = time.monotonic()
                    while not self._closed.is_set():
                        notified = listener.wait(min(1.0, RECHECK_EVERY_S))
                        if notified is None and time.monotonic() - checked >= RECHECK_EVERY_S:
                            notified, checked = self.store.items_version(), time.monotonic()
                        if notified is not None:
                            self._heard(notified)
            except Exception as error:  # the database restarted, a network cut...: listen again shortly
                if self._closed.is_set():
                    return
                if str(error) != said:
                    logger.warning("listening for item writes failed (%s); listening again in %g s", error,
                                   RELISTEN_AFTER_S)
                said = str(error)
                self._closed.wait(RELISTEN_AFTER_S)

    def _heard(self, version: int) -> None:
        if version > self.notified:
            self.notified = version
        if self.notified > self.version:
            self._start(reader=False)

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


@dataclass(frozen=True)
class Served:
    """What one request uses: an engine, its CatalogSync, and the model version it was loaded from (None: a model
    directory outside a versions folder)."""

    engine: Engine
    catalog: CatalogSync
    version: int | None


class LiveEngine:
    """The `Served` pair requests use (`current`), replaced whole when `versions` names another current version."""

    def __init__(self, engine: Engine, store: AnyStore, versions: ModelVersions | None = None,
                 version: int | None = None, watch_every_s: float = WATCH_EVERY_S):
        """`engine`: loaded from `versions`' version `version` (None: from a model directory of its own)."""
        self.store = store
        self.versions = versions
        self.watch_every_s = watch_every_s
        self.current = Served(engine, CatalogSync(engine, store, self._trained_at(version)), version)
        self.switches = 0
        self._switch_lock = threading.Lock()
        self._failed: int | None = None  # a version that would not load: not retried until the pointer moves
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Watch the version pointer in a background thread (nothing to watch without `versions`)."""
        if self.versions is None or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch, daemon=True, name="coldrec-versions")
        self._thread.start()

    def close(self) -> None:
        """Stop watching; close the current engine (the server is shutting down)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        served = self.current
        served.catalog.close()
        served.engine.close()

    def check(self) -> bool:
        """One look at the pointer: switch if it names another version; True when this call switched."""
        if self.versions is None:
            return False
        wanted = self.versions.current()
        if wanted is None or wanted == self.current.version or wanted == self._failed:
            return False
        try:
            self.switch_to(wanted)
        except Exception:
            self._failed = wanted
            logger.exception("model version %s could not be loaded; still serving version %s", wanted,
                             self.current.version)
            return False
        return True

    def switch_to(self, version: int) -> None:
        """Load `version`, bring it up to the store's items, and serve it from the next request on."""
        if self.versions is None:
            raise ValueError("a model directory outside a versions folder has no other versions")
        with self._switch_lock:
            old = self.current
            path = self.versions.path(version)
            with _yielding_gil():
                engine = Engine.load(path, like=old.engine)
                catalog = CatalogSync(engine, self.store, since=self._trained_at(version))
            self.current = Served(engine, catalog, version)
            self.switches += 1
            self._failed = None
        old.catalog.close()
        old.engine.retire()
        logger.info("now serving model version %s (was %s)", version, old.version)

    def _trained_at(self, version: int | None) -> int | None:
        """The items_version of this store that `version` was retrained on (its catalog matches the store's then):
        only later item writes need applying. None (compare every item) for a build, or another store's version."""
        if self.versions is None or version is None:
            return None
        info = self.versions.info(version)
        if info.get("store_id") != self.store.store_id() or not isinstance(info.get("items_version"), int):
            return None
        return int(info["items_version"])

    def _watch(self) -> None:
        said = ""
        while not self._stop.wait(self.watch_every_s):
            try:
                self.check()
                said = ""
            except Exception as error:  # e.g. an unreadable pointer: said once, looked at again next time
                if str(error) != said:
                    logger.exception("checking the model version failed")
                said = str(error)


@contextmanager
def _yielding_gil() -> Iterator[None]:
    before = sys.getswitchinterval()
    sys.setswitchinterval(LOAD_SWITCH_INTERVAL_S)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


def _log_failure(future: Future) -> None:
    if not future.cancelled() and future.exception() is not None:
        logger.error("catching up with the store's items failed", exc_info=future.exception())
