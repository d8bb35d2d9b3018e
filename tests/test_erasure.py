"""Erasure leaves nothing on disk: after delete_user / delete_session no file of the state dir holds a byte of it.

Every check is a byte scan of every file in the state dir (the database, its -wal and -shm),
with other shoppers' data still there and readable beside it.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from coldrec.serve.privacy import KEY_FILE, KEY_FILE_ENV
from coldrec.serve.store import ErasurePending, Store
from tests.synthetic import make_catalog

ERASED_USER = "carol.raw-user-id@example.com"
ERASED_SESSION = "raw-session-carol-5e1d"
KEPT_USER = "bob.raw-user-id@example.com"
KEPT_SESSION = "raw-session-bob-77aa"
OTHERS = ["alice.raw@example.com", KEPT_USER, "dave.raw@example.com"]
ERASED_INTEREST = "carol-unique-interest-xyz"


@pytest.fixture(autouse=True)
def key_file(tmp_path, monkeypatch):
    """The key lives outside the state dir, in this test's tmp dir (never the real ~/.config)."""
    path = tmp_path / "config" / KEY_FILE
    monkeypatch.setenv(KEY_FILE_ENV, str(path))
    monkeypatch.delenv("COLDREC_ID_KEY", raising=False)
    return path


LABELS = {OTHERS[0]: "alice", KEPT_USER: "bob", OTHERS[2]: "dave", ERASED_USER: "carol",
          ERASED_SESSION: "carol-s", KEPT_SESSION: "bob-s"}


def seed(store: Store) -> dict[str, list[str]]:
    """Items, then users' and sessions' events interleaved over many batches (so pages mix shoppers), profiles
    (carol's long enough for overflow pages, and rewritten), a WAL restart, and other writes after it.
    The event ids of each shopper, by raw id."""
    store.upsert_items(make_catalog().frame)
    event_ids: dict[str, list[str]] = {shopper: [] for shopper in LABELS}
    for batch in range(30):
        events = []
        for n in range(25):
            for shopper, label in LABELS.items():
                event_id = f"evt-{label}-{batch * 25 + n:04d}"
                event_ids[shopper].append(event_id)
                who = {"session_id": shopper} if label.endswith("-s") else {"user_id": shopper}
                events.append({"event_id": event_id, **who, "item_id": f"i{(batch + n) % 20}", "type": "view",
                               "time": 1_700_000_000 + batch * 100 + n})
        assert store.add_events(events).accepted == len(events)
        if batch == 10:
            store.set_profile(ERASED_USER, [f"{ERASED_INTEREST}-first-version"])
    for user in OTHERS:
        store.set_profile(user, [f"{LABELS[user]}-unique-interest-xyz"])
    store.set_profile(ERASED_USER, [ERASED_INTEREST] + [f"{ERASED_INTEREST}-{i:03d}" * 4 for i in range(100)])
    store._connection().execute("PRAGMA wal_checkpoint(RESTART)")  # the next writes overwrite the WAL's first frames
    store.upsert_items(pd.DataFrame({"item_id": ["late-item"], "title": ["added after the restart"]}))
    store.add_events([{"event_id": "evt-bob-late", "user_id": KEPT_USER, "item_id": "late-item", "type": "cart"}])
    event_ids[KEPT_USER].append("evt-bob-late")
    return event_ids


def erased_needles(store: Store, event_ids: dict[str, list[str]]) -> list[str]:
    return [store.ids.user(ERASED_USER), store.ids.session(ERASED_SESSION), ERASED_USER, ERASED_SESSION,
            ERASED_INTEREST, *event_ids[ERASED_USER], *event_ids[ERASED_SESSION]]


def found(state_dir: Path, needles: list[str]) -> dict[str, list[str]]:
    """The needles each file of the state dir holds, by file name (only files holding any)."""
    hits = {}
    for path in sorted(p for p in state_dir.rglob("*") if p.is_file()):
        data = path.read_bytes()
        held = [needle for needle in needles if needle.encode() in data]
        if held:
            hits[path.name] = held
    return hits


def assert_erased(store: Store, state_dir: Path, event_ids: dict[str, list[str]]) -> None:
    assert not (state_dir / KEY_FILE).exists()
    files = {p.name for p in state_dir.iterdir()}
    assert "coldrec.sqlite" in files
    assert found(state_dir, erased_needles(store, event_ids)) == {}
    # the others' data is still there: on disk, and read back
    kept = [store.ids.user(KEPT_USER), store.ids.session(KEPT_SESSION), "bob-unique-interest-xyz",
            *event_ids[KEPT_USER][:50], *event_ids[KEPT_SESSION][:50], "evt-bob-late"]
    on_disk = {needle for held in found(state_dir, kept).values() for needle in held}
    assert on_disk == set(kept)
    assert "late-item" in store.user_events(KEPT_USER)["item_id"].tolist()
    assert len(store.user_events(KEPT_USER)) == len(event_ids[KEPT_USER])
    assert len(store.user_events(session_id=KEPT_SESSION)) == len(event_ids[KEPT_SESSION])
    assert store.profile(KEPT_USER) == ["bob-unique-interest-xyz"]
    assert store.user_events(ERASED_USER).empty and store.user_events(session_id=ERASED_SESSION).empty
    assert store.profile(ERASED_USER) == []
    assert store.stored_event_ids(event_ids[ERASED_USER] + event_ids[ERASED_SESSION]) == []


def test_erasure_leaves_no_byte_of_the_shopper_in_any_file(tmp_path):
    state = tmp_path / "state"
    store = Store.open(state)
    event_ids = seed(store)
    assert found(state, erased_needles(store, event_ids))  # the scan sees the data before the erasure
    assert store.delete_user(ERASED_USER) == {"events": len(event_ids[ERASED_USER]), "profiles": 1}
    assert store.delete_session(ERASED_SESSION) == {"events": len(event_ids[ERASED_SESSION])}
    assert_erased(store, state, event_ids)
    # later writes bring nothing back, and the store still works as before
    store.add_events([{"event_id": "evt-alice-after", "user_id": OTHERS[0], "item_id": "i1", "type": "view"}])
    assert found(state, erased_needles(store, event_ids)) == {}
    store.close()
    reopened = Store.open(state)
    assert_erased(reopened, state, event_ids)
    reopened.close()


def test_every_connection_zeroes_what_it_deletes(tmp_path):
    store = Store.open(tmp_path)
    connections = [store._connection()]
    thread = threading.Thread(target=lambda: connections.append(store._connection()))
    thread.start()
    thread.join()
    assert len(connections) == 2 and connections[0] is not connections[1]
    for connection in connections:
        assert connection.execute("PRAGMA secure_delete").fetchone()[0] == 1
    store.close()


def test_erasure_waits_for_a_read_that_began_before_it(tmp_path):
    """Readers on other threads: the store's own (short reads, nonstop) and a raw connection holding a read
    transaction open across the erasure; the erasure returns once that one ends, and no byte is left."""
    state = tmp_path / "state"
    store = Store.open(state)
    event_ids = seed(store)
    stop, held, errors = threading.Event(), threading.Event(), []
    seen_during: list[int] = []

    def keep_reading():
        try:
            while not stop.is_set():
                assert len(store.user_event_columns(KEPT_USER, limit=50)["item_id"]) == 50
                assert store.profile(KEPT_USER) == ["bob-unique-interest-xyz"]
                store.items_version()
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    def hold_a_snapshot():
        reader = sqlite3.connect(store.path, isolation_level=None)
        try:
            reader.execute("BEGIN")
            seen_during.append(reader.execute("SELECT COUNT(*) FROM events").fetchone()[0])
            held.set()
            time.sleep(1.0)
            # its snapshot predates the erasure: it still sees the rows, so their bytes must wait for it
            seen_during.append(reader.execute("SELECT COUNT(*) FROM events").fetchone()[0])
            reader.execute("COMMIT")
        finally:
            reader.close()

    readers = [threading.Thread(target=keep_reading) for _ in range(3)] + [threading.Thread(target=hold_a_snapshot)]
    for reader in readers:
        reader.start()
    assert held.wait(10)
    started = time.monotonic()
    counts = store.delete_user(ERASED_USER)
    waited = time.monotonic() - started
    store.delete_session(ERASED_SESSION)
    stop.set()
    for reader in readers:
        reader.join()
    assert errors == []
    assert counts["events"] == len(event_ids[ERASED_USER])
    assert seen_during[0] == seen_during[1]
    assert 0.3 < waited < 5
    assert_erased(store, state, event_ids)
    store.close()


def test_erasure_with_a_second_store_on_the_same_file(tmp_path):
    """Another server process shares the file: its Store reads and writes while this one erases (and the other
    way round), and neither leaves a byte behind."""
    state = tmp_path / "state"
    store = Store.open(state)
    event_ids = seed(store)
    other = Store.open(state)
    assert other.ids.user(ERASED_USER) == store.ids.user(ERASED_USER)
    stop, errors = threading.Event(), []
    written: list[str] = []

    def work_in_the_other_process():
        try:
            n = 0
            while not stop.is_set():
                event_id = f"evt-bob-other-{n:04d}"
                assert other.add_events([{"event_id": event_id, "user_id": KEPT_USER, "item_id": "i3",
                                          "type": "click", "time": 1_800_000_000 + n}]).accepted == 1
                written.append(event_id)
                assert len(other.user_event_columns(KEPT_USER, limit=20)["item_id"]) == 20
                other.profile(ERASED_USER)
                n += 1
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    worker = threading.Thread(target=work_in_the_other_process)
    worker.start()
    time.sleep(0.2)
    assert store.delete_user(ERASED_USER)["profiles"] == 1
    time.sleep(0.1)
    assert other.delete_session(ERASED_SESSION) == {"events": len(event_ids[ERASED_SESSION])}
    time.sleep(0.1)
    stop.set()
    worker.join()
    assert errors == [] and len(written) > 3
    event_ids[KEPT_USER].extend(written)
    assert_erased(store, state, event_ids)
    assert other.user_events(ERASED_USER).empty and other.profile(ERASED_USER) == []
    assert other.stored_event_ids(written) == written
    other.close()
    store.close()


def test_a_read_outlasting_the_wait_is_reported_and_purged_when_it_ends(tmp_path):
    state = tmp_path / "state"
    store = Store.open(state)
    store.purge_wait_s = 0.3
    event_ids = seed(store)
    reader = sqlite3.connect(store.path, isolation_level=None, check_same_thread=False)
    reader.execute("BEGIN")
    reader.execute("SELECT COUNT(*) FROM events").fetchone()
    with pytest.raises(ErasurePending) as pending:
        store.delete_user(ERASED_USER)
    assert pending.value.counts == {"events": len(event_ids[ERASED_USER]), "profiles": 1}
    assert store.user_events(ERASED_USER).empty and store.profile(ERASED_USER) == []  # gone from every query
    assert found(state, erased_needles(store, event_ids))  # honest: the old copies are still there
    reader.execute("COMMIT")
    reader.close()
    carol = [store.ids.user(ERASED_USER), ERASED_INTEREST, *event_ids[ERASED_USER]]
    deadline = time.monotonic() + 10
    while (found(state, carol) or store._purger is not None) and time.monotonic() < deadline:
        time.sleep(0.1)  # the background purge, nothing else: no write or erasure in between
    assert found(state, carol) == {} and store._purger is None
    assert store.delete_session(ERASED_SESSION)["events"] == len(event_ids[ERASED_SESSION])
    assert_erased(store, state, event_ids)
    store.close()


def delete_rows_only(store: Store, meta_sql: str) -> sqlite3.Connection:
    """Delete the erased user's and session's rows with no rewrite or purge, run `meta_sql`, close the store;
    returns an idle connection that keeps the WAL (closing the store alone would remove it): close it after."""
    keeps_the_wal = sqlite3.connect(store.path)
    keeps_the_wal.execute("SELECT 1").fetchone()
    key, session = store.ids.user(ERASED_USER), store.ids.session(ERASED_SESSION)
    with store._write() as connection:
        for sql in ("DELETE FROM events WHERE user_key = ?", "DELETE FROM profiles WHERE user_key = ?"):
            connection.execute(sql, (key,))
        connection.execute("DELETE FROM events WHERE user_key = ?", (session,))
        connection.execute(meta_sql)
    store.close()
    return keeps_the_wal


def test_opening_completes_an_erasure_a_crash_interrupted(tmp_path):
    """The delete committed, then the process died before the rewrite and the purge: the next open does both."""
    state = tmp_path / "state"
    store = Store.open(state)
    event_ids = seed(store)
    # what _erase commits before its rewrite and purge
    keeps_the_wal = delete_rows_only(store, "UPDATE meta SET value = value + 1 WHERE key = 'erasures'")
    assert found(state, erased_needles(store, event_ids))
    reopened = Store.open(state)
    assert_erased(reopened, state, event_ids)
    reopened.close()
    keeps_the_wal.close()


def test_a_store_from_before_this_erasure_is_rewritten_once_on_opening(tmp_path):
    """An older version's erasures left rows in the files (the WAL, stale copies in pages): the first open
    rewrites the file, later opens do not."""
    state = tmp_path / "state"
    store = Store.open(state)
    event_ids = seed(store)
    # the old delete_user, then the old meta table (items_version only)
    keeps_the_wal = delete_rows_only(store, "DELETE FROM meta WHERE key IN ('erasures', 'scrubbed')")
    assert found(state, erased_needles(store, event_ids))
    reopened = Store.open(state)
    assert_erased(reopened, state, event_ids)
    assert reopened._read("SELECT key, value FROM meta WHERE key IN ('erasures', 'scrubbed') ORDER BY key") == [
        ("erasures", 1), ("scrubbed", 1)]
    reopened.close()
    keeps_the_wal.close()
