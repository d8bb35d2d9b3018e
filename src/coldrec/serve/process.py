"""`coldrec serve` in a child process: for the load test and for tests that need a real server."""

from __future__ import annotations

import http.client
import socket
import subprocess
import sys
import time
import urllib.request
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
    command = [sys.executable, "-m", "coldrec.cli", "serve", *serve_args, "--port", str(port)]
    with open(log_path, "a") as server_log:
        process = subprocess.Popen(command, env=env, cwd=cwd, stdout=server_log, stderr=subprocess.STDOUT)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        if _healthy(port):
            return process
        if process.poll() is not None or (deadline is not None and time.monotonic() > deadline):
            stop_server(process)
            raise RuntimeError(f"the server did not start:\n{Path(log_path).read_text()[-3000:]}")
        time.sleep(0.2)


#: the standard library's client, never through a proxy from the environment: the server is on loopback
_LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _healthy(port: int) -> bool:
    """Whether GET /healthz on 127.0.0.1:`port` answers 200 within a second."""
    try:
        with _LOCAL.open(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
            return bool(response.status == 200)
    except (OSError, http.client.HTTPException):  # refused, reset, timed out, an error status, a garbled answer
        return False


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
