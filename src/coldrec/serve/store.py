"""The embedded store: items, events and profiles in one SQLite file (WAL, synchronous=FULL).

The store is the source of truth for the live catalog and the event log; the engine holds
no per-user data and is rebuilt from here. Only pseudonymised user and session keys are
written (see `coldrec.serve.privacy`). Every write is one transaction, committed (and, with
synchronous=FULL, fsynced) before the method returns, so an acknowledged event survives a
kill -9 of the process. An erasure returns once no file of the store holds the erased rows.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from coldrec.data.catalog import CATALOG_COLUMNS, ItemCatalog
from coldrec.data.interactions import EventType, InteractionLog
from coldrec.serve.privacy import Pseudonymizer, load_or_create_key

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    position INTEGER PRIMARY KEY,  -- row in the engine's catalog: assigned once, never reused
    item_id TEXT NOT NULL UNIQUE,
    title TEXT, description TEXT, brand TEXT, category TEXT,
    price REAL, available INTEGER NOT NULL DEFAULT 1,
    created_at INTEGER,  -- unix seconds
    attributes TEXT,  -- JSON object
    deleted INTEGER NOT NULL DEFAULT 0,
    changed INTEGER NOT NULL DEFAULT 0  -- the items_version of the row's last write
);
CREATE TABLE IF NOT EXISTS events (
    event_id TEXT PRIMARY KEY,  -- the client's idempotency key
    user_key TEXT NOT NULL,  -- pseudonymised user or session id
    item_id TEXT,  -- NULL only for search events
    time REAL NOT NULL,
    event INTEGER NOT NULL,  -- EventType
    query TEXT
);
CREATE INDEX IF NOT EXISTS events_by_user ON events (user_key, time);
CREATE INDEX IF NOT EXISTS items_by_change ON items (changed);
-- items_version: counts item writes, so every server process sharing the file sees catalog changes;
-- erasures: counts erasures that deleted rows; scrubbed: the erasures count the last VACUUM covered
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('items_version', 0);
CREATE TABLE IF NOT EXISTS profiles (
    user_key TEXT PRIMARY KEY,
    interests TEXT NOT NULL  -- JSON list of strings
);
"""
ITEM_FIELDS = [c for c in CATALOG_COLUMNS if c != "item_id"]
EVENT_CODES = {e.name.lower(): int(e) for e in EventType}
USER_EVENT_COLUMNS = ["item_id", "time", "event", "query"]
BUSY_TIMEOUT_S = 30
#: How long an erasure waits for readers that started before it (their snapshot still holds the rows).
PURGE_WAIT_S = 10.0
PURGE_ATTEMPT_S = 0.25  # a checkpoint waiting for readers holds off every writer: wait in short turns
PURGE_RETRY_S = 1.0  # between background attempts after an erasure gave up waiting

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Rejected:
    """An event `add_events` did not store: its place in the batch, its id, the offending field and why."""

    position: int
    event_id: str
    field: str
    reason: str


@dataclasses.dataclass(frozen=True)
class EventsAdded:
    """What `add_events` did with a batch: accepted + duplicates + len(rejected) == len(batch)."""

    accepted: int
    duplicates: int
    rejected: list[Rejected] = dataclasses.field(default_factory=list)


class ErasurePending(RuntimeError):
    """The erased rows are gone from every query and the database was rewritten without them, but a read that
    began before the erasure kept their old copies in the files past the wait; a background purge removes them
    once it ends. `counts`: what was erased. Repeating the erasure is safe and waits again."""

    def __init__(self, counts: dict[str, int], path: Path):
        super().__init__(f"erased {counts}, but a long read keeps old copies in the files of {path}; retry shortly")
        self.counts = counts


class Store:
    """Thread-safe: a connection per thread (WAL lets readers run beside the writer), one writer at a time."""

    def __init__(self, path: str | Path, pseudonymizer: Pseudonymizer, purge_wait_s: float = PURGE_WAIT_S):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.ids = pseudonymizer
        self.purge_wait_s = purge_wait_s
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._write_lock = threading.Lock()
        self._open_lock = threading.Lock()
        self._closing = threading.Event()
        self._purger: threading.Thread | None = None
        self._purges_wanted = 0
        with self._write_lock:
            connection = self._connection()
            columns = {row[1] for row in connection.execute("PRAGMA table_info(items)")}
            if columns and "changed" not in columns:  # a store written before items_version existed
                connection.execute("ALTER TABLE items ADD COLUMN changed INTEGER NOT NULL DEFAULT 0")
            connection.executescript(SCHEMA)  # its own transaction
            # a store with items but no erasures count is older than the rewrite on erasure: rewrite it once
            connection.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('erasures', ?), ('scrubbed', 0)",
                               (int(bool(columns)),))
        # completes an erasure a crash (or an older version) left in the file; the WAL: one try, no waiting
        self._scrub(connection)
        self._purge(connection, 0)

    @classmethod
    def open(
        cls, state_dir: str | Path, id_key: str | None = None, key_file: str | Path | None = None,
        filename: str = "coldrec.sqlite",
    ) -> Store:
        """The store in `state_dir`, keyed by `id_key`, else by the key in `key_file` (see `load_or_create_key`)."""
        key = load_or_create_key(id_key, key_file=key_file, state_dir=state_dir)
        return cls(Path(state_dir) / filename, Pseudonymizer(key))

    def _connect(self) -> sqlite3.Connection:
        # autocommit mode: transactions are explicit (BEGIN IMMEDIATE in _write)
        connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_S)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute("PRAGMA secure_delete=ON")  # erased rows (and freed pages) are zeroed, not just unlinked
        return connection

    def _connection(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._connect()
            self._local.connection = connection
            with self._open_lock:
                self._connections.append(connection)
        return connection

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One transaction, committed on exit (rolled back on an exception)."""
        connection = self._connection()
        with self._write_lock:
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")

    def _read(self, sql: str, parameters=()) -> list[tuple]:
        return self._connection().execute(sql, parameters).fetchall()

    def close(self) -> None:
        self._closing.set()
        purger = self._purger
        if purger is not None:
            purger.join(timeout=PURGE_ATTEMPT_S + 1)
        self._closing.clear()
        with self._open_lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()
        self._local = threading.local()

    def journal_mode(self) -> str:
        return self._read("PRAGMA journal_mode")[0][0]

    # items

    def upsert_items(self, frame: pd.DataFrame) -> list[str]:
        """Add or update items (catalog columns); a new id takes the next position, an existing one keeps its own.

        Upserting a deleted item brings it back.
        """
        catalog = ItemCatalog.from_partial(frame)
        columns = _item_columns(catalog.frame)
        rows = list(zip(*(_sql_values(values) for values in columns.values())))
        names = ", ".join(columns)
        updates = ", ".join(f"{name} = excluded.{name}" for name in list(columns)[1:])
        with self._write() as connection:
            version = self._bump_items_version(connection)
            start = connection.execute("SELECT COALESCE(MAX(position) + 1, 0) FROM items").fetchone()[0]
            # positions for new ids come from a counter; an update keeps its row's position
            connection.executemany(
                f"INSERT INTO items (position, {names}, changed) VALUES (?, {', '.join('?' * len(columns))}, ?) "
                f"ON CONFLICT (item_id) DO UPDATE SET {updates}, deleted = 0, changed = excluded.changed",
                ((start + i, *row, version) for i, row in enumerate(rows)),
            )
        return catalog.ids.tolist()

    def patch_item(self, item_id: str, fields: dict) -> pd.DataFrame | None:
        """Change only the given catalog fields of a live item, in one transaction: its row after the change
        (CATALOG_COLUMNS, one row), or None when the item is unknown or deleted.

        Values are encoded as by `upsert_items` (created_at naive UTC; None clears a field).
        """
        unknown = sorted(set(fields) - set(ITEM_FIELDS))
        if unknown:
            raise ValueError(f"not catalog fields: {unknown} (item_id cannot change)")
        if "available" in fields and fields["available"] is None:
            raise ValueError("available must be True or False")
        if not fields:
            return self.item(item_id)
        names = list(fields)
        given = ItemCatalog.from_partial(pd.DataFrame({"item_id": [item_id], **{name: [fields[name]] for name in names}}))
        encoded = _item_columns(given.frame)
        values = [_sql_values(encoded[name])[0] for name in names]
        with self._write() as connection:
            if not connection.execute("SELECT 1 FROM items WHERE item_id = ? AND deleted = 0", (item_id,)).fetchone():
                return None
            version = self._bump_items_version(connection)
            connection.execute(
                f"UPDATE items SET {', '.join(f'{name} = ?' for name in names)}, changed = ? WHERE item_id = ?",
                (*values, version, item_id),
            )
            return self._items("WHERE item_id = ?", (item_id,), connection).drop(columns="deleted")

    def item(self, item_id: str) -> pd.DataFrame | None:
        """A live item's row (CATALOG_COLUMNS, one row), or None when it is unknown or deleted."""
        frame = self._items("WHERE item_id = ? AND deleted = 0", (item_id,))
        return None if frame.empty else frame.drop(columns="deleted")

    def delete_item(self, item_id: str) -> bool:
        """Mark an item deleted (it keeps its position); False if unknown or already deleted."""
        with self._write() as connection:
            if not connection.execute("SELECT 1 FROM items WHERE item_id = ? AND deleted = 0", (item_id,)).fetchone():
                return False
            version = self._bump_items_version(connection)
            connection.execute("UPDATE items SET deleted = 1, changed = ? WHERE item_id = ?", (version, item_id))
            return True

    def _bump_items_version(self, connection: sqlite3.Connection) -> int:
        version = _bump_items_version(connection)
        self._local.items_version_written = version
        return version

    def written_items_version(self) -> int | None:
        """The items_version that this thread's last item write (upsert, patch, delete) committed; None before any.
        A server process applies its own writes to its engine itself and need not read them back."""
        return getattr(self._local, "items_version_written", None)

    def items_version(self) -> int:
        """Grows with every item write (by any process sharing this file): a cheap "has the catalog changed?"."""
        return self._read("SELECT value FROM meta WHERE key = 'items_version'")[0][0]

    def items_frame(self, changed_since: int | None = None) -> pd.DataFrame:
        """Every item (or those written after items_version `changed_since`), deleted ones included, in
        position order: CATALOG_COLUMNS + "deleted"."""
        since = -1 if changed_since is None else int(changed_since)
        return self._items("WHERE changed > ?", (since,))

    def _items(self, where: str, parameters: tuple, connection: sqlite3.Connection | None = None) -> pd.DataFrame:
        frame = pd.read_sql_query(
            f"SELECT item_id, {', '.join(ITEM_FIELDS)}, deleted FROM items {where} ORDER BY position",
            connection or self._connection(), params=parameters,
        )
        frame["created_at"] = pd.to_datetime(frame["created_at"], unit="s")
        frame["available"] = frame["available"].astype(bool)
        frame["attributes"] = frame["attributes"].map(lambda text: json.loads(text) if isinstance(text, str) else None)
        frame["price"] = frame["price"].astype("float64")
        deleted = frame.pop("deleted").astype(bool).to_numpy()
        frame = ItemCatalog(frame).frame
        frame["deleted"] = deleted
        return frame

    def item_count(self) -> int:
        """Items not deleted."""
        return self._read("SELECT COUNT(*) FROM items WHERE deleted = 0")[0][0]

    # events

    def add_events(self, events: list[dict]) -> EventsAdded:
        """Store a batch of events in one transaction; every valid event is stored whatever the others hold.

        Each event: event_id, user_id or session_id, item_id (None only for "search"),
        type (view|click|cart|purchase|search), time (unix seconds; now when None), query.
        An event_id already stored (or repeated in the batch) is a duplicate and ignored, even when
        its item has been deleted since (a retried batch). An event naming an unknown or deleted
        item, or malformed, is not stored and is listed in `rejected`.
        """
        keys: dict[tuple[str, str], str] = {}

        def key_of(event: dict) -> str:
            kind, value = ("user", event["user_id"]) if event.get("user_id") is not None else ("session", event["session_id"])
            if (kind, value) not in keys:
                keys[kind, value] = self.ids.user(value) if kind == "user" else self.ids.session(value)
            return keys[kind, value]

        now = time.time()
        rejected: list[Rejected] = []
        rows: list[tuple[int, tuple]] = []  # (position, row)
        for position, e in enumerate(events):
            problem = _event_problem(e)
            if problem is not None:
                rejected.append(Rejected(position, str(e.get("event_id") or ""), *problem))
                continue
            rows.append((position, (e["event_id"], key_of(e), e.get("item_id"),
                                    now if e.get("time") is None else float(e["time"]), EVENT_CODES[e["type"]],
                                    e.get("query"))))
        item_ids = sorted({row[2] for _, row in rows if row[2] is not None})
        with self._write() as connection:
            deleted = dict(connection.execute(
                "SELECT item_id, deleted FROM items WHERE item_id IN (SELECT value FROM json_each(?))",
                (json.dumps(item_ids),),
            ))
            valid = []
            for position, row in rows:
                item_id = row[2]
                if item_id is None or deleted.get(item_id) == 0:
                    valid.append(row)
                else:
                    state = "deleted" if item_id in deleted else "unknown"
                    rejected.append(Rejected(position, row[0], "item_id", f"{state} item id {item_id!r}"))
            accepted = connection.executemany(
                "INSERT OR IGNORE INTO events (event_id, user_key, item_id, time, event, query) VALUES (?, ?, ?, ?, ?, ?)",
                valid,
            ).rowcount if valid else 0
            stored = set(_stored_event_ids(connection, [r.event_id for r in rejected if r.event_id])) if rejected else set()
        rejected = sorted((r for r in rejected if r.event_id not in stored), key=lambda r: r.position)
        return EventsAdded(accepted, len(events) - accepted - len(rejected), rejected)

    def user_events(
        self, user_id: str | None = None, session_id: str | None = None, limit: int | None = None
    ) -> pd.DataFrame:
        """One shopper's events in time order: item_id, time (int64), event (int8 EventType), query.

        Given both ids, the events of the user and of the session together; given `limit`, only the
        `limit` most recent of them.
        """
        return _as_frame(self.user_event_columns(user_id, session_id, limit), USER_EVENT_COLUMNS)

    def user_event_columns(
        self, user_id: str | None = None, session_id: str | None = None, limit: int | None = None
    ) -> dict[str, np.ndarray]:
        """`user_events` as numpy columns: the per-request path, where building a DataFrame costs more than the query."""
        keys = ([self.ids.user(user_id)] if user_id is not None else []) + (
            [self.ids.session(session_id)] if session_id is not None else []
        )
        if limit is None:
            rows = self._read(
                "SELECT item_id, time, event, query FROM events WHERE user_key IN (SELECT value FROM json_each(?)) "
                "ORDER BY time, rowid",
                (json.dumps(keys),),
            )
            return _events_columns(rows, USER_EVENT_COLUMNS)
        if limit < 0:
            raise ValueError(f"limit must be >= 0, not {limit}")
        # newest first, walking events_by_user (user_key, time, rowid) backwards: the cost is `limit`, not the history
        newest = [row for key in keys for row in self._read(
            "SELECT time, rowid, item_id, event, query FROM events WHERE user_key = ? "
            "ORDER BY time DESC, rowid DESC LIMIT ?",
            (key, limit),
        )]
        if len(keys) > 1:
            newest = sorted(newest, reverse=True)[:limit]
        rows = [(item_id, t, event, query) for t, _, item_id, event, query in reversed(newest)]
        return _events_columns(rows, USER_EVENT_COLUMNS)

    def events_log(self) -> pd.DataFrame:
        """Every event in time order: user_key, item_id, time (int64), event (int8), query (for rebuilds)."""
        rows = self._read("SELECT user_key, item_id, time, event, query FROM events ORDER BY time, rowid")
        return _events_frame(rows, ["user_key", *USER_EVENT_COLUMNS])

    def stored_event_ids(self, event_ids: list[str]) -> list[str]:
        """The given event ids that are stored."""
        return _stored_event_ids(self._connection(), event_ids)

    # profiles

    def set_profile(self, user_id: str, interests: list[str]) -> None:
        with self._write() as connection:
            connection.execute(
                "INSERT INTO profiles (user_key, interests) VALUES (?, ?) "
                "ON CONFLICT (user_key) DO UPDATE SET interests = excluded.interests",
                (self.ids.user(user_id), json.dumps(list(interests))),
            )

    def profile(self, user_id: str) -> list[str]:
        rows = self._read("SELECT interests FROM profiles WHERE user_key = ?", (self.ids.user(user_id),))
        return json.loads(rows[0][0]) if rows else []

    # erasure

    def delete_user(self, user_id: str) -> dict[str, int]:
        """Erase a user's events and profile, from the files too: {"events": n, "profiles": m}.

        Raises ErasurePending (after erasing) when a read that began earlier outlasts `purge_wait_s`.
        """
        return self._erase(self.ids.user(user_id), ("events", "profiles"))

    def delete_session(self, session_id: str) -> dict[str, int]:
        """Erase an anonymous session's events, from the files too: {"events": n} (see `delete_user`)."""
        return self._erase(self.ids.session(session_id), ("events",))

    def _erase(self, key: str, tables: tuple[str, ...]) -> dict[str, int]:
        with self._write() as connection:
            counts = {table: connection.execute(f"DELETE FROM {table} WHERE user_key = ?", (key,)).rowcount
                      for table in tables}
            if any(counts.values()):
                connection.execute("UPDATE meta SET value = value + 1 WHERE key = 'erasures'")
        self._scrub(connection)
        # even when nothing was deleted now: repeating an erasure that raised ErasurePending retries the purge
        if not self._purge(connection, self.purge_wait_s):
            self._purge_later()
            raise ErasurePending(counts, self.path)
        return counts

    def _scrub(self, connection: sqlite3.Connection) -> None:
        """Rewrite the database file from its live rows (VACUUM) if an erasure deleted rows since the last rewrite.

        secure_delete zeroes the cells a delete removes and the pages it frees, but not the
        stale copies b-tree rebalancing leaves behind: a page rebuilt after its cells moved to
        a sibling keeps their old bytes in its unallocated space, so a row can outlive its own
        deletion there. Costs a pass over the file (about 0.7 s for a million events), writers waiting.
        """
        (erasures, scrubbed), = connection.execute(
            "SELECT (SELECT value FROM meta WHERE key = 'erasures'), (SELECT value FROM meta WHERE key = 'scrubbed')"
        ).fetchall()
        if erasures == scrubbed:
            return
        with self._write_lock:
            connection.execute("VACUUM")  # into the WAL: the purge then writes it to the database file
        with self._write() as writer:
            writer.execute("UPDATE meta SET value = max(value, ?) WHERE key = 'scrubbed'", (erasures,))

    def _purge(self, connection: sqlite3.Connection, wait_s: float) -> bool:
        """Copy the WAL into the database file and truncate it to zero bytes; False if readers kept it past `wait_s`.

        The WAL keeps the older images of the pages an erasure rewrote, and the database file
        keeps them until a checkpoint. Only TRUNCATE removes them: a WAL reset (RESTART) merely
        overwrites frames from the start, leaving the rest until journal_size_limit cuts it, and
        a limit of 0 on every connection made each commit about 50% slower (a growing file to
        fsync), so no limit is set. A checkpoint cannot pass a reader whose snapshot predates the
        delete (that reader may still read the rows), so it waits, in short turns.
        """
        deadline = time.monotonic() + wait_s
        try:
            while True:
                turn = max(0.0, min(deadline - time.monotonic(), PURGE_ATTEMPT_S))
                connection.execute(f"PRAGMA busy_timeout = {int(turn * 1000)}")
                try:
                    busy = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
                except sqlite3.OperationalError as error:
                    if error.sqlite_errorcode not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                        raise
                    busy = 1
                if not busy:
                    return True
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.01)  # writers held off by the attempt commit in between
        finally:
            connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_S * 1000}")

    def _purge_later(self) -> None:
        """Retry the purge in the background until it succeeds (for every erasure asked so far) or the store closes."""
        with self._open_lock:
            self._purges_wanted += 1
            if self._purger is None:
                self._purger = threading.Thread(target=self._keep_purging, name="coldrec-store-purge", daemon=True)
                self._purger.start()

    def _keep_purging(self) -> None:
        connection = self._connect()
        try:
            purged = None  # the count of erasures asked for when the last successful attempt began
            while True:
                with self._open_lock:  # decided and cleared at once, so an erasure giving up now starts a new purger
                    if purged == self._purges_wanted or self._closing.is_set():
                        self._purger = None
                        return
                    wanted = self._purges_wanted
                self._closing.wait(PURGE_RETRY_S)
                if not self._closing.is_set() and self._purge(connection, PURGE_ATTEMPT_S):
                    log.info("the WAL of %s no longer holds erased rows", self.path)
                    purged = wanted
        finally:
            with self._open_lock:
                if self._purger is threading.current_thread():  # left on an error
                    self._purger = None
            connection.close()

    # bulk

    def seed(self, catalog: ItemCatalog, log: InteractionLog | None) -> None:
        """Load a data set: its items, then its events (event ids "seed-<row>") in one transaction."""
        self.upsert_items(catalog.frame)
        if log is None or not len(log):
            return
        user_keys = np.array([self.ids.user(str(u)) for u in log.users], dtype=object)[log.user]
        event_ids = np.char.add("seed-", log.order.astype(str)).astype(object)
        queries = log.query if log.query is not None else np.full(len(log), None, dtype=object)
        rows = zip(
            event_ids.tolist(), user_keys.tolist(), catalog.ids[log.item].tolist(), log.time.tolist(),
            log.event.tolist(), _sql_values(pd.Series(queries, dtype=object)),
        )
        with self._write() as connection:
            connection.executemany(
                "INSERT OR IGNORE INTO events (event_id, user_key, item_id, time, event, query) VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )

    def counts(self) -> dict[str, int]:
        (items, deleted, events, users, profiles), = self._read(
            "SELECT (SELECT COUNT(*) FROM items WHERE deleted = 0), (SELECT COUNT(*) FROM items WHERE deleted = 1), "
            "(SELECT COUNT(*) FROM events), (SELECT COUNT(DISTINCT user_key) FROM events), (SELECT COUNT(*) FROM profiles)"
        )
        return {"items": items, "deleted_items": deleted, "events": events, "users": users, "profiles": profiles}


def _stored_event_ids(connection: sqlite3.Connection, event_ids: list[str]) -> list[str]:
    return [event_id for (event_id,) in connection.execute(
        "SELECT event_id FROM events WHERE event_id IN (SELECT value FROM json_each(?))", (json.dumps(event_ids),)
    )]


def _event_problem(event: dict) -> tuple[str, str] | None:
    """(field, reason) when an event cannot be stored whatever the catalog holds."""
    if not event.get("event_id"):
        return "event_id", "event_id is required"
    if event.get("user_id") is None and event.get("session_id") is None:
        return "user_id", "give a user_id or a session_id"
    kind = event.get("type")
    if kind not in EVENT_CODES:
        return "type", f"unknown event type {kind!r}"
    if event.get("item_id") is None and kind != "search":
        return "item_id", f"item_id is required for {kind} events"
    moment = event.get("time")
    if moment is not None:
        try:
            if not math.isfinite(float(moment)):
                raise ValueError
        except (TypeError, ValueError):
            return "time", f"time must be unix seconds, not {moment!r}"
    return None


def _bump_items_version(connection: sqlite3.Connection) -> int:
    connection.execute("UPDATE meta SET value = value + 1 WHERE key = 'items_version'")
    return connection.execute("SELECT value FROM meta WHERE key = 'items_version'").fetchone()[0]


def _item_columns(table: pd.DataFrame) -> dict[str, pd.Series]:
    """A catalog frame's columns as the items table stores them."""
    created = table["created_at"].astype("datetime64[s]")
    return {
        "item_id": table["item_id"],
        **{name: table[name] for name in ("title", "description", "brand", "category", "price")},
        "available": table["available"].astype(int),
        "created_at": pd.Series(created.to_numpy().astype("int64"), dtype="Int64").mask(created.isna().to_numpy()),
        "attributes": table["attributes"].map(lambda a: json.dumps(a) if a else None),
    }


def _sql_values(values: pd.Series) -> list:
    """Python scalars SQLite accepts: NA and NaN become None."""
    values = pd.Series(values).astype(object)
    return values.where(values.notna(), None).tolist()


def _events_columns(rows: list[tuple], columns: list[str]) -> dict[str, np.ndarray]:
    """Rows to typed numpy columns in one pass."""
    values = list(zip(*rows)) if rows else [()] * len(columns)
    data = {name: np.array(column, dtype=object) for name, column in zip(columns, values)}
    data["time"] = np.array(values[columns.index("time")], dtype=np.float64).astype(np.int64)
    data["event"] = np.array(values[columns.index("event")], dtype=np.int8)
    return data


def _events_frame(rows: list[tuple], columns: list[str]) -> pd.DataFrame:
    return _as_frame(_events_columns(rows, columns), columns)


def _as_frame(data: dict[str, np.ndarray], columns: list[str]) -> pd.DataFrame:
    # object columns through pd.Series keep None as None (a plain DataFrame would turn it into NaN)
    series = {name: pd.Series(values, dtype=values.dtype) for name, values in data.items()}
    return pd.DataFrame(series, columns=columns)
