"""`Store`: items, events and profiles in one SQLite file (the package docstring says what it promises)."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from coldrec.data.catalog import ItemCatalog
from coldrec.data.interactions import InteractionLog
from coldrec.serve.privacy import Pseudonymizer, key_source, load_or_create_key

from .erasure import PURGE_WAIT_S, Erasure
from .keys import KeyedStore, StoreKeys, key_version, rekeyed
from .ledger import AdLedger
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
    item_rows,
    items_from_rows,
    most_recent,
    patch_values,
    seed_columns,
    shopper_keys,
    stored_event_ids,
)
from .rules import MerchandisingRules
from .schema import (
    COUNT_ERASURE,
    COUNT_NAMES,
    COUNTERS,
    COUNTS,
    DELETE_ITEM,
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
    bump_items_version,
    create_or_upgrade,
    patch_item_sql,
    upsert_items_sql,
)
from .statements import Run


class Store(Erasure, AdLedger, StatedInterests, MerchandisingRules, KeyedStore):
    """Thread-safe: a connection per thread (WAL lets readers run beside the writer), one writer at a time."""

    def __init__(self, path: str | Path, pseudonymizer: Pseudonymizer, purge_wait_s: float = PURGE_WAIT_S,
                 reload_key: Callable[[], str] | None = None):
        super().__init__(path, purge_wait_s)
        self.keys = StoreKeys(pseudonymizer, reload_key)
        with self._write_lock:
            connection = self._connection()
            create_or_upgrade(connection)
        self._finish_erasures(connection)

    @classmethod
    def open(
        cls, state_dir: str | Path, id_key: str | None = None, key_file: str | Path | None = None,
        filename: str = "coldrec.sqlite",
    ) -> Store:
        """The store in `state_dir`, keyed by `id_key`, else by the key in `key_file` (see `load_or_create_key`)."""
        key = load_or_create_key(id_key, key_file=key_file, state_dir=state_dir)
        return cls(Path(state_dir) / filename, Pseudonymizer(key), reload_key=key_source(id_key, key_file))

    # the pseudonymisation key (see .keys)

    def _ids_in(self, connection: sqlite3.Connection) -> Pseudonymizer:
        return self.keys.at(key_version(connection.execute(KEY_VERSION).fetchall()))

    def rekey(self, chain: Pseudonymizer) -> int:
        """Re-key every stored user and session key by the chain's last link and move the store to its version, in
        one transaction (nothing when the store is there already); then out of the files, as an erasure. The number
        of keys re-keyed."""
        with self._write() as connection:
            if key_version(connection.execute(KEY_VERSION).fetchall()) != chain.version - 1:
                return 0
            mapping = rekeyed([row[0] for row in connection.execute(STORED_KEYS)], chain)
            connection.execute("CREATE TEMP TABLE IF NOT EXISTS key_map (old TEXT PRIMARY KEY, new TEXT NOT NULL)")
            connection.execute("DELETE FROM key_map")
            connection.executemany("INSERT INTO key_map (old, new) VALUES (?, ?)", mapping)
            for table in USER_TABLES:
                connection.execute(REKEY.format(table=table))
            connection.execute("DELETE FROM key_map")
            connection.execute(SET_KEY_VERSION, (chain.version,))
            connection.execute(COUNT_ERASURE)  # the old keys leave the files as erased rows do
        self._finish_erasure(connection, {"keys": len(mapping)})
        return len(mapping)

    # items

    def upsert_items(self, frame: pd.DataFrame) -> list[str]:
        """Add or update items (catalog columns); a new id takes the next position, an existing one keeps its own.

        Upserting a deleted item brings it back.
        """
        ids, names, rows = item_rows(frame)
        with self._write() as connection:
            version = self._bump_items_version(connection)
            start = connection.execute("SELECT COALESCE(MAX(position) + 1, 0) FROM items").fetchone()[0]
            # positions for new ids come from a counter; an update keeps its row's position
            connection.executemany(upsert_items_sql(names), ((start + i, *row, version) for i, row in enumerate(rows)))
        return ids

    def patch_item(self, item_id: str, fields: dict) -> pd.DataFrame | None:
        """Change only the given catalog fields of a live item, in one transaction: its row after the change
        (CATALOG_COLUMNS, one row), or None when the item is unknown or deleted.

        Values are encoded as by `upsert_items` (created_at naive UTC; None clears a field).
        """
        names, values = patch_values(item_id, fields)
        if not names:
            return self.item(item_id)
        with self._write() as connection:
            if not self._is_live(connection, item_id):
                return None
            version = self._bump_items_version(connection)
            connection.execute(patch_item_sql(names), (*values, version, item_id))
            return self._items("WHERE item_id = ?", (item_id,), connection).drop(columns="deleted")

    def item(self, item_id: str) -> pd.DataFrame | None:
        """A live item's row (CATALOG_COLUMNS, one row), or None when it is unknown or deleted."""
        frame = self._items("WHERE item_id = ? AND deleted = 0", (item_id,))
        return None if frame.empty else frame.drop(columns="deleted")

    def delete_item(self, item_id: str) -> bool:
        """Mark an item deleted (it keeps its position); False if unknown or already deleted."""
        with self._write() as connection:
            if not self._is_live(connection, item_id):
                return False
            version = self._bump_items_version(connection)
            connection.execute(DELETE_ITEM, (version, item_id))
            return True

    @staticmethod
    def _is_live(connection: sqlite3.Connection, item_id: str) -> bool:
        row = connection.execute(IS_LIVE, (item_id,)).fetchone()
        return row is not None

    def _bump_items_version(self, connection: sqlite3.Connection) -> int:
        version = bump_items_version(connection)
        self._local.items_version_written = version
        return version

    def written_items_version(self) -> int | None:
        """The items_version that this thread's last item write (upsert, patch, delete) committed; None before any.
        A server process applies its own writes to its engine itself and need not read them back."""
        return getattr(self._local, "items_version_written", None)

    def items_version(self) -> int:
        """Grows with every item write (by any process sharing this file): a cheap "has the catalog changed?"."""
        version: int = self._read(ITEMS_VERSION)[0][0]
        return version

    def items_frame(self, changed_since: int | None = None) -> pd.DataFrame:
        """Every item (or those written after items_version `changed_since`), deleted ones included, in
        position order: CATALOG_COLUMNS + "deleted"."""
        since = -1 if changed_since is None else int(changed_since)
        return self._items("WHERE changed > ?", (since,))

    def _items(self, where: str, parameters: tuple, connection: sqlite3.Connection | None = None) -> pd.DataFrame:
        frame = pd.read_sql_query(f"{SELECT_ITEMS} {where} ORDER BY position", connection or self._connection(),
                                  params=parameters)
        return items_from_rows(frame)

    def item_count(self) -> int:
        """Items not deleted."""
        count: int = self._read(ITEM_COUNT)[0][0]
        return count

    # events

    def add_events(self, events: list[dict]) -> EventsAdded:
        """Store a batch of events in one transaction; every valid event is stored whatever the others hold.

        Each event: event_id, user_id or session_id, item_id (None only for "search"),
        type (view|click|cart|purchase|search), time (unix seconds; now when None), query.
        An event_id already stored (or repeated in the batch) is a duplicate and ignored, even when
        its item has been deleted since (a retried batch). An event naming an unknown or deleted
        item, or malformed, is not stored and is listed in `rejected`.
        """
        now = time.time()
        with self._write() as connection:
            batch = EventRows(events, self._ids_in(connection), now)
            clicks = batch.ad_clicks(self.ad_secret, now)
            deleted = dict(connection.execute(
                "SELECT item_id, deleted FROM items WHERE item_id IN (SELECT value FROM json_each(?))",
                (json.dumps(batch.item_ids()),),
            ))
            valid = batch.check_items(deleted)
            accepted = connection.executemany(
                "INSERT OR IGNORE INTO events (event_id, user_key, item_id, time, event, query) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                valid,
            ).rowcount if valid else 0
            if clicks:
                self._book_clicks(_runner(connection), ((row[0], clicks[row[0]]) for row in valid if row[0] in clicks),
                                  now)
            retried = batch.retried()
            stored = set(stored_event_ids(connection, retried)) if retried else set()
        return batch.result(accepted, stored)

    def user_events(
        self, user_id: str | None = None, session_id: str | None = None, limit: int | None = None
    ) -> pd.DataFrame:
        """One shopper's events in time order: item_id, time (int64), event (int8 EventType), query.

        Given both ids, the events of the user and of the session together; given `limit`, only the
        `limit` most recent of them.
        """
        return as_frame(self.user_event_columns(user_id, session_id, limit), USER_EVENT_COLUMNS)

    def user_event_columns(
        self, user_id: str | None = None, session_id: str | None = None, limit: int | None = None
    ) -> dict[str, np.ndarray]:
        """`user_events` as numpy columns: the per-request path, where a DataFrame costs more than the query."""
        keys = shopper_keys(self.ids, user_id, session_id)
        if limit is None:
            rows = self._read(
                "SELECT item_id, time, event, query FROM events WHERE user_key IN (SELECT value FROM json_each(?)) "
                "ORDER BY time, rowid",
                (json.dumps(keys),),
            )
            return events_columns(rows, USER_EVENT_COLUMNS)
        if limit < 0:
            raise ValueError(f"limit must be >= 0, not {limit}")
        # newest first, walking events_by_user (user_key, time, rowid) backwards: the cost is `limit`, not the history
        newest = [row for key in keys for row in self._read(
            "SELECT time, rowid, item_id, event, query FROM events WHERE user_key = ? "
            "ORDER BY time DESC, rowid DESC LIMIT ?",
            (key, limit),
        )]
        return events_columns(most_recent(newest, len(keys), limit), USER_EVENT_COLUMNS)

    def events_log(self) -> pd.DataFrame:
        """Every event in time order: user_key, item_id, time (int64), event (int8), query (for rebuilds)."""
        rows = self._read("SELECT user_key, item_id, time, event, query FROM events ORDER BY time, rowid")
        return events_frame(rows, ["user_key", *USER_EVENT_COLUMNS])

    def stored_event_ids(self, event_ids: list[str]) -> list[str]:
        """The given event ids that are stored."""
        return stored_event_ids(self._connection(), event_ids)

    # the shared statements (see .statements)

    @contextmanager
    def _transaction(self) -> Iterator[Run]:
        with self._write() as connection:
            yield _runner(connection)

    @contextmanager
    def _reads(self) -> Iterator[Run]:
        yield _runner(self._connection())

    # a consistent copy, for retraining

    def snapshot(self) -> Snapshot:
        """Items, events and profiles as of one moment (one read transaction), for a refit."""
        connection = self._connection()
        connection.execute("BEGIN")  # deferred: a WAL read snapshot, writers go on
        try:
            version, erasures, store_id = self._counters(connection)
            items = self._items("", (), connection)
            rows = connection.execute(
                "SELECT user_key, item_id, time, event, query FROM events ORDER BY time, rowid").fetchall()
            profiles = decoded_profiles(connection.execute(PROFILES).fetchall())
            untimed = connection.execute(UNTIMED).fetchall()
        finally:
            connection.execute("COMMIT")
        return Snapshot(version, erasures, items, events_frame(rows, ["user_key", *USER_EVENT_COLUMNS]), profiles,
                        store_id, timed=not (untimed and untimed[0][0]))

    def erasures(self) -> int:
        """Grows with every erasure that deleted rows: a snapshot older than a change of it may hold erased data."""
        return self._counters(self._connection())[1]

    def store_id(self) -> int:
        """A random number drawn when the file was created: tells this store from another one (a copy keeps it)."""
        return self._counters(self._connection())[2]

    @staticmethod
    def _counters(connection: sqlite3.Connection) -> tuple[int, int, int]:
        (version, erasures, store_id), = connection.execute(COUNTERS).fetchall()
        return int(version), int(erasures), int(store_id)

    # erasure (see .erasure)

    def delete_user(self, user_id: str) -> dict[str, int]:
        """Erase a user's events and profile, from the files too: {"events": n, "profiles": m}.

        Raises ErasurePending (after erasing) when a read that began earlier outlasts `purge_wait_s`.
        """
        return self._erase(lambda connection: self._ids_in(connection).user(user_id), USER_TABLES)

    def delete_session(self, session_id: str) -> dict[str, int]:
        """Erase an anonymous session's events, from the files too: {"events": n} (see `delete_user`)."""
        return self._erase(lambda connection: self._ids_in(connection).session(session_id), SESSION_TABLES)

    # access and retention

    def export_user(self, user_id: str) -> dict:
        """Everything the store holds about a user: its pseudonymised key, stated interests and events (oldest
        first), in one read transaction (`GET /users/{id}/export`)."""
        connection = self._connection()
        connection.execute("BEGIN")
        try:
            key = self._ids_in(connection).user(user_id)
            profile = connection.execute(PROFILE, (key,)).fetchall()
            events = connection.execute(USER_EVENTS_EXPORT, (key,)).fetchall()
        finally:
            connection.execute("COMMIT")
        return exported(key, profile, events)

    def purge_events_before(self, cutoff: float) -> int:
        """Delete every event older than `cutoff` (unix seconds), from the files too (as an erasure): retention.
        The number deleted. Raises ErasurePending (after deleting) as `delete_user` does."""
        with self._write() as connection:
            deleted = connection.execute(PURGE_EVENTS, (float(cutoff),)).rowcount
            if deleted:
                connection.execute(COUNT_ERASURE)
        self._finish_erasure(connection, {"events": deleted})
        return int(deleted)

    # bulk

    def seed(self, catalog: ItemCatalog, log: InteractionLog | None) -> None:
        """Load a data set: its items, then its events (event ids "seed-<row>") in one transaction. A log without
        timestamps (sequence positions as times) marks the store's events as ordered only, for every retrain."""
        self.upsert_items(catalog.frame)
        if log is None or not len(log):
            return
        with self._write() as connection:
            rows = zip(*seed_columns(self._ids_in(connection), catalog, log), strict=True)
            connection.executemany(
                "INSERT OR IGNORE INTO events (event_id, user_key, item_id, time, event, query) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
            if not log.timed:
                connection.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('untimed_events', 1)")

    def counts(self) -> dict[str, int]:
        (counts,) = self._read(COUNTS)
        return dict(zip(COUNT_NAMES, counts, strict=True))


def _runner(connection: sqlite3.Connection) -> Run:
    def run(sql: str, parameters: Sequence[Any] = ()) -> tuple[list[tuple], int]:
        cursor = connection.execute(sql, parameters)
        return cursor.fetchall(), cursor.rowcount

    return run
