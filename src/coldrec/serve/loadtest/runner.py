"""`coldrec loadtest`'s entry point: measure a running server, or one started here in its own process."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .client import require_client, run_load
from .report import plot, table
from .workload import Phase


@contextmanager
def local_server(serve_args: list[str], what: str, log: Callable[[str], None] = print,
                 state: Path | None = None, env: dict[str, str] | None = None,
                 store: str | None = None) -> Iterator[str]:
    """`coldrec serve SERVE_ARGS` in a child process with a throw-away state directory; yields its URL.

    The state is fresh (items from the engine's catalog, no events, a random id key), so the
    load's own users and events never reach a real store; or `state`, a throw-away copy the caller made; or
    `store`, a PostgreSQL URL (the caller's to throw away: the load's users are erased at its end).
    """
    from coldrec.serve.process import free_port, start_server, stop_server

    port = free_port()
    with tempfile.TemporaryDirectory(prefix="coldrec-loadtest-") as scratch:
        folder = str(state) if state is not None else scratch
        started = time.perf_counter()
        log(f"starting a server on {what} ...")
        where = ["--store", store] if store is not None else ["--state", folder]
        process = start_server([*serve_args, *where], port, Path(scratch) / "server.log",
                               env=env or {**os.environ, "COLDREC_ID_KEY": secrets.token_hex(16)})
        url = f"http://127.0.0.1:{port}"
        log(f"server ready at {url} (process {process.pid}) after {time.perf_counter() - started:.0f} s")
        try:
            yield url
        finally:
            stop_server(process, wait=15)


@contextmanager
def swap_copy(model: Path) -> Iterator[Path]:
    """A throw-away service folder for the swap load: `model`'s current version (as version 1) and a copy of its
    store (SQLite's online backup: consistent while a server writes it), so the retrain publishes into the copy
    and the load's users never reach the real store."""
    from coldrec.model.versions import ModelVersions, locate
    from coldrec.serve.settings import DATABASE_FILE

    versions, _, directory = locate(model)
    source = (versions.root if versions is not None else directory.parent) / "state" / DATABASE_FILE
    if not source.is_file():
        raise ValueError(f"the swap load retrains from the model's store, and {source} does not exist: "
                         "give a folder written by `coldrec build`")
    with tempfile.TemporaryDirectory(prefix="coldrec-loadtest-swap-") as scratch:
        root = Path(scratch) / "model"
        ModelVersions(root).publish(lambda folder: _copy(directory, folder))
        (root / "state").mkdir()
        with sqlite3.connect(source) as original, sqlite3.connect(root / "state" / DATABASE_FILE) as copy:
            original.backup(copy)
        original.close()
        copy.close()
        yield root


def _copy(source: Path, folder: Path) -> None:
    shutil.copytree(source, folder)


def retrain_command(root: Path, env: dict[str, str], log_path: Path) -> Callable[[], Coroutine[Any, Any, None]]:
    """What the swap load triggers: `coldrec retrain --model ROOT` at low priority, as `serve --retrain-every`
    runs it; raises RuntimeError with its output's tail when it fails."""

    async def run() -> None:
        with open(log_path, "ab") as output:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "coldrec.cli", "retrain", "--model", str(root), "--nice", "10",
                stdout=output, stderr=output, env=env)
            code = await process.wait()
        if code:
            raise RuntimeError(f"the retrain failed ({code}):\n{log_path.read_text()[-3000:]}")

    return run


def main(url: str, *, synthetic: int = 0, model: Path | None = None, endpoints: list[str], modes: list[str],
         rate: float, concurrency: int, seconds: float, users: int, out: Path, api_key: str | None, console: Any,
         workers: int = 1, store: str | None = None, diversity: float | None = None) -> list[Phase]:
    """Measure, print the table, write the plot (`out`) and the figures (`out` as .json); the CLI calls this."""
    require_client()  # before a server is started for nothing
    cores = os.cpu_count()
    log = console.print

    def measure(target: str, what: str, swap: Callable[[], Coroutine[Any, Any, None]] | None = None) -> list[Phase]:
        log(f"load on {target} ({what}); this client and the server share this machine's {cores} cores, "
            "the server in its own process(es)")
        phases = asyncio.run(run_load(target, endpoints=endpoints, modes=modes, rate=rate, concurrency=concurrency,
                                      seconds=seconds, users=users, api_key=api_key, log=log, swap=swap,
                                      diversity=diversity))
        title = f"coldrec load test: {what}; client and server share {cores} cores (separate processes)"
        console.print(table(phases, title))
        for phase in phases:
            if phase.notes:
                log(f"{phase.label}: " + ", ".join(f"{key} {value}" for key, value in phase.notes.items()))
        plot(phases, out, title)
        out.with_suffix(".json").write_text(json.dumps(
            {"target": target, "what": what, "cores": cores, "phases": [p.summary() for p in phases]}, indent=2))
        log(f"latency plot: {out}; figures: {out.with_suffix('.json')}")
        return phases

    if "swap" in endpoints:
        if model is None:
            raise ValueError("--endpoint swap retrains a model: give --model (a folder written by `coldrec build`)")
        what = f"model {model} (a copy, retrained mid-run), {workers} server process{'es' if workers > 1 else ''}"
        env = {**os.environ, "COLDREC_ID_KEY": secrets.token_hex(16)}
        with swap_copy(model) as root, local_server(["--model", str(root), "--workers", str(workers)], what,
                                                    log=log, state=root / "state", env=env) as server_url:
            return measure(server_url, what, retrain_command(root, env, root / "retrain.log"))
    if synthetic or model is not None:
        what = f"synthetic {synthetic:,}-item shop" if synthetic else f"model {model}"
        what += f", {workers} server processes" if workers > 1 else ", 1 server process"
        serve_args = ["--synthetic", str(synthetic)] if synthetic else ["--model", str(model)]
        serve_args += ["--workers", str(workers)]
        if store is not None:
            from coldrec.serve.store.postgres import redacted

            what += f", store {redacted(store)}"
        with local_server(serve_args, what, log=log, store=store) as server_url:
            return measure(server_url, what)
    return measure(url, "running server")
