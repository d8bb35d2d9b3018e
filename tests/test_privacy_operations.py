"""Privacy operations through the API and the CLI: export (GET /users/{id}/export), retention (coldrec retrain
--retention-days), key rotation (coldrec rotate-key) while a service answers, and the epsilon /healthz shows.

The store-level promises of both backends (export, purge, re-keying) are in test_store_contract.py.
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from coldrec.model.versions import ModelVersions, read_info
from coldrec.serve.app import create_app
from coldrec.serve.engine import Engine
from coldrec.serve.privacy import Pseudonymizer
from coldrec.serve.settings import Settings
from coldrec.serve.store import Store
from tests.synthetic import make_catalog, make_log, publish_synthetic_model

USERS = [f"u{u}" for u in range(0, 60, 7)]


def run_cli(*args: str) -> tuple[int, str]:
    from typer.testing import CliRunner

    from coldrec import cli

    result = CliRunner().invoke(cli.app, list(args))
    return result.exit_code, " ".join(result.output.split())


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A `coldrec build`-style folder: version 1 (exact aggregates) and a seeded store, copied by each test."""
    return publish_synthetic_model(tmp_path_factory.mktemp("built") / "shop")


@pytest.fixture
def shop(built, tmp_path, monkeypatch):
    """The built folder, its store seeded under a key file of this test's own (rotation rewrites it)."""
    key_file = tmp_path / "keys" / "id.key"
    monkeypatch.setenv("COLDREC_ID_KEY_FILE", str(key_file))
    root = tmp_path / "shop"
    shutil.copytree(built, root)
    store = Store.open(root / "state")
    store.seed(make_catalog(), make_log())
    yield root, store, key_file
    store.close()


@pytest.fixture
def client(shop):
    root, store, _ = shop
    versions = ModelVersions(root)
    app = create_app(Engine.load(versions.current_path()), store, Settings(state_dir=root / "state"), versions,
                     versions.current())
    with TestClient(app) as client:
        yield client


def lists(client: TestClient, users=USERS) -> dict[str, list[str]]:
    return {user: [r["item_id"] for r in client.get("/recommend", params={"user": user, "n": 10}).json()["items"]]
            for user in users}


def stored_keys(root: Path) -> set[str]:
    with sqlite3.connect(root / "state" / "coldrec.sqlite") as connection:
        return {key for (key,) in connection.execute("SELECT user_key FROM events UNION SELECT user_key FROM profiles")}


def test_export_returns_everything_the_store_holds_about_a_user(client):
    events = [{"event_id": f"x{i}", "user_id": "ann", "item_id": f"i{i}", "type": "purchase", "time": 1_700_000_000 + i}
              for i in range(3)] + [{"event_id": "q1", "user_id": "ann", "item_id": None, "type": "search",
                                     "query": "red stapler", "time": 1_700_000_010},
                                    {"event_id": "other", "user_id": "bob", "item_id": "i5", "type": "view"}]
    assert client.post("/events", json={"events": events}).json()["accepted"] == 5
    client.put("/users/ann/profile", json={"interests": ["Paper Goods"]})
    exported = client.get("/users/ann/export").json()
    assert exported["user_id"] == "ann" and exported["interests"] == ["Paper Goods"]
    assert [e["event_id"] for e in exported["events"]] == ["x0", "x1", "x2", "q1"]  # bob's is not there
    assert exported["events"][0] == {"event_id": "x0", "item_id": "i0", "time": 1_700_000_000.0, "type": "purchase",
                                     "query": None}
    assert exported["events"][3]["query"] == "red stapler"
    assert exported["user_key"] not in ("ann", "") and len(exported["user_key"]) == 32  # the pseudonym, not the id
    # the counterpart of DELETE: after an erasure there is nothing left to export
    assert client.delete("/users/ann").json() == {"events": 4, "profiles": 1}
    assert client.get("/users/ann/export").json()["events"] == []
    nobody = client.get("/users/nobody/export").json()
    assert (nobody["interests"], nobody["events"]) == ([], [])


def test_export_needs_the_write_key(tmp_path):
    store = Store.open(tmp_path / "state", "k")
    store.upsert_items(make_catalog().frame)
    settings = Settings(state_dir=tmp_path / "state", api_key="write-key", read_key="read-key")
    app = create_app(Engine.build(make_catalog(), make_log(), encoder=_hashing()), store, settings)
    with TestClient(app) as client:
        assert client.get("/users/ann/export", headers={"X-API-Key": "read-key"}).status_code in (401, 403)
        assert client.get("/users/ann/export", headers={"X-API-Key": "write-key"}).status_code == 200
    store.close()


def _hashing():
    from coldrec.serve.synthetic import HashingEncoder

    return HashingEncoder(256)


def test_rotate_key_keeps_every_shoppers_lists_while_the_service_answers(shop, client):
    root, store, key_file = shop
    before_keys = stored_keys(root)
    old_key = key_file.read_text()
    client.post("/events", json={"events": [{"event_id": "late", "user_id": USERS[0], "item_id": "i20",
                                             "type": "purchase"}]})
    before = lists(client)
    code, said = run_cli("rotate-key", "--store", str(root / "state"), "--id-key-file", str(key_file))
    assert code == 0 and "version 1 -> 2" in said, said
    # the service (its own store object, as another process would be) follows the store's key version
    assert lists(client) == before
    after_keys = stored_keys(root)
    assert len(after_keys) == len(before_keys) and not after_keys & before_keys  # every key re-keyed, none lost
    assert Pseudonymizer(old_key).user(USERS[0]) not in after_keys  # the old key alone links no row any more
    assert store.export_user(USERS[0])["events"][-1]["event_id"] == "late"  # history kept, raw id still finds it
    # a write after the rotation lands under the new key, beside the user's history
    client.post("/events", json={"events": [{"event_id": "later", "user_id": USERS[0], "item_id": "i21",
                                             "type": "view"}]})
    assert [e["event_id"] for e in store.export_user(USERS[0])["events"]][-2:] == ["late", "later"]
    assert len(stored_keys(root)) == len(after_keys)
    # a process still holding only the old key is told, not silently given empty histories
    stale = Store.open(root / "state", old_key.strip())
    with pytest.raises(RuntimeError, match="rotated to version 2"):
        stale.user_events(USERS[0])
    stale.close()
    # again: version 3, the lists (u0's with its new event) still the same
    before = lists(client)
    code, said = run_cli("rotate-key", "--store", str(root / "state"), "--id-key-file", str(key_file))
    assert code == 0 and "version 2 -> 3" in said, said
    assert lists(client) == before


def test_a_rotation_that_stopped_after_writing_its_key_link_is_finished_with_that_link(shop):
    from coldrec.serve.privacy import add_key_link

    root, store, key_file = shop
    history = store.user_events(USERS[2])
    chain = add_key_link(key_file)  # the rotation's first step, then a crash before the rows changed
    assert len(store.user_events(USERS[2])) == len(history)  # the store's version (1) still keys with one link
    code, said = run_cli("rotate-key", "--store", str(root / "state"), "--id-key-file", str(key_file))
    assert code == 0 and "version 1 -> 2" in said, said
    assert key_file.read_text().strip() == chain  # no second new link
    assert store.user_events(USERS[2]).equals(history)


def test_retrain_with_retention_purges_old_events_from_the_store_and_the_new_version(shop):
    root, store, _ = shop
    log = make_log()
    # the older half of the seeded log (events 60 s apart) is past the retention, with 30 s for the command to start
    cutoff = float(log.time[len(log) // 2]) - 30
    days = (time.time() - cutoff) / 86_400
    assert store.counts()["events"] == len(log)
    code, said = run_cli("retrain", "--model", str(root), "--retention-days", f"{days:.9f}")
    assert code == 0 and "version 2 (was 1)" in said and "past the retention deleted" in said, said
    kept = int((log.time >= cutoff).sum())
    assert store.counts()["events"] == kept
    assert (store.events_log()["time"] >= int(cutoff)).all()
    assert read_info(ModelVersions(root).current_path())["events"] == kept  # the new version never saw them
    with sqlite3.connect(root / "state" / "coldrec.sqlite") as connection:  # gone from the file, not just hidden
        assert connection.execute("SELECT COUNT(*) FROM events WHERE time < ?", (cutoff,)).fetchone()[0] == 0


def test_a_private_build_records_its_epsilon_in_the_manifest_and_healthz(tmp_path):
    import json

    from coldrec.serve.synthetic import HashingEncoder

    engine = Engine.build(make_catalog(), make_log(n_users=200), encoder=HashingEncoder(256),
                          model_params={"epsilon": 1.0, "contribution_bound": 4})
    engine.save(tmp_path / "model")
    privacy = json.loads((tmp_path / "model" / "manifest.json").read_text())["extra"]["privacy"]
    assert privacy["epsilon"] == 1.0 and privacy["contribution_bound"] == 4
    # by default all of epsilon goes to popularity: no co-purchase release, so pure DP (delta 0)
    assert (privacy["popularity_epsilon"], privacy["pairs_epsilon"], privacy["delta"]) == (1.0, 0.0, 0.0)
    store = Store.open(tmp_path / "state", "k")
    with TestClient(create_app(Engine.load(tmp_path / "model"), store, Settings(state_dir=tmp_path / "state"))) as c:
        assert c.get("/healthz").json()["privacy"] == privacy
    store.close()


def test_build_refuses_privacy_settings_that_change_nothing_or_cannot_hold(tmp_path):
    out = str(tmp_path / "model")
    code, text = run_cli("build", "-d", "synthetic", "--out", out, "--pair-share", "0.25")
    assert code == 2 and "--epsilon" in text and "changes nothing" in text
    code, text = run_cli("build", "-d", "synthetic", "--out", out, "--epsilon", "1", "--pair-share", "1.5")
    assert code == 2 and "--pair-share" in text
    code, text = run_cli("build", "-d", "synthetic", "--out", out, "--epsilon", "1", "--contribution-bound", "100000")
    assert code == 2 and "--contribution-bound" in text
    assert not (tmp_path / "model").exists()
