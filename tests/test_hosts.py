"""Several serving hosts on one PostgreSQL store: three `coldrec serve` hosts (A, B, C), each with its own port
and engines (B runs two worker processes), sharing the store and the model folder, as hosts behind a load balancer
would.

- an item written through A is in C's /similar and /recommend within a second (C hears the write by NOTIFY);
- a retrain from the store publishes a version that every host switches to;
- `kill -9` of A under event load loses no acknowledged event, and B and C keep answering.

The shop is tests/synthetic.py's with coldrec's hashing encoder (saved with the model: nothing loads a language
model), so a host starts in a few seconds.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

from coldrec.model.versions import ModelVersions
from coldrec.serve.engine import Engine
from coldrec.serve.process import free_port, start_server, stop_server
from coldrec.serve.store import PostgresStore, open_store
from tests.synthetic import make_catalog, make_log, publish_synthetic_model

REPO = Path(__file__).resolve().parents[1]
ID_KEY = "hosts-test-key"
HOSTS = ("a", "b", "c")
#: the bar: a write through one host is served by another within this long
VISIBLE_WITHIN_S = 1.0


@pytest.fixture(scope="module")
def store_url(postgres_url) -> str:
    """A fresh schema of the test database, seeded with the synthetic shop."""
    import psycopg

    schema = f"hosts_{secrets.token_hex(6)}"
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    url = f"{postgres_url}?options=-csearch_path%3D{schema}"
    store = open_store(url, ID_KEY)
    store.seed(make_catalog(), make_log())
    store.close()
    return url


@pytest.fixture(scope="module")
def model_root(tmp_path_factory) -> Path:
    return publish_synthetic_model(tmp_path_factory.mktemp("hosts") / "shop")


def environment() -> dict[str, str]:
    """Every host keys ids with the same key (as the README asks of hosts sharing a store)."""
    return {**os.environ, "PYTHONPATH": str(REPO), "COLDREC_ID_KEY": ID_KEY}


@pytest.fixture(scope="module")
def hosts(model_root, store_url, tmp_path_factory):
    """{name: (url, process)} of three servers on one store; stopped at the end of the module."""
    logs = tmp_path_factory.mktemp("host-logs")
    started: dict[str, tuple[str, subprocess.Popen]] = {}
    try:
        for name in HOSTS:
            port = free_port()
            workers = ["--workers", "2"] if name == "b" else []  # B: two processes on its port
            process = start_server(["--model", str(model_root), "--store", store_url, "--no-access-log", *workers],
                                   port, logs / f"{name}.log", env=environment(), cwd=REPO, timeout=120)
            started[name] = (f"http://127.0.0.1:{port}", process)
        yield started
    finally:
        for _, process in started.values():
            stop_server(process)
    for name in HOSTS:
        assert "Traceback" not in (logs / f"{name}.log").read_text(), name


def url(hosts, name: str) -> str:
    return hosts[name][0]


def listed(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [row["item_id"] for row in response.json()["items"]]


def test_an_item_added_on_one_host_is_served_by_another_within_a_second(hosts):
    """(The synthetic shop is 26 items: a list of 100 holds every item a host can recommend.)"""
    a, c = url(hosts, "a"), url(hosts, "c")
    title = "quantum walnut desk lamp"
    interested = httpx.put(f"{c}/users/lamp-fan/profile", json={"interests": [title]})
    assert interested.status_code == 200
    assert "walnut-lamp" not in listed(httpx.get(f"{c}/recommend", params={"user": "lamp-fan", "n": 100}))

    added = httpx.post(f"{a}/items", json={"items": [{"item_id": "walnut-lamp", "title": title,
                                                      "category": "Office > Electronics"}]})
    assert added.status_code == 200
    written = time.monotonic()
    in_similar = in_recommend = None
    with httpx.Client(base_url=c, timeout=5) as host_c:
        while time.monotonic() - written < 10 and (in_similar is None or in_recommend is None):
            if in_similar is None and host_c.get("/similar/walnut-lamp", params={"n": 5}).status_code == 200:
                in_similar = time.monotonic() - written
            if in_recommend is None and "walnut-lamp" in listed(
                    host_c.get("/recommend", params={"user": "lamp-fan", "n": 100})):
                in_recommend = time.monotonic() - written
            time.sleep(0.01)
    assert in_similar is not None and in_recommend is not None, (in_similar, in_recommend)
    assert max(in_similar, in_recommend) < VISIBLE_WITHIN_S, (in_similar, in_recommend)
    assert "walnut-lamp" in listed(httpx.get(f"{url(hosts, 'b')}/recommend", params={"user": "lamp-fan", "n": 100}))

    # a delete through C leaves every host's answers
    assert httpx.delete(f"{c}/items/walnut-lamp").status_code == 200
    deadline = time.monotonic() + VISIBLE_WITHIN_S
    while time.monotonic() < deadline and httpx.get(f"{a}/similar/walnut-lamp").status_code != 404:
        time.sleep(0.01)
    assert httpx.get(f"{a}/similar/walnut-lamp").status_code == 404
    assert "walnut-lamp" not in listed(httpx.get(f"{a}/recommend", params={"user": "lamp-fan", "n": 100}))


def test_a_rule_written_through_one_host_applies_on_every_host(hosts):
    rule = httpx.post(f"{url(hosts, 'a')}/rules", json={"action": "exclude", "category": "Electronics"})
    assert rule.status_code == 201, rule.text
    try:
        for name in HOSTS:
            rows = listed(httpx.get(f"{url(hosts, name)}/recommend", params={"user": "rule-shopper", "n": 100}))
            assert rows and all(int(item[1:]) < 12 or item == "i24" for item in rows), (name, rows)
    finally:
        assert httpx.delete(f"{url(hosts, 'c')}/rules/{rule.json()['rule_id']}").status_code == 200
    assert any(int(i[1:]) >= 12 for i in listed(httpx.get(f"{url(hosts, 'b')}/recommend", params={"n": 100})))


def test_a_retrain_from_the_store_reaches_every_host(hosts, model_root, store_url):
    before = {name: httpx.get(f"{url(hosts, name)}/healthz").json()["model_version"] for name in HOSTS}
    assert set(before.values()) == {1}
    httpx.post(f"{url(hosts, 'b')}/events", json={"events": [
        {"event_id": f"retrain-{i}", "user_id": "retrain-shopper", "item_id": f"i{i}", "type": "purchase"}
        for i in range(3)]}).raise_for_status()
    result = subprocess.run([sys.executable, "-m", "coldrec.cli", "retrain", "--model", str(model_root),
                             "--store", store_url], env=environment(), cwd=REPO, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert ModelVersions(model_root).current() == 2
    deadline = time.monotonic() + 30
    versions = before
    while time.monotonic() < deadline and set(versions.values()) != {2}:
        time.sleep(0.2)
        versions = {name: httpx.get(f"{url(hosts, name)}/healthz").json()["model_version"] for name in HOSTS}
    assert set(versions.values()) == {2}, versions
    for name in HOSTS:
        assert len(listed(httpx.get(f"{url(hosts, name)}/recommend", params={"user": "retrain-shopper"}))) == 10


def test_the_load_test_measures_ingest_into_the_shared_store(hosts, store_url):
    """`coldrec loadtest --endpoint ingest`: 4 clients posting batches of 100 events through host B; every
    acknowledged event is in the store (and the load's users are erased afterwards)."""
    import asyncio

    from coldrec.serve.loadtest import run_load

    store = open_store(store_url, ID_KEY)
    try:
        before = store.counts()["events"]
        phases = asyncio.run(run_load(url(hosts, "b"), endpoints=["ingest"], modes=["peak"], rate=10, concurrency=4,
                                      seconds=1.5, users=5, warmup=0.1, log=lambda _: None))
        (phase,) = phases
        assert phase.endpoint == "ingest" and not phase.errors, phase.summary()
        assert phase.notes["events"] == 100 * len(phase.latencies_ms) > 0
        assert phase.notes["events_per_s"] > 0
        assert store.counts()["events"] == before  # the load's users (and so its events) were erased at the end
    finally:
        store.close()


def test_kill_9_of_one_host_loses_no_acknowledged_event_and_the_others_answer(hosts, store_url):
    """Last in this module: host A does not come back."""
    a, b, c = (url(hosts, name) for name in HOSTS)
    acknowledged: list[str] = []
    failed_reads: list[str] = []
    reads = [0]
    stop = threading.Event()

    def post_batches(worker: int) -> None:
        with httpx.Client(base_url=a, timeout=5) as host_a:
            for batch_no in range(10_000):
                if stop.is_set():
                    return
                ids = [f"k{worker}-{batch_no}-{i}" for i in range(50)]
                body = {"events": [{"event_id": e, "user_id": f"loader-{worker}", "item_id": f"i{i % 26}",
                                    "type": "view"} for i, e in enumerate(ids)]}
                try:
                    response = host_a.post("/events", json=body)
                except httpx.TransportError:
                    return  # A is gone: this batch was never acknowledged
                if response.status_code == 200:
                    acknowledged.extend(ids)

    def read_others() -> None:
        with httpx.Client(timeout=5) as client:
            while not stop.is_set():
                for host in (b, c):
                    try:
                        response = client.get(f"{host}/recommend", params={"user": "loader-0", "n": 10})
                        ok = response.status_code == 200 and len(response.json()["items"]) == 10
                    except httpx.HTTPError as error:
                        ok, response = False, error  # type: ignore[assignment]
                    reads[0] += 1
                    if not ok:
                        failed_reads.append(f"{host}: {response}")
                time.sleep(0.02)

    loaders = [threading.Thread(target=post_batches, args=(w,)) for w in range(4)]
    reader = threading.Thread(target=read_others)
    for thread in (*loaders, reader):
        thread.start()
    try:
        deadline = time.monotonic() + 30
        while len(acknowledged) < 1_000 and time.monotonic() < deadline:
            time.sleep(0.05)
        process = hosts["a"][1]
        os.kill(process.pid, signal.SIGKILL)  # mid-load: batches are in flight
        process.wait()
        reads_at_kill = reads[0]
        time.sleep(2)  # B and C go on answering without A
        assert reads[0] > reads_at_kill + 10
        after = httpx.post(f"{b}/events", json={"events": [
            {"event_id": "after-kill", "user_id": "loader-0", "item_id": "i3", "type": "view"}]})
        assert after.status_code == 200
    finally:
        stop.set()
        for thread in (*loaders, reader):
            thread.join()
    assert len(acknowledged) >= 1_000
    assert not failed_reads, failed_reads[:5]
    store = open_store(store_url, ID_KEY)
    assert isinstance(store, PostgresStore)
    try:
        stored = set(store.stored_event_ids(acknowledged + ["after-kill"]))
    finally:
        store.close()
    missing = set(acknowledged) - stored
    assert not missing, f"{len(missing)} acknowledged events lost, e.g. {sorted(missing)[:3]}"
    assert "after-kill" in stored


def test_a_host_hears_item_writes_without_asking_the_store(model_root, store_url):
    """CatalogSync on a PostgreSQL store listens: another host's write reaches this engine with no request made, and
    reads ask the database nothing (`behind` is answered from what was notified)."""
    from coldrec.serve.sync import CatalogSync

    here, there = open_store(store_url, ID_KEY), open_store(store_url, ID_KEY)
    engine = Engine.load(ModelVersions(model_root).current_path())
    sync = CatalogSync(engine, here)
    try:
        assert sync.listening and not sync.behind()
        there.upsert_items(pd.DataFrame({"item_id": ["heard-item"], "title": ["heard lamp"]}))
        deadline = time.monotonic() + VISIBLE_WITHIN_S
        while time.monotonic() < deadline and sync.version < there.items_version():
            time.sleep(0.005)
        assert engine.has_item("heard-item")
        assert sync.version == there.items_version() and not sync.behind()
    finally:
        sync.close()
        engine.close()
        here.close()
        there.close()
    sqlite_sync = CatalogSync(Engine.load(ModelVersions(model_root).current_path()), open_store(model_root / "state"))
    assert not sqlite_sync.listening  # SQLite: its processes read items_version per request
    sqlite_sync.close()
