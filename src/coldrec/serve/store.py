"""The embedded store: items, events and profiles in one SQLite file (WAL, synchronous=FULL).

The store is the source of truth for the live catalog and the event log; the engine holds
no per-user data and is rebuilt from here. Only pseudonymised user and session keys are
written (see `coldrec.serve.privacy`). Every write is one transaction, committed (and, with
synchronous=FULL, fsynced) before the method returns, so an acknowledged event survives a
kill -9 of the process.
"""

from __future__ import annotations

import json
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
-- items_version: counts item writes, so every server process sharing the file sees catalog changes
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


class UnknownItemsError(ValueError):
    """Events name items that do not exist or are deleted; `positions` are their places in the batch."""

    def __init__(self, positions: list[int], item_ids: list[str]):
        super().__init__(f"unknown item ids at {positions}")
        self.positions = positions
        self.item_ids = item_ids


class Store:
    """Thread-safe: a connection per thread (WAL lets readers run beside the writer), one writer at a time."""

    def __init__(self, path: str | Path, pseudonymizer: Pseudonymizer):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.ids = pseudonymizer
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._write_lock = threading.Lock()
        self._open_lock = threading.Lock()
        with self._write_lock:
            connection = self._connection()
            columns = {row[1] for row in connection.execute("PRAGMA table_info(items)")}
            if columns and "changed" not in columns:  # a store written before items_version existed
                connection.execute("ALTER TABLE items ADD COLUMN changed INTEGER NOT NULL DEFAULT 0")
            connection.executescript(SCHEMA)  # its own transaction

    @classmethod
    def open(cls, state_dir: str | Path, id_key: str | None = None, filename: str = "coldrec.sqlite") -> Store:
        """The store in `state_dir`, keyed by `id_key` or the state dir's own id.key."""
        return cls(Path(state_dir) / filename, Pseudonymizer(load_or_create_key(state_dir, id_key)))

    def _connection(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            # autocommit mode: transactions are explicit (BEGIN IMMEDIATE in _write)
            connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=FULL")
            connection.execute("PRAGMA secure_delete=ON")  # erased rows are zeroed on disk, not just unlinked
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
        table = catalog.frame
        created = table["created_at"].astype("datetime64[s]")
        columns = {
            "item_id": table["item_id"],
            **{name: table[name] for name in ("title", "description", "brand", "category", "price")},
            "available": table["available"].astype(int),
            "created_at": pd.Series(created.to_numpy().astype("int64"), dtype="Int64").mask(created.isna().to_numpy()),
            "attributes": table["attributes"].map(lambda a: json.dumps(a) if a else None),
        }
        rows = list(zip(*(_sql_values(values) for values in columns.values())))
        names = ", ".join(columns)
        updates = ", ".join(f"{name} = excluded.{name}" for name in list(columns)[1:])
        with self._write() as connection:
            version = _bump_items_version(connection)
            start = connection.execute("SELECT COALESCE(MAX(position) + 1, 0) FROM items").fetchone()[0]
            # positions for new ids come from a counter; an update keeps its row's position
            connection.executemany(
                f"INSERT INTO items (position, {names}, changed) VALUES (?, {', '.join('?' * len(columns))}, ?) "
                f"ON CONFLICT (item_id) DO UPDATE SET {updates}, deleted = 0, changed = excluded.changed",
                ((start + i, *row, version) for i, row in enumerate(rows)),
            )
        return catalog.ids.tolist()

    def delete_item(self, item_id: str) -> bool:
        """Mark an item deleted (it keeps its position); False if unknown or already deleted."""
        with self._write() as connection:
            if not connection.execute("SELECT 1 FROM items WHERE item_id = ? AND deleted = 0", (item_id,)).fetchone():
                return False
            version = _bump_items_version(connection)
            connection.execute("UPDATE items SET deleted = 1, changed = ? WHERE item_id = ?", (version, item_id))
            return True

    def items_version(self) -> int:
        """Grows with every item write (by any process sharing this file): a cheap "has the catalog changed?"."""
        return self._read("SELECT value FROM meta WHERE key = 'items_version'")[0][0]

    def items_frame(self, changed_since: int | None = None) -> pd.DataFrame:
        """Every item (or those written after items_version `changed_since`), deleted ones included, in
        position order: CATALOG_COLUMNS + "deleted"."""
        since = -1 if changed_since is None else int(changed_since)
        frame = pd.read_sql_query(
            f"SELECT item_id, {', '.join(ITEM_FIELDS)}, deleted FROM items WHERE changed > ? ORDER BY position",
            self._connection(), params=(since,),
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

    def add_events(self, events: list[dict]) -> tuple[int, int]:
        """Store a batch of events in one transaction: (accepted, duplicates).

        Each event: event_id, user_id or session_id, item_id (None only for "search"),
        type (view|click|cart|purchase|search), time (unix seconds; now when None), query.
        An event_id already stored (or repeated in the batch) is a duplicate and ignored.
        Raises UnknownItemsError, storing nothing, when an item id is unknown or deleted.
        """
        if not events:
            return 0, 0
        keys: dict[tuple[str, str], str] = {}

        def key_of(event: dict) -> str:
            kind, value = ("user", event["user_id"]) if event.get("user_id") is not None else ("session", event["session_id"])
            if (kind, value) not in keys:
                keys[kind, value] = self.ids.user(value) if kind == "user" else self.ids.session(value)
            return keys[kind, value]

        now = time.time()
        rows = [
            (e["event_id"], key_of(e), e.get("item_id"), now if e.get("time") is None else float(e["time"]),
             EVENT_CODES[e["type"]], e.get("query"))
            for e in events
        ]
        item_ids = sorted({row[2] for row in rows if row[2] is not None})
        with self._write() as connection:
            live = {
                item_id for (item_id,) in connection.execute(
                    "SELECT item_id FROM items WHERE deleted = 0 AND item_id IN (SELECT value FROM json_each(?))",
                    (json.dumps(item_ids),),
                )
            }
            unknown = [i for i, row in enumerate(rows) if row[2] is not None and row[2] not in live]
            if unknown:
                raise UnknownItemsError(unknown, [rows[i][2] for i in unknown])
            accepted = connection.executemany(
                "INSERT OR IGNORE INTO events (event_id, user_key, item_id, time, event, query) VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            ).rowcount
        return accepted, len(rows) - accepted

    def user_events(self, user_id: str | None = None, session_id: str | None = None) -> pd.DataFrame:
        """One shopper's events in time order: item_id, time (int64), event (int8 EventType), query.

        Given both ids, the events of the user and of the session together.
        """
        return _as_frame(self.user_event_columns(user_id, session_id), USER_EVENT_COLUMNS)

    def user_event_columns(self, user_id: str | None = None, session_id: str | None = None) -> dict[str, np.ndarray]:
        """`user_events` as numpy columns: the per-request path, where building a DataFrame costs more than the query."""
        keys = ([self.ids.user(user_id)] if user_id is not None else []) + (
            [self.ids.session(session_id)] if session_id is not None else []
        )
        rows = self._read(
            "SELECT item_id, time, event, query FROM events WHERE user_key IN (SELECT value FROM json_each(?)) "
            "ORDER BY time, rowid",
            (json.dumps(keys),),
        )
        return _events_columns(rows, USER_EVENT_COLUMNS)

    def events_log(self) -> pd.DataFrame:
        """Every event in time order: user_key, item_id, time (int64), event (int8), query (for rebuilds)."""
        rows = self._read("SELECT user_key, item_id, time, event, query FROM events ORDER BY time, rowid")
        return _events_frame(rows, ["user_key", *USER_EVENT_COLUMNS])

    def stored_event_ids(self, event_ids: list[str]) -> list[str]:
        """The given event ids that are stored."""
        return [event_id for (event_id,) in self._read(
            "SELECT event_id FROM events WHERE event_id IN (SELECT value FROM json_each(?))", (json.dumps(event_ids),)
        )]

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
        """Erase a user's events and profile: {"events": n, "profiles": m}."""
        key = self.ids.user(user_id)
        with self._write() as connection:
            events = connection.execute("DELETE FROM events WHERE user_key = ?", (key,)).rowcount
            profiles = connection.execute("DELETE FROM profiles WHERE user_key = ?", (key,)).rowcount
        return {"events": events, "profiles": profiles}

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


def _bump_items_version(connection: sqlite3.Connection) -> int:
    connection.execute("UPDATE meta SET value = value + 1 WHERE key = 'items_version'")
    return connection.execute("SELECT value FROM meta WHERE key = 'items_version'").fetchone()[0]


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
