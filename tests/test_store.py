"""The embedded store: idempotent events, WAL, pseudonymised keys, erasure, restarts."""

from __future__ import annotations

import os
import stat
import threading
import time

import numpy as np
import pandas as pd
import pytest

from coldrec.data import EventType, InteractionLog, ItemCatalog
from coldrec.data.catalog import CATALOG_COLUMNS
from coldrec.serve.privacy import KEY_FILE, Pseudonymizer, load_or_create_key
from coldrec.serve.store import Store, UnknownItemsError
from tests.synthetic import make_catalog, make_log

RAW_USER = "alice.raw-user-id@example.com"
RAW_SESSION = "raw-session-id-7f3a9c"


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("state")


@pytest.fixture(scope="module")
def store(state_dir):
    store = Store.open(state_dir)
    store.seed(make_catalog(), make_log())
    store.add_events([
        {"event_id": "a1", "user_id": RAW_USER, "item_id": "i1", "type": "view", "time": 2_000_000},
        {"event_id": "a2", "user_id": RAW_USER, "item_id": "i2", "type": "purchase", "time": 2_000_060},
        {"event_id": "s1", "session_id": RAW_SESSION, "item_id": "i13", "type": "click", "time": 2_000_030},
        {"event_id": "s2", "session_id": RAW_SESSION, "type": "search", "query": "router", "time": 2_000_040},
    ])
    store.set_profile(RAW_USER, ["Paper Goods", "fountain pens"])
    yield store
    store.close()


def test_pseudonymizer_is_keyed_and_stable():
    a, b = Pseudonymizer(b"key one"), Pseudonymizer(b"key two")
    assert a.user("u1") == Pseudonymizer(b"key one").user("u1")
    assert len(a.user("u1")) == 32 and int(a.user("u1"), 16) >= 0
    assert a.user("u1") != b.user("u1")  # keyed
    assert a.user("u1") != a.session("u1")  # users and sessions never collide
    assert "key one" not in repr(a)


def test_key_is_created_once_private_and_config_wins(tmp_path):
    first = load_or_create_key(tmp_path)
    assert load_or_create_key(tmp_path) == first
    assert stat.S_IMODE(os.stat(tmp_path / KEY_FILE).st_mode) == 0o600
    assert load_or_create_key(tmp_path, "from-env") == "from-env"


def test_wal_mode(store):
    assert store.journal_mode() == "wal"
    assert store._connection().execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_seed_loads_catalog_and_log(store):
    counts = store.counts()
    assert counts["items"] == len(make_catalog())
    assert counts["events"] == len(make_log()) + 4
    frame = store.items_frame()
    assert list(frame.columns) == [*CATALOG_COLUMNS, "deleted"]
    assert frame["item_id"].tolist() == make_catalog().ids.tolist()


def test_events_are_idempotent(store):
    batch = [{"event_id": f"idem-{i}", "user_id": "u-idem", "item_id": "i3", "type": "click"} for i in range(3)]
    assert store.add_events(batch) == (3, 0)
    assert store.add_events(batch + batch[:1]) == (0, 4)
    assert store.add_events([batch[0], {**batch[0], "event_id": "idem-new"}, {**batch[0], "event_id": "idem-new"}]) == (1, 2)
    assert len(store.user_events("u-idem")) == 4


def test_unknown_item_stores_nothing_from_the_batch(store):
    before = store.counts()["events"]
    batch = [
        {"event_id": "bad-0", "user_id": "u-bad", "item_id": "i1", "type": "view"},
        {"event_id": "bad-1", "user_id": "u-bad", "item_id": "no-such-item", "type": "view"},
    ]
    with pytest.raises(UnknownItemsError) as error:
        store.add_events(batch)
    assert error.value.positions == [1] and error.value.item_ids == ["no-such-item"]
    assert store.counts()["events"] == before


def test_user_and_session_events_in_time_order(store):
    user = store.user_events(RAW_USER)
    assert user["item_id"].tolist() == ["i1", "i2"]
    assert user["event"].tolist() == [EventType.VIEW, EventType.PURCHASE]
    assert user["time"].dtype == np.int64 and user["event"].dtype == np.int8
    session = store.user_events(session_id=RAW_SESSION)
    assert session["item_id"].tolist() == ["i13", None]
    assert session["query"].tolist() == [None, "router"]
    both = store.user_events(RAW_USER, RAW_SESSION)
    assert both["time"].tolist() == sorted(both["time"])
    assert len(both) == 4
    assert store.user_events("nobody").empty


def test_raw_ids_never_reach_the_database_file(store, state_dir):
    store.set_profile("profile-raw-id-42", ["x"])
    key = store.ids.user(RAW_USER)
    assert key in store.events_log()["user_key"].tolist()
    files = [p for p in state_dir.iterdir() if p.name.startswith("coldrec.sqlite")]  # the db, its -wal and -shm
    assert len(files) >= 2
    data = b"".join(p.read_bytes() for p in files)
    for raw in (RAW_USER, RAW_SESSION, "profile-raw-id-42", "u1"):
        assert raw.encode() not in data
    assert key.encode() in data


def test_items_keep_their_positions(store):
    n = store.item_count()
    updated = make_catalog().frame.iloc[[3]].assign(title="renamed stapler")
    new = make_catalog().frame.iloc[[0]].assign(item_id="brand-new", title="brand new thing")
    assert store.upsert_items(pd.concat([updated, new])) == ["i3", "brand-new"]
    frame = store.items_frame()
    assert frame["item_id"].iloc[3] == "i3" and frame["title"].iloc[3] == "renamed stapler"
    assert frame["item_id"].iloc[-1] == "brand-new"
    assert store.delete_item("brand-new") and not store.delete_item("brand-new")
    assert not store.delete_item("never-existed")
    frame = store.items_frame()
    assert frame["deleted"].iloc[-1] and not frame["deleted"].iloc[:-1].any()
    assert store.item_count() == n
    with pytest.raises(UnknownItemsError):
        store.add_events([{"event_id": "gone", "user_id": "u", "item_id": "brand-new", "type": "view"}])


def test_items_round_trip_every_column(tmp_path):
    store = Store.open(tmp_path)
    frame = make_catalog().frame.iloc[:2].copy()
    frame["price"] = [9.5, np.nan]
    frame["available"] = [False, True]
    frame["created_at"] = pd.to_datetime(["2024-05-01 10:00:00", None]).astype("datetime64[s]")
    frame["attributes"] = [{"colour": "red", "pages": 80}, None]
    store.upsert_items(frame)
    back = store.items_frame().drop(columns="deleted")
    pd.testing.assert_frame_equal(back, ItemCatalog(frame).frame)
    store.close()


def test_delete_user_erases_events_and_profile(tmp_path):
    store = Store.open(tmp_path)
    store.upsert_items(make_catalog().frame)
    store.add_events([{"event_id": f"d{i}", "user_id": "leaving", "item_id": "i1", "type": "view"} for i in range(3)])
    store.add_events([{"event_id": "other", "user_id": "staying", "item_id": "i1", "type": "view"}])
    store.set_profile("leaving", ["Paper Goods"])
    assert store.delete_user("leaving") == {"events": 3, "profiles": 1}
    assert store.user_events("leaving").empty and store.profile("leaving") == []
    assert len(store.user_events("staying")) == 1
    assert store.delete_user("leaving") == {"events": 0, "profiles": 0}
    store.close()


def test_restart_sees_everything(store, state_dir):
    store.add_events([{"event_id": "before-restart", "user_id": RAW_USER, "item_id": "i5", "type": "cart"}])
    reopened = Store.open(state_dir)  # same file, same id.key
    try:
        assert reopened.counts() == store.counts()
        pd.testing.assert_frame_equal(reopened.user_events(RAW_USER), store.user_events(RAW_USER))
        assert reopened.profile(RAW_USER) == ["Paper Goods", "fountain pens"]
        pd.testing.assert_frame_equal(reopened.items_frame(), store.items_frame())
    finally:
        reopened.close()


def test_concurrent_writers_lose_nothing(tmp_path):
    store = Store.open(tmp_path)
    store.upsert_items(make_catalog().frame)
    results = []

    def write(thread: int):
        for batch in range(10):
            events = [{"event_id": f"t{thread}-{batch}-{i}", "user_id": f"u{thread}", "item_id": "i1", "type": "view"}
                      for i in range(20)]
            results.append(store.add_events(events))
            store.user_events(f"u{thread}")

    threads = [threading.Thread(target=write, args=(t,)) for t in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(accepted for accepted, _ in results) == 6 * 10 * 20 == store.counts()["events"]
    store.close()


def test_seed_is_fast(tmp_path):
    catalog = make_catalog()
    rng = np.random.default_rng(0)
    n = 60_000
    log = InteractionLog.from_arrays(rng.integers(0, 5_000, n).astype(str), rng.integers(0, len(catalog), n),
                                     np.arange(n))
    store = Store.open(tmp_path)
    started = time.perf_counter()
    store.seed(catalog, log)
    assert time.perf_counter() - started < 5
    assert store.counts()["events"] == n and store.counts()["users"] == 5_000
    store.close()


def test_items_version_counts_item_writes(tmp_path):
    """Every item write bumps items_version; `items_frame(changed_since=v)` holds exactly the rows written after v."""
    store = Store.open(tmp_path)
    assert store.items_version() == 0
    store.upsert_items(make_catalog().frame)
    seeded = store.items_version()
    assert seeded == 1 and store.items_frame(changed_since=seeded).empty
    store.upsert_items(pd.DataFrame({"item_id": ["i2", "brand-new"], "title": ["i2 renamed", "hello"]}))
    assert store.delete_item("i5") and not store.delete_item("i5") and not store.delete_item("nope")
    assert store.items_version() == seeded + 2  # the refused deletes wrote nothing
    changed = store.items_frame(changed_since=seeded)
    assert changed["item_id"].tolist() == ["i2", "i5", "brand-new"]  # position order
    assert changed["deleted"].tolist() == [False, True, False] and changed["title"][0] == "i2 renamed"
    assert store.items_frame(changed_since=seeded + 1)["item_id"].tolist() == ["i5"]
    assert len(store.items_frame()) == len(make_catalog()) + 1
    store.close()


def test_a_store_written_before_items_version_opens(tmp_path):
    """An items table without the `changed` column (and no meta table) is migrated in place, its rows kept."""
    import sqlite3

    old = sqlite3.connect(tmp_path / "coldrec.sqlite")
    old.executescript(
        "CREATE TABLE items (position INTEGER PRIMARY KEY, item_id TEXT NOT NULL UNIQUE, title TEXT, description TEXT,"
        " brand TEXT, category TEXT, price REAL, available INTEGER NOT NULL DEFAULT 1, created_at INTEGER,"
        " attributes TEXT, deleted INTEGER NOT NULL DEFAULT 0);"
        "INSERT INTO items (position, item_id, title) VALUES (0, 'old', 'an old item');"
    )
    old.close()
    store = Store.open(tmp_path)
    assert store.items_version() == 0 and store.items_frame()["item_id"].tolist() == ["old"]
    store.upsert_items(pd.DataFrame({"item_id": ["new"], "title": ["a new item"]}))
    assert store.items_frame(changed_since=0)["item_id"].tolist() == ["new"]
    store.close()
