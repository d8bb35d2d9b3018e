"""The service as a shop meets it: partial updates, ids holding "/", session erasure, safe defaults,
streamed size limits, blank searches, offline docs and strict query parameters (issue 16).

In-process over the fake engine of tests/test_api.py, except where a real server process is the point.
"""

from __future__ import annotations

import time

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from coldrec.serve.access import ExposedServiceError, check_exposure, is_loopback
from coldrec.serve.settings import Settings
from tests.test_api import event, fields, make_service


@pytest.fixture
def client(tmp_path):
    app, store = make_service(tmp_path)
    with TestClient(app) as client:
        client.store = store
        yield client
    store.close()


def ids(response) -> list[str]:
    return [r["item_id"] for r in response.json()["items"]]


# 1. partial updates never blank a product; unavailable items are left out


def test_patch_changes_only_the_given_fields(client):
    before = client.store.items_frame().set_index("item_id").loc["i3"]
    response = client.patch("/items/i3", json={"available": False})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["available"] is False
    assert body["title"] == before["title"] and body["category"] == before["category"] and body["title"]
    stored = client.store.items_frame().set_index("item_id").loc["i3"]
    assert stored["title"] == before["title"] and stored["category"] == before["category"] and not stored["available"]
    assert "i3" not in ids(client.get("/recommend", params={"n": 100}))  # unavailable: not recommended
    assert "i3" in ids(client.get("/recommend", params={"n": 100, "include_unavailable": "true"}))
    assert ids(client.get("/recommend", params={"n": 100, "in_stock": "false"})) == ["i3"]
    assert client.patch("/items/i3", json={"available": True, "price": 4.5}).json()["price"] == 4.5
    assert "i3" in ids(client.get("/recommend", params={"n": 100}))


def test_bad_patches_name_the_field(client):
    assert client.patch("/items/no-such-item", json={"available": False}).status_code == 404
    for body, field in (({}, "body"), ({"title": ""}, "title"), ({"title": None}, "body"),
                        ({"price": -1}, "price"), ({"colour": "red"}, "colour")):
        response = client.patch("/items/i3", json=body)
        assert response.status_code == 422, (body, response.text)
        assert fields(response)[0] == field, (body, response.json())


def test_post_items_needs_the_whole_record(client):
    response = client.post("/items", json={"items": [{"item_id": "i4", "available": False}]})
    assert response.status_code == 422 and fields(response) == ["items[0].title"]
    assert client.store.items_frame().set_index("item_id").loc["i4"]["title"]  # untouched


# 3. every id that can be written can be addressed


def test_ids_holding_a_slash_are_reachable(client):
    user, item, session = "tenant/42", "cat/sku-1", "sess/7"
    assert client.post("/items", json={"items": [{"item_id": item, "title": "router slash edition",
                                                  "category": "Office > Electronics"}]}).status_code == 200
    posted = client.post("/events", json={"events": [event("sl1", item, user_id=user),
                                                     event("sl2", item, session_id=session)]})
    assert posted.json()["accepted"] == 2
    assert client.put("/users/tenant%2F42/profile", json={"interests": ["Electronics"]}).status_code == 200
    assert client.store.profile(user) == ["Electronics"]
    assert client.get("/similar/cat%2Fsku-1").status_code == 200
    assert client.patch("/items/cat%2Fsku-1", json={"price": 3.0}).json()["item_id"] == item
    assert client.delete("/users/tenant%2F42").json() == {"events": 1, "profiles": 1}
    assert client.store.user_events(user).empty and client.store.profile(user) == []
    assert client.delete("/sessions/sess%2F7").json() == {"events": 1, "profiles": 0}
    assert client.delete("/items/cat%2Fsku-1").json() == {"deleted": item}
    assert client.get("/similar/cat%2Fsku-1").status_code == 404


# 4. an anonymous session can be erased


def test_delete_session_erases_its_events(client):
    client.post("/events", json={"events": [event(f"se{i}", "i1", session_id="anon-x") for i in range(3)]
                                 + [event("se-user", "i1", user_id="anon-x")]})  # a user with the same id: kept
    assert client.delete("/sessions/anon-x").json() == {"events": 3, "profiles": 0}
    assert client.store.user_events(session_id="anon-x").empty
    assert len(client.store.user_events("anon-x")) == 1
    assert client.delete("/sessions/anon-x").json() == {"events": 0, "profiles": 0}


# 5. safe defaults


def test_a_keyless_service_stays_on_loopback(tmp_path):
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        assert is_loopback(host)
        check_exposure(Settings(state_dir=tmp_path, host=host))
    for host in ("0.0.0.0", "::", "192.168.1.4", "shop.example"):
        assert not is_loopback(host)
        with pytest.raises(ExposedServiceError, match="trust-network"):
            check_exposure(Settings(state_dir=tmp_path, host=host))
        check_exposure(Settings(state_dir=tmp_path, host=host, api_key="k"))
        check_exposure(Settings(state_dir=tmp_path, host=host, trust_network=True))


def test_serve_refuses_an_open_public_address_and_keys_on_the_command_line(tmp_path, monkeypatch):
    """Both refusals come before any model is loaded, with the reason."""
    from typer.testing import CliRunner

    from coldrec import cli

    monkeypatch.delenv("COLDREC_API_KEY", raising=False)
    runner = CliRunner()
    result = runner.invoke(cli.app, ["serve", "--synthetic", "10", "--state", str(tmp_path), "--host", "0.0.0.0"])
    assert result.exit_code == 2 and "trust-network" in result.output
    result = runner.invoke(cli.app, ["serve", "--synthetic", "10", "--state", str(tmp_path), "--api-key", "visible"])
    assert result.exit_code == 2 and "COLDREC_API_KEY" in result.output
    empty = tmp_path / "empty.key"
    empty.write_text("\n")
    result = runner.invoke(cli.app, ["serve", "--synthetic", "10", "--state", str(tmp_path), "--api-key-file", str(empty)])
    assert result.exit_code == 2 and "empty" in result.output


def test_key_files_and_environment(tmp_path, monkeypatch):
    key = tmp_path / "write.key"
    key.write_text("from-file\n")
    monkeypatch.setenv("COLDREC_API_KEY", "from-env")
    monkeypatch.setenv("COLDREC_READ_KEY", "read-env")
    settings = Settings.from_env(key_files={"api_key": key, "read_key": None}, state_dir=tmp_path)
    assert settings.api_key.get_secret_value() == "from-file"  # the file named on the command line wins
    assert settings.read_key.get_secret_value() == "read-env"


def test_a_chunked_body_is_stopped_at_the_limit(tmp_path):
    """No Content-Length (Transfer-Encoding: chunked): the bytes are counted as they arrive."""
    app, store = make_service(tmp_path, max_body_bytes=10_000)
    sent = []

    def chunks():
        yield b'{"events": ['
        for i in range(10_000):  # about 1 MB, unless the server stops reading
            sent.append(i)
            yield b'{"event_id": "c%d", "item_id": "i1", "type": "view", "user_id": "u"},' % i
        yield b"]}"

    with TestClient(app) as client:
        response = client.post("/events", content=chunks(), headers={"content-type": "application/json"})
        assert response.status_code == 413 and fields(response) == ["body"]
        assert store.counts()["events"] == 0 or store.stored_event_ids(["c0"]) == []
        small = client.post("/events", content=iter([b'{"events": []}']), headers={"content-type": "application/json"})
        assert small.status_code == 200
    store.close()


# 6: tests/test_api.py::test_one_bad_event_does_not_lose_the_batch


# 7. a blank search is refused


@pytest.mark.parametrize("q", [" ", "   ", "\t\n"])
def test_blank_search_is_422(client, q):
    response = client.get("/search", params={"q": q})
    assert response.status_code == 422 and fields(response) == ["q"]


# 9. the first run: docs offline, a favicon


def test_docs_are_served_offline(client):
    page = client.get("/docs")
    assert page.status_code == 200
    assert "/docs-assets/swagger-ui-bundle.js" in page.text and "cdn" not in page.text.lower()
    script = client.get("/docs-assets/swagger-ui-bundle.js")
    assert script.status_code == 200 and len(script.content) > 100_000
    assert client.get("/docs-assets/swagger-ui.css").status_code == 200
    assert client.get("/openapi.json").json()["paths"]["/events"]
    assert client.get("/redoc").status_code == 404  # would load from a CDN: not offered


def test_favicon(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 200 and response.headers["content-type"] == "image/x-icon"
    assert response.content[:4] == b"\x00\x00\x01\x00"  # an ICO file


# 10. small things


@pytest.mark.parametrize(("path", "params", "field"), [
    ("/recommend", {"usr": "bob"}, "usr"),
    ("/recommend", {"in_stok": "true"}, "in_stok"),
    ("/search", {"q": "router", "limit": 5}, "limit"),
    ("/similar/i1", {"k": 3}, "k"),
    ("/categories", {"x": 1}, "x"),
    ("/healthz", {"verbose": 1}, "verbose"),
])
def test_unknown_query_parameters_are_refused(client, path, params, field):
    response = client.get(path, params=params)
    assert response.status_code == 422, response.text
    assert fields(response) == [field] and "unknown query parameter" in response.json()["detail"][0]["msg"]


def test_unknown_query_parameters_on_writes(client):
    response = client.post("/events", params={"dry_run": 1}, json={"events": []})
    assert response.status_code == 422 and fields(response) == ["dry_run"]


def test_an_oversized_url_gets_json(client):
    response = client.get("/recommend", params={"user": "u" * 200, "category": "x" * 9000})
    assert response.status_code == 414
    assert fields(response) == ["url"]


def test_events_far_in_the_future_are_refused(client):
    for moment in (time.time() + 3 * 86400, 99_999_999_999):  # 3 days ahead; the year 5138
        response = client.post("/events", json={"events": [{**event("future"), "time": moment}]})
        assert response.status_code == 422 and fields(response) == ["events[0].time"]
    ok = client.post("/events", json={"events": [{**event("soon"), "time": time.time() + 600}]})  # clock skew
    assert ok.status_code == 200 and ok.json()["accepted"] == 1


def test_profile_texts_are_encoded_by_the_write_not_the_next_read(tmp_path):
    from tests.synthetic import make_catalog
    from tests.test_api import FakeEngine

    engine = FakeEngine(make_catalog())
    app, store = make_service(tmp_path, engine=engine)
    with TestClient(app) as client:
        assert client.put("/users/pat/profile", json={"interests": ["Electronics", "desk lamps"]}).status_code == 200
    assert engine.prepared == ["Electronics", "desk lamps"]
    store.close()


def test_a_request_the_http_parser_refuses_gets_json(tmp_path):
    """Past the parser's own limit (about 64 KB of URL) uvicorn answers before the app: still JSON."""
    import json
    import socket
    import threading

    import uvicorn

    from coldrec.serve.process import free_port
    from coldrec.serve.protocol import HTTP_PROTOCOL

    app, store = make_service(tmp_path)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, http=HTTP_PROTOCOL, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
            connection.sendall(b"GET /recommend?user=" + b"u" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while chunk := connection.recv(65536):
                answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400") and b"application/json" in head
        assert json.loads(body)["detail"][0]["field"] == "request"
    finally:
        server.should_exit = True
        thread.join(10)
        store.close()


def test_erasure_through_the_api_leaves_nothing_in_the_state_folder(tmp_path):
    """A byte scan of every file in the state folder after DELETE /users/{id} and DELETE /sessions/{id}."""
    state = tmp_path / "state"
    app, store = make_service(state)
    user, session = "carol.erase-me@example.com", "sess-erase-me-77"
    with TestClient(app) as client:
        client.put(f"/users/{user}/profile", json={"interests": ["carol-unique-interest-xyz"]})
        events = [event(f"evt-carol-{i:04d}", f"i{i % 20}", user_id=user) for i in range(300)]
        events += [event(f"evt-sess-{i:04d}", f"i{i % 20}", session_id=session) for i in range(200)]
        events += [event(f"evt-other-{i:04d}", f"i{i % 20}", user_id="someone-else") for i in range(300)]
        assert client.post("/events", json={"events": events}).json()["accepted"] == 800
        client.get("/recommend", params={"user": user})
        assert client.delete(f"/users/{user}").json() == {"events": 300, "profiles": 1}
        assert client.delete(f"/sessions/{session}").json() == {"events": 200, "profiles": 0}
        secrets = [store.ids.user(user).encode(), store.ids.session(session).encode(), user.encode(),
                   session.encode(), b"carol-unique-interest-xyz", b"evt-carol-", b"evt-sess-"]
        files = [path for path in state.rglob("*") if path.is_file()]
        assert files
        for path in files:
            content = path.read_bytes()
            found = [s.decode() for s in secrets if s in content]
            assert not found, f"{path.name} still holds {found}"
        assert store.stored_event_ids(["evt-other-0001"]) == ["evt-other-0001"]  # the rest is kept
    store.close()


def test_an_erasure_blocked_by_a_long_read_answers_503(client, monkeypatch):
    from coldrec.serve.store import ErasurePending

    def pending(user_id):
        raise ErasurePending({"events": 1, "profiles": 0}, client.store.path)

    monkeypatch.setattr(client.store, "delete_user", pending)
    response = client.delete("/users/anyone")
    assert response.status_code == 503 and response.headers["retry-after"] == "5"
    assert fields(response) == ["user_id"] and str(client.store.path) not in response.text


def test_a_process_does_not_read_back_its_own_item_writes(tmp_path):
    """Items this process wrote are in its engine already; another process's writes are read back."""
    from coldrec.serve.store import Store
    from tests.synthetic import make_catalog
    from tests.test_api import FakeEngine

    class Counting(FakeEngine):
        synced = 0

        def sync_items(self, items_frame):
            Counting.synced += len(items_frame)
            return super().sync_items(items_frame)

    engine = Counting(make_catalog())
    app, store = make_service(tmp_path, engine=engine)
    with TestClient(app) as client:
        client.get("/recommend")
        start = Counting.synced
        body = {"items": [{"item_id": f"own{i}", "title": f"own router {i}", "category": "Office > Electronics"}
                          for i in range(5)]}
        assert client.post("/items", json=body).status_code == 200
        assert client.patch("/items/own1", json={"price": 2.0}).status_code == 200
        assert client.delete("/items/own2").status_code == 200
        client.get("/recommend")
        assert Counting.synced == start  # nothing read back
        other = Store.open(tmp_path)  # another server process on the same file
        other.upsert_items(pd.DataFrame({"item_id": ["theirs"], "title": ["their router"]}))
        assert "theirs" in [r["item_id"] for r in client.get("/recommend", params={"n": 100}).json()["items"]]
        assert Counting.synced == start + 1
        other.close()
    store.close()


def test_another_process_big_write_stalls_no_read(tmp_path):
    """While this process encodes another process's big write, reads answer from the engine as it is."""
    from coldrec.serve.store import Store
    from tests.synthetic import make_catalog
    from tests.test_api import FakeEngine

    class Slow(FakeEngine):
        def sync_items(self, items_frame):
            if len(items_frame) > 100:
                time.sleep(2.0)  # encoding a big batch
            return super().sync_items(items_frame)

    app, store = make_service(tmp_path, engine=Slow(make_catalog()))
    with TestClient(app) as client:
        other = Store.open(tmp_path)
        other.upsert_items(pd.DataFrame({"item_id": [f"big{i}" for i in range(500)], "title": "their router"}))
        started = time.perf_counter()
        for _ in range(5):
            assert client.get("/recommend", params={"n": 100}).status_code == 200
        assert time.perf_counter() - started < 1.5  # not 2 s per read, nor 2 s for the first
        deadline = time.monotonic() + 10
        while "big499" not in [r["item_id"] for r in client.get("/recommend", params={"n": 100}).json()["items"]]:
            assert time.monotonic() < deadline, "the big write never arrived"
            time.sleep(0.1)
        other.upsert_items(pd.DataFrame({"item_id": ["small"], "title": ["one more router"]}))
        # a small write is in the very next answer (the read waits for a short catch-up)
        assert "small" in [r["item_id"] for r in client.get("/recommend", params={"n": 100}).json()["items"]]
        other.close()
    store.close()
