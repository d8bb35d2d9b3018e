"""Retraining from the store: a new version from what the store holds (no data set), a running service switching
to it (and back) without a failed request, the behaviour learnt through the API, and erasure honoured.

The shop is tests/synthetic.py's (two clusters; every shopper in make_log buys within one cluster, so a pair
across the clusters is co-bought only by the events a test posts), with coldrec's hashing encoder (plain data,
saved with the model: nothing loads a language model).
"""

from __future__ import annotations

import gc
import shutil
import threading
import time
import weakref
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from coldrec.model import data_fingerprint
from coldrec.model.versions import ModelVersions
from coldrec.serve.app import create_app
from coldrec.serve.engine import Engine
from coldrec.serve.retrain import retrain, retrain_every, training_data
from coldrec.serve.settings import Settings
from coldrec.serve.store import Store
from tests.synthetic import make_catalog, make_log, publish_synthetic_model

#: a pair nobody in make_log buys together (clusters A and B)
CROSS = ("i1", "i14")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A `coldrec build`-style folder: version 1 and a seeded store (copied by each test)."""
    root = publish_synthetic_model(tmp_path_factory.mktemp("built") / "shop")
    store = Store.open(root / "state")
    store.seed(make_catalog(), make_log())
    store.close()
    return root


@pytest.fixture
def shop(built, tmp_path):
    root = tmp_path / "shop"
    shutil.copytree(built, root)
    store = Store.open(root / "state")
    yield root, store
    store.close()


@pytest.fixture
def service(shop):
    root, store = shop
    versions = ModelVersions(root)
    app = create_app(Engine.load(versions.current_path()), store, Settings(state_dir=root / "state"), versions,
                     versions.current())
    app.state.live.watch_every_s = 0.05
    with TestClient(app) as client:
        yield client, app.state.live, root, store


def purchases(user: str, items, start: int = 2_000_000) -> list[dict]:
    return [{"event_id": f"{user}-{item}-{start}", "user_id": user, "item_id": item, "type": "purchase",
             "time": start + i} for i, item in enumerate(items)]


def positions(model, *item_ids) -> list[int]:
    return [int(p) for p in model.catalog.index_of(list(item_ids))]


def co_bought(model, a: str, b: str) -> tuple[float, float]:
    """The item-kNN co-purchase evidence between two items, both ways: what the item-kNN candidate source of a
    shopper who knows one of them proposes the other by (ColdStartRecommender.signals, public and read-only)."""
    pa, pb = positions(model, a, b)
    similarity = model.signals.similarity
    return float(similarity[pa, pb]), float(similarity[pb, pa])


def switched(client, live, version: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while client.get("/healthz").json()["model_version"] != version:
        assert time.monotonic() < deadline, f"still serving {live.current.version}, not {version}"
        time.sleep(0.05)


# ------------------------------------------------------------------ from the store alone


def test_retrain_from_the_store_alone(shop, monkeypatch):
    """The refit reads the store only (the data set loaders are never called) and publishes version 2: the same
    recommender kind, parameters and encoder, fitted on the store's items and events."""
    import coldrec.data.datasets as datasets

    root, store = shop
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("the data set was read"))
    store.upsert_items(make_catalog().frame.iloc[:0])  # no-op write: the items_version moves on
    store.delete_item("i3")
    result = retrain(root, store)
    assert (result.version, result.previous, result.kind) == (2, 1, "coldrec")
    assert result.events == len(make_log()) and result.deleted_items == 1
    versions = ModelVersions(root)
    assert versions.current() == 2 and versions.info(2)["items_version"] == store.items_version()
    old, new = Engine.load(versions.path(1)), Engine.load(versions.path(2))
    assert new.model.get_params() == old.model.get_params()
    assert new.encoder.fingerprint == old.encoder.fingerprint
    assert list(new.catalog.ids) == list(make_catalog().ids) and not new.has_item("i3") and new.has_item("i4")
    catalog, log, _, _ = training_data(store.snapshot())
    assert new.fingerprint == data_fingerprint(catalog.ids, log.item, log.time, log.event)


def test_a_store_seeded_from_a_log_without_times_retrains_on_event_order_only(tmp_path):
    """A shop built from sequence files: its store remembers that the seeded times are positions, so a retrain
    fits an untimed log (no recency computed from made-up dates), live events after the seeded ones."""
    catalog, log = make_catalog(), make_log()
    untimed = type(log)(**{**log.__dict__, "timed": False})
    store = Store.open(tmp_path / "state", "untimed-key")
    store.seed(catalog, untimed)
    store.add_events(purchases("late-shopper", [str(catalog.ids[0])]))
    snapshot = store.snapshot()
    assert not snapshot.timed
    _, fitted, _, _ = training_data(snapshot)
    assert not fitted.timed and len(fitted) == len(log) + 1
    timed_store = Store.open(tmp_path / "timed", "timed-key")
    timed_store.seed(catalog, log)
    assert timed_store.snapshot().timed and training_data(timed_store.snapshot())[1].timed
    store.close()
    timed_store.close()


def test_retrain_and_rollback_commands(shop):
    from typer.testing import CliRunner

    from coldrec import cli

    root, _ = shop
    runner = CliRunner()

    def run(*args: str) -> tuple[int, str]:
        result = runner.invoke(cli.app, list(args))
        return result.exit_code, " ".join(result.output.split())  # the console wraps long lines

    code, said = run("retrain", "--model", str(root), "--keep", "1")
    assert code == 0 and "version 2 (was 1)" in said, said
    assert ModelVersions(root).versions() == [2]
    shutil.copytree(root / "versions" / "2", root / "versions" / "1")  # an older version, to roll back to
    code, said = run("rollback", "--model", str(root))
    assert code == 0 and "now serving version 1 (was 2)" in said, said
    code, said = run("rollback", "--model", str(root))
    assert code == 2 and "no version older than 1" in said, said
    code, said = run("retrain", "--model", str(root / "nowhere"))
    assert code == 2 and "not a folder written by `coldrec build`" in said, said


# ------------------------------------------------------------------ a running service switches


def test_a_running_service_switches_versions_without_a_failed_request(service):
    """Readers and writers run while a retrain publishes version 2 and a rollback goes back to 1: every request
    succeeds, /healthz names the version served, an item added during the switch is kept, and the replaced
    engine is freed without the cyclic garbage collector."""
    client, live, root, store = service
    assert client.get("/healthz").json()["model_version"] == 1
    first = weakref.ref(live.current.engine)
    stop, statuses = threading.Event(), []

    def read(user: str) -> None:
        while not stop.is_set():
            statuses.append(client.get("/recommend", params={"user": user, "n": 5}).status_code)
            statuses.append(client.get("/search", params={"q": "router cable"}).status_code)

    readers = [threading.Thread(target=read, args=(f"u{i}",)) for i in range(3)]
    for reader in readers:
        reader.start()
    try:
        retrain(root, Store.open(root / "state"))  # as `coldrec retrain` would, from its own connection
        added = client.post("/items", json={"items": [{"item_id": "during", "title": "router cable during"}]})
        switched(client, live, 2)
        assert added.status_code == 200
        ModelVersions(root).rollback()
        switched(client, live, 1)
    finally:
        stop.set()
        for reader in readers:
            reader.join()
    assert statuses and set(statuses) == {200}, {s: statuses.count(s) for s in set(statuses)}
    assert live.switches == 2
    assert client.get("/similar/during").status_code == 200  # added while the versions changed: in each engine
    gc.disable()  # freed by reference counting alone
    try:
        assert first() is None
    finally:
        gc.enable()


def test_a_version_served_with_another_store_reads_all_of_its_items(shop, tmp_path):
    """A retrained version skips re-reading the items of the store it was trained from, never another store's."""
    root, store = shop
    retrain(root, store)
    other = Store.open(tmp_path / "other")
    other.upsert_items(_item("only-here"))  # items_version 1, as old as the snapshot version 2 was trained on
    assert ModelVersions(root).info(2)["items_version"] >= other.items_version()
    other.seed(make_catalog(), make_log())
    versions = ModelVersions(root)
    app = create_app(Engine.load(versions.current_path()), other, Settings(state_dir=tmp_path / "other"), versions,
                     versions.current())
    with TestClient(app) as client:
        assert client.get("/similar/only-here").status_code == 200
    other.close()


def _item(item_id: str):
    from coldrec.data import ItemCatalog

    return ItemCatalog.from_records([item_id], [f"router cable {item_id}"]).frame


def test_a_version_that_does_not_load_is_skipped(service):
    client, live, root, _ = service
    versions = ModelVersions(root)
    versions.publish(lambda folder: shutil.copytree(versions.path(1), folder))
    (versions.path(2) / "state.json").write_text("{}")  # corrupt: its checksum no longer matches
    assert live.check() is False and client.get("/healthz").json()["model_version"] == 1
    assert client.get("/recommend", params={"user": "u1"}).status_code == 200


# ------------------------------------------------------------------ what a retrain learns


def test_items_co_bought_through_the_api_become_co_purchase_candidates(service):
    client, live, root, store = service
    model = live.current.engine.model
    assert co_bought(model, *CROSS) == (0.0, 0.0)
    events = [e for user in ("x1", "x2", "x3") for e in purchases(user, CROSS)]
    assert client.post("/events", json={"events": events}).json()["accepted"] == 6
    assert co_bought(live.current.engine.model, *CROSS) == (0.0, 0.0)  # events alone refit nothing
    retrain(root, store)
    switched(client, live, 2)
    forward, backward = co_bought(live.current.engine.model, *CROSS)
    assert forward > 0 and backward > 0


def test_an_item_added_and_bought_through_the_api_gains_factors_and_popularity(service):
    client, live, root, store = service
    body = {"items": [{"item_id": "gadget", "title": "router keyboard gadget", "category": "Office > Electronics"}]}
    assert client.post("/items", json=body).status_code == 200
    model = live.current.engine.model
    (at,) = positions(model, "gadget")
    assert model.is_new(np.array([at]))[0] and model.popularity()[at] == 0
    assert not model.signals.item_factors[at].any()
    events = [e for i in range(4) for e in purchases(f"buyer{i}", ["gadget", "i13", "i15"], start=2_000_000 + 10 * i)]
    assert client.post("/events", json={"events": events}).json()["accepted"] == 12
    retrain(root, store)
    switched(client, live, 2)
    model = live.current.engine.model
    (at,) = positions(model, "gadget")
    assert not model.is_new(np.array([at]))[0]
    assert model.popularity()[at] > 0 and model.signals.item_factors[at].any()
    assert co_bought(model, "gadget", "i13")[0] > 0


# ------------------------------------------------------------------ erasure


def test_an_erased_user_is_in_no_version_trained_after_the_erasure(service):
    """eve alone co-buys a cross-cluster pair: version 2 learns it; after DELETE /users/eve, version 3 holds no
    trace of it, and its training log is exactly the store's without her events."""
    client, live, root, store = service
    assert client.post("/events", json={"events": purchases("eve", CROSS) * 1}).json()["accepted"] == 2
    retrain(root, store)
    switched(client, live, 2)
    assert co_bought(live.current.engine.model, *CROSS)[0] > 0
    with_eve = training_data(store.snapshot())[1]
    assert client.delete("/users/eve").json() == {"events": 2, "profiles": 0}
    result = retrain(root, store)
    switched(client, live, 3)
    model = live.current.engine.model
    assert co_bought(model, *CROSS) == (0.0, 0.0)
    catalog, log, _, _ = training_data(store.snapshot())
    assert len(log) == len(with_eve) - 2 == result.events
    assert live.current.engine.fingerprint == data_fingerprint(catalog.ids, log.item, log.time, log.event)
    assert live.current.engine.fingerprint != data_fingerprint(catalog.ids, with_eve.item, with_eve.time,
                                                               with_eve.event)


def test_an_erasure_during_the_fit_makes_the_retrain_fit_again(shop, monkeypatch):
    """The snapshot was read before the erasure: that fit is thrown away, and the version published is fitted
    on a snapshot without her."""
    root, store = shop
    store.add_events(purchases("eve", CROSS))
    fits = []
    build = Engine.build.__func__

    def build_then_erase(cls, catalog, log, *args, **kwargs):
        fits.append(len(log))
        if len(fits) == 1:
            store.delete_user("eve")  # lands while the first fit runs
        return build(cls, catalog, log, *args, **kwargs)

    monkeypatch.setattr(Engine, "build", classmethod(build_then_erase))
    result = retrain(root, store)
    assert fits == [len(make_log()) + 2, len(make_log())] and result.events == len(make_log())
    assert co_bought(Engine.load(ModelVersions(root).path(result.version)).model, *CROSS) == (0.0, 0.0)


# ------------------------------------------------------------------ on a schedule


def test_retrain_every_runs_on_schedule_until_stopped():
    stop, runs = threading.Event(), []

    def run() -> None:
        runs.append(time.monotonic())
        if len(runs) == 2:
            raise RuntimeError("one failure is logged, and the schedule goes on")
        if len(runs) == 3:
            stop.set()

    retrain_every(0.05, run, stop=stop)
    assert len(runs) == 3


@pytest.mark.slow
def test_serve_retrain_every_publishes_and_the_server_switches(shop, tmp_path):
    """`coldrec serve --model ROOT --retrain-every 3s`: a low-priority child retrains, the server switches."""
    import os

    import httpx

    from coldrec.serve.process import free_port, start_server, stop_server

    root, store = shop
    store.close()
    port = free_port()
    repo = Path(__file__).resolve().parents[1]
    server = start_server(["--model", str(root), "--no-access-log", "--retrain-every", "3s"], port,
                          tmp_path / "server.log", env={**os.environ, "PYTHONPATH": str(repo)}, cwd=repo, timeout=120)
    try:
        deadline = time.monotonic() + 120
        while httpx.get(f"http://127.0.0.1:{port}/healthz").json()["model_version"] == 1:
            assert time.monotonic() < deadline, (tmp_path / "server.log").read_text()[-3000:]
            time.sleep(0.5)
    finally:
        stop_server(server)
    log = (tmp_path / "server.log").read_text()
    assert "Traceback" not in log, log[-3000:]


@pytest.mark.slow
def test_loadtest_swap_mode_sees_the_switch_with_no_failed_request(shop):
    """`coldrec loadtest --model ROOT --endpoint swap --workers 2` on a copy: /recommend before, during and after
    the retrain and the switch, every request answered; /healthz names version 1 before and 2 after."""
    import asyncio
    import os
    import secrets

    from coldrec.serve.loadtest import run_load
    from coldrec.serve.loadtest.runner import local_server, retrain_command, swap_copy

    root, store = shop
    store.close()
    env = {**os.environ, "COLDREC_ID_KEY": secrets.token_hex(16),
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    with swap_copy(root) as copy, local_server(["--model", str(copy), "--workers", "2", "--no-access-log"], "shop",
                                               log=lambda _: None, state=copy / "state", env=env) as url:
        phases = asyncio.run(run_load(url, endpoints=["swap"], modes=[], rate=20, concurrency=4, seconds=1.5,
                                      users=10, warmup=0.5, log=lambda _: None,
                                      swap=retrain_command(copy, env, copy / "retrain.log")))
    by_mode = {phase.mode: phase for phase in phases if phase.endpoint == "recommend"}
    assert not any(phase.errors for phase in phases), [p.summary() for p in phases]
    assert set(by_mode["before swap"].notes["versions"]) == {"1"}
    assert set(by_mode["after swap"].notes["versions"]) == {"2"}
    assert by_mode["whole run"].latencies_ms and ModelVersions(root).current() == 1  # the copy was retrained
