"""Merchandising rules through the API: each kind (boost, bury, pin, exclude), by item, category and brand, with
dates; a pin past the list's end; rules on deleted and out-of-stock items; bad rules answered with the field; the
rule kept in the store (both backends hold the same table: tests/test_store_contract.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from fastapi.testclient import TestClient

from coldrec.rank.rules import Rule, pin, reorder
from coldrec.serve.app import create_app
from coldrec.serve.engine import Engine
from coldrec.serve.settings import Settings
from coldrec.serve.store import Store
from tests.synthetic import make_catalog, make_log


@pytest.fixture(scope="module")
def engine():
    from coldrec.serve.synthetic import HashingEncoder

    return Engine.build(make_catalog(), make_log(), encoder=HashingEncoder(256))


@pytest.fixture
def client(engine, tmp_path):
    store = Store.open(tmp_path / "state", "rules-test-key")
    store.seed(make_catalog(), make_log())
    with TestClient(create_app(engine, store, Settings(state_dir=tmp_path / "state"))) as client:
        yield client
    for item in ("i3", "i20"):  # the module's engine is shared: put back what a test deleted
        if not engine.has_item(item):
            engine.add_items(make_catalog().frame[make_catalog().frame["item_id"] == item])
    store.close()


def listed(client, n: int = 10, **params) -> list[dict]:
    response = client.get("/recommend", params={"user": "shopper", "n": n, **params})
    assert response.status_code == 200, response.text
    return response.json()["items"]


def ids(rows: list[dict]) -> list[str]:
    return [row["item_id"] for row in rows]


def add(client, **rule) -> dict:
    response = client.post("/rules", json=rule)
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture
def shopper(client):
    """A shopper of the paper-goods cluster (i0-i11): their list starts with paper goods."""
    events = [{"event_id": f"s{i}", "user_id": "shopper", "item_id": f"i{i}", "type": "view"} for i in (1, 4)]
    assert client.post("/events", json={"events": events}).status_code == 200
    return listed(client, n=26)


def test_boost_and_bury_move_items_and_say_so(client, shopper):
    plain = ids(shopper)
    low = plain[-3]  # near the end of the whole list
    add(client, action="boost", item_id=low, weight=20)
    boosted = listed(client, n=26)
    assert ids(boosted).index(low) < plain.index(low) / 5
    assert next(r for r in boosted if r["item_id"] == low)["reason"] == "promoted"
    top = plain[0]
    add(client, action="bury", item_id=top, weight=10)
    assert ids(listed(client, n=26)).index(top) > 5


def test_a_category_boost_brings_the_other_cluster_up(client, shopper):
    plain = ids(shopper)[:10]
    assert sum(item_number(i) >= 12 for i in plain) <= 3  # mostly paper goods before
    add(client, action="boost", category="Electronics", weight=50)
    after = ids(listed(client))
    assert sum(item_number(i) >= 12 for i in after) > sum(item_number(i) >= 12 for i in plain)


def item_number(item_id: str) -> int:
    return int(item_id[1:])


def test_pin_puts_an_item_at_its_position_and_past_the_end_last(client, shopper):
    far = ids(shopper)[-1]
    add(client, action="pin", item_id=far, position=2)
    rows = listed(client)
    assert ids(rows)[1] == far and rows[1]["reason"] == "pinned" and len(rows) == 10
    other = ids(shopper)[-2]
    add(client, action="pin", item_id=other, position=500)  # past this list of 10: not in it
    assert other not in ids(listed(client))
    everything = listed(client, n=100)
    assert ids(everything)[-1] == other and ids(everything)[1] == far


def test_exclude_by_category_and_brand_and_dates(client, shopper):
    brands = make_catalog().frame.set_index("item_id")["brand"]
    by_brand = add(client, action="exclude", brand="BOLT")  # any case
    assert set(brands[ids(listed(client, n=26))]) == {"Acme"}
    assert client.delete(f"/rules/{by_brand['rule_id']}").json() == {"deleted": by_brand["rule_id"]}
    assert client.delete(f"/rules/{by_brand['rule_id']}").status_code == 404
    add(client, action="exclude", category="Paper Goods")  # a level of "Office > Paper Goods"
    assert all(item_number(i) >= 12 for i in ids(listed(client, n=26)))
    now = datetime.now(UTC)
    future = add(client, action="exclude", item_id="i14", starts_at=(now + timedelta(days=1)).isoformat())
    past = add(client, action="exclude", item_id="i15", ends_at=(now - timedelta(days=1)).isoformat(),
               starts_at=(now - timedelta(days=2)).isoformat())
    assert not future["active"] and not past["active"]
    still = ids(listed(client, n=26))
    assert "i14" in still and "i15" in still  # neither dated rule applies today
    rules = client.get("/rules").json()["rules"]
    assert [r["active"] for r in rules] == [True, False, False]
    assert client.delete(f"/rules/{rules[0]['rule_id']}").status_code == 200
    assert any(item_number(i) < 12 for i in ids(listed(client, n=26)))  # paper goods are back


def test_rules_never_bring_back_a_deleted_or_unavailable_item(client, shopper):
    response = client.post("/rules", json={"action": "pin", "item_id": "nope", "position": 1})
    assert response.status_code == 422 and response.json()["detail"][0]["field"] == "item_id"
    add(client, action="pin", item_id="i3", position=1)
    add(client, action="boost", item_id="i20", weight=100)
    assert ids(listed(client))[0] == "i3"
    assert client.delete("/items/i3").status_code == 200  # a rule on an item deleted afterwards
    assert client.patch("/items/i20", json={"available": False}).status_code == 200  # out of stock
    rows = ids(listed(client, n=26))
    assert "i3" not in rows and "i20" not in rows
    assert client.post("/rules", json={"action": "boost", "item_id": "i3"}).status_code == 422  # deleted now
    client.patch("/items/i20", json={"available": True})


@pytest.mark.parametrize(("rule", "field"), [
    ({"action": "pin", "item_id": "i1"}, "position"),
    ({"action": "pin", "category": "Paper Goods", "position": 1}, "item_id"),
    ({"action": "boost", "item_id": "i1", "brand": "x"}, "brand"),
    ({"action": "boost"}, "item_id"),
    ({"action": "exclude", "item_id": "i1", "position": 3}, "position"),
    ({"action": "exclude", "item_id": "i1", "weight": 2}, "weight"),
    ({"action": "boost", "item_id": "i1", "weight": 0}, "weight"),
    ({"action": "promote", "item_id": "i1"}, "action"),
    ({"action": "pin", "item_id": "i1", "position": 0}, "position"),
    ({"action": "boost", "item_id": "i1", "starts_at": "2030-01-02T00:00:00Z", "ends_at": "2030-01-01T00:00:00Z"},
     "ends_at"),
    ({"action": "boost", "item_id": "i1", "colour": "red"}, "colour"),
])
def test_bad_rules_name_the_field(client, rule, field):
    response = client.post("/rules", json=rule)
    assert response.status_code == 422, response.text
    assert field in [error["field"] for error in response.json()["detail"]]


def test_rule_functions_on_their_own():
    class Facts:
        ids = np.array(["a", "b", "c", "d"], object)
        brands = np.array(["X", "", "x", "Y"], object)

        def in_category(self, category):
            return np.array([True, False, True, False])

    facts = Facts()
    ranked = np.array([0, 1, 2, 3])
    order, boosted = reorder(ranked, [Rule("r", "boost", brand="x", weight=3)], facts, now=0)
    assert ranked[order].tolist() == [0, 2, 1, 3] and boosted.tolist() == [True, True, False, False]
    order, _ = reorder(ranked, [Rule("r", "exclude", category="any"), Rule("s", "bury", item_id="b")], facts, 0)
    assert ranked[order].tolist() == [1, 3]
    listed_, pinned = pin(np.array([0, 1]), ranked, 3, [Rule("p", "pin", item_id="d", position=1)], facts, 0)
    assert listed_.tolist() == [3, 0, 1] and pinned.tolist() == [True, False, False]
    listed_, pinned = pin(np.array([0, 1]), ranked, 5, [Rule("p", "pin", item_id="d", position=9)], facts, 0)
    assert listed_.tolist() == [0, 1, 3] and pinned.tolist() == [False, False, True]  # past the end: last
    with pytest.raises(ValueError, match="exactly one"):
        Rule("r", "boost", item_id="a", brand="x")
    assert not Rule("r", "boost", item_id="a", starts_at=10).active(5)
