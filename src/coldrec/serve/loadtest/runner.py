"""`coldrec loadtest`'s entry point: measure a running server, or one started here in its own process."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .client import require_client, run_load
from .report import plot, table
from .workload import Phase


@contextmanager
def local_server(serve_args: list[str], what: str, log: Callable[[str], None] = print) -> Iterator[str]:
    """`coldrec serve SERVE_ARGS` in a child process with a throw-away state directory; yields its URL.

    The state is fresh (items from the engine's catalog, no events, a random id key), so the
    load's own users and events never reach a real store.
    """
    from coldrec.serve.process import free_port, start_server, stop_server

    port = free_port()
    with tempfile.TemporaryDirectory(prefix="coldrec-loadtest-") as state:
        started = time.perf_counter()
        log(f"starting a server on {what} ...")
        process = start_server([*serve_args, "--state", state], port, Path(state) / "server.log",
                               env={**os.environ, "COLDREC_ID_KEY": secrets.token_hex(16)})
        url = f"http://127.0.0.1:{port}"
        log(f"server ready at {url} (process {process.pid}) after {time.perf_counter() - started:.0f} s")
        try:
            yield url
        finally:
            stop_server(process, wait=15)


def main(url: str, *, synthetic: int = 0, model: Path | None = None, endpoints: list[str], modes: list[str],
         rate: float, concurrency: int, seconds: float, users: int, out: Path, api_key: str | None, console: Any,
         workers: int = 1) -> list[Phase]:
    """Measure, print the table, write the plot (`out`) and the figures (`out` as .json); the CLI calls this."""
    require_client()  # before a server is started for nothing
    cores = os.cpu_count()
    log = console.print

    def measure(target: str, what: str) -> list[Phase]:
        log(f"load on {target} ({what}); this client and the server share this machine's {cores} cores, "
            "the server in its own process(es)")
        phases = asyncio.run(run_load(target, endpoints=endpoints, modes=modes, rate=rate, concurrency=concurrency,
                                      seconds=seconds, users=users, api_key=api_key, log=log))
        title = f"coldrec load test: {what}; client and server share {cores} cores (separate processes)"
        console.print(table(phases, title))
        plot(phases, out, title)
        out.with_suffix(".json").write_text(json.dumps(
            {"target": target, "what": what, "cores": cores, "phases": [p.summary() for p in phases]}, indent=2))
        log(f"latency plot: {out}; figures: {out.with_suffix('.json')}")
        return phases

    if synthetic or model is not None:
        what = f"synthetic {synthetic:,}-item shop" if synthetic else f"model {model}"
        what += f", {workers} server processes" if workers > 1 else ", 1 server process"
        serve_args = ["--synthetic", str(synthetic)] if synthetic else ["--model", str(model)]
        serve_args += ["--workers", str(workers)]
        with local_server(serve_args, what, log=log) as server_url:
            return measure(server_url, what)
    return measure(url, "running server")
