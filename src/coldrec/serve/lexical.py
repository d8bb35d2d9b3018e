"""The searcher's lexical indexes, refit in the background after the catalog changes.

A refit costs 0.4 s on 2.4k items and seconds on 100k (in every worker process): one background
worker catches up with every change (a burst of adds costs one refit), the dense signal finds new
items meanwhile. From `PROCESS_FROM` items on, the refit runs in a spawned child process: much of
the tokenising is C code holding the GIL, and in a thread it stalled this process's requests.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal, cast

from coldrec.data.catalog import ItemCatalog

if TYPE_CHECKING:
    from multiprocessing.context import BaseContext

logger = logging.getLogger(__name__)

#: The lexical indexes are refit this long after a change (a burst of adds costs one refit).
DELAY_S = 0.25
#: From this many items on, the refit runs in a child process.
PROCESS_FROM = 20_000
#: On shutdown, how long an idle refit child gets to exit by itself before it is stopped.
CHILD_EXIT_GRACE_S = 2.0


def fit_lexical(catalog: ItemCatalog, language: str, use_ngram: bool):
    """BM25 and (optionally) the character n-gram index over the catalog's texts (a child process runs this)."""
    from coldrec.retrieve.lexical import BM25Index
    from coldrec.search.searcher import CharNgramBM25

    texts = catalog.texts()
    return BM25Index(language=language).fit(texts), CharNgramBM25().fit(texts) if use_ngram else None


class LexicalRefitter:
    """Keeps `searcher.bm25` / `searcher.ngram` in step with the catalog `current()` returns, under `lock`."""

    def __init__(self, searcher, lock: threading.RLock, current: Callable[[], ItemCatalog]):
        self.searcher, self.lock, self.current = searcher, lock, current
        self.generation, self.running = 0, False
        self.pool: _ChildPool | Literal[False] | None = None  # the child process's executor; False: not usable here

    def changed(self) -> None:
        """The catalog changed (the caller holds `lock`): refit soon, in the background."""
        self.generation += 1
        if not self.running:
            self.running = True
            threading.Thread(target=self._catch_up, daemon=True, name="coldrec-lexical").start()

    def wait(self, timeout: float = 30.0) -> bool:
        """Block until the indexes hold every change (True), or `timeout` seconds pass (False)."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                if not self.running:
                    return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    def _catch_up(self) -> None:
        behind = True
        try:
            while behind:
                time.sleep(DELAY_S)
                with self.lock:
                    catalog, generation = self.current(), self.generation
                behind = self.refit(catalog, generation)
        finally:
            if behind:  # an error: the next change starts a new worker
                logger.exception("lexical refit failed")
                with self.lock:
                    self.running = False

    def refit(self, catalog: ItemCatalog, generation: int) -> bool:
        """Refit on `catalog`; True when the catalog changed meanwhile (else the worker is marked stopped)."""
        arguments = (catalog, self.searcher.language, self.searcher.use_ngram)
        fitted = None
        if len(catalog) >= PROCESS_FROM and self.pool is not False:
            try:
                fitted = self._process().submit(fit_lexical, *arguments).result()
            except Exception as error:  # noqa: BLE001 - e.g. a main script without the __main__ guard
                logger.warning("lexical refit in a child process failed (%s); refitting in this process", error)
                self.pool = False
        bm25, ngram = fitted or fit_lexical(*arguments)
        with self.lock:
            self.searcher.bm25, self.searcher.ngram = bm25, ngram
            behind = generation != self.generation
            self.running = self.running and behind
            return behind

    def _process(self):
        """One spawned child process for big refits, started on first use and kept."""
        if self.pool is None:
            import multiprocessing

            self.pool = _ChildPool(multiprocessing.get_context("spawn"))
        return self.pool

    def close(self) -> None:
        """Stop the child process, if one runs; later refits, if any, run in this process."""
        if self.pool:
            self.pool.close()
        self.pool = False


class _ChildPool:
    """A one-process pool whose child we can see (to stop it at shutdown) through public API only."""

    def __init__(self, context):
        from concurrent.futures import ProcessPoolExecutor

        self.children: list = []
        # _Recording stands in for a context by delegation (the executor only calls its factories)
        recording = cast("BaseContext", _Recording(context, self.children))
        self.executor = ProcessPoolExecutor(1, mp_context=recording, initializer=_exit_with_parent,
                                            initargs=(os.getpid(),))

    def submit(self, *args):
        return self.executor.submit(*args)

    def close(self) -> None:
        from multiprocessing.connection import wait

        self.executor.shutdown(wait=False, cancel_futures=True)
        # an idle child exits at once; a busy one would finish its (now unwanted) refit first: stopped
        # outright (killed earlier, an idle child leaves the call queue's lock behind, and a warning)
        wait([child.sentinel for child in self.children], timeout=CHILD_EXIT_GRACE_S)
        for child in self.children:
            if child.exitcode is None:
                child.terminate()


class _Recording:
    """A multiprocessing context that remembers the processes it starts."""

    def __init__(self, context, started: list):
        self._context, self._started = context, started

    def Process(self, *args, **kwargs):  # noqa: N802 - the multiprocessing context's name
        process = self._context.Process(*args, **kwargs)
        self._started.append(process)
        return process

    def __getattr__(self, name):
        return getattr(self._context, name)


def _exit_with_parent(parent_pid: int) -> None:
    """In the refit's child process: exit once the parent is gone. A uvicorn worker ends with os._exit, which skips
    the executor's own shutdown, and a kill -9 skips everything; either left the child running, orphaned."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()
