"""`coldrec serve` in a child process: for the load test and for tests that need a real server."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(
    serve_args: list[str],
    port: int,
    log_path: Path,
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float | None = None,
) -> subprocess.Popen:
    """`coldrec serve SERVE_ARGS --port PORT`, returned once its /healthz answers.

    Its output goes to `log_path` (appended: a restarted server keeps the first one's log). Raises
    RuntimeError, with the log's tail, when the server exits or `timeout` seconds (None: no limit) pass.
    """
    import httpx

    command = [sys.executable, "-m", "coldrec.cli", "serve", *serve_args, "--port", str(port)]
    with open(log_path, "a") as server_log:
        process = subprocess.Popen(command, env=env, cwd=cwd, stdout=server_log, stderr=subprocess.STDOUT)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        if process.poll() is not None or (deadline is not None and time.monotonic() > deadline):
            stop_server(process)
            raise RuntimeError(f"the server did not start:\n{Path(log_path).read_text()[-3000:]}")
        time.sleep(0.2)


def stop_server(process: subprocess.Popen, wait: float = 10) -> None:
    """SIGTERM, then SIGKILL if it has not exited after `wait` seconds."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(wait)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
