"""The store: items, events and profiles in one SQLite file (WAL, synchronous=FULL), the embedded default, or in a
PostgreSQL database that several serving hosts share (`PostgresStore`); `open_store(target)` opens either.

The store is the source of truth for the live catalog and the event log; the engine holds
no per-user data and is rebuilt from here. Only pseudonymised user and session keys are
written (see `coldrec.serve.privacy`). Every write is one transaction, committed (and, with
synchronous=FULL, fsynced) before the method returns, so an acknowledged event survives a
kill -9 of the process. An erasure returns once no file of the store holds the erased rows (SQLite; on
PostgreSQL, once the transaction deleting them committed).

Modules, lowest first: `schema` (tables, constants, upgrades), `rows` (values in and out), `statements` (the
`Run` both backends give), with the methods written once over it: `keys` (the pseudonymisation key's version),
`profiles`, `rules` (merchandising rules), `ledger` (campaigns and ad spend); `connections` (a connection per
thread, one writer), `erasure` (rows out of every file), `sqlite` (`Store`); `postgres` (`PostgresStore`: the same
methods and promises, psycopg imported only when one is opened) beside them.
"""

from __future__ import annotations

from pathlib import Path

from .erasure import PURGE_ATTEMPT_S, PURGE_RETRY_S, PURGE_WAIT_S, ErasurePending
from .postgres import ITEMS_CHANNEL, ItemsListener, PostgresStore, is_postgres_url
from .rows import EventsAdded, Rejected, Snapshot
from .schema import BUSY_TIMEOUT_S, EVENT_CODES, ITEM_FIELDS, SCHEMA, USER_EVENT_COLUMNS
from .sqlite import Store

#: either store: the service, the catalog sync and retraining take both (the contract suite holds them to one set of
#: promises)
AnyStore = Store | PostgresStore


def open_store(
    target: str | Path, id_key: str | None = None, key_file: str | Path | None = None
) -> AnyStore:
    """The store at `target`: a postgresql:// (or postgres://) URL opens a `PostgresStore`, anything else is a
    state folder holding the SQLite store (`Store.open`). Keyed by `id_key`, else by the key in `key_file`."""
    if is_postgres_url(target):
        return PostgresStore.open(str(target), id_key, key_file=key_file)
    return Store.open(target, id_key, key_file=key_file)


__all__ = [
    "AnyStore",
    "BUSY_TIMEOUT_S",
    "EVENT_CODES",
    "ITEMS_CHANNEL",
    "ITEM_FIELDS",
    "PURGE_ATTEMPT_S",
    "PURGE_RETRY_S",
    "PURGE_WAIT_S",
    "SCHEMA",
    "USER_EVENT_COLUMNS",
    "ErasurePending",
    "EventsAdded",
    "ItemsListener",
    "PostgresStore",
    "Rejected",
    "Snapshot",
    "Store",
    "is_postgres_url",
    "open_store",
]
