"""Pseudonymous user and session keys: what the store holds instead of the ids shoppers send."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from collections.abc import Callable
from pathlib import Path

KEY_FILE = "id.key"
KEY_FILE_ENV = "COLDREC_ID_KEY_FILE"
KEY_HEX_CHARS = 32

log = logging.getLogger(__name__)


class Pseudonymizer:
    """Maps an id to hex(HMAC-SHA256(key, "user:" + id))[:32] (sessions: the "session:" prefix).

    Keyed, so the keys cannot be reversed by hashing guessed ids without the key; the
    prefixes keep a user id and a session id with the same text apart.

    Rotated keys (`coldrec.serve.store.keys`): the key is a chain k1 k2 ... kn (one a line, oldest first), and
    a key is re-keyed by every later link in turn, key_i = hex(HMAC-SHA256(k_i, key_(i-1)))[:32]: what `rekey`
    does to a stored key is what the chain does to a fresh one. `version` is the chain's length.
    """

    def __init__(self, key: bytes | str):
        if not key:
            raise ValueError("the pseudonymisation key must not be empty")
        # one line: the key exactly as given (as before rotation existed); several: one link a line
        links = ([line.strip() for line in key.splitlines() if line.strip()] if "\n" in key else [key]) \
            if isinstance(key, str) else [bytes(key)]
        if not links:
            raise ValueError("the pseudonymisation key must not be blank")
        self._links = [link.encode() if isinstance(link, str) else link for link in links]

    def __repr__(self) -> str:
        return f"Pseudonymizer(<key hidden>, version={self.version})"

    @property
    def version(self) -> int:
        """How many keys the chain holds: 1, plus one per rotation."""
        return len(self._links)

    def at(self, version: int) -> Pseudonymizer:
        """The chain's first `version` links (a store not yet rotated to the last one keys with those)."""
        if not 1 <= version <= self.version:
            raise ValueError(f"key version {version} is not in this chain of {self.version}")
        chain = Pseudonymizer.__new__(Pseudonymizer)
        chain._links = self._links[:version]
        return chain

    def rekey(self, stored_key: str) -> str:
        """A key stored under the chain without its last link, as the whole chain keys it."""
        return _hmac(self._links[-1], stored_key.encode())

    def _digest(self, prefix: str, value: str) -> str:
        digest = _hmac(self._links[0], f"{prefix}:{value}".encode())
        for link in self._links[1:]:
            digest = _hmac(link, digest.encode())
        return digest

    def user(self, user_id: str) -> str:
        return self._digest("user", user_id)

    def session(self, session_id: str) -> str:
        return self._digest("session", session_id)


def _hmac(key: bytes, message: bytes) -> str:
    return hmac.new(key, message, hashlib.sha256).hexdigest()[:KEY_HEX_CHARS]


def default_key_file() -> Path:
    """$COLDREC_ID_KEY_FILE, else $XDG_CONFIG_HOME/coldrec/id.key (~/.config/coldrec/id.key).

    Apart from the state dir, so a copy of the data is not also a copy of the key that links it to ids.
    """
    configured = os.environ.get(KEY_FILE_ENV)
    if configured:
        return Path(configured).expanduser()
    config_home = os.environ.get("XDG_CONFIG_HOME", "")
    base = Path(config_home) if os.path.isabs(config_home) else Path.home() / ".config"  # XDG: ignore a relative one
    return base / "coldrec" / KEY_FILE


def load_or_create_key(
    configured: str | None = None, key_file: str | Path | None = None, state_dir: str | Path | None = None
) -> str:
    """The configured key if given, else the one in `key_file` (default: `default_key_file()`), created once.

    The key file is created with mode 0600 (in a 0700 directory when that is new) and never
    rewritten, so restarts map ids to the same keys; losing it makes every stored key
    unreachable by its id. A key left beside the data by the old layout (`state_dir/id.key`)
    is moved to the key file; if the key file already holds a different key, ValueError.
    """
    if configured is not None and not isinstance(configured, str):
        raise TypeError("`configured` is the key itself; pass the state dir as state_dir=")
    old = Path(state_dir) / KEY_FILE if state_dir is not None else None
    if configured:
        if old is not None and old.exists():
            log.warning("%s holds a pseudonymisation key beside the data; COLDREC_ID_KEY is used instead. "
                        "Move that file out of the state directory, or delete it if it is not that key", old)
        return configured
    path = Path(key_file).expanduser() if key_file is not None else default_key_file()
    if old is not None and old.exists():
        if old.resolve() == path.resolve():
            log.warning("the pseudonymisation key file %s is inside the state directory: a copy of the data "
                        "is a copy of the key", path)
        else:
            try:
                return _move_key(old, path)
            except FileNotFoundError:  # another process moved it first
                pass
    return _read_or_create(path)


def _move_key(old: Path, path: Path) -> str:
    """Move the key in `old` to `path` (written and fsynced before `old` goes); ValueError if `path` holds another."""
    key = _read_key(old)
    held = _read_or_create(path, key)
    if held != key:
        raise ValueError(
            f"two different pseudonymisation keys: {old} (beside the data, the layout of older coldrec versions) "
            f"and {path}. The ids in {old.parent} were most likely pseudonymised with {old}: move that file out of "
            f"the state directory and set {KEY_FILE_ENV} to its new path (or COLDREC_ID_KEY to its content). "
            f"If the data was pseudonymised with {path} instead, delete {old}."
        )
    old.unlink(missing_ok=True)
    _fsync_directory(old.parent)
    log.warning("moved the pseudonymisation key %s out of the state directory, to %s", old, path)
    return key


def add_key_link(path: str | Path) -> str:
    """Append a new random link to the key chain in `path` (written whole, fsynced, mode 0600, replacing the file
    atomically); the new chain (`coldrec.serve.store.keys.rotate_key`)."""
    path = Path(path).expanduser()
    chain = _read_key(path) + "\n" + secrets.token_hex(32)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(chain + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    _fsync_directory(path.parent)
    return chain


def key_source(configured: str | None = None, key_file: str | Path | None = None) -> Callable[[], str] | None:
    """What re-reads the key after a rotation: the key file (`key_file`, default `default_key_file()`); None for a
    key given as a value (COLDREC_ID_KEY), which a running process cannot see change."""
    if configured:
        return None
    path = Path(key_file).expanduser() if key_file is not None else default_key_file()
    return lambda: _read_key(path)


def _read_key(path: Path) -> str:
    key = path.read_text().strip()
    if not key:
        raise ValueError(f"{path} is empty; restore it or set COLDREC_ID_KEY")
    return key


def _read_or_create(path: Path, new_key: str | None = None) -> str:
    """The key in `path`; where there is none, `new_key` (default: a random one) written there first."""
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    _private_directory(path.parent)
    key = new_key or secrets.token_hex(32)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w") as handle:
            os.fchmod(handle.fileno(), 0o600)  # exact, whatever the umask
            handle.write(key + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)  # appears whole or not at all; of two processes creating it, one key wins
        except FileExistsError:
            return _read_key(path)
    finally:
        temporary.unlink(missing_ok=True)
    _fsync_directory(path.parent)
    return key


def _private_directory(directory: Path) -> None:
    """Create `directory` with mode 0700 unless it exists (an existing one keeps its mode)."""
    if directory.is_dir():
        return
    directory.parent.mkdir(parents=True, exist_ok=True)
    try:
        directory.mkdir(mode=0o700)
    except FileExistsError:
        return
    os.chmod(directory, 0o700)  # mkdir's mode passes through the umask


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
