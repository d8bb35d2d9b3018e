"""The pseudonymisation key a store's rows are keyed with, and its rotation (`coldrec rotate-key`).

Why a chain: a stored key is an HMAC of the raw id, and raw ids are never stored, so a new key cannot be computed
for the rows from the ids. Rotation therefore re-keys what is stored: every key becomes HMAC(k_new, key), and the
service keys an id through the whole chain, HMAC(k_n, ... HMAC(k_2, HMAC(k_1, "user:" + id))) (see
`coldrec.serve.privacy.Pseudonymizer`), so a request's raw id still finds its history and every shopper keeps it.
What rotation buys: the stored keys link to ids only with every link of the chain; a copy of the key as it was
(a leaked file, an old backup, a departed operator's copy) no longer links the store's rows to ids, and may be
destroyed. The first link stays inside the chain (HMAC cannot be undone without the ids); the chain is one file.

The store records how many links its keys went through (`id_key_version` in its meta table); every process keys
with that many links of its key file, reloading the file when the store moved past what it holds, so processes and
hosts sharing a store follow a rotation without a restart. Writes read the version inside their transaction, after
the rotation's (SQLite: one writer at a time; PostgreSQL: the version row is read FOR SHARE, the rotation takes it
FOR UPDATE), so no event is stored under a key of the old version once the rotation has committed. A read racing
the rotation's commit may miss that shopper's history for that one request.

`rotate_key` is resumable: the new link is written to the key file (fsynced) before any row changes, then the rows
are re-keyed in one transaction; run again after a crash, it finishes with the link already written.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coldrec.serve.privacy import Pseudonymizer, add_key_link

from .schema import KEY_VERSION


class KeyVersionError(RuntimeError):
    """The store's keys went through more links than this process's key holds."""


class StoreKeys:
    """A store's pseudonymizer at a key version; `reload` re-reads the key's source (None: a key given as a value,
    which cannot change under a running process)."""

    def __init__(self, pseudonymizer: Pseudonymizer, reload: Callable[[], str] | None = None):
        self._chain = pseudonymizer
        self._reload = reload
        self._lock = threading.Lock()

    @property
    def chain(self) -> Pseudonymizer:
        return self._chain

    def at(self, version: int) -> Pseudonymizer:
        """The pseudonymizer for a store at key `version` (the key file re-read when it holds fewer links)."""
        chain = self._chain
        if version > chain.version and self._reload is not None:
            with self._lock:
                if version > self._chain.version:
                    self._chain = Pseudonymizer(self._reload())
                chain = self._chain
        if version > chain.version:
            raise KeyVersionError(
                f"the store's pseudonymous keys were rotated to version {version}, but this process's key holds "
                f"{chain.version} link(s): give it the rotated key (the key file `coldrec rotate-key` wrote)")
        return chain if version == chain.version else chain.at(version)


class KeyedStore:
    """What both backends answer about their key the same way, over their `keys` and `_read`."""

    keys: StoreKeys

    def _read(self, sql: str, parameters: Any = ()) -> list[Any]:
        raise NotImplementedError

    @property
    def ids(self) -> Pseudonymizer:
        """The pseudonymizer at the store's key version now."""
        return self.keys.at(self.key_version())

    def key_version(self) -> int:
        """How many links of the key chain the stored keys went through (1 + the rotations)."""
        return key_version(self._read(KEY_VERSION))


def key_version(rows: list) -> int:
    """The version a KEY_VERSION query returned (1: a store written before rotation existed)."""
    return int(rows[0][0]) if rows else 1


def rekeyed(stored: list[str], chain: Pseudonymizer) -> list[tuple[str, str]]:
    """(old key, new key) for every stored key, re-keyed by the chain's last link."""
    return [(key, chain.rekey(key)) for key in stored]


@dataclass(frozen=True)
class Rotation:
    """What `rotate_key` did: the store's key version before and after, and how many stored keys changed."""

    version_before: int
    version: int
    keys: int


def rotate_key(store, key_file: str | Path) -> Rotation:
    """Re-key every stored user and session key to a new link of the chain in `key_file`, in one transaction, while
    the store is in use (module docstring). Resumable: a link written by a rotation that stopped before its rows
    changed is used, not a new one."""
    path = Path(key_file).expanduser()
    stored = store.key_version()
    chain = Pseudonymizer(path.read_text())
    if chain.version < stored:
        raise KeyVersionError(f"{path} holds {chain.version} key link(s) but the store's keys are at version "
                              f"{stored}: this is not the store's current key file")
    if chain.version > stored + 1:
        raise KeyVersionError(f"{path} holds {chain.version} key links, more than one past the store's version "
                              f"{stored}: this key file belongs to another store")
    if chain.version == stored:
        chain = Pseudonymizer(add_key_link(path))
    keys = store.rekey(chain)
    return Rotation(stored, chain.version, keys)
