"""The embedded store: items, events and profiles in one SQLite file (WAL, synchronous=FULL).

The store is the source of truth for the live catalog and the event log; the engine holds
no per-user data and is rebuilt from here. Only pseudonymised user and session keys are
written (see `coldrec.serve.privacy`). Every write is one transaction, committed (and, with
synchronous=FULL, fsynced) before the method returns, so an acknowledged event survives a
kill -9 of the process. An erasure returns once no file of the store holds the erased rows.

Modules, lowest first: `schema` (tables, constants, upgrades), `rows` (values in and out),
`connections` (a connection per thread, one writer), `erasure` (rows out of every file), `sqlite` (`Store`).
"""

from .erasure import PURGE_ATTEMPT_S, PURGE_RETRY_S, PURGE_WAIT_S, ErasurePending
from .rows import EventsAdded, Rejected, Snapshot
from .schema import BUSY_TIMEOUT_S, EVENT_CODES, ITEM_FIELDS, SCHEMA, USER_EVENT_COLUMNS
from .sqlite import Store

__all__ = [
    "BUSY_TIMEOUT_S",
    "EVENT_CODES",
    "ITEM_FIELDS",
    "PURGE_ATTEMPT_S",
    "PURGE_RETRY_S",
    "PURGE_WAIT_S",
    "SCHEMA",
    "USER_EVENT_COLUMNS",
    "ErasurePending",
    "EventsAdded",
    "Rejected",
    "Snapshot",
    "Store",
]
