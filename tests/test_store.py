"""The embedded store: idempotent events, WAL, pseudonymised keys, erasure, restarts."""

from __future__ import annotations

import logging
import os
import stat
import threading
import time

import numpy as np
import pandas as pd
import pytest

from coldrec.data import EventType, InteractionLog, ItemCatalog
from coldrec.data.catalog import CATALOG_COLUMNS
from coldrec.serve.privacy import (
    KEY_FILE,
    KEY_FILE_ENV,
    Pseudonymizer,
    default_key_file,
    load_or_create_key,
)
from coldrec.serve.store import EventsAdded, Rejected, Store
from tests.synthetic import make_catalog, make_log

RAW_USER = "alice.raw-user-id@example.com"
RAW_SESSION = "raw-session-id-7f3a9c"


@pytest.fixture(scope="module", autouse=True)
def key_file(tmp_path_factory):
    """Stores opened without a key use a key file of this module's, never the real ~/.config/coldrec/id.key."""
    path = tmp_path_factory.mktemp("config") / "coldrec" / KEY_FILE
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(KEY_FILE_ENV, str(path))
        patch.delenv("COLDREC_ID_KEY", raising=False)
        yield path


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
    path = tmp_path / "config" / "id.key"
    first = load_or_create_key(key_file=path)
    assert load_or_create_key(key_file=path) == first and len(first) == 64
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left behind
    assert load_or_create_key("from-env", key_file=path) == "from-env"
    with pytest.raises(TypeError):
        load_or_create_key(tmp_path)  # the old load_or_create_key(state_dir) call


def test_key_lives_apart_from_the_state_dir(tmp_path, monkeypatch):
    config = tmp_path / "config"
    monkeypatch.setenv(KEY_FILE_ENV, str(config / "id.key"))
    store = Store.open(tmp_path / "state")
    store.close()
    assert (config / "id.key").is_file() and stat.S_IMODE(os.stat(config / "id.key").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(config).st_mode) == 0o700
    assert sorted(p.name for p in (tmp_path / "state").iterdir() if "sqlite" not in p.name) == []
    reopened = Store.open(tmp_path / "state")
    assert reopened.ids.user("u1") == store.ids.user("u1")  # the same key on reopening
    reopened.close()


def test_default_key_file_follows_xdg(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_FILE_ENV, str(tmp_path / "explicit.key"))
    assert default_key_file() == tmp_path / "explicit.key"
    monkeypatch.delenv(KEY_FILE_ENV)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert default_key_file() == tmp_path / "xdg" / "coldrec" / "id.key"
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_key_file() == tmp_path / "home" / ".config" / "coldrec" / "id.key"


def test_a_key_beside_the_data_moves_out_and_maps_ids_the_same(tmp_path, caplog):
    state, path = tmp_path / "state", tmp_path / "config" / "id.key"
    state.mkdir()
    (state / KEY_FILE).write_text("the-old-layout-key\n")
    before = Pseudonymizer("the-old-layout-key").user(RAW_USER)
    with caplog.at_level(logging.WARNING, logger="coldrec.serve.privacy"):
        store = Store.open(state, key_file=path)
    try:
        assert store.ids.user(RAW_USER) == before
        assert not (state / KEY_FILE).exists()
        assert path.read_text().strip() == "the-old-layout-key" and stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert str(path) in caplog.text and str(state / KEY_FILE) in caplog.text
    finally:
        store.close()
    assert load_or_create_key(key_file=path, state_dir=state) == "the-old-layout-key"  # nothing left to move


def test_a_key_beside_the_data_that_differs_from_the_key_file_is_refused(tmp_path):
    state, path = tmp_path / "state", tmp_path / "config" / "id.key"
    state.mkdir()
    (state / KEY_FILE).write_text("old-key\n")
    path.parent.mkdir()
    path.write_text("another-key\n")
    with pytest.raises(ValueError) as error:
        Store.open(state, key_file=path)
    assert str(state / KEY_FILE) in str(error.value) and str(path) in str(error.value)
    assert KEY_FILE_ENV in str(error.value)
    assert (state / KEY_FILE).read_text() == "old-key\n" and path.read_text() == "another-key\n"  # both kept
    (state / KEY_FILE).write_text("another-key\n")  # the same key in both places: the copy beside the data goes
    assert load_or_create_key(key_file=path, state_dir=state) == "another-key"
    assert not (state / KEY_FILE).exists()


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
    assert store.add_events(batch) == EventsAdded(3, 0, [])
    assert store.add_events(batch + batch[:1]) == EventsAdded(0, 4, [])
    repeated = [batch[0], {**batch[0], "event_id": "idem-new"}, {**batch[0], "event_id": "idem-new"}]
    assert store.add_events(repeated) == EventsAdded(1, 2, [])
    assert len(store.user_events("u-idem")) == 4
    assert store.add_events([]) == EventsAdded(0, 0, [])


def test_one_unknown_item_does_not_lose_the_batch(store):
    before = store.counts()["events"]
    batch = [{"event_id": f"batch-{i}", "user_id": "u-batch", "item_id": f"i{i % 20}", "type": "view", "time": 3e6 + i}
             for i in range(1000)]
    batch[417] = {**batch[417], "item_id": "no-such-item"}
    added = store.add_events(batch)
    assert added == EventsAdded(999, 0, [Rejected(417, "batch-417", "item_id", "unknown item id 'no-such-item'")])
    assert store.counts()["events"] == before + 999
    assert store.stored_event_ids(["batch-416", "batch-417", "batch-418"]) == ["batch-416", "batch-418"]
    assert len(store.user_events("u-batch")) == 999
    assert store.add_events(batch) == EventsAdded(0, 999, added.rejected)  # a resend: still rejected, not stored
    fixed = store.add_events([{**batch[417], "item_id": "i1"}])
    assert fixed == EventsAdded(1, 0, []) and len(store.user_events("u-batch")) == 1000


def test_malformed_events_are_rejected_one_by_one(store):
    good = {"event_id": "shape-ok", "user_id": "u-shape", "item_id": "i1", "type": "view"}
    added = store.add_events([
        {**good, "event_id": None},
        {**good, "event_id": "shape-1", "user_id": None},
        {**good, "event_id": "shape-2", "type": "like"},
        {**good, "event_id": "shape-3", "item_id": None},
        {**good, "event_id": "shape-4", "time": float("nan")},
        good,
        {"event_id": "shape-6", "session_id": "s-shape", "type": "search", "query": "ink"},
    ])
    assert added.accepted == 2 and added.duplicates == 0
    assert [(r.position, r.event_id, r.field) for r in added.rejected] == [
        (0, "", "event_id"), (1, "shape-1", "user_id"), (2, "shape-2", "type"), (3, "shape-3", "item_id"),
        (4, "shape-4", "time")]
    assert added.rejected[2].reason == "unknown event type 'like'"
    assert store.stored_event_ids([f"shape-{i}" for i in range(7)] + ["shape-ok"]) == ["shape-6", "shape-ok"]


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
    for raw in (RAW_USER, RAW_SESSION, "profile-raw-id-42"):
        assert raw.encode() not in data
    assert key.encode() in data
    # the seeded log's ids ("u1", ...) are too short to look for in binary pages (two bytes of a WAL checksum
    # matched once in 25 runs): every stored key is a pseudonym instead, the seeded users' among them
    keys = set(store.events_log()["user_key"])
    assert all(len(k) == 32 and int(k, 16) >= 0 for k in keys) and store.ids.user("u1") in keys


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
    gone = store.add_events([{"event_id": "gone", "user_id": "u", "item_id": "brand-new", "type": "view"}])
    assert gone == EventsAdded(0, 0, [Rejected(0, "gone", "item_id", "deleted item id 'brand-new'")])
    assert store.stored_event_ids(["gone"]) == []


def test_a_retried_event_whose_item_was_deleted_since_is_a_duplicate(tmp_path):
    store = Store.open(tmp_path)
    store.upsert_items(make_catalog().frame)
    event = {"event_id": "retried", "user_id": "u", "item_id": "i4", "type": "cart"}
    assert store.add_events([event]).accepted == 1
    assert store.delete_item("i4")
    assert store.add_events([event]) == EventsAdded(0, 1, [])
    store.close()


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


def test_delete_session_erases_its_events_only(tmp_path):
    store = Store.open(tmp_path)
    store.upsert_items(make_catalog().frame)
    store.add_events([{"event_id": f"s{i}", "session_id": "anon-1", "item_id": "i2", "type": "view"} for i in range(4)])
    store.add_events([{"event_id": "other-session", "session_id": "anon-2", "item_id": "i2", "type": "view"},
                      {"event_id": "same-text-user", "user_id": "anon-1", "item_id": "i2", "type": "view"}])
    assert store.delete_session("anon-1") == {"events": 4}
    assert store.user_events(session_id="anon-1").empty
    assert len(store.user_events(session_id="anon-2")) == 1 and len(store.user_events("anon-1")) == 1
    assert store.delete_session("anon-1") == {"events": 0}
    store.close()


def test_history_limit_keeps_the_most_recent_in_order(tmp_path):
    store = Store.open(tmp_path)
    store.upsert_items(make_catalog().frame)
    # times out of insertion order, and ties, which the full read breaks by insertion order
    times = [50, 10, 40, 40, 20, 60, 30, 60]
    store.add_events([{"event_id": f"h{i}", "user_id": "u", "item_id": f"i{i}", "type": "view", "time": t}
                      for i, t in enumerate(times)])
    store.add_events([{"event_id": f"hs{i}", "session_id": "s", "item_id": f"i1{i}", "type": "click", "time": t}
                      for i, t in enumerate([45, 55, 65])])
    full = store.user_event_columns("u")
    assert full["time"].tolist() == sorted(times)
    limited = store.user_event_columns("u", limit=5)
    assert limited.keys() == full.keys()
    for name in full:
        assert limited[name].tolist() == full[name][-5:].tolist()
    assert limited["time"].dtype == np.int64 and limited["event"].dtype == np.int8
    assert limited["item_id"].tolist() == ["i2", "i3", "i0", "i5", "i7"]
    both = store.user_events("u", "s", limit=4)
    pd.testing.assert_frame_equal(both, store.user_events("u", "s").iloc[-4:].reset_index(drop=True))
    assert both["item_id"].tolist() == ["i11", "i5", "i7", "i12"]
    assert store.user_event_columns("u", limit=100)["time"].tolist() == sorted(times)
    assert len(store.user_events("u", limit=0)) == 0 and store.user_events("nobody", limit=3).empty
    store.close()


def test_history_limit_reads_only_the_index_tail(tmp_path):
    """The limited read walks events_by_user backwards: no sort, so its cost does not grow with the history."""
    store = Store.open(tmp_path)
    plan = store._read(
        "EXPLAIN QUERY PLAN SELECT time, rowid, item_id, event, query FROM events WHERE user_key = ? "
        "ORDER BY time DESC, rowid DESC LIMIT ?", ("k", 5))
    details = " ".join(row[-1] for row in plan)
    assert "events_by_user" in details and "TEMP B-TREE" not in details
    store.close()


def test_patch_item_changes_only_the_given_fields(tmp_path):
    store = Store.open(tmp_path)
    store.upsert_items(make_catalog().frame)
    before, version = store.item("i3"), store.items_version()
    assert list(before.columns) == list(CATALOG_COLUMNS) and len(before) == 1
    row = store.patch_item("i3", {"available": False})
    expected = before.assign(available=False)
    pd.testing.assert_frame_equal(row, expected)
    pd.testing.assert_frame_equal(store.item("i3"), expected)
    assert store.items_version() == version + 1
    assert store.items_frame(changed_since=version)["item_id"].tolist() == ["i3"]
    row = store.patch_item("i3", {"price": 12.5, "created_at": pd.Timestamp("2024-05-01 10:00:00"),
                                  "attributes": {"colour": "red"}, "brand": None})
    assert row["price"][0] == 12.5 and row["created_at"][0] == pd.Timestamp("2024-05-01 10:00:00")
    assert row["attributes"][0] == {"colour": "red"} and pd.isna(row["brand"][0])
    assert row["title"][0] == before["title"][0] and not row["available"][0]
    pd.testing.assert_frame_equal(store.items_frame().drop(columns="deleted").iloc[[3]].reset_index(drop=True), row)
    assert store.items_version() == version + 2
    assert store.patch_item("no-such-item", {"available": False}) is None
    assert store.delete_item("i4") and store.patch_item("i4", {"title": "back?"}) is None
    assert store.item("i4") is None and store.item("no-such-item") is None
    assert store.items_version() == version + 3  # the delete; the refused patches wrote nothing
    with pytest.raises(ValueError, match="item_id"):
        store.patch_item("i3", {"item_id": "renamed"})
    with pytest.raises(ValueError, match="available"):
        store.patch_item("i3", {"available": None})
    pd.testing.assert_frame_equal(store.patch_item("i3", {}), store.item("i3"))  # nothing to change: nothing written
    assert store.items_version() == version + 3
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
    assert sum(added.accepted for added in results) == 6 * 10 * 20 == store.counts()["events"]
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
