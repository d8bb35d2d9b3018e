"""The store contract: what every backend (SQLite `Store`, `PostgresStore`) promises, each test run on both.

The SQLite store gets a fresh state folder per test; the PostgreSQL one a fresh schema (search_path in the URL)
in a database on a throwaway server (tests/postgres.py, started on first use; skipped where it cannot run, unless
COLDREC_REQUIRE_POSTGRES=1). SQLite-only behaviour (WAL, the purge of erased rows from the files, upgrades of old
files) stays in test_store.py and test_erasure.py.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from coldrec.data import EventType, InteractionLog, ItemCatalog
from coldrec.data.catalog import CATALOG_COLUMNS
from coldrec.serve.privacy import Pseudonymizer
from coldrec.serve.store import EventsAdded, PostgresStore, Rejected, Store, open_store
from tests.synthetic import make_catalog, make_log

ID_KEY = "store-contract-test-key"
RAW_USER = "alice.raw-user-id@example.com"
RAW_SESSION = "raw-session-id-7f3a9c"
RAW_PROFILE_USER = "profile-only-raw-id-42"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request, tmp_path) -> str:
    """Where a store lives: a state folder (SQLite), or a postgresql:// URL whose search_path is a new schema."""
    if request.param == "sqlite":
        return str(tmp_path / "state")
    import psycopg

    base = request.getfixturevalue("postgres_url")
    schema = f"contract_{secrets.token_hex(6)}"
    with psycopg.connect(base, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    return f"{base}?options=-csearch_path%3D{schema}"


@pytest.fixture
def store(target):
    opened = open_store(target, ID_KEY)
    yield opened
    opened.close()


@pytest.fixture
def stocked(store):
    """A store holding the synthetic catalog (i0..i25)."""
    store.upsert_items(make_catalog().frame)
    return store


def is_postgres(target: str) -> bool:
    return target.startswith("postgresql://")


def raw_tables(target: str) -> dict[str, list[tuple]]:
    """Every row of every table of the store, read around it (sqlite3 / psycopg on the database itself)."""
    if not is_postgres(target):
        with sqlite3.connect(Path(target) / "coldrec.sqlite") as connection:
            names = [name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            return {name: connection.execute(f"SELECT * FROM {name}").fetchall() for name in names}
    import psycopg

    with psycopg.connect(target) as connection:
        names = [name for (name,) in connection.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")]
        return {name: connection.execute(f"SELECT * FROM {name}").fetchall() for name in names}


def view(event_id: str, item_id: str = "i1", user: str = "u", **fields) -> dict:
    return {"event_id": event_id, "user_id": user, "item_id": item_id, "type": "view", **fields}


# the factory

def test_open_store_picks_the_backend_by_target(target):
    store = open_store(target, ID_KEY)
    try:
        assert isinstance(store, PostgresStore if is_postgres(target) else Store)
        assert store.counts() == {"items": 0, "deleted_items": 0, "events": 0, "users": 0, "profiles": 0}
        assert store.items_version() == 0 and store.erasures() == 0 and store.item_count() == 0
    finally:
        store.close()
    if is_postgres(target):  # the other scheme libpq knows
        other = open_store("postgres://" + target.removeprefix("postgresql://"), ID_KEY)
        try:
            assert isinstance(other, PostgresStore) and other.store_id() == open_store_id(target)
        finally:
            other.close()


def open_store_id(target: str) -> int:
    store = open_store(target, ID_KEY)
    try:
        return store.store_id()
    finally:
        store.close()


def test_psycopg_is_imported_only_for_a_postgresql_store(target):
    code = textwrap.dedent(f"""
        import sys
        from coldrec.serve.store import open_store
        before = "psycopg" in sys.modules
        store = open_store({target!r}, "k")
        store.close()
        print(before, "psycopg" in sys.modules)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", str(is_postgres(target))]


# items

def test_items_keep_their_positions(stocked):
    n = stocked.item_count()
    assert n == len(make_catalog())
    updated = make_catalog().frame.iloc[[3]].assign(title="renamed stapler")
    new = make_catalog().frame.iloc[[0]].assign(item_id="brand-new", title="brand new thing")
    assert stocked.upsert_items(pd.concat([updated, new])) == ["i3", "brand-new"]
    frame = stocked.items_frame()
    assert list(frame.columns) == [*CATALOG_COLUMNS, "deleted"]
    assert frame["item_id"].iloc[3] == "i3" and frame["title"].iloc[3] == "renamed stapler"
    assert frame["item_id"].tolist() == [*make_catalog().ids.tolist(), "brand-new"]
    assert stocked.delete_item("brand-new") and not stocked.delete_item("brand-new")
    assert not stocked.delete_item("never-existed")
    frame = stocked.items_frame()
    assert frame["deleted"].iloc[-1] and not frame["deleted"].iloc[:-1].any()
    assert stocked.item_count() == n and stocked.item("brand-new") is None
    assert stocked.counts()["deleted_items"] == 1
    stocked.upsert_items(new)  # upserting a deleted item brings it back, in its old place
    frame = stocked.items_frame()
    assert frame["item_id"].iloc[-1] == "brand-new" and not frame["deleted"].any() and len(frame) == n + 1


def test_items_round_trip_every_column(store):
    frame = make_catalog().frame.iloc[:2].copy()
    frame["price"] = [9.5, np.nan]
    frame["available"] = [False, True]
    frame["created_at"] = pd.to_datetime(["2024-05-01 10:00:00", None]).astype("datetime64[s]")
    frame["attributes"] = [{"colour": "red", "pages": 80}, None]
    store.upsert_items(frame)
    back = store.items_frame().drop(columns="deleted")
    pd.testing.assert_frame_equal(back, ItemCatalog(frame).frame)
    pd.testing.assert_frame_equal(store.item("i0"), ItemCatalog(frame).frame.iloc[:1])


def test_patch_item_changes_only_the_given_fields(stocked):
    before, version = stocked.item("i3"), stocked.items_version()
    assert list(before.columns) == list(CATALOG_COLUMNS) and len(before) == 1
    row = stocked.patch_item("i3", {"available": False})
    expected = before.assign(available=False)
    pd.testing.assert_frame_equal(row, expected)
    pd.testing.assert_frame_equal(stocked.item("i3"), expected)
    assert stocked.items_version() == version + 1 == stocked.written_items_version()
    assert stocked.items_frame(changed_since=version)["item_id"].tolist() == ["i3"]
    row = stocked.patch_item("i3", {"price": 12.5, "created_at": pd.Timestamp("2024-05-01 10:00:00"),
                                    "attributes": {"colour": "red"}, "brand": None})
    assert row["price"][0] == 12.5 and row["created_at"][0] == pd.Timestamp("2024-05-01 10:00:00")
    assert row["attributes"][0] == {"colour": "red"} and pd.isna(row["brand"][0])
    assert row["title"][0] == before["title"][0] and not row["available"][0]
    pd.testing.assert_frame_equal(stocked.items_frame().drop(columns="deleted").iloc[[3]].reset_index(drop=True), row)
    assert stocked.patch_item("no-such-item", {"available": False}) is None
    assert stocked.delete_item("i4") and stocked.patch_item("i4", {"title": "back?"}) is None
    assert stocked.items_version() == version + 3  # the delete; the refused patches wrote nothing
    with pytest.raises(ValueError, match="item_id"):
        stocked.patch_item("i3", {"item_id": "renamed"})
    with pytest.raises(ValueError, match="available"):
        stocked.patch_item("i3", {"available": None})
    pd.testing.assert_frame_equal(stocked.patch_item("i3", {}), stocked.item("i3"))
    assert stocked.items_version() == version + 3


def test_items_version_counts_item_writes(store):
    assert store.items_version() == 0 and store.written_items_version() is None
    store.upsert_items(make_catalog().frame)
    seeded = store.items_version()
    assert seeded == 1 == store.written_items_version() and store.items_frame(changed_since=seeded).empty
    store.upsert_items(pd.DataFrame({"item_id": ["i2", "brand-new"], "title": ["i2 renamed", "hello"]}))
    assert store.delete_item("i5") and not store.delete_item("i5") and not store.delete_item("nope")
    assert store.items_version() == seeded + 2 == store.written_items_version()  # refused deletes wrote nothing
    changed = store.items_frame(changed_since=seeded)
    assert changed["item_id"].tolist() == ["i2", "i5", "brand-new"]  # position order
    assert changed["deleted"].tolist() == [False, True, False] and changed["title"][0] == "i2 renamed"
    assert store.items_frame(changed_since=seeded + 1)["item_id"].tolist() == ["i5"]
    assert len(store.items_frame()) == len(make_catalog()) + 1


def test_concurrent_item_writers_each_get_their_own_positions(stocked):
    """Item writes from several threads (hosts, on PostgreSQL) at once: every new item is stored in a place of its
    own, every write counted once in items_version."""
    version, start = stocked.items_version(), threading.Barrier(4)

    def write(thread: int) -> None:
        start.wait()
        for batch in range(5):
            stocked.upsert_items(pd.DataFrame({"item_id": [f"c{thread}-{batch}-{i}" for i in range(3)]}))
            stocked.patch_item("i1", {"title": f"by {thread}"})
        stocked.delete_item("i2")  # only one of the four finds it live

    threads = [threading.Thread(target=write, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert stocked.items_version() == version + 4 * 5 * 2 + 1
    frame = stocked.items_frame()
    assert len(frame) == len(make_catalog()) + 4 * 5 * 3 and frame["item_id"].is_unique
    assert frame["deleted"].sum() == 1 and frame["item_id"].iloc[:26].tolist() == make_catalog().ids.tolist()
    for thread in range(4):  # each writer's items in the order it wrote them
        mine = frame["item_id"][frame["item_id"].str.startswith(f"c{thread}-")].tolist()
        assert mine == [f"c{thread}-{batch}-{i}" for batch in range(5) for i in range(3)]


# events

def test_the_same_batch_twice_is_stored_once(stocked):
    batch = [view(f"idem-{i}", user="u-idem", time=1000 + i) for i in range(3)]
    assert stocked.add_events(batch) == EventsAdded(3, 0, [])
    assert stocked.add_events(batch) == EventsAdded(0, 3, [])
    assert stocked.counts()["events"] == 3
    assert stocked.user_events("u-idem")["time"].tolist() == [1000, 1001, 1002]
    assert stocked.stored_event_ids(["idem-2", "nope", "idem-0"]) == ["idem-2", "idem-0"]


def test_a_duplicate_inside_a_batch_is_stored_once(stocked):
    first = view("dup-a", user="u-dup", time=10)
    added = stocked.add_events([first, view("dup-b", user="u-dup", time=11), {**first, "item_id": "i2", "time": 12},
                                first])
    assert added == EventsAdded(2, 2, [])
    events = stocked.user_events("u-dup")
    assert events["item_id"].tolist() == ["i1", "i1"] and events["time"].tolist() == [10, 11]  # the first copy wins
    assert stocked.add_events([]) == EventsAdded(0, 0, []) and stocked.counts()["events"] == 2


def test_a_bad_event_does_not_lose_the_batch(stocked):
    batch = [view(f"batch-{i}", f"i{i % 20}", "u-batch", time=3e6 + i) for i in range(200)]
    batch[117] = {**batch[117], "item_id": "no-such-item"}
    added = stocked.add_events(batch)
    assert added == EventsAdded(199, 0, [Rejected(117, "batch-117", "item_id", "unknown item id 'no-such-item'")])
    assert stocked.stored_event_ids(["batch-116", "batch-117", "batch-118"]) == ["batch-116", "batch-118"]
    assert stocked.add_events(batch) == EventsAdded(0, 199, added.rejected)  # a resend: still rejected
    assert stocked.add_events([{**batch[117], "item_id": "i1"}]) == EventsAdded(1, 0, [])
    assert len(stocked.user_events("u-batch")) == 200
    good = view("shape-ok", user="u-shape")
    added = stocked.add_events([
        {**good, "event_id": None}, {**good, "event_id": "shape-1", "user_id": None},
        {**good, "event_id": "shape-2", "type": "like"}, {**good, "event_id": "shape-3", "item_id": None},
        {**good, "event_id": "shape-4", "time": float("nan")}, good,
        {"event_id": "shape-6", "session_id": "s-shape", "type": "search", "query": "ink"},
    ])
    assert added.accepted == 2 and added.duplicates == 0
    assert [(r.position, r.event_id, r.field) for r in added.rejected] == [
        (0, "", "event_id"), (1, "shape-1", "user_id"), (2, "shape-2", "type"), (3, "shape-3", "item_id"),
        (4, "shape-4", "time")]


def test_a_retried_event_whose_item_was_deleted_since_is_a_duplicate(stocked):
    event = {"event_id": "retried", "user_id": "u", "item_id": "i4", "type": "cart"}
    assert stocked.add_events([event]).accepted == 1
    assert stocked.delete_item("i4")
    assert stocked.add_events([event]) == EventsAdded(0, 1, [])
    gone = stocked.add_events([{**event, "event_id": "after-delete"}])
    assert gone == EventsAdded(0, 0, [Rejected(0, "after-delete", "item_id", "deleted item id 'i4'")])


def test_user_and_session_events_in_time_order(stocked):
    stocked.add_events([
        view("a2", "i2", RAW_USER, type="purchase", time=2_000_060), view("a1", "i1", RAW_USER, time=2_000_000),
        {"event_id": "s1", "session_id": RAW_SESSION, "item_id": "i13", "type": "click", "time": 2_000_030},
        {"event_id": "s2", "session_id": RAW_SESSION, "type": "search", "query": "router", "time": 2_000_040},
    ])
    user = stocked.user_events(RAW_USER)
    assert user["item_id"].tolist() == ["i1", "i2"]
    assert user["event"].tolist() == [EventType.VIEW, EventType.PURCHASE]
    assert user["time"].dtype == np.int64 and user["event"].dtype == np.int8
    session = stocked.user_events(session_id=RAW_SESSION)
    assert session["item_id"].tolist() == ["i13", None] and session["query"].tolist() == [None, "router"]
    both = stocked.user_events(RAW_USER, RAW_SESSION)
    assert both["time"].tolist() == [2_000_000, 2_000_030, 2_000_040, 2_000_060]
    assert stocked.user_events("nobody").empty and list(stocked.user_events("nobody").columns) == list(user.columns)
    log = stocked.events_log()
    assert list(log.columns) == ["user_key", "item_id", "time", "event", "query"]
    assert log["time"].tolist() == sorted(log["time"]) and len(log) == 4
    assert set(log["user_key"]) == {stocked.ids.user(RAW_USER), stocked.ids.session(RAW_SESSION)}


def test_history_limit_keeps_the_most_recent_in_order(stocked):
    times = [50, 10, 40, 40, 20, 60, 30, 60]  # out of insertion order, and ties (broken by insertion order)
    stocked.add_events([view(f"h{i}", f"i{i}", "u", time=t) for i, t in enumerate(times)])
    stocked.add_events([{"event_id": f"hs{i}", "session_id": "s", "item_id": f"i1{i}", "type": "click", "time": t}
                        for i, t in enumerate([45, 55, 65])])
    full = stocked.user_event_columns("u")
    assert full["time"].tolist() == sorted(times)
    assert full["item_id"].tolist() == ["i1", "i4", "i6", "i2", "i3", "i0", "i5", "i7"]
    limited = stocked.user_event_columns("u", limit=5)
    assert limited.keys() == full.keys()
    for name in full:
        assert limited[name].tolist() == full[name][-5:].tolist()
    assert limited["time"].dtype == np.int64 and limited["event"].dtype == np.int8
    both = stocked.user_events("u", "s", limit=4)
    pd.testing.assert_frame_equal(both, stocked.user_events("u", "s").iloc[-4:].reset_index(drop=True))
    assert both["item_id"].tolist() == ["i11", "i5", "i7", "i12"]
    assert len(stocked.user_events("u", limit=0)) == 0 and stocked.user_events("nobody", limit=3).empty
    with pytest.raises(ValueError, match="limit"):
        stocked.user_event_columns("u", limit=-1)


def test_concurrent_writers_lose_nothing_and_store_a_shared_batch_once(stocked):
    results: list[EventsAdded] = []
    shared = [view(f"shared-{i}", user="u-shared") for i in range(50)]
    start = threading.Barrier(6)

    def write(thread: int) -> None:
        start.wait()
        results.append(stocked.add_events(shared))  # every thread retries the same batch at once
        for batch in range(5):
            results.append(stocked.add_events([view(f"t{thread}-{batch}-{i}", user=f"u{thread}") for i in range(20)]))
            stocked.user_events(f"u{thread}")

    threads = [threading.Thread(target=write, args=(t,)) for t in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(added.accepted for added in results) == 50 + 6 * 5 * 20 == stocked.counts()["events"]
    assert sum(added.duplicates for added in results) == 5 * 50
    assert len(stocked.user_events("u-shared")) == 50


# durability

def test_a_new_store_on_the_same_target_sees_every_acknowledged_write(stocked, target):
    stocked.add_events([view("before-reopen", "i5", RAW_USER, type="cart", time=123)])
    stocked.set_profile(RAW_USER, ["Paper Goods", "fountain pens"])
    stocked.delete_item("i7")
    reopened = open_store(target, ID_KEY)
    try:
        assert reopened.counts() == stocked.counts() == {
            "items": len(make_catalog()) - 1, "deleted_items": 1, "events": 1, "users": 1, "profiles": 1}
        pd.testing.assert_frame_equal(reopened.user_events(RAW_USER), stocked.user_events(RAW_USER))
        assert reopened.profile(RAW_USER) == ["Paper Goods", "fountain pens"]
        pd.testing.assert_frame_equal(reopened.items_frame(), stocked.items_frame())
        assert reopened.store_id() == stocked.store_id() and reopened.items_version() == stocked.items_version()
        assert reopened.add_events([view("before-reopen", "i5", RAW_USER)]) == EventsAdded(0, 1, [])
    finally:
        reopened.close()


def test_acknowledged_events_survive_a_kill_of_the_writer(stocked, target):
    """A process that had its add_events acknowledged is killed (-9) at once: a new store sees every event."""
    code = textwrap.dedent(f"""
        import sys, time
        from coldrec.serve.store import open_store
        store = open_store({target!r}, {ID_KEY!r})
        for batch in range(5):
            added = store.add_events([{{"event_id": f"k{{batch}}-{{i}}", "user_id": "killed", "item_id": "i1",
                                        "type": "view", "time": batch * 100 + i}} for i in range(100)])
            assert added.accepted == 100, added
        print("acknowledged", flush=True)
        time.sleep(600)
    """)
    writer = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=ROOT)
    try:
        line = writer.stdout.readline() if writer.stdout else ""
        assert line.strip() == "acknowledged", writer.stderr.read() if writer.stderr else ""
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(30)
    assert writer.returncode == -signal.SIGKILL
    reopened = open_store(target, ID_KEY)
    try:
        assert len(reopened.user_events("killed")) == 500 == reopened.counts()["events"]
    finally:
        reopened.close()


def test_commits_wait_for_the_disk(target):
    """SQLite: synchronous=FULL; PostgreSQL: synchronous_commit on, even where the server (or URL) turns it off."""
    if not is_postgres(target):
        store = open_store(target, ID_KEY)
        try:
            assert isinstance(store, Store)
            assert store._connection().execute("PRAGMA synchronous").fetchone()[0] == 2
        finally:
            store.close()
        return
    lax = target + "%20-csynchronous_commit%3Doff"
    import psycopg

    with psycopg.connect(lax) as connection:
        assert connection.execute("SHOW synchronous_commit").fetchone() == ("off",)  # what the URL asks for
    store = open_store(lax, ID_KEY)
    try:
        assert isinstance(store, PostgresStore)
        with store._pool.connection() as connection:
            assert connection.execute("SHOW synchronous_commit").fetchone() == ("on",)
    finally:
        store.close()


# privacy

def test_only_pseudonymised_keys_are_stored(stocked, target):
    stocked.add_events([view("p1", "i1", RAW_USER, time=5),
                        {"event_id": "p2", "session_id": RAW_SESSION, "item_id": "i2", "type": "click", "time": 6},
                        {"event_id": "p3", "session_id": RAW_SESSION, "type": "search", "query": "ink", "time": 7}])
    stocked.set_profile(RAW_PROFILE_USER, ["fountain pens"])
    stocked.set_profile(RAW_USER, ["Paper Goods"])
    tables = raw_tables(target)
    assert {"items", "events", "profiles"} <= set(tables)
    text = json.dumps({name: [[str(value) for value in row] for row in rows] for name, rows in tables.items()})
    for raw in (RAW_USER, RAW_SESSION, RAW_PROFILE_USER):
        assert raw not in text
    ids = Pseudonymizer(ID_KEY)
    event_keys = {str(value) for row in tables["events"] for value in row}
    assert {ids.user(RAW_USER), ids.session(RAW_SESSION)} <= event_keys
    assert {row[0] for row in tables["profiles"]} == {ids.user(RAW_USER), ids.user(RAW_PROFILE_USER)}
    assert stocked.profile(RAW_USER) == ["Paper Goods"] and stocked.profile(RAW_PROFILE_USER) == ["fountain pens"]
    assert stocked.profiles() == {ids.user(RAW_USER): ["Paper Goods"], ids.user(RAW_PROFILE_USER): ["fountain pens"]}


# erasure

def test_delete_user_erases_that_user_and_nothing_else(stocked, target):
    stocked.add_events([view(f"d{i}", "i1", "leaving", time=i) for i in range(3)])
    stocked.add_events([view("other", "i1", "staying", time=9),
                        {"event_id": "same-text-session", "session_id": "leaving", "item_id": "i2", "type": "view"}])
    stocked.set_profile("leaving", ["Paper Goods"])
    stocked.set_profile("staying", ["Electronics"])
    erasures = stocked.erasures()
    assert stocked.delete_user("leaving") == {"events": 3, "profiles": 1}
    assert stocked.erasures() == erasures + 1
    assert stocked.user_events("leaving").empty and stocked.profile("leaving") == []
    assert len(stocked.user_events("staying")) == 1 and stocked.profile("staying") == ["Electronics"]
    assert len(stocked.user_events(session_id="leaving")) == 1  # a session is not the user of the same text
    assert stocked.stored_event_ids(["d0", "d1", "d2", "other", "same-text-session"]) == ["other", "same-text-session"]
    key = Pseudonymizer(ID_KEY).user("leaving")
    assert key not in json.dumps([[str(v) for v in row] for rows in raw_tables(target).values() for row in rows])
    assert stocked.counts() == {"items": len(make_catalog()), "deleted_items": 0, "events": 2, "users": 2,
                                "profiles": 1}
    assert stocked.delete_user("leaving") == {"events": 0, "profiles": 0}
    assert stocked.erasures() == erasures + 1  # nothing deleted: no new erasure


def test_delete_session_erases_its_events_only(stocked):
    stocked.add_events([{"event_id": f"s{i}", "session_id": "anon-1", "item_id": "i2", "type": "view"}
                        for i in range(4)])
    stocked.add_events([{"event_id": "other-session", "session_id": "anon-2", "item_id": "i2", "type": "view"},
                        view("same-text-user", "i2", "anon-1")])
    stocked.set_profile("anon-1", ["kept"])
    assert stocked.delete_session("anon-1") == {"events": 4}
    assert stocked.user_events(session_id="anon-1").empty
    assert len(stocked.user_events(session_id="anon-2")) == 1 and len(stocked.user_events("anon-1")) == 1
    assert stocked.profile("anon-1") == ["kept"]
    assert stocked.delete_session("anon-1") == {"events": 0}


# access, retention and key rotation

def test_export_user_holds_its_profile_and_events_only(stocked):
    stocked.add_events([view("e1", "i1", RAW_USER, time=5),
                        {"event_id": "e2", "user_id": RAW_USER, "type": "search", "query": "ink", "time": 6},
                        view("e3", "i2", "someone-else", time=7),
                        {"event_id": "e4", "session_id": RAW_USER, "item_id": "i3", "type": "view", "time": 8}])
    stocked.set_profile(RAW_USER, ["Paper Goods"])
    exported = stocked.export_user(RAW_USER)
    assert exported == {"user_key": Pseudonymizer(ID_KEY).user(RAW_USER), "interests": ["Paper Goods"], "events": [
        {"event_id": "e1", "item_id": "i1", "time": 5.0, "type": "view", "query": None},
        {"event_id": "e2", "item_id": None, "time": 6.0, "type": "search", "query": "ink"}]}
    assert stocked.export_user("unknown")["events"] == [] and stocked.export_user("unknown")["interests"] == []


def test_purge_events_before_deletes_only_older_events(stocked, target):
    stocked.add_events([view(f"old{i}", "i1", f"user{i}", time=100 + i) for i in range(3)]
                       + [view(f"new{i}", "i1", f"user{i}", time=1_000 + i) for i in range(2)])
    erasures = stocked.erasures()
    assert stocked.purge_events_before(1_000) == 3
    assert sorted(stocked.events_log()["time"]) == [1_000, 1_001]
    assert stocked.erasures() == erasures + 1  # a retrain fitting on the old events meanwhile is done again
    assert not any(str(row[0]).startswith("old") for row in raw_tables(target)["events"])
    assert stocked.purge_events_before(1_000) == 0 and stocked.erasures() == erasures + 1


def test_rekey_moves_every_key_to_the_new_chain_and_other_processes_follow(stocked, target, tmp_path):
    from coldrec.serve.privacy import add_key_link
    from coldrec.serve.store.keys import KeyVersionError, rotate_key

    key_file = tmp_path / "id.key"
    key_file.write_text(ID_KEY + "\n")
    other = open_store(target, key_file=key_file)  # another process or host, on the same key file
    stocked.add_events([view("r1", "i1", RAW_USER, time=5),
                        {"event_id": "r2", "session_id": RAW_SESSION, "item_id": "i2", "type": "view", "time": 6}])
    stocked.set_profile(RAW_USER, ["Paper Goods"])
    before = (stocked.user_events(RAW_USER), stocked.user_events(session_id=RAW_SESSION))
    assert stocked.key_version() == 1
    rotation = rotate_key(stocked, key_file)
    assert (rotation.version_before, rotation.version, rotation.keys) == (1, 2, 2)
    chain = Pseudonymizer(key_file.read_text())
    assert set(stocked.events_log()["user_key"]) | set(stocked.profiles()) == {chain.user(RAW_USER),
                                                                              chain.session(RAW_SESSION)}
    assert other.key_version() == 2 and other.user_events(RAW_USER).equals(before[0])
    assert other.user_events(session_id=RAW_SESSION).equals(before[1]) and other.profile(RAW_USER) == ["Paper Goods"]
    other.add_events([view("r3", "i3", RAW_USER, time=7)])
    assert list(other.user_events(RAW_USER)["item_id"]) == ["i1", "i3"]
    assert other.delete_user(RAW_USER) == {"events": 2, "profiles": 1}
    with pytest.raises(KeyVersionError):  # a process keyed by the old key alone cannot read (or write) wrongly
        stocked.user_events(RAW_USER)
    other.close()
    add_key_link(key_file)  # a rotation stopped before its transaction: the next run finishes it with that link
    resumed = open_store(target, key_file=key_file)
    assert rotate_key(resumed, key_file).version == 3 and len(key_file.read_text().split()) == 3
    add_key_link(key_file)
    add_key_link(key_file)
    with pytest.raises(KeyVersionError, match="another store"):
        rotate_key(resumed, key_file)
    resumed.close()


def test_writers_during_a_rotation_lose_nothing(stocked, target, tmp_path):
    from coldrec.serve.store.keys import rotate_key

    key_file = tmp_path / "id.key"
    key_file.write_text(ID_KEY + "\n")
    writer_store = open_store(target, key_file=key_file)
    writer_store.add_events([view(f"w-seed{u}", "i1", f"writer{u}", time=1) for u in range(4)])
    stop = threading.Event()
    written: list[str] = []

    def write() -> None:
        n = 0
        while not stop.is_set():
            batch = [view(f"w{n}-{u}", "i2", f"writer{u}", time=10 + n) for u in range(4)]
            writer_store.add_events(batch)
            written.extend(event["event_id"] for event in batch)
            n += 1

    thread = threading.Thread(target=write)
    thread.start()
    time.sleep(0.2)
    rotating = open_store(target, key_file=key_file)
    try:
        rotate_key(rotating, key_file)
        time.sleep(0.2)
    finally:
        stop.set()
        thread.join()
        rotating.close()
    assert len(written) > 8
    for u in range(4):  # every event written before, during and after the rotation is found by the raw id
        assert len(writer_store.user_events(f"writer{u}")) == 1 + len(written) // 4
    writer_store.close()


# bulk and copies

def test_seed_loads_catalog_and_log(store):
    catalog, log = make_catalog(), make_log()
    store.seed(catalog, log)
    assert store.counts() == {"items": len(catalog), "deleted_items": 0, "events": len(log),
                              "users": log.n_users, "profiles": 0}
    events = store.events_log()
    assert events["time"].tolist() == log.time.tolist()  # make_log's times grow
    assert events["item_id"].tolist() == catalog.ids[log.item].tolist()
    ids = Pseudonymizer(ID_KEY)
    assert events["user_key"].tolist() == [ids.user(str(u)) for u in log.users[log.user]]
    assert store.stored_event_ids(["seed-0", f"seed-{len(log) - 1}", f"seed-{len(log)}"]) == [
        "seed-0", f"seed-{len(log) - 1}"]
    store.seed(catalog, log)  # seeding again adds nothing
    assert store.counts()["events"] == len(log) and store.snapshot().timed


def test_seed_of_an_untimed_log_marks_the_snapshot(store):
    log = InteractionLog.from_arrays(["a", "a", "b"], [0, 1, 2], [0, 1, 0], timed=False)
    store.seed(make_catalog(), log)
    snapshot = store.snapshot()
    assert not snapshot.timed and len(snapshot.events) == 3


def test_snapshot_holds_the_store_as_of_one_moment(stocked):
    stocked.add_events([view("e1", "i1", "u1", time=30), view("e2", "i2", "u2", time=10)])
    stocked.set_profile("u1", ["Paper Goods"])
    stocked.delete_item("i3")
    snapshot = stocked.snapshot()
    assert snapshot.items_version == stocked.items_version() == 2
    assert snapshot.erasures == 0 and snapshot.store_id == stocked.store_id() > 0
    pd.testing.assert_frame_equal(snapshot.items, stocked.items_frame())
    pd.testing.assert_frame_equal(snapshot.events, stocked.events_log())
    assert snapshot.events["item_id"].tolist() == ["i2", "i1"]  # time order
    assert snapshot.profiles == stocked.profiles() == {Pseudonymizer(ID_KEY).user("u1"): ["Paper Goods"]}
    assert snapshot.timed
    stocked.delete_user("u1")
    later = stocked.snapshot()
    assert later.erasures == 1 and later.profiles == {} and len(later.events) == 1
    assert len(snapshot.events) == 2  # the earlier snapshot is a copy


def test_a_snapshot_is_not_torn_by_concurrent_writes(stocked):
    """Events written while snapshots are taken: each snapshot's events and counters agree with one moment."""
    stop = threading.Event()

    def write() -> None:
        i = 0
        while not stop.is_set():
            stocked.add_events([view(f"w{i}-{j}", "i1", f"w{i % 7}", time=i) for j in range(10)])
            i += 1

    writer = threading.Thread(target=write)
    writer.start()
    try:
        for _ in range(5):
            snapshot = stocked.snapshot()
            assert len(snapshot.events) % 10 == 0  # whole batches only
            assert len(set(snapshot.events["time"])) * 10 == len(snapshot.events)
    finally:
        stop.set()
        writer.join()


# catalog change notification (PostgreSQL: LISTEN/NOTIFY; SQLite serves one host, its processes poll)

def test_item_writes_notify_every_listener(stocked, target):
    if not is_postgres(target):
        pytest.skip("SQLite serves one host: its processes read items_version (CatalogSync), there is no NOTIFY")
    assert isinstance(stocked, PostgresStore)
    other = open_store(target, ID_KEY)  # another host
    assert isinstance(other, PostgresStore)
    try:
        with stocked.items_listener() as listener:
            assert listener.wait(0.05) is None  # nothing changed yet
            other.upsert_items(pd.DataFrame({"item_id": ["from-host-b"], "title": ["new"]}))
            written = other.written_items_version()
            assert listener.wait(5) == written == stocked.items_version()
            assert other.delete_item("from-host-b") and not other.delete_item("from-host-b")
            other.patch_item("i1", {"title": "patched"})
            newest = listener.wait(5)
            while newest is not None and newest < written + 2:  # the second can reach this connection a moment later
                newest = listener.wait(5)
            assert newest == written + 2  # the newest of those sent; the refused delete sent none
            assert listener.wait(0.05) is None
            assert other.patch_item("nope", {"title": "x"}) is None
            assert listener.wait(0.2) is None
    finally:
        other.close()


def test_wait_for_items_version_returns_at_the_change(stocked, target):
    if not is_postgres(target):
        pytest.skip("SQLite serves one host: its processes read items_version (CatalogSync), there is no NOTIFY")
    assert isinstance(stocked, PostgresStore)
    now = stocked.items_version()
    started = time.monotonic()
    assert stocked.wait_for_items_version(now, timeout_s=0.3) == now  # no change: the timeout
    assert 0.25 <= time.monotonic() - started < 3
    assert stocked.wait_for_items_version(now - 1, timeout_s=10) == now  # already past: at once
    timer = threading.Timer(0.3, lambda: stocked.delete_item("i2"))
    timer.start()
    try:
        started = time.monotonic()
        assert stocked.wait_for_items_version(now, timeout_s=20) == now + 1
        assert time.monotonic() - started < 10
    finally:
        timer.join()


# merchandising rules

def test_rules_are_kept_in_order_and_counted(store):
    before = store.rules_version()
    first = store.add_rule({"action": "pin", "item_id": "i3", "position": 2})
    second = store.add_rule({"action": "exclude", "category": "Office > Paper Goods", "ends_at": 2e9})
    assert first != second
    assert store.rules() == [{"rule_id": first, "action": "pin", "item_id": "i3", "position": 2},
                             {"rule_id": second, "action": "exclude", "category": "Office > Paper Goods",
                              "ends_at": 2e9}]
    assert store.rules_version() == before + 2
    assert store.delete_rule(first) and not store.delete_rule(first)
    assert [rule["rule_id"] for rule in store.rules()] == [second]
    assert store.rules_version() == before + 3


# sponsored products: campaigns and the ledger of their clicks

def _ad_click(event_id: str, token: str, item: str = "i3", user: str = "clicker") -> dict:
    return {"event_id": event_id, "user_id": user, "item_id": item, "type": "click", "ad": token}


def test_campaigns_are_kept_changed_and_counted(stocked):
    from coldrec.ads import Campaign, CampaignError

    before = stocked.campaigns_version()
    stored = stocked.add_campaign(Campaign("ignored", ("i3", "i4"), bid=0.8, daily_budget=5.0, keywords=("paper",)))
    assert stored.campaign_id.startswith("c_") and stored.created > 0
    assert stocked.campaign(stored.campaign_id) == stored
    assert stocked.campaigns() == [stored]
    paused = stocked.update_campaign(stored.campaign_id, {"paused": True, "bid": 1.2})
    assert paused is not None and paused.paused and paused.bid == 1.2 and paused.items == ("i3", "i4")
    assert stocked.campaign(stored.campaign_id) == paused
    assert stocked.update_campaign("c_none", {"paused": True}) is None
    assert stocked.campaigns_version() == before + 2
    with pytest.raises(CampaignError) as error:
        stocked.add_campaign(Campaign("", ("i3", "nope"), bid=1.0, daily_budget=1.0))
    assert error.value.field == "items[1]"
    assert len(stocked.campaigns()) == 1  # the refused one left nothing


def test_a_click_is_charged_once_and_never_past_the_budget(stocked):
    from coldrec.ads import AdToken, Campaign

    campaign = stocked.add_campaign(Campaign("", ("i3",), bid=1.0, daily_budget=2.5))
    token = AdToken(campaign.campaign_id, "i3", 1.0, time.time()).sign(stocked.ad_secret())
    added = stocked.add_events([_ad_click(f"click-{i}", token) for i in range(4)])
    assert added.accepted == 4 and not added.rejected
    again = stocked.add_events([_ad_click(f"click-{i}", token) for i in range(4)])  # a retried batch
    assert again.duplicates == 4
    assert stocked.clicks_booked(campaign.campaign_id) == {"click-0": 1.0, "click-1": 1.0, "click-2": 0.5,
                                                          "click-3": 0.0}
    stocked.count_impressions({campaign.campaign_id: 7})
    stats = stocked.campaign_stats(campaign.campaign_id)
    assert stats["clicks"] == 4 and stats["spend"] == 2.5 and stats["budget_left_today"] == 0.0
    assert stats["impressions"] == 7
    assert stocked.spend_today() == {campaign.campaign_id: 2.5}


def test_a_bad_ad_token_rejects_its_event_alone(stocked):
    from coldrec.ads import AdToken, Campaign

    campaign = stocked.add_campaign(Campaign("", ("i3",), bid=1.0, daily_budget=10.0))
    token = AdToken(campaign.campaign_id, "i3", 1.0, time.time()).sign(stocked.ad_secret())
    forged = AdToken(campaign.campaign_id, "i3", 0.01, time.time()).sign(b"another store's secret")
    stale = AdToken(campaign.campaign_id, "i3", 1.0, time.time() - 3 * 86_400).sign(stocked.ad_secret())
    view = {**_ad_click("as-view", token), "type": "view"}
    added = stocked.add_events([_ad_click("ok", token), _ad_click("other-item", token, item="i4"),
                                _ad_click("forged", forged), _ad_click("stale", stale), view])
    assert added.accepted == 1
    assert [(r.event_id, r.field) for r in added.rejected] == [
        ("other-item", "ad"), ("forged", "ad"), ("stale", "ad"), ("as-view", "ad")]
    assert "not signed by this store" in added.rejected[1].reason and "expired" in added.rejected[2].reason
    assert stocked.stored_event_ids(["ok", "other-item", "forged", "stale", "as-view"]) == ["ok"]
    assert stocked.clicks_booked(campaign.campaign_id) == {"ok": 1.0}


def test_concurrent_clicks_never_overspend(target, stocked):
    """8 clients, each with its own store connection (as on 8 workers or hosts), click one campaign's ad at once,
    half their clicks sent twice: the spend ends at the budget exactly, every click booked once."""
    from coldrec.ads import AdToken, Campaign

    campaign = stocked.add_campaign(Campaign("", ("i3",), bid=0.7, daily_budget=10.0))
    token = AdToken(campaign.campaign_id, "i3", 0.7, time.time()).sign(stocked.ad_secret())
    clients = [open_store(target, ID_KEY) for _ in range(8)]
    barrier = threading.Barrier(len(clients))

    def click(worker: int) -> None:
        barrier.wait()
        for i in range(5):
            batch = [_ad_click(f"w{worker}-{i}", token, user=f"shopper-{worker}")]
            clients[worker].add_events(batch)
            if i % 2:
                clients[worker].add_events(batch)  # a retry

    threads = [threading.Thread(target=click, args=(w,)) for w in range(len(clients))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for client in clients:
        client.close()
    booked = stocked.clicks_booked(campaign.campaign_id)
    assert sorted(booked) == sorted(f"w{w}-{i}" for w in range(8) for i in range(5))
    assert sum(booked.values()) == pytest.approx(10.0)  # 40 clicks x 0.7 would be 28
    stats = stocked.campaign_stats(campaign.campaign_id)
    assert stats["spend"] == 10.0 and stats["clicks"] == 40
    assert sorted(booked.values()).count(0.7) == 14  # 14 x 0.7 = 9.8, then 0.2, then nothing
