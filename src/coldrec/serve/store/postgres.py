"""`PostgresStore`: the store in a PostgreSQL database, shared by every serving host that opens the same URL.

The same methods, values and promises as the SQLite `Store`: events idempotent by event id (ON CONFLICT DO
NOTHING) and durable once acknowledged (each write is one transaction committed before the method returns, with
synchronous_commit on), only pseudonymised user and session keys written, an erasure deleting a user's rows in one
transaction, and `items_version` counting item writes. Every item write also sends a NOTIFY on the store's channel
(`ITEMS_CHANNEL` + "_" + its store id) when it commits (payload: its items_version): `items_listener` and
`wait_for_items_version` let a host hear catalog changes instead of polling.

psycopg (3) and psycopg_pool are imported only when a store is opened. The tables are those of `PG_SCHEMA`, in the
connection's search_path (a URL's `options=-csearch_path=NAME` puts them in a schema of their own). What differs
from SQLite is named here: `PG_SCHEMA`, `pg`, the statements over arrays (`STORED_EVENTS`, `ITEM_STATES`,
`INSERT_EVENTS`), and `seq`, the insertion order that SQLite's rowid gives.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from coldrec.data.catalog import ItemCatalog
from coldrec.data.interactions import InteractionLog
from coldrec.serve.privacy import Pseudonymizer, key_source, load_or_create_key

from .keys import KeyedStore, StoreKeys, key_version, rekeyed
from .ledger import INSERT_SECRET, AdLedger, ledger_tables, new_secret
from .profiles import StatedInterests
from .rows import (
    EventRows,
    EventsAdded,
    Snapshot,
    as_frame,
    decoded_profiles,
    events_columns,
    events_frame,
    exported,
    in_given_order,
    item_rows,
    items_from_rows,
    most_recent,
    patch_values,
    seed_columns,
    shopper_keys,
)
from .rules import MerchandisingRules
from .schema import (
    COUNT_ERASURE,
    COUNT_NAMES,
    COUNTERS,
    COUNTS,
    DELETE_ITEM,
    ERASE_ROWS,
    IS_LIVE,
    ITEM_COUNT,
    ITEMS_VERSION,
    KEY_VERSION,
    PROFILE,
    PROFILES,
    PURGE_EVENTS,
    REKEY,
    SELECT_ITEMS,
    SESSION_TABLES,
    SET_KEY_VERSION,
    STORED_KEYS,
    UNTIMED,
    USER_EVENT_COLUMNS,
    USER_EVENTS_EXPORT,
    USER_TABLES,
    patch_item_sql,
    upsert_items_sql,
)
from .statements import Run

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import ConnectionPool

URL_SCHEMES = ("postgresql://", "postgres://")
ITEMS_CHANNEL = "coldrec_items"
OPEN_TIMEOUT_S = 10.0
#: held (per transaction) while the tables are created, so hosts opening a new database at once do not collide
SCHEMA_LOCK = 0x636F6C6472656300  # "coldrec\0"

PG_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    position BIGINT PRIMARY KEY,
    item_id TEXT NOT NULL UNIQUE,
    title TEXT, description TEXT, brand TEXT, category TEXT,
    price DOUBLE PRECISION, available INTEGER NOT NULL DEFAULT 1,
    created_at BIGINT,
    attributes TEXT,
    deleted INTEGER NOT NULL DEFAULT 0,
    changed BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS events (
    event_id TEXT PRIMARY KEY,
    seq BIGINT GENERATED ALWAYS AS IDENTITY,  -- insertion order (SQLite: rowid), breaks ties of time
    user_key TEXT NOT NULL,
    item_id TEXT,
    time DOUBLE PRECISION NOT NULL,
    event SMALLINT NOT NULL,
    query TEXT
);
CREATE INDEX IF NOT EXISTS events_by_user ON events (user_key, time, seq);
CREATE INDEX IF NOT EXISTS items_by_change ON items (changed);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BIGINT NOT NULL);
INSERT INTO meta (key, value) VALUES ('items_version', 0), ('erasures', 0) ON CONFLICT (key) DO NOTHING;
CREATE TABLE IF NOT EXISTS identity (store_id BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS profiles (
    user_key TEXT PRIMARY KEY,
    interests TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS rules (
    rule_id TEXT PRIMARY KEY,
    rule TEXT NOT NULL,
    created DOUBLE PRECISION NOT NULL
);
INSERT INTO meta (key, value) VALUES ('rules_version', 0) ON CONFLICT (key) DO NOTHING;
INSERT INTO meta (key, value) VALUES ('id_key_version', 1) ON CONFLICT (key) DO NOTHING;
"""
#: a writer keying ids reads the key version FOR SHARE: a rotation (FOR UPDATE) waits for it, and it for the rotation
KEY_VERSION_SHARED = "SELECT value FROM meta WHERE key = 'id_key_version' FOR SHARE"
KEY_VERSION_LOCKED = "SELECT value FROM meta WHERE key = 'id_key_version' FOR UPDATE"
BUMP_ITEMS_VERSION = "UPDATE meta SET value = value + 1 WHERE key = 'items_version' RETURNING value"
LOCK_ITEM_WRITES = "SELECT 1 FROM meta WHERE key = 'items_version' FOR UPDATE"
NEXT_POSITION = "SELECT COALESCE(MAX(position) + 1, 0) FROM items"
STORED_EVENTS = "SELECT event_id FROM events WHERE event_id = ANY(%s)"
ITEM_STATES = "SELECT item_id, deleted FROM items WHERE item_id = ANY(%s)"
INSERT_EVENTS = (
    "INSERT INTO events (event_id, user_key, item_id, time, event, query) "
    "SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::float8[], %s::int2[], %s::text[]) "
    "ON CONFLICT (event_id) DO NOTHING"
)
EVENTS_IN_ORDER = "SELECT user_key, item_id, time, event, query FROM events ORDER BY time, seq"
NEWEST_OF_KEY = ("(SELECT time, seq, item_id, event, query FROM events WHERE user_key = %s "
                 "ORDER BY time DESC, seq DESC LIMIT %s)")
MARK_UNTIMED = ("INSERT INTO meta (key, value) VALUES ('untimed_events', 1) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value")


def pg(sql: str) -> str:
    """A statement shared with SQLite (`?` placeholders, see `schema`) with psycopg's `%s`."""
    return sql.replace("?", "%s")


def is_postgres_url(target: object) -> bool:
    return isinstance(target, str) and target.startswith(URL_SCHEMES)


def redacted(url: str) -> str:
    """The URL without its password (for logs and messages)."""
    return re.sub(r"^(\w+://[^:/@]*):[^@/]*@", r"\1:***@", url)


class ItemsListener:
    """A connection of its own that LISTENs on a store's channel: `wait` returns the items_version of catalog
    changes committed (by any host) since it began listening. Close it (or use it as a context manager)."""

    def __init__(self, conninfo: str, channel: str = ITEMS_CHANNEL):
        import psycopg
        from psycopg import sql

        self.channel = channel
        self._connection: psycopg.Connection = psycopg.connect(conninfo, autocommit=True)
        self._connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))

    def wait(self, timeout_s: float) -> int | None:
        """The newest items_version notified, waiting up to `timeout_s` for the first notification when none is
        queued; None when none came."""
        newest: int | None = None
        for notify in self._connection.notifies(timeout=max(0.0, timeout_s), stop_after=1):
            newest = int(notify.payload)
        if newest is not None:  # and whatever else is queued already, without waiting
            for notify in self._connection.notifies(timeout=0):
                newest = max(newest, int(notify.payload))
        return newest

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> ItemsListener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PostgresStore(AdLedger, StatedInterests, MerchandisingRules, KeyedStore):
    """Thread-safe: each call borrows a connection from a pool (psycopg_pool), a write is one transaction."""

    _lock_row = " FOR UPDATE"

    def __init__(self, url: str, pseudonymizer: Pseudonymizer, min_connections: int = 1, max_connections: int = 16,
                 open_timeout_s: float = OPEN_TIMEOUT_S, reload_key: Callable[[], str] | None = None):
        from psycopg_pool import ConnectionPool

        self.url = url
        self.keys = StoreKeys(pseudonymizer, reload_key)
        self._local = threading.local()
        self._pool: ConnectionPool = ConnectionPool(
            url, min_size=min_connections, max_size=max_connections, kwargs={"autocommit": True},
            configure=_durable, open=False, name="coldrec-store",
        )
        try:
            self._pool.open(wait=True, timeout=open_timeout_s)
        except BaseException as error:
            self._pool.close()
            from psycopg_pool import PoolTimeout

            if isinstance(error, PoolTimeout):
                raise ConnectionError(f"no connection to PostgreSQL at {redacted(url)} within {open_timeout_s:g} s "
                                      "(is the server up, and the URL's user, password and database right?)") from error
            raise
        try:
            self._create_tables()
            # one channel per store: stores in other schemas of the same database (channels are per database) are
            # not heard
            self.items_channel = f"{ITEMS_CHANNEL}_{self.store_id()}"
        except BaseException:
            self._pool.close()
            raise

    @classmethod
    def open(cls, url: str, id_key: str | None = None, key_file: str | Path | None = None,
             **options: Any) -> PostgresStore:
        """The store in the database at `url` (postgresql://...), keyed by `id_key`, else by the key in `key_file`
        (see `load_or_create_key`); `options`: those of `__init__` (pool sizes, open timeout)."""
        if not is_postgres_url(url):
            raise ValueError(f"not a PostgreSQL URL (postgresql://...): {url!r}")
        return cls(url, Pseudonymizer(load_or_create_key(id_key, key_file=key_file)),
                   reload_key=key_source(id_key, key_file), **options)

    # the pseudonymisation key (see .keys)

    def _ids_in(self, cursor: psycopg.Cursor) -> Pseudonymizer:
        """The pseudonymizer of a writing transaction: the version row read FOR SHARE (see .keys)."""
        return self.keys.at(key_version(cursor.execute(KEY_VERSION_SHARED).fetchall()))

    def rekey(self, chain: Pseudonymizer) -> int:
        """Re-key every stored user and session key by the chain's last link and move the store to its version, in
        one transaction (nothing when the store is there already). The number of keys re-keyed."""
        with self._write() as cursor:
            if key_version(cursor.execute(KEY_VERSION_LOCKED).fetchall()) != chain.version - 1:
                return 0
            mapping = rekeyed([row[0] for row in cursor.execute(STORED_KEYS).fetchall()], chain)
            cursor.execute("CREATE TEMP TABLE key_map (old TEXT PRIMARY KEY, new TEXT NOT NULL) ON COMMIT DROP")
            with cursor.copy("COPY key_map (old, new) FROM STDIN") as copy:
                for row in mapping:
                    copy.write_row(row)
            for table in USER_TABLES:
                cursor.execute(REKEY.format(table=table))
            cursor.execute(pg(SET_KEY_VERSION), (chain.version,))
            cursor.execute(COUNT_ERASURE)
        return len(mapping)

    def __repr__(self) -> str:
        return f"PostgresStore({redacted(self.url)!r})"

    def _create_tables(self) -> None:
        with self._write() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            cursor.execute(PG_SCHEMA)
            cursor.execute("INSERT INTO identity (store_id) SELECT %s WHERE NOT EXISTS (SELECT 1 FROM identity)",
                           (secrets.randbits(62) + 1,))
            cursor.execute(ledger_tables("DOUBLE PRECISION"))
            cursor.execute("INSERT INTO meta (key, value) VALUES ('campaigns_version', 0) ON CONFLICT (key) DO NOTHING")
            cursor.execute(pg(INSERT_SECRET), (new_secret(),))

    # connections

    @contextmanager
    def _write(self) -> Iterator[psycopg.Cursor]:
        """One transaction, committed on exit (rolled back on an exception)."""
        with self._pool.connection() as connection, connection.transaction(), connection.cursor() as cursor:
            yield cursor

    @contextmanager
    def _reading(self, consistent: bool = False) -> Iterator[psycopg.Cursor]:
        """A cursor; `consistent`: every statement reads one snapshot (a read-only repeatable-read transaction)."""
        with self._pool.connection() as connection:
            if not consistent:
                with connection.cursor() as cursor:
                    yield cursor
                return
            with connection.transaction(), connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                yield cursor

    def _read(self, sql: str, parameters: tuple | list = ()) -> list[Any]:
        with self._reading() as cursor:
            return cursor.execute(sql, parameters).fetchall()

    @contextmanager
    def _transaction(self) -> Iterator[Run]:
        with self._write() as cursor:
            yield _runner(cursor)

    @contextmanager
    def _reads(self) -> Iterator[Run]:
        with self._reading() as cursor:
            yield _runner(cursor)

    def close(self) -> None:
        self._pool.close()

    # items

    def upsert_items(self, frame: pd.DataFrame) -> list[str]:
        """Add or update items (catalog columns); a new id takes the next position, an existing one keeps its own.

        Upserting a deleted item brings it back.
        """
        ids, names, rows = item_rows(frame)
        with self._write() as cursor:
            version = self._bump_items_version(cursor)  # its row lock orders item writers: positions stay unique
            start = cursor.execute(NEXT_POSITION).fetchone()[0]  # type: ignore[index]
            cursor.executemany(pg(upsert_items_sql(names)), [(start + i, *row, version) for i, row in enumerate(rows)])
        return ids

    def patch_item(self, item_id: str, fields: dict) -> pd.DataFrame | None:
        """Change only the given catalog fields of a live item, in one transaction: its row after the change
        (CATALOG_COLUMNS, one row), or None when the item is unknown or deleted (see `Store.patch_item`)."""
        names, values = patch_values(item_id, fields)
        if not names:
            return self.item(item_id)
        with self._write() as cursor:
            if not self._is_live(cursor, item_id, lock=True):
                return None
            version = self._bump_items_version(cursor)
            cursor.execute(pg(patch_item_sql(names)), (*values, version, item_id))
            return self._items("WHERE item_id = %s", (item_id,), cursor).drop(columns="deleted")

    def item(self, item_id: str) -> pd.DataFrame | None:
        """A live item's row (CATALOG_COLUMNS, one row), or None when it is unknown or deleted."""
        with self._reading() as cursor:
            frame = self._items("WHERE item_id = %s AND deleted = 0", (item_id,), cursor)
        return None if frame.empty else frame.drop(columns="deleted")

    def delete_item(self, item_id: str) -> bool:
        """Mark an item deleted (it keeps its position); False if unknown or already deleted."""
        with self._write() as cursor:
            if not self._is_live(cursor, item_id, lock=True):
                return False
            version = self._bump_items_version(cursor)
            cursor.execute(pg(DELETE_ITEM), (version, item_id))
            return True

    @staticmethod
    def _is_live(cursor: psycopg.Cursor, item_id: str, lock: bool = False) -> bool:
        """Whether the item is stored and not deleted; `lock`: first take the lock of item writers (the row
        `_bump_items_version` updates, always taken first, so that a concurrent delete cannot slip in between)."""
        if lock:
            cursor.execute(LOCK_ITEM_WRITES)
        return cursor.execute(pg(IS_LIVE), (item_id,)).fetchone() is not None

    def _bump_items_version(self, cursor: psycopg.Cursor) -> int:
        """Count one more item write and notify it (sent when the transaction commits)."""
        version = int(cursor.execute(BUMP_ITEMS_VERSION).fetchone()[0])  # type: ignore[index]
        cursor.execute("SELECT pg_notify(%s, %s)", (self.items_channel, str(version)))
        self._local.items_version_written = version
        return version

    def written_items_version(self) -> int | None:
        """The items_version that this thread's last item write (upsert, patch, delete) committed; None before any."""
        return getattr(self._local, "items_version_written", None)

    def items_version(self) -> int:
        """Grows with every item write (by any host sharing this database)."""
        return int(self._read(pg(ITEMS_VERSION))[0][0])

    def items_listener(self) -> ItemsListener:
        """A listener for the catalog changes committed from now on (its own connection; close it)."""
        return ItemsListener(self.url, self.items_channel)

    def wait_for_items_version(self, after: int, timeout_s: float) -> int:
        """The items_version once it exceeds `after` (an item write by any host), waiting up to `timeout_s` for
        its notification; at the timeout, the items_version then (<= `after` when nothing changed)."""
        deadline = time.monotonic() + timeout_s
        with self.items_listener() as listener:
            version = self.items_version()  # read after LISTEN began: a change committed in between is still heard
            while version <= after:
                notified = listener.wait(deadline - time.monotonic())
                if notified is None:
                    return self.items_version()
                version = max(version, notified)
        return version

    def items_frame(self, changed_since: int | None = None) -> pd.DataFrame:
        """Every item (or those written after items_version `changed_since`), deleted ones included, in
        position order: CATALOG_COLUMNS + "deleted"."""
        since = -1 if changed_since is None else int(changed_since)
        with self._reading() as cursor:
            return self._items("WHERE changed > %s", (since,), cursor)

    @staticmethod
    def _items(where: str, parameters: tuple, cursor: psycopg.Cursor) -> pd.DataFrame:
        cursor.execute(f"{SELECT_ITEMS} {where} ORDER BY position", parameters)
        names = [column.name for column in cursor.description or ()]
        return items_from_rows(pd.DataFrame(cursor.fetchall(), columns=names, dtype=object))

    def item_count(self) -> int:
        """Items not deleted."""
        return int(self._read(pg(ITEM_COUNT))[0][0])

    # events

    def add_events(self, events: list[dict]) -> EventsAdded:
        """Store a batch of events in one transaction; every valid event is stored whatever the others hold
        (see `Store.add_events`). An event_id already stored, or repeated in the batch, is a duplicate."""
        now = time.time()
        with self._write() as cursor:
            batch = EventRows(events, self._ids_in(cursor), now)
            clicks = batch.ad_clicks(self.ad_secret, now)
            deleted = dict(cursor.execute(ITEM_STATES, (batch.item_ids(),)).fetchall())
            valid = batch.check_items(deleted)
            accepted = cursor.execute(INSERT_EVENTS, _columns(valid, 6)).rowcount if valid else 0
            if clicks:
                self._book_clicks(_runner(cursor), ((row[0], clicks[row[0]]) for row in valid if row[0] in clicks),
                                  now)
            retried = batch.retried()
            stored = {row[0] for row in cursor.execute(STORED_EVENTS, (retried,))} if retried else set()
        return batch.result(accepted, stored)

    def user_events(
        self, user_id: str | None = None, session_id: str | None = None, limit: int | None = None
    ) -> pd.DataFrame:
        """One shopper's events in time order: item_id, time (int64), event (int8 EventType), query."""
        return as_frame(self.user_event_columns(user_id, session_id, limit), USER_EVENT_COLUMNS)

    def user_event_columns(
        self, user_id: str | None = None, session_id: str | None = None, limit: int | None = None
    ) -> dict[str, np.ndarray]:
        """`user_events` as numpy columns (one query; given `limit`, each key's newest rows off events_by_user)."""
        keys = shopper_keys(self.ids, user_id, session_id)
        if limit is None:
            rows = self._read("SELECT item_id, time, event, query FROM events WHERE user_key = ANY(%s) "
                              "ORDER BY time, seq", (keys,))
            return events_columns(rows, USER_EVENT_COLUMNS)
        if limit < 0:
            raise ValueError(f"limit must be >= 0, not {limit}")
        newest = self._read(" UNION ALL ".join([NEWEST_OF_KEY] * len(keys)),
                            [value for key in keys for value in (key, limit)]) if keys else []
        return events_columns(most_recent(newest, len(keys), limit), USER_EVENT_COLUMNS)

    def events_log(self) -> pd.DataFrame:
        """Every event in time order: user_key, item_id, time (int64), event (int8), query (for rebuilds)."""
        return events_frame(self._read(EVENTS_IN_ORDER), ["user_key", *USER_EVENT_COLUMNS])

    def stored_event_ids(self, event_ids: list[str]) -> list[str]:
        """The given event ids that are stored (in the order given, each once)."""
        return in_given_order(event_ids, {row[0] for row in self._read(STORED_EVENTS, (list(event_ids),))})

    # a consistent copy, for retraining

    def snapshot(self) -> Snapshot:
        """Items, events and profiles as of one moment (one repeatable-read transaction), for a refit."""
        with self._reading(consistent=True) as cursor:
            version, erasures, store_id = _counters(cursor)
            items = self._items("", (), cursor)
            rows = cursor.execute(EVENTS_IN_ORDER).fetchall()
            profiles = decoded_profiles(cursor.execute(PROFILES).fetchall())
            untimed = cursor.execute(UNTIMED).fetchall()
        return Snapshot(version, erasures, items, events_frame(rows, ["user_key", *USER_EVENT_COLUMNS]), profiles,
                        store_id, timed=not (untimed and untimed[0][0]))

    def erasures(self) -> int:
        """Grows with every erasure that deleted rows: a snapshot older than a change of it may hold erased data."""
        with self._reading() as cursor:
            return _counters(cursor)[1]

    def store_id(self) -> int:
        """A random number drawn when the tables were created: tells this store from another one."""
        with self._reading() as cursor:
            return _counters(cursor)[2]

    # erasure

    def delete_user(self, user_id: str) -> dict[str, int]:
        """Erase a user's events and profile in one transaction: {"events": n, "profiles": m}."""
        return self._erase(lambda cursor: self._ids_in(cursor).user(user_id), USER_TABLES)

    def delete_session(self, session_id: str) -> dict[str, int]:
        """Erase an anonymous session's events: {"events": n}."""
        return self._erase(lambda cursor: self._ids_in(cursor).session(session_id), SESSION_TABLES)

    def _erase(self, key_of: Callable[[psycopg.Cursor], str], tables: tuple[str, ...]) -> dict[str, int]:
        with self._write() as cursor:
            key = key_of(cursor)
            counts = {table: cursor.execute(pg(ERASE_ROWS.format(table=table)), (key,)).rowcount
                      for table in tables}
            if any(counts.values()):
                cursor.execute(COUNT_ERASURE)
        return counts

    # access and retention

    def export_user(self, user_id: str) -> dict:
        """Everything the store holds about a user: key, stated interests, events (see `Store.export_user`)."""
        with self._reading(consistent=True) as cursor:
            key = self.keys.at(key_version(cursor.execute(KEY_VERSION).fetchall())).user(user_id)
            profile = cursor.execute(pg(PROFILE), (key,)).fetchall()
            events = cursor.execute(pg(USER_EVENTS_EXPORT), (key,)).fetchall()
        return exported(key, profile, events)

    def purge_events_before(self, cutoff: float) -> int:
        """Delete every event older than `cutoff` (unix seconds), in one transaction: retention. The number deleted."""
        with self._write() as cursor:
            deleted = cursor.execute(pg(PURGE_EVENTS), (float(cutoff),)).rowcount
            if deleted:
                cursor.execute(COUNT_ERASURE)
        return int(deleted)

    # bulk

    def seed(self, catalog: ItemCatalog, log: InteractionLog | None) -> None:
        """Load a data set: its items, then its events (event ids "seed-<row>") in one transaction (see
        `Store.seed`)."""
        self.upsert_items(catalog.frame)
        if log is None or not len(log):
            return
        with self._write() as cursor:
            columns = seed_columns(self._ids_in(cursor), catalog, log)
            columns[3] = np.asarray(columns[3], dtype=np.float64).tolist()
            cursor.execute(INSERT_EVENTS, columns)
            if not log.timed:
                cursor.execute(MARK_UNTIMED)

    def counts(self) -> dict[str, int]:
        (counts,) = self._read(COUNTS)
        return {name: int(count) for name, count in zip(COUNT_NAMES, counts, strict=True)}


def _runner(cursor: psycopg.Cursor) -> Run:
    def run(sql: str, parameters: Sequence[Any] = ()) -> tuple[list[tuple], int]:
        cursor.execute(pg(sql), parameters)
        return (cursor.fetchall() if cursor.description else []), cursor.rowcount

    return run


def _durable(connection: psycopg.Connection) -> None:
    """An acknowledged write survives a crash of the server: commits wait for the WAL flush (synchronous_commit
    off would not; on, remote_write, remote_apply and local all do, and are kept)."""
    if connection.execute("SHOW synchronous_commit").fetchone() == ("off",):
        connection.execute("SET synchronous_commit = on")


def _counters(cursor: psycopg.Cursor) -> tuple[int, int, int]:
    (version, erasures, store_id), = cursor.execute(COUNTERS).fetchall()
    return int(version), int(erasures), int(store_id)


def _columns(rows: list[tuple], width: int) -> list[list[Any]]:
    """Rows as `width` columns (the arrays INSERT_EVENTS unnests)."""
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]
