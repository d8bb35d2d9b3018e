"""Sponsored products: the auction's prices, placement, tokens, pacing, the click model's calibration, campaigns
through the API, and sponsored slots in /recommend and /search (the ledger on both backends:
tests/test_store_contract.py)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from fastapi.testclient import TestClient

from coldrec.ads import (
    AdPolicy,
    AdToken,
    Campaign,
    CampaignError,
    ClickModel,
    ScoredPairs,
    TokenError,
    held_out_click_model,
    paced_budget,
    place_ads,
    second_price_auction,
)
from coldrec.ads.pacing import DAY
from coldrec.recommend.base import clone
from coldrec.serve.app import create_app
from coldrec.serve.engine import Engine
from coldrec.serve.settings import Settings
from coldrec.serve.store import Store
from tests.synthetic import make_catalog, make_log

# ------------------------------------------------------------------ the auction and its parts


def test_second_price_auction_charges_the_least_bid_that_keeps_each_place():
    p = np.array([0.10, 0.20, 0.05, 0.40])
    bids = np.array([1.00, 1.00, 4.00, 0.10])  # values .10, .20, .20, .04
    sold = second_price_auction(p, bids, slots=2, reserve=0.05)
    assert sold.winners.tolist() == [1, 2]  # tie at .20: the lower row first
    # bidder 1 must keep p * bid >= .20 (bidder 2's value): .20 / .20 = 1.0; bidder 2 must beat .10: .10 / .05 = 2.0
    assert sold.prices == pytest.approx([1.0, 2.0])
    assert (sold.prices <= bids[sold.winners]).all()


def test_the_reserve_and_the_relevance_floor_keep_bidders_out():
    p, bids = np.array([0.5, 0.01, 0.3]), np.array([0.04, 100.0, 1.0])
    sold = second_price_auction(p, bids, slots=3, reserve=0.05, min_p=0.1)
    assert sold.winners.tolist() == [2]  # 0: under the reserve; 1: under the floor
    assert sold.prices == pytest.approx([0.05])  # nobody after it: the reserve
    # one item advertised by two campaigns wins once, its better bidder
    twice = second_price_auction(np.array([0.2, 0.2, 0.1]), np.array([1.0, 2.0, 1.0]), 2, distinct=np.array([7, 7, 8]))
    assert twice.winners.tolist() == [1, 2]


def test_ads_take_their_slots_and_never_repeat_an_organic_item():
    organic = np.arange(10, 20)
    shown = place_ads(organic, np.array([15, 99]), slots=(2, 7), n=10)
    assert shown[2] == 15 and shown[7] == 99
    assert len(set(shown.tolist())) == 10
    assert [i for i in shown if i not in (15, 99)] == [10, 11, 12, 13, 14, 16, 17, 18]
    assert place_ads(organic[:3], np.array([5]), slots=(4,), n=5).tolist() == [10, 11, 12, -1, 5]


def test_tokens_are_signed_and_expire():
    secret = b"s" * 32
    token = AdToken("c_1", "item/1", 0.42, time.time()).sign(secret)
    assert AdToken.verify(token, secret).price == 0.42
    with pytest.raises(TokenError, match="not signed"):
        AdToken.verify(token, b"t" * 32)
    with pytest.raises(TokenError, match="not an ad token"):
        AdToken.verify("garbage", secret)
    with pytest.raises(TokenError, match="expired"):
        AdToken.verify(token, secret, now=time.time() + 2 * DAY)


def test_pacing_spreads_the_day():
    assert paced_budget(100.0, 0.0) == pytest.approx(10.0)  # midnight: the lead only
    assert paced_budget(100.0, DAY / 2) == pytest.approx(60.0)
    assert paced_budget(100.0, DAY - 1) == pytest.approx(100.0)


def test_campaign_fields_are_checked_by_name():
    for values, field in ((dict(items=()), "items"), (dict(items=("a", "a")), "items"), (dict(bid=0.0), "bid"),
                          (dict(daily_budget=float("nan")), "daily_budget"), (dict(start=10.0, end=5.0), "end")):
        with pytest.raises(CampaignError) as error:
            Campaign(**{"campaign_id": "", "items": ("a",), "bid": 1.0, "daily_budget": 1.0, **values})
        assert error.value.field == field
    campaign = Campaign("c", ("a",), 1.0, 1.0, keywords=("desk lamp",), categories=("Electronics",))
    assert campaign.matches_query("a Desk-Lamp, please") and not campaign.matches_query("desk")
    assert campaign.matches_categories({"office > electronics"}) and not campaign.matches_categories({"office"})
    with pytest.raises(CampaignError, match="items"):
        campaign.changed({"items": ["b"]})


def test_the_click_model_is_calibrated_on_generated_clicks():
    rng = np.random.default_rng(0)
    n = 40_000
    score = rng.normal(size=n)
    known = rng.integers(0, 20, n).astype(float)
    truth = 1 / (1 + np.exp(-(-3.0 + 1.2 * score + 0.3 * np.log1p(known))))
    labels = (rng.random(n) < truth).astype(np.int8)
    pairs = ScoredPairs(score, score.max() - score, np.zeros(n), known, known == 0, labels)
    model = ClickModel().fit(pairs.take(slice(0, n // 2)))
    held = pairs.take(slice(n // 2, n))
    p = model.predict(held)
    assert abs(p.mean() - held.labels.mean()) < 0.01
    order = np.argsort(p)
    top, bottom = order[-n // 10:], order[: n // 10]
    assert held.labels[top].mean() > 4 * held.labels[bottom].mean()
    assert np.corrcoef(p, truth[n // 2:])[0, 1] > 0.95


# ------------------------------------------------------------------ through the API


@pytest.fixture(scope="module")
def engine():
    from coldrec.serve.synthetic import HashingEncoder

    built = Engine.build(make_catalog(), make_log(), encoder=HashingEncoder(256))
    built.click_model = held_out_click_model(lambda: clone(built.model), make_log(), make_catalog())
    return built


@pytest.fixture
def client(engine, tmp_path):
    store = Store.open(tmp_path / "state", "ads-test-key")
    store.seed(make_catalog(), make_log())
    settings = Settings(state_dir=tmp_path / "state", ad_floor=0.0)
    with TestClient(create_app(engine, store, settings)) as client:
        client.store = store  # type: ignore[attr-defined]
        yield client
    store.close()


def start(client, **fields) -> dict:
    body = {"items": ["i3"], "bid": 1.0, "daily_budget": 50.0, **fields}
    response = client.post("/campaigns", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def wait_for_campaigns(client) -> None:
    time.sleep(1.05)  # a process re-reads the campaigns at most once a second


def sponsored(rows: list[dict]) -> list[dict]:
    return [row for row in rows if row["sponsored"]]


def test_campaigns_are_created_changed_and_reported(client):
    made = start(client, items=["i3", "i4"], keywords=["stapler"])
    assert made["running"] and made["impressions"] == 0 and made["budget_left_today"] == 50.0
    got = client.get(f"/campaigns/{made['campaign_id']}").json()
    assert got["items"] == ["i3", "i4"] and got["keywords"] == ["stapler"]
    paused = client.patch(f"/campaigns/{made['campaign_id']}", json={"paused": True, "daily_budget": 20.0})
    assert paused.status_code == 200 and paused.json()["paused"] and not paused.json()["running"]
    assert paused.json()["daily_budget"] == 20.0
    assert [c["campaign_id"] for c in client.get("/campaigns").json()["campaigns"]] == [made["campaign_id"]]
    assert client.get("/campaigns/c_unknown").status_code == 404
    assert client.patch("/campaigns/c_unknown", json={"paused": True}).status_code == 404


@pytest.mark.parametrize(("body", "field"), [
    ({"items": [], "bid": 1.0, "daily_budget": 1.0}, "items"),
    ({"items": ["i3"], "bid": 0, "daily_budget": 1.0}, "bid"),
    ({"items": ["i3"], "bid": 1.0, "daily_budget": -1}, "daily_budget"),
    ({"items": ["i3"], "bid": 1.0}, "daily_budget"),
    ({"items": ["i3", "nope"], "bid": 1.0, "daily_budget": 1.0}, "items"),
    ({"items": ["i3", "i3"], "bid": 1.0, "daily_budget": 1.0}, "items"),
    ({"items": ["i3"], "bid": 1.0, "daily_budget": 1.0, "starts_at": "2030-01-02", "ends_at": "2030-01-01"},
     "ends_at"),
    ({"items": ["i3"], "bid": 1.0, "daily_budget": 1.0, "colour": "red"}, "colour"),
])
def test_a_bad_campaign_is_answered_naming_its_field(client, body, field):
    response = client.post("/campaigns", json=body)
    assert response.status_code == 422, response.text
    assert field in [part for error in response.json()["detail"] for part in map(str, error["loc"])]


def test_a_bad_patch_names_its_field(client):
    made = start(client)
    for body, field in (({"items": ["i4"]}, "items"), ({"bid": -2}, "bid"), ({}, "body"), ({"paused": None}, "body")):
        response = client.patch(f"/campaigns/{made['campaign_id']}", json=body)
        assert response.status_code == 422, response.text
        assert field in str(response.json()["detail"])


def test_sponsored_items_take_their_slots_in_recommend(client):
    organic = client.get("/recommend", params={"user": "u-a-0", "n": 10}).json()["items"]
    assert not sponsored(organic)
    # advertise an item of the shopper's own cluster that the organic list does not hold
    target = next(f"i{i}" for i in range(12) if f"i{i}" not in {row["item_id"] for row in organic})
    made = start(client, items=[target], bid=2.0)
    wait_for_campaigns(client)
    rows = client.get("/recommend", params={"user": "u-a-0", "n": 10}).json()["items"]
    ads = sponsored(rows)
    assert [row["item_id"] for row in ads] == [target]
    assert rows.index(ads[0]) == 2  # the first sponsored position: 3
    assert ads[0]["reason"].startswith("sponsored") and ads[0]["ad"]
    assert len({row["item_id"] for row in rows}) == len(rows) == 10
    assert not sponsored(client.get("/recommend", params={"user": "u-a-0", "ads": "false"}).json()["items"])
    client.patch(f"/campaigns/{made['campaign_id']}", json={"paused": True})
    wait_for_campaigns(client)
    assert not sponsored(client.get("/recommend", params={"user": "u-a-0"}).json()["items"])


def test_an_ad_for_an_organic_item_replaces_it(client):
    organic = [row["item_id"] for row in client.get("/recommend", params={"user": "u-a-0"}).json()["items"]]
    start(client, items=[organic[0]])
    wait_for_campaigns(client)
    rows = client.get("/recommend", params={"user": "u-a-0"}).json()["items"]
    assert [row["item_id"] for row in rows].count(organic[0]) == 1
    assert rows[2]["item_id"] == organic[0] and rows[2]["sponsored"]


def test_the_relevance_floor_keeps_an_irrelevant_ad_out(engine, tmp_path):
    store = Store.open(tmp_path / "state", "ads-test-key")
    store.seed(make_catalog(), make_log())
    with TestClient(create_app(engine, store, Settings(state_dir=tmp_path / "state", ad_floor=1e6))) as client:
        start(client, items=[f"i{i}" for i in range(26)], bid=100.0)
        wait_for_campaigns(client)
        assert not sponsored(client.get("/recommend", params={"user": "u-a-0"}).json()["items"])
    store.close()


def test_sponsored_items_in_search_follow_keywords(client):
    start(client, items=[f"i{i}" for i in range(12, 24)], keywords=["router"], bid=1.5)
    wait_for_campaigns(client)
    rows = client.get("/search", params={"q": "router cable", "user": "u-b-0"}).json()["items"]
    ads = sponsored(rows)
    assert ads and all(row["ad"] for row in ads)
    assert len({row["item_id"] for row in rows}) == len(rows)
    assert not sponsored(client.get("/search", params={"q": "keyboard", "user": "u-b-0"}).json()["items"])


def test_a_click_on_an_ad_is_charged_and_counted(client):
    made = start(client, items=["i5"], bid=3.0, daily_budget=4.0)
    wait_for_campaigns(client)
    ad = next(row for row in client.get("/recommend", params={"user": "u-a-0"}).json()["items"]
              if row["sponsored"])
    clicks = [{"event_id": f"ad-click-{i}", "user_id": "u-a-0", "item_id": "i5", "type": "click", "ad": ad["ad"]}
              for i in range(3)]
    # 8 clients at once, each sending every click (the retries of one another)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: client.post("/events", json={"events": clicks}), range(8)))
    assert all(answer.status_code == 200 for answer in answers)
    assert sum(answer.json()["accepted"] for answer in answers) == 3
    forged = {**clicks[0], "event_id": "forged", "ad": ad["ad"][:-2] + "xx"}
    rejected = client.post("/events", json={"events": [forged]}).json()["rejected"]
    assert rejected[0]["field"] == "events[0].ad"
    time.sleep(1.1)  # impressions are written every second
    stats = client.get(f"/campaigns/{made['campaign_id']}").json()
    assert stats["clicks"] == 3 and stats["spend"] <= 4.0 and stats["impressions"] >= 1
    assert stats["spend"] == pytest.approx(min(4.0, 3 * AdToken.verify(ad["ad"], client.store.ad_secret()).price))


def test_the_policy_and_positions_are_settings():
    assert Settings().ad_policy() == AdPolicy((2, 7), 0.5, 0.05)
    assert Settings().ad_policy(chosen_floor=0.25, chosen_reserve=0.3) == AdPolicy((2, 7), 0.25, 0.3)  # the build's
    assert Settings(ad_floor=1.0, ad_reserve=0.1, ad_positions=(1,)).ad_policy(0.25, 0.3) == AdPolicy((0,), 1.0, 0.1)
    with pytest.raises(ValueError):
        Settings(ad_positions=(0, 3))


def test_a_pinned_item_keeps_its_place_beside_the_ads():
    organic = np.arange(10, 20)
    fixed = np.zeros(10, bool)
    fixed[[2, 4]] = True  # pinned at positions 3 and 5: the first sponsored slot (3) is not used
    shown = place_ads(organic, np.array([99, 98, 12]), slots=(2, 7), n=10, fixed=fixed)
    assert shown[2] == 12 and shown[4] == 14  # 12 is pinned: it is not shown as an ad
    assert shown[7] == 99 and 98 not in shown
    assert len(set(shown.tolist())) == 10


def test_a_pin_on_a_sponsored_position_wins_over_the_ad(client):
    organic = [row["item_id"] for row in client.get("/recommend", params={"user": "u-a-0"}).json()["items"]]
    start(client, items=[f"i{i}" for i in range(24)], bid=5.0)
    assert client.post("/rules", json={"action": "pin", "item_id": organic[5], "position": 3}).status_code == 201
    wait_for_campaigns(client)
    rows = client.get("/recommend", params={"user": "u-a-0"}).json()["items"]
    assert rows[2]["item_id"] == organic[5] and not rows[2]["sponsored"] and rows[2]["reason"] == "pinned"
    assert [row["sponsored"] for row in rows].count(True) <= 1  # only position 8 is left for an ad
    assert len({row["item_id"] for row in rows}) == 10


def test_a_retrain_refits_the_click_model_and_keeps_the_floor_and_reserve(engine, tmp_path):
    """The click model maps the ranker's scores, so a retrain calibrates it again (on a time cut of the store's
    data); the relevance floor the build chose is kept. It survives the model directory (no pickle)."""
    from coldrec.model.versions import ModelVersions
    from coldrec.serve.retrain import retrain

    root = tmp_path / "shop"
    engine.click_model.floor_, engine.click_model.reserve_ = 0.75, 0.2
    ModelVersions(root).publish(engine.save)
    store = Store.open(root / "state", "ads-test-key")
    store.seed(make_catalog(), make_log())
    store.add_events([{"event_id": f"late-{i}", "user_id": "late-shopper", "item_id": f"i{i}", "type": "purchase",
                       "time": 2_000_000 + i} for i in range(12, 20)])
    loaded = Engine.load(ModelVersions(root).path(1))
    assert loaded.click_model.floor_ == 0.75
    assert loaded.click_model.coef_["known"] == pytest.approx(engine.click_model.coef_["known"])
    assert retrain(root, store).version == 2
    refitted = Engine.load(ModelVersions(root).path(2)).click_model
    assert refitted is not None and (refitted.floor_, refitted.reserve_) == (0.75, 0.2)
    assert not np.allclose(refitted.coef_["known"], engine.click_model.coef_["known"])
    store.close()
