"""Pseudonymous user and session keys: what the store holds instead of the ids shoppers send."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

KEY_FILE = "id.key"
KEY_HEX_CHARS = 32


class Pseudonymizer:
    """Maps an id to hex(HMAC-SHA256(key, "user:" + id))[:32] (sessions: the "session:" prefix).

    Keyed, so the keys cannot be reversed by hashing guessed ids without the key; the
    prefixes keep a user id and a session id with the same text apart.
    """

    def __init__(self, key: bytes | str):
        if not key:
            raise ValueError("the pseudonymisation key must not be empty")
        self._key = key.encode() if isinstance(key, str) else bytes(key)

    def __repr__(self) -> str:
        return "Pseudonymizer(<key hidden>)"

    def _digest(self, prefix: str, value: str) -> str:
        return hmac.new(self._key, f"{prefix}:{value}".encode(), hashlib.sha256).hexdigest()[:KEY_HEX_CHARS]

    def user(self, user_id: str) -> str:
        return self._digest("user", user_id)

    def session(self, session_id: str) -> str:
        return self._digest("session", session_id)


def load_or_create_key(state_dir: str | Path, configured: str | None = None) -> str:
    """The configured key if given, else the one stored in `state_dir/id.key`, created once.

    The stored key is created with mode 0600 and never rewritten, so restarts map ids to
    the same keys; losing it makes every stored key unreachable by its id.
    """
    if configured:
        return configured
    path = Path(state_dir) / KEY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_text().strip()
        if not key:
            raise ValueError(f"{path} is empty; restore it or set COLDREC_ID_KEY") from None
        return key
    key = secrets.token_hex(32)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(key + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return key
