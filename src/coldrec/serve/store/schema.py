"""The tables of the store's SQLite file, the constants their rows follow, the upgrade of older files, and the
statements both backends run unchanged (written with SQLite's `?`; `coldrec.serve.store.postgres` rewrites it)."""

from __future__ import annotations

import secrets
import sqlite3

from coldrec.data.catalog import CATALOG_COLUMNS
from coldrec.data.interactions import EventType

from .ledger import INSERT_SECRET, ledger_tables, new_secret

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
-- which store this is (a random number drawn once; a copy keeps it): a model version retrained from this store
-- need not re-read the items it was trained on
CREATE TABLE IF NOT EXISTS identity (store_id INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS profiles (
    user_key TEXT PRIMARY KEY,
    interests TEXT NOT NULL  -- JSON list of strings
);
-- merchandising rules (coldrec.rank.rules), managed through the API; rules_version counts their changes
CREATE TABLE IF NOT EXISTS rules (
    rule_id TEXT PRIMARY KEY,
    rule TEXT NOT NULL,  -- JSON object: the rule's fields
    created REAL NOT NULL
);
INSERT OR IGNORE INTO meta (key, value) VALUES ('rules_version', 0);
-- id_key_version: how many links of the pseudonymisation key chain the stored keys went through (coldrec rotate-key)
INSERT OR IGNORE INTO meta (key, value) VALUES ('id_key_version', 1);
"""
ITEM_FIELDS = [c for c in CATALOG_COLUMNS if c != "item_id"]
EVENT_CODES = {e.name.lower(): int(e) for e in EventType}
USER_EVENT_COLUMNS = ["item_id", "time", "event", "query"]
BUSY_TIMEOUT_S = 30

# statements the same on SQLite and PostgreSQL (placeholders `?`; the tables are those of SCHEMA and PG_SCHEMA)
SELECT_ITEMS = f"SELECT item_id, {', '.join(ITEM_FIELDS)}, deleted FROM items"
IS_LIVE = "SELECT 1 FROM items WHERE item_id = ? AND deleted = 0"
DELETE_ITEM = "UPDATE items SET deleted = 1, changed = ? WHERE item_id = ?"
ITEM_COUNT = "SELECT COUNT(*) FROM items WHERE deleted = 0"
ITEMS_VERSION = "SELECT value FROM meta WHERE key = 'items_version'"
SET_PROFILE = ("INSERT INTO profiles (user_key, interests) VALUES (?, ?) "
               "ON CONFLICT (user_key) DO UPDATE SET interests = excluded.interests")
PROFILE = "SELECT interests FROM profiles WHERE user_key = ?"
PROFILES = "SELECT user_key, interests FROM profiles"
UNTIMED = "SELECT value FROM meta WHERE key = 'untimed_events'"
COUNT_ERASURE = "UPDATE meta SET value = value + 1 WHERE key = 'erasures'"
#: the tables holding a user's rows, and an anonymous session's: what `delete_user` / `delete_session` erase
USER_TABLES = ("events", "profiles")
SESSION_TABLES = ("events",)
ERASE_ROWS = "DELETE FROM {table} WHERE user_key = ?"
COUNTERS = ("SELECT (SELECT value FROM meta WHERE key = 'items_version'), "
            "(SELECT value FROM meta WHERE key = 'erasures'), "
            "(SELECT store_id FROM identity)")
COUNTS = ("SELECT (SELECT COUNT(*) FROM items WHERE deleted = 0), (SELECT COUNT(*) FROM items WHERE deleted = 1), "
          "(SELECT COUNT(*) FROM events), (SELECT COUNT(DISTINCT user_key) FROM events), "
          "(SELECT COUNT(*) FROM profiles)")
COUNT_NAMES = ("items", "deleted_items", "events", "users", "profiles")
INSERT_RULE = "INSERT INTO rules (rule_id, rule, created) VALUES (?, ?, ?)"
SELECT_RULES = "SELECT rule_id, rule FROM rules ORDER BY created, rule_id"
DELETE_RULE = "DELETE FROM rules WHERE rule_id = ?"
BUMP_RULES_VERSION = "UPDATE meta SET value = value + 1 WHERE key = 'rules_version'"
RULES_VERSION = "SELECT value FROM meta WHERE key = 'rules_version'"
KEY_VERSION = "SELECT value FROM meta WHERE key = 'id_key_version'"
#: every pseudonymised key the store holds (users' and sessions')
STORED_KEYS = "SELECT DISTINCT user_key FROM events UNION SELECT user_key FROM profiles"
REKEY = "UPDATE {table} SET user_key = key_map.new FROM key_map WHERE {table}.user_key = key_map.old"
SET_KEY_VERSION = "UPDATE meta SET value = ? WHERE key = 'id_key_version'"
#: a user's events, for an export (`export_user`)
USER_EVENTS_EXPORT = "SELECT event_id, item_id, time, event, query FROM events WHERE user_key = ? ORDER BY time"
PURGE_EVENTS = "DELETE FROM events WHERE time < ?"


def upsert_items_sql(names: list[str]) -> str:
    """Insert items (columns: position, `names` (item_id first), changed) or update an existing id's row in place:
    it keeps its position and comes back if deleted."""
    updates = ", ".join(f"{name} = excluded.{name}" for name in names[1:])
    return (f"INSERT INTO items (position, {', '.join(names)}, changed) VALUES ({', '.join('?' * (len(names) + 2))}) "
            f"ON CONFLICT (item_id) DO UPDATE SET {updates}, deleted = 0, changed = excluded.changed")


def patch_item_sql(names: list[str]) -> str:
    """Set the fields `names` and changed (parameters: the values, the version, the item id)."""
    return f"UPDATE items SET {', '.join(f'{name} = ?' for name in names)}, changed = ? WHERE item_id = ?"


def create_or_upgrade(connection: sqlite3.Connection) -> None:
    """Create the tables, or bring a file written by an older coldrec up to them (the caller holds the write lock)."""
    columns = {row[1] for row in connection.execute("PRAGMA table_info(items)")}
    if columns and "changed" not in columns:  # a store written before items_version existed
        connection.execute("ALTER TABLE items ADD COLUMN changed INTEGER NOT NULL DEFAULT 0")
    connection.executescript(SCHEMA)  # its own transaction
    # a store with items but no erasures count is older than the rewrite on erasure: rewrite it once
    connection.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('erasures', ?), ('scrubbed', 0)",
                       (int(bool(columns)),))
    connection.execute("INSERT INTO identity (store_id) SELECT ? WHERE NOT EXISTS (SELECT 1 FROM identity)",
                       (secrets.randbits(62) + 1,))
    connection.executescript(ledger_tables("REAL"))
    connection.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('campaigns_version', 0)")
    connection.execute(INSERT_SECRET, (new_secret(),))


def bump_items_version(connection: sqlite3.Connection) -> int:
    """Count one more item write (inside the caller's transaction); the new items_version."""
    connection.execute("UPDATE meta SET value = value + 1 WHERE key = 'items_version'")
    version: int = connection.execute("SELECT value FROM meta WHERE key = 'items_version'").fetchone()[0]
    return version
