"""The HTTP API: every endpoint's happy path, bad input as 4xx naming the field, fuzzing from
the OpenAPI spec, and no acknowledged event lost to a kill -9 of the server.

Most tests run the app in-process over a small fake engine (the spec's Engine interface on
tests/synthetic.py's shop), so they test the API and the store, not the model. The real
Engine (FakeEncoder, built once per module) serves one in-process test, `coldrec build`, and
the kill -9 test, which runs `coldrec serve --model` in a child process.
"""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from coldrec.data import EventType, ItemCatalog, UserContext
from coldrec.serve.app import create_app
from coldrec.serve.engine import Recommendation
from coldrec.serve.process import free_port, start_server, stop_server
from coldrec.serve.settings import Settings
from coldrec.serve.store import Store
from tests.synthetic import make_catalog, make_log

RAW_USER = "bob.secret-user@example.com"
REPO = Path(__file__).resolve().parents[1]


class FakeEngine:
    """The spec's Engine interface on a small catalog: "recommends" the category of the last
    event (else the shopper's interest, else everything), newest position first."""

    click_model = None  # no sponsored slots

    def __init__(self, catalog: ItemCatalog):
        self.catalog = catalog
        self.removed = np.zeros(len(catalog), bool)

    def has_item(self, item_id: str) -> bool:
        position = self.catalog.index_of([item_id])[0]
        return position >= 0 and not self.removed[position]

    def busy(self) -> bool:
        return False

    def encode_items(self, frame: pd.DataFrame) -> np.ndarray:
        return np.zeros((len(frame), 1), np.float32)

    def add_items(self, frame: pd.DataFrame, encoded=None) -> list[str]:
        known = self.catalog.index_of(frame["item_id"])
        merged = self.catalog.frame.copy()
        merged.iloc[known[known >= 0]] = frame[known >= 0].to_numpy()
        self.catalog = ItemCatalog(pd.concat([merged, frame[known < 0]], ignore_index=True))
        self.removed = np.append(self.removed, np.zeros((known < 0).sum(), bool))
        self.removed[self.catalog.index_of(frame["item_id"])] = False
        return frame["item_id"].tolist()

    def remove_item(self, item_id: str) -> bool:
        if not self.has_item(item_id):
            return False
        self.removed[self.catalog.index_of([item_id])[0]] = True
        return True

    def sync_items(self, items_frame: pd.DataFrame) -> int:
        missing = items_frame[self.catalog.index_of(items_frame["item_id"]) < 0].drop(columns="deleted")
        self.add_items(missing)
        deleted = self.catalog.index_of(items_frame["item_id"][items_frame["deleted"]])
        newly_deleted = int((~self.removed[deleted]).sum())
        self.removed[deleted] = True
        return len(missing) + newly_deleted

    def context(self, events, interests: list[str], now: int | None = None) -> UserContext:
        events = pd.DataFrame(events)
        positions = self.catalog.index_of(events["item_id"].fillna("").astype(str))
        known = positions >= 0
        queries = events["query"][events["event"] == EventType.SEARCH].dropna().tolist()
        return UserContext(items=positions[known], times=events["time"].to_numpy()[known],
                           events=events["event"].to_numpy()[known], interests=interests, queries=queries, now=now)

    def _rows(self, mask: np.ndarray, n: int, reason: str) -> list[Recommendation]:
        frame = self.catalog.frame
        positions = np.flatnonzero(mask & ~self.removed)[::-1][:n]
        return [Recommendation(frame["item_id"][p], frame["title"][p], float(n - rank), reason,
                                   frame["category"][p], None if np.isnan(frame["price"][p]) else frame["price"][p])
                for rank, p in enumerate(positions)]

    def prepare_texts(self, texts) -> None:
        self.prepared = list(texts)

    def recommend(self, context, n=10, *, category=None, min_price=None, max_price=None, in_stock=None,
                  include_bought=False, include_unavailable=False, diversity=None, rules=(), campaigns=(),
                  ad_policy=None):
        frame = self.catalog.frame
        mask = np.ones(len(frame), bool)
        leaves = self.catalog.leaf_categories()
        reason = "popular in Office"
        if len(context.items):
            last = context.items[-1]
            mask &= frame["category"].to_numpy() == frame["category"][last]
            reason = f"because you viewed {frame['title'][last]}"
        elif context.interests:
            mask &= np.isin(leaves, context.interests)
            reason = f"matches your interest {context.interests[0]}"
        if category is not None:
            mask &= frame["category"].str.contains(category, regex=False).to_numpy(bool)
        if min_price is not None:
            mask &= frame["price"].to_numpy() >= min_price
        if max_price is not None:
            mask &= frame["price"].to_numpy() <= max_price
        if in_stock is not None:
            mask &= frame["available"].to_numpy() == in_stock
        elif not include_unavailable:
            mask &= frame["available"].to_numpy(bool)
        if not include_bought:
            mask[context.items[context.events == EventType.PURCHASE]] = False
        return self._rows(mask, n, reason)

    def similar(self, item_id: str, n: int = 10, include_unavailable: bool = False):
        if not self.has_item(item_id):
            raise KeyError(item_id)
        position = self.catalog.index_of([item_id])[0]
        frame = self.catalog.frame
        mask = frame["category"].to_numpy() == frame["category"][position]
        mask[position] = False
        return self._rows(mask, n, f"similar to {frame['title'][position]}")

    def search(self, query: str, n: int = 10, context=None, include_unavailable: bool = False, campaigns=(),
               ad_policy=None):
        words = query.lower().split()
        titles = self.catalog.frame["title"].str.lower()
        mask = np.array([any(w in t for w in words) for t in titles], bool)
        return self._rows(mask, n, "matches your search")

    def categories(self) -> list[str]:
        return sorted(set(self.catalog.leaf_categories()[~self.removed]))

    def close(self) -> None:
        pass


def make_service(state_dir: Path, engine=None, **settings) -> tuple:
    """A seeded store and the app over it (a fake engine unless one is given)."""
    settings = Settings(state_dir=state_dir, **settings)
    store = Store.open(state_dir)
    if store.item_count() == 0:
        store.seed(make_catalog(), make_log())
    engine = engine or FakeEngine(make_catalog())
    return create_app(engine, store, settings), store


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    app, store = make_service(tmp_path_factory.mktemp("api"))
    with TestClient(app) as client:
        yield client, store
    store.close()


@pytest.fixture(scope="module")
def client(service):
    return service[0]


@pytest.fixture(scope="module")
def store(service):
    return service[1]


def event(event_id, item_id="i1", kind="view", **who):
    return {"event_id": event_id, "item_id": item_id, "type": kind, **(who or {"user_id": RAW_USER})}


def fields(response) -> list[str]:
    return [error["field"] for error in response.json()["detail"]]


# happy paths


def test_health_and_categories(client):
    assert client.get("/healthz").json() == {"status": "ok", "items": len(make_catalog()), "model_version": None,
                                             "privacy": None}
    assert client.get("/categories").json() == {"categories": ["Electronics", "Paper Goods"]}


def test_events_are_stored_once(client, store):
    batch = {"events": [event("h1", "i13", "view", user_id="carol"), event("h2", "i14", "click", user_id="carol")]}
    assert client.post("/events", json=batch).json() == {"accepted": 2, "duplicates": 0, "rejected": []}
    assert client.post("/events", json=batch).json() == {"accepted": 0, "duplicates": 2, "rejected": []}
    assert store.user_events("carol")["item_id"].tolist() == ["i13", "i14"]


def test_an_event_changes_the_next_recommendations(client):
    first = client.get("/recommend", params={"user": "dave", "n": 5}).json()["items"]
    assert len(first) == 5 and first[0]["reason"] == "popular in Office"
    client.post("/events", json={"events": [event("d1", "i15", "view", user_id="dave")]})
    after = client.get("/recommend", params={"user": "dave", "n": 5}).json()["items"]
    assert {r["category"] for r in after} == {"Office > Electronics"}
    assert after[0]["reason"].startswith("because you viewed")
    assert set(after[0]) == {"item_id", "title", "score", "reason", "category", "price", "sponsored", "ad"}
    assert not after[0]["sponsored"] and after[0]["ad"] is None


def test_anonymous_session_and_search_events(client):
    sent = {"events": [event("s1", "i2", "click", session_id="anon-1"),
                       {"event_id": "s2", "session_id": "anon-1", "type": "search", "query": "stapler"}]}
    assert client.post("/events", json=sent).json()["accepted"] == 2
    items = client.get("/recommend", params={"session": "anon-1"}).json()["items"]
    assert {r["category"] for r in items} == {"Office > Paper Goods"}


def test_filters_and_bought_items(client):
    client.post("/events", json={"events": [event("b1", "i20", "purchase", user_id="erin")]})
    items = client.get("/recommend", params={"user": "erin", "n": 100}).json()["items"]
    assert "i20" not in [r["item_id"] for r in items] and items
    items = client.get("/recommend", params={"user": "erin", "n": 100, "include_bought": "true"}).json()["items"]
    assert "i20" in [r["item_id"] for r in items]
    items = client.get("/recommend", params={"category": "Paper Goods", "n": 100}).json()["items"]
    assert {r["category"] for r in items} == {"Office > Paper Goods"}
    assert client.get("/recommend", params={"min_price": 5, "max_price": 1, "in_stock": "true"}).json() == {"items": []}


def test_profile_drives_a_new_user(client):
    response = client.put("/users/frank/profile", json={"interests": ["Electronics"]})
    assert response.json() == {"interests": ["Electronics"]}
    items = client.get("/recommend", params={"user": "frank"}).json()["items"]
    assert items[0]["reason"] == "matches your interest Electronics"


def test_search_and_similar(client):
    found = client.get("/search", params={"q": "router", "user": "frank"}).json()["items"]
    assert found and all("router" in r["title"] for r in found)
    similar = client.get("/similar/i3", params={"n": 3}).json()["items"]
    assert len(similar) == 3 and "i3" not in [r["item_id"] for r in similar]
    assert client.get("/similar/no-such-item").status_code == 404
    assert fields(client.get("/similar/no-such-item")) == ["item_id"]


def test_new_item_is_recommendable_then_deleted(client, store):
    item = {"item_id": "new-1", "title": "laser router deluxe", "category": "Office > Electronics", "price": 99.5,
            "created_at": "2026-01-02T03:04:05Z", "attributes": {"colour": "red", "ports": 8}}
    assert client.post("/items", json={"items": [item]}).json() == {"added": ["new-1"]}
    assert "new-1" in [r["item_id"] for r in client.get("/similar/i13", params={"n": 100}).json()["items"]]
    assert store.items_frame()["item_id"].iloc[-1] == "new-1"
    assert client.delete("/items/new-1").json() == {"deleted": "new-1"}
    assert client.delete("/items/new-1").status_code == 404
    assert "new-1" not in [r["item_id"] for r in client.get("/recommend", params={"n": 100}).json()["items"]]
    response = client.post("/events", json={"events": [event("gone-1", "new-1")]})
    assert response.status_code == 200 and response.json()["accepted"] == 0
    assert [r["field"] for r in response.json()["rejected"]] == ["events[0].item_id"]
    assert store.stored_event_ids(["gone-1"]) == []


def test_delete_user_erases_everything(client, store):
    client.post("/events", json={"events": [event(f"g{i}", "i1", user_id="gina") for i in range(3)]})
    client.put("/users/gina/profile", json={"interests": ["Paper Goods"]})
    assert client.delete("/users/gina").json() == {"events": 3, "profiles": 1}
    assert store.user_events("gina").empty and store.profile("gina") == []


def test_metrics(client):
    client.get("/recommend", params={"user": RAW_USER})
    text = client.get("/metrics").text
    assert 'coldrec_requests_total{method="GET",route="/recommend",status="200"}' in text
    assert 'coldrec_request_seconds_bucket{le="0.01",method="GET",route="/recommend"}' in text
    assert "coldrec_events_accepted_total" in text and "coldrec_items " in text
    assert RAW_USER not in text


def test_logs_never_hold_raw_user_ids(client, caplog):
    with caplog.at_level(logging.DEBUG):
        client.post("/events", json={"events": [event("log-1", "i1")]})
        client.get("/recommend", params={"user": RAW_USER})
        client.put(f"/users/{RAW_USER}/profile", json={"interests": ["x"]})
        client.delete(f"/users/{RAW_USER}")
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("coldrec")]
    assert any("/users/{user_id}" in line for line in ours)
    assert not any(RAW_USER in line for line in ours)


def test_demo_page_or_its_placeholder(client, tmp_path):
    assert client.get("/").status_code == 200
    app, store = make_service(tmp_path, static_dir=tmp_path / "no-such-folder")
    with TestClient(app) as bare:
        assert bare.get("/").json()["demo"] == "not installed"
        assert bare.get("/static/app.js").status_code == 404
    store.close()


# bad input: a 4xx naming the field


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"events": [{**event("x1"), "colour": "red"}]}, "events[0].colour"),
        ({"events": [{**event("x1"), "time": "yesterday"}]}, "events[0].time"),
        ({"events": [{**event("x1"), "type": "like"}]}, "events[0].type"),
        ({"events": [{**event("x1"), "session_id": "s"}]}, "events[0]"),  # both user and session
        ({"events": [{"event_id": "x1", "type": "view", "item_id": "i1"}]}, "events[0]"),  # neither
        ({"events": [{"event_id": "x1", "type": "view", "user_id": "u"}]}, "events[0]"),  # no item
        ({"events": [event("x1", item_id=5)]}, "events[0].item_id"),
        ({"events": {"event_id": "x1"}}, "events"),
        ({"events": [event(f"x{i}") for i in range(1001)]}, "events"),
        ({"events": [], "extra": 1}, "extra"),
        ({}, "events"),
    ],
)
def test_bad_events_name_the_field(client, store, body, field):
    before = store.counts()["events"]
    response = client.post("/events", json=body)
    assert response.status_code == 422, response.text
    assert field in fields(response)
    assert store.counts()["events"] == before


def test_one_bad_event_does_not_lose_the_batch(client, store):
    """An event naming an unknown item is rejected alone, with its index, id and reason; the others are stored."""
    before = store.counts()["events"]
    batch = [event(f"u{i}", "i1") for i in range(5)]
    batch[3]["item_id"] = "missing-item"
    response = client.post("/events", json={"events": batch})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["accepted"] == 4 and body["duplicates"] == 0
    (rejected,) = body["rejected"]
    assert rejected["index"] == 3 and rejected["event_id"] == "u3" and rejected["field"] == "events[3].item_id"
    assert "missing-item" in rejected["reason"]
    assert store.counts()["events"] == before + 4
    assert sorted(store.stored_event_ids([e["event_id"] for e in batch])) == ["u0", "u1", "u2", "u4"]
    resent = client.post("/events", json={"events": batch}).json()  # resending the whole batch is harmless
    assert resent["accepted"] == 0 and resent["duplicates"] == 4 and len(resent["rejected"]) == 1


def test_malformed_json(client):
    response = client.post("/events", content=b'{"events": [', headers={"content-type": "application/json"})
    assert response.status_code == 422 and fields(response) == ["body"]
    response = client.post("/events", content=b"not json", headers={"content-type": "application/json"})
    assert response.status_code == 422
    response = client.post("/events", content=b'{"events": ["\xff\xfe"]}', headers={"content-type": "application/json"})
    assert response.status_code == 400 and fields(response) == ["body"]  # not UTF-8


def test_oversized_body_is_413(tmp_path):
    app, store = make_service(tmp_path, max_body_bytes=1000)
    with TestClient(app) as client:
        response = client.post("/events", json={"events": [event(f"big{i}") for i in range(50)]})
    assert response.status_code == 413 and fields(response) == ["body"]
    store.close()


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/recommend", {"n": 0}, "n"),
        ("/recommend", {"n": 100_000}, "n"),
        ("/recommend", {"n": "ten"}, "n"),
        ("/recommend", {"min_price": "cheap"}, "min_price"),
        ("/recommend", {"max_price": "nan"}, "max_price"),
        ("/recommend", {"in_stock": "perhaps"}, "in_stock"),
        ("/search", {}, "q"),
        ("/search", {"q": "router", "n": -1}, "n"),
        ("/similar/i1", {"n": 101}, "n"),
    ],
)
def test_bad_queries_name_the_field(client, path, params, field):
    response = client.get(path, params=params)
    assert response.status_code == 422, response.text
    assert fields(response) == [field]


def test_bad_items_and_profiles(client):
    cases = [
        ("/items", {"items": [{"item_id": "z", "title": "t", "price": -1}]}, "items[0].price"),
        ("/items", {"items": [{"item_id": "z", "title": "t", "shape": "round"}]}, "items[0].shape"),
        ("/items", {"items": [{"title": "no id"}]}, "items[0].item_id"),
        ("/items", {"items": [{"item_id": "z", "title": "t"}, {"item_id": "z", "title": "t"}]}, "items[1].item_id"),
        ("/items", {"items": [{"item_id": "z", "title": "t", "created_at": "0001-01-01T00:00:00"}]},
         "items[0].created_at"),
        ("/items", {"items": [{"item_id": "z"}]}, "items[0].title"),  # a whole record: no blank products
        ("/items", {"items": [{"item_id": "z", "title": "   "}]}, "items[0].title"),
        ("/items", {"items": [{"item_id": "a\nb", "title": "t"}]}, "items[0].item_id"),
        ("/items", {"items": [{"item_id": "..", "title": "t"}]}, "items[0].item_id"),
        ("/users/u/profile", {"interests": "Electronics"}, "interests"),
        ("/users/u/profile", {"interests": [1]}, "interests[0]"),
    ]
    for path, body, field in cases:
        send = client.put if path.startswith("/users") else client.post
        response = send(path, json=body)
        assert response.status_code == 422, (body, response.text)
        assert fields(response) == [field], body


def test_api_key(tmp_path, client):
    assert client.get("/categories").status_code == 200  # off by default
    app, store = make_service(tmp_path, api_key="s3cret")
    with TestClient(app) as keyed:
        assert keyed.get("/categories").status_code == 401
        assert fields(keyed.get("/categories", headers={"X-API-Key": "wrong"})) == ["X-API-Key"]
        assert keyed.get("/categories", headers={"X-API-Key": "s3cret"}).status_code == 200
        assert keyed.post("/events", json={"events": [event("k1")]}).status_code == 401
        assert keyed.get("/healthz").status_code == 200  # probes stay open
    store.close()


def test_read_key_reads_and_cannot_write(tmp_path):
    """A read key (for a shop's front end) opens the GET endpoints; writes need the write key."""
    app, store = make_service(tmp_path, api_key="write-k", read_key="read-k")
    read, write = {"X-API-Key": "read-k"}, {"X-API-Key": "write-k"}
    with TestClient(app) as keyed:
        for path in ("/categories", "/recommend", "/search?q=router", "/similar/i1"):
            assert keyed.get(path, headers=read).status_code == 200, path
            assert keyed.get(path, headers=write).status_code == 200, path
            assert keyed.get(path).status_code == 401, path
        denied = keyed.post("/events", json={"events": [event("rk1")]}, headers=read)
        assert denied.status_code == 403 and fields(denied) == ["X-API-Key"]
        assert keyed.post("/items", json={"items": [{"item_id": "rk", "title": "t"}]}, headers=read).status_code == 403
        assert keyed.delete("/users/someone", headers=read).status_code == 403
        assert keyed.put("/users/someone/profile", json={"interests": ["x"]}, headers=read).status_code == 403
        assert keyed.post("/events", json={"events": [event("rk1")]}, headers=write).status_code == 200
    store.close()
    with pytest.raises(ValueError, match="read key without a write key"):
        Settings(state_dir=tmp_path, read_key="read-k")


def test_schemathesis_finds_no_server_error(tmp_path):
    """Every operation, positive and negative cases from the OpenAPI spec, in-process: no 5xx."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from schemathesis import GenerationMode

    app, store = make_service(tmp_path)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 21  # 16, the four of /campaigns and /users/{id}/export
    failures = []
    for operation in operations:
        @given(case=st.one_of(operation.as_strategy(GenerationMode.POSITIVE),
                              operation.as_strategy(GenerationMode.NEGATIVE)))
        @settings(max_examples=30, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        def call(case):
            response = case.call()
            if response.status_code >= 500:
                failures.append((case.operation.label, response.status_code, case.as_curl_command()))

        call()
    store.close()
    assert not failures, failures[:5]


@pytest.fixture(scope="module")
def real_model(tmp_path_factory):
    """The real Engine on the generated shop, and the folder it was saved to. Its encoder (coldrec's own hashing
    encoder: plain data) is saved with it, so server processes load it from the folder alone."""
    from coldrec.serve.engine import Engine
    from coldrec.serve.synthetic import HashingEncoder

    engine = Engine.build(make_catalog(), make_log(), encoder=HashingEncoder(256))
    folder = tmp_path_factory.mktemp("built")
    engine.save(folder / "model")
    return engine, folder


def test_real_engine_end_to_end(tmp_path, real_model):
    """The real Engine behind the API: events, new items, search, erasure."""
    app, store = make_service(tmp_path, engine=real_model[0])
    with TestClient(app) as client:
        cold = client.get("/recommend", params={"user": "zoe", "n": 5}).json()["items"]
        assert len(cold) == 5 and all(r["reason"] for r in cold)
        client.post("/events", json={"events": [event("z1", "i13", "view", user_id="zoe"),
                                                event("z2", "i14", "view", user_id="zoe")]})
        warm = client.get("/recommend", params={"user": "zoe", "n": 5}).json()["items"]
        assert warm != cold and {r["category"] for r in warm} == {"Office > Electronics"}
        added = client.post("/items", json={"items": [{"item_id": "fresh", "title": "router cable keyboard fresh",
                                                       "category": "Office > Electronics", "price": 12.0}]})
        assert added.json() == {"added": ["fresh"]}
        assert "fresh" in [r["item_id"] for r in client.get("/similar/i13", params={"n": 10}).json()["items"]]
        assert client.get("/search", params={"q": "router", "session": "s-zoe"}).json()["items"]
        assert client.delete("/items/fresh").status_code == 200
        assert client.get("/similar/fresh").status_code == 404
        client.post("/items", json={"items": [{"item_id": "fresh", "title": "router fresh again"}]})  # back again
        assert client.get("/similar/fresh").status_code == 200
        assert client.delete("/users/zoe").json() == {"events": 2, "profiles": 0}
    store.close()


def test_build_command_writes_model_and_seeded_state(tmp_path, real_model, monkeypatch):
    """`coldrec build`: OUT/versions/1 loads and is the current version, OUT/state holds the catalog and the
    events, pseudonymised; building again publishes version 2."""
    from typer.testing import CliRunner

    from coldrec import cli
    from coldrec.cli import build as commands
    from coldrec.data import Dataset
    from coldrec.model.versions import ModelVersions
    from coldrec.serve.engine import Engine

    monkeypatch.setattr(commands, "load_or_exit", lambda *args, **kwargs: Dataset("shop", make_catalog(), make_log()))
    monkeypatch.setattr(Engine, "build", classmethod(lambda cls, *args, **kwargs: real_model[0]))
    monkeypatch.setattr(commands, "_encode_catalog", lambda catalog, *encoder: None)
    monkeypatch.setattr(commands, "_uncached_texts", lambda catalog, *encoder: len(catalog))
    monkeypatch.setenv("COLDREC_ID_KEY", "build-test-key")
    result = CliRunner().invoke(cli.app, ["build", "-d", "shop", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    versions = ModelVersions(tmp_path)
    assert versions.current() == 1 and Engine.load(tmp_path / "versions" / "1").has_item("i0")
    assert versions.info(1)["source"] == "build"
    store = Store.open(tmp_path / "state", "build-test-key")
    assert store.counts()["events"] == len(make_log()) and store.item_count() == len(make_catalog())
    assert len(store.user_events("u0")) > 0
    store.close()
    again = CliRunner().invoke(cli.app, ["build", "-d", "shop", "--out", str(tmp_path)])
    assert again.exit_code == 0, again.output
    assert versions.current() == 2 and versions.versions() == [1, 2]


def test_build_with_tune_fits_the_engine_on_the_chosen_parameters(tmp_path, real_model, monkeypatch):
    """`coldrec build --tune`: the parameters chosen on the data's time cut are the ones the engine is built with."""
    from typer.testing import CliRunner

    from coldrec import cli
    from coldrec.cli import build as commands
    from coldrec.data import Dataset
    from coldrec.serve.engine import Engine

    built = {}
    monkeypatch.setattr(commands, "load_or_exit", lambda *args, **kwargs: Dataset("shop", make_catalog(), make_log()))
    monkeypatch.setattr(commands, "_tuned_params", lambda ds, progress=None, model=None, encoder=None: {"candidates_per_source": 100})
    monkeypatch.setattr(commands, "_encode_catalog", lambda catalog, *encoder: None)
    monkeypatch.setattr(commands, "_uncached_texts", lambda catalog, *encoder: len(catalog))
    monkeypatch.setattr(Engine, "build", classmethod(lambda cls, *args, **kwargs: built.update(kwargs) or real_model[0]))
    result = CliRunner().invoke(cli.app, ["build", "-d", "shop", "--out", str(tmp_path), "--tune"])
    assert result.exit_code == 0, result.output
    assert built["model_params"] == {"candidates_per_source": 100}


def test_processes_sharing_a_store_see_each_others_items(tmp_path, real_model):
    """Two apps (as two worker processes would run) over one store file, each with its own engine:
    an item added or deleted through one is added to or removed from the other's answers."""
    from coldrec.serve.engine import Engine

    first, store_a = make_service(tmp_path, engine=Engine.load(real_model[1] / "model"))
    second, store_b = make_service(tmp_path, engine=Engine.load(real_model[1] / "model"))
    with TestClient(first) as a, TestClient(second) as b:
        body = {"items": [{"item_id": "shared", "title": "router cable keyboard shared", "category": "Office > Electronics"}]}
        assert a.post("/items", json=body).status_code == 200
        assert "shared" in [r["item_id"] for r in b.get("/similar/i13", params={"n": 10}).json()["items"]]
        assert b.get("/similar/shared").status_code == 200
        unfiltered = b.get("/recommend", params={"n": 100, "category": "Electronics"}).json()["items"]
        assert "shared" in [r["item_id"] for r in unfiltered]
        assert b.delete("/items/shared").status_code == 200
        assert a.get("/similar/shared").status_code == 404
        assert "shared" not in [r["item_id"] for r in a.get("/similar/i13", params={"n": 30}).json()["items"]]
    store_a.close()
    store_b.close()


def test_serve_with_two_workers(tmp_path, real_model):
    """`coldrec serve --workers 2`: every answer (fresh connections, so both processes serve) sees an item
    posted through either; the load-test client runs against it without errors."""
    import asyncio

    from coldrec.serve.loadtest import run_load

    port = free_port()
    server = start_server(["--model", str(real_model[1]), "--state", str(tmp_path), "--no-access-log", "--workers", "2"],
                          port, tmp_path / "server.log", env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO,
                          timeout=120)
    url = f"http://127.0.0.1:{port}"
    try:
        for round_ in range(3):
            item = f"worker-item-{round_}"
            added = httpx.post(f"{url}/items", json={"items": [{"item_id": item, "title": f"router cable {item}",
                                                                "category": "Office > Electronics"}]})
            assert added.status_code == 200
            for _ in range(6):  # a new connection each time
                found = httpx.get(f"{url}/similar/i13", params={"n": 30}).json()["items"]
                assert item in [r["item_id"] for r in found]
        phases = asyncio.run(run_load(url, endpoints=["recommend", "search", "items"], modes=["peak"], rate=10,
                                      concurrency=4, seconds=1, users=10, warmup=0.5, log=lambda _: None))
        assert [p.endpoint for p in phases] == ["recommend", "search", "items"]
        assert all(p.latencies_ms and not p.errors for p in phases), [p.summary() for p in phases]
        assert len(phases[-1].latencies_ms) == 10  # every probe item became visible, and was deleted afterwards
        workload = _workload_of(url)
        posts, *reads = asyncio.run(_reads_during_writes(url, workload))
        assert len(posts.latencies_ms) == 2 and not posts.errors
        assert all(phase.latencies_ms and not phase.errors for phase in reads), [p.summary() for p in reads]
        for item in workload.probe_items:
            assert httpx.delete(f"{url}/items/{item}").status_code == 200
        assert httpx.get(f"{url}/healthz").json()["items"] == len(make_catalog()) + 3
    finally:
        stop_server(server)
    assert "Traceback" not in (tmp_path / "server.log").read_text()


def _workload_of(url: str):
    from coldrec.serve.loadtest import Workload

    items = httpx.get(f"{url}/recommend", params={"n": 100}).json()["items"]
    return Workload(items)


async def _reads_during_writes(url: str, workload):
    import aiohttp

    from coldrec.serve.loadtest import reads_during_writes

    def new_client():
        return aiohttp.ClientSession(base_url=url, timeout=aiohttp.ClientTimeout(total=30))

    return await reads_during_writes(new_client, workload, rate=40, batches=2, batch_size=200)


# kill -9 durability


def _start_server(model_dir: Path, state_dir: Path, port: int) -> subprocess.Popen:
    """`coldrec serve --model` in a child process; the model folder holds its encoder."""
    return start_server(["--model", str(model_dir), "--state", str(state_dir), "--no-access-log"], port,
                        state_dir / "server.log", env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO, timeout=60)


def test_kill_9_loses_no_acknowledged_event(tmp_path, real_model):
    """Post batches from threads, SIGKILL the server mid-load, restart: every acknowledged event is there."""
    port = free_port()
    server = _start_server(real_model[1], tmp_path, port)
    acknowledged: list[str] = []
    stop = threading.Event()

    def post_batches(worker: int):
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            batch_no = 0
            while not stop.is_set():
                ids = [f"w{worker}-b{batch_no}-{i}" for i in range(50)]
                batch_no += 1
                body = {"events": [event(e, f"i{i % 26}", user_id=f"user-{worker}") for i, e in enumerate(ids)]}
                try:
                    response = http.post("/events", json=body)
                except httpx.TransportError:
                    return  # the server is gone: this batch was never acknowledged
                if response.status_code == 200:
                    acknowledged.extend(ids)

    workers = [threading.Thread(target=post_batches, args=(w,)) for w in range(4)]
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + 20
    while len(acknowledged) < 1_000 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(server.pid, signal.SIGKILL)  # mid-load: batches are in flight
    server.wait()
    stop.set()
    for worker in workers:
        worker.join()
    assert len(acknowledged) >= 200

    restarted = _start_server(real_model[1], tmp_path, port)  # recovers the WAL the killed server left
    try:
        database = sqlite3.connect(tmp_path / "coldrec.sqlite")
        stored = {row[0] for row in database.execute("SELECT event_id FROM events WHERE event_id LIKE 'w%'")}
        database.close()
    finally:
        stop_server(restarted)
    missing = set(acknowledged) - stored
    assert not missing, f"{len(missing)} acknowledged events lost, e.g. {sorted(missing)[:3]}"
