"""A throwaway PostgreSQL server for the tests: initdb into a temporary folder, pg_ctl start on 127.0.0.1 at a free
port (its socket in that folder too), one database; stopped and removed at the end of the session.

Debian's server binaries live in /usr/lib/postgresql/VERSION/bin (not on PATH). initdb refuses to run as root:
as root the binaries run as the `postgres` system user (runuser), owning the folder. Where they are missing, the
tests that need the server skip, saying why, unless COLDREC_REQUIRE_POSTGRES=1 makes that a failure (CI)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

REQUIRE_ENV = "COLDREC_REQUIRE_POSTGRES"
DATABASE = "coldrec_test"
SUPERUSER = "postgres"


class Unavailable(RuntimeError):
    """No PostgreSQL server can be started here (the message says why)."""


def server_binaries() -> Path:
    """The folder holding initdb, pg_ctl and postgres: the newest Debian one, else the one on PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: _version(Path(p).parents[1].name))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).resolve().parent
    raise Unavailable("PostgreSQL's server binaries (initdb, pg_ctl) are not installed: "
                      "apt-get install postgresql, or set PATH to them")


def _version(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PostgresServer:
    """`start()` then `url`; `stop()` stops the server and removes its folder."""

    def __init__(self) -> None:
        self.bin = server_binaries()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            try:
                self.account = pwd.getpwnam("postgres")
            except KeyError as error:
                raise Unavailable("running as root, and there is no `postgres` system user to run the server "
                                  "as (initdb refuses root)") from error
            if shutil.which("runuser") is None:
                raise Unavailable("running as root without runuser, which the server needs to run as `postgres`")
        # not under pytest's tmp_path: its parent is private to the current user, the server's user cannot enter
        self.root = Path(tempfile.mkdtemp(prefix="coldrec-pg-"))
        self.data, self.log = self.root / "data", self.root / "server.log"
        self.port = _free_port()
        self.started = False
        if self.as_root:
            os.chown(self.root, self.account.pw_uid, self.account.pw_gid)

    def _run(self, *command: str) -> subprocess.CompletedProcess:
        prefix = ["runuser", "-u", "postgres", "--"] if self.as_root else []
        return subprocess.run([*prefix, *command], capture_output=True, text=True, timeout=120, cwd=self.root)

    def _check(self, step: str, result: subprocess.CompletedProcess) -> None:
        if result.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"PostgreSQL {step} failed ({result.returncode}): {result.stdout}\n{result.stderr}\n"
                               f"{log[-3000:]}")

    def start(self) -> str:
        self._check("initdb", self._run(
            str(self.bin / "initdb"), "-D", str(self.data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8",
            "--locale=C", "--no-sync"))
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=on -c max_connections=200"
        self._check("start", self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w",
                                       "-t", "60", "-o", options, "start"))
        self.started = True
        self._check("createdb", self._run(str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
                                          "-U", SUPERUSER, DATABASE))
        return self.url

    @property
    def url(self) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{DATABASE}"

    def stop(self) -> None:
        try:
            if self.started:
                self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def unavailable(reason: str) -> None:
    """Skip the test that needs the server, or fail it where the server is required."""
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{REQUIRE_ENV}=1, but {reason}", pytrace=False)
    pytest.skip(reason)
