"""A shop given only as its own files (other column names, a few bad rows): load, build, serve, evaluate."""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from coldrec.data import DataError
from coldrec.data.shopfiles import import_profiles, load_shop

ROOT = Path(__file__).resolve().parents[1]
CATALOG_MAP = ("item_id=sku,title=name,description=details,brand=maker,category=department,price=price_eur,"
               "created_at=listed_on")
EVENTS_MAP = "user_id=customer,item_id=sku,event=action,time=ordered_at"
PROFILES_MAP = "user_id=customer,interests=likes"


def _generator():
    spec = importlib.util.spec_from_file_location("shop_generate", ROOT / "examples" / "shop" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _maps(text: str) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in text.split(","))


def _shop_arguments(folder: Path) -> list[str]:
    """The README's file options for the generated shop."""
    return ["--catalog", str(folder / "products.csv"), "--events", str(folder / "orders.csv"),
            "--profiles", str(folder / "interests.csv"), "--catalog-map", CATALOG_MAP, "--events-map", EVENTS_MAP,
            "--profiles-map", PROFILES_MAP, "--skip-bad"]


@pytest.fixture(scope="module")
def small_shop(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("small-shop")
    _generator().generate(folder, events=3_000, items=240, seed=1)
    return folder


def test_a_shop_loads_through_its_column_maps_counting_each_bad_row(small_shop):
    ds = load_shop(small_shop / "products.csv", small_shop / "orders.csv", small_shop / "interests.csv",
                   catalog_map=_maps(CATALOG_MAP), events_map=_maps(EVENTS_MAP), profiles_map=_maps(PROFILES_MAP),
                   skip_bad=True)
    items, events, profiles = ds.reports
    assert items.read == 240 and items.accepted == 238
    assert dict(items.skipped) == {("sku", "missing item id"): 1, ("price_eur", "not a non-negative number"): 1}
    assert events.skipped[("customer", "missing user id")] == 1
    assert events.skipped[("ordered_at", "unparseable time")] == 1
    assert events.skipped[("sku", "unknown item")] >= 1  # SKU-NOPE, and any event of the two rejected products
    assert events.accepted == len(ds.log) == events.read - events.n_skipped
    assert ds.name == small_shop.name and len(ds.catalog) == 238
    # mapped fields arrive where the model reads them
    frame = ds.catalog.frame.set_index("item_id")
    assert frame.loc["SKU-10000", "category"] in {"Kitchen", "Garden", "Office", "Toys", "Outdoor", "Bath"}
    assert frame["price"].notna().all() and frame["created_at"].notna().all()
    assert profiles.accepted == len(ds.profiles) > 0
    user, profile = next(iter(ds.profiles.items()))
    assert profile.user_id == user and 1 <= len(profile.interests) <= 2


def test_without_skip_bad_the_first_bad_row_stops_the_load_naming_file_line_and_field(small_shop):
    with pytest.raises(DataError) as raised:
        load_shop(small_shop / "products.csv", small_shop / "orders.csv", catalog_map=_maps(CATALOG_MAP),
                  events_map=_maps(EVENTS_MAP))
    error = raised.value
    assert error.source == "products.csv" and error.field == "sku" and str(error.line) == "line 5"  # header + rows 0..3


def test_a_missing_column_names_the_columns_the_file_has(small_shop):
    with pytest.raises(ValueError, match="not found; the file has"):
        load_shop(small_shop / "products.csv", small_shop / "orders.csv", catalog_map={"item_id": "SKU"})


def test_profiles_take_json_lists_or_pipes_and_name_a_bad_row(tmp_path):
    path = tmp_path / "likes.jsonl"
    path.write_text('{"who": "a", "likes": "Garden | Kitchen"}\n{"who": "b", "likes": "[\\"tea\\", \\"pots\\"]"}\n'
                    '{"who": "a", "likes": "Toys"}\n{"who": "c", "likes": "[1, 2]"}\n')
    with pytest.raises(DataError) as raised:
        import_profiles(path, {"user_id": "who", "interests": "likes"})
    assert str(raised.value.line) == "line 4" and raised.value.field == "likes"
    stated, table = import_profiles(path, {"user_id": "who", "interests": "likes"}, skip_bad=True)
    assert stated["a"].interests == ["Garden", "Kitchen", "Toys"] and stated["b"].interests == ["tea", "pots"]
    assert "c" not in stated and table.report.n_skipped == 1


@pytest.mark.slow
def test_the_readme_shop_builds_serves_and_evaluates_from_its_files(tmp_path, monkeypatch):
    """The README's commands on the generated shop (>= 20k events), with the hashing encoder for speed."""
    from fastapi.testclient import TestClient

    from coldrec import cli
    from coldrec.serve.app import create_app
    from coldrec.serve.engine import Engine
    from coldrec.serve.settings import Settings
    from coldrec.serve.store import Store

    shop = tmp_path / "shop"
    counts = _generator().generate(shop)
    assert counts["orders"] >= 20_000
    monkeypatch.setenv("COLDREC_ID_KEY", "shop-test-key")
    runner = CliRunner()
    built = runner.invoke(cli.app, ["build", "--out", str(tmp_path / "model"), "--encoder", "hashing",
                                    *_shop_arguments(shop)])
    assert built.exit_code == 0, built.output
    assert "1 skipped (sku: missing item id)" in built.output  # each file's load report is printed

    store = Store.open(tmp_path / "model" / "state", "shop-test-key")
    assert store.counts()["events"] >= 20_000 and store.counts()["profiles"] == counts["interests"]
    from coldrec.model.versions import locate

    _, version, directory = locate(tmp_path / "model")
    assert version == 1
    engine = Engine.load(directory)
    client = TestClient(create_app(engine, store, Settings(state_dir=tmp_path / "model" / "state")))
    with client:
        first_visit = client.get("/recommend", params={"n": 5})
        assert first_visit.status_code == 200 and len(first_visit.json()["items"]) == 5
        known = client.get("/recommend", params={"user": "c5", "n": 10}).json()["items"]
        assert len(known) == 10
        stated = client.get("/recommend", params={"user": "new-shopper", "n": 10})
        assert stated.status_code == 200
        found = client.get("/search", params={"q": "kettle", "n": 5}).json()["items"]
        assert found and "kettle" in found[0]["title"].lower()
        # the build fitted the click model sponsored slots need, and chose its relevance floor
        assert engine.click_model is not None and None not in (engine.click_model.floor_, engine.click_model.reserve_)
        advertised = [row["item_id"] for row in known]
        campaign = {"items": advertised, "bid": 1.0, "daily_budget": 100.0}
        assert client.post("/campaigns", json=campaign).status_code == 201
        time.sleep(1.05)  # campaigns are re-read once a second
        with_ads = client.get("/recommend", params={"user": "c5", "n": 10}).json()["items"]
        assert 1 <= [row["sponsored"] for row in with_ads].count(True) <= 2
        assert len({row["item_id"] for row in with_ads}) == 10
    store.close()

    evaluated = runner.invoke(cli.app, ["evaluate", "--models", "pop,itemknn,coldrec", "--no-tune",
                                        "--out", str(tmp_path / "reports"), *_shop_arguments(shop)])
    assert evaluated.exit_code == 0, evaluated.output
    report = json.loads((tmp_path / "reports" / "shop" / "report.json").read_text())
    rows = {(row["segment"], row["model"]): row for row in report["rows"]}
    for model in ("pop", "itemknn", "coldrec"):
        assert rows["cold k=1", model]["users"] > 50 and rows["warm", model]["users"] > 50
    # the generated shoppers favour departments: anything that reads them beats popularity for a first click
    assert rows["cold k=1", "coldrec"]["ndcg@10"] > rows["cold k=1", "pop"]["ndcg@10"]
