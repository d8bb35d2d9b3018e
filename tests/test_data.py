import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from coldrec.cli import app
from coldrec.data import (
    DataError,
    EventType,
    ItemCatalog,
    TextTemplate,
    UserProfile,
    import_catalog,
    import_events,
    load_dataset,
)

CATALOG_CSV = """sku,name,maker,cat,cost,stock
A1,Heavy duty stapler,Swingline,Office > Staplers,12.50,yes
A2,Copy paper 500 sheets,HP,Office > Paper,$4.99,yes
A3,Garden hose,,Garden > Hoses,,no
"""
CATALOG_MAP = {"item_id": "sku", "title": "name", "brand": "maker", "category": "cat", "price": "cost", "available": "stock"}
EVENTS_MAP = {"user_id": "uid", "item_id": "sku", "time": "ts", "event": "kind"}


@pytest.fixture
def catalog(tmp_path):
    path = tmp_path / "catalog.csv"
    path.write_text(CATALOG_CSV)
    items, _ = import_catalog(path, CATALOG_MAP)
    return items


def write_events(tmp_path, body: bytes | str, name="events.csv"):
    path = tmp_path / name
    header = "uid,sku,ts,kind\n"
    path.write_bytes(header.encode() + (body.encode() if isinstance(body, str) else body))
    return path


def test_catalog_import_maps_columns_and_parses_fields(catalog):
    assert list(catalog.ids) == ["A1", "A2", "A3"]
    frame = catalog.frame
    assert frame["price"].tolist()[:2] == [12.5, 4.99] and np.isnan(frame["price"][2])
    assert frame["available"].tolist() == [True, True, False]
    assert catalog.leaf_categories().tolist() == ["Staplers", "Paper", "Hoses"]
    assert catalog.index_of(["A3", "nope", "A1"]).tolist() == [2, -1, 0]


def test_text_template_drops_empty_fields_and_is_configurable(catalog):
    assert catalog.texts()[0] == "Heavy duty stapler. Swingline. Staplers"
    assert catalog.texts()[2] == "Garden hose. Hoses"
    assert catalog.texts(TextTemplate(fields=("brand", "title"), separator=" | "))[1] == "HP | Copy paper 500 sheets"


def test_events_are_validated_and_kept_in_file_order(tmp_path, catalog):
    path = write_events(tmp_path, "u1,A2,2024-01-02T10:00:00Z,view\nu2,A1,1704200000,cart\nu1,A1,2024-01-03,purchase\n")
    log, table = import_events(path, catalog, EVENTS_MAP)
    assert len(log) == 3 and table.report.accepted == 3
    assert log.user_ids.tolist() == ["u1", "u2", "u1"]
    assert catalog.ids[log.item].tolist() == ["A2", "A1", "A1"]
    assert log.event.tolist() == [EventType.VIEW, EventType.CART, EventType.PURCHASE]
    assert log.time[0] == pd.Timestamp("2024-01-02T10:00:00Z").timestamp()
    assert log.user_item_matrix(len(catalog)).toarray().tolist() == [[1, 1, 0], [1, 0, 0]]


@pytest.mark.parametrize(
    "row, line, field, reason",
    [
        (",A1,2024-01-01,view\n", 2, "uid", "missing user id"),
        ("u1,A9,2024-01-01,view\n", 2, "sku", "unknown item"),
        ("u1,A1,yesterday-ish,view\n", 2, "ts", "unparseable time"),
        ("u1,A1,2024-01-01,teleport\n", 2, "kind", "unknown event type"),
    ],
)
def test_bad_event_row_names_file_line_and_field(tmp_path, catalog, row, line, field, reason):
    path = write_events(tmp_path, "u0,A1,2024-01-01,view\n" + row)
    with pytest.raises(DataError) as caught:
        import_events(path, catalog, EVENTS_MAP)
    error = caught.value
    assert (error.source, error.line, error.field) == ("events.csv", f"line {line + 1}", field)
    assert reason in str(error) and "events.csv: line 3: field" in str(error)


def test_undecodable_text_is_reported_with_its_field(tmp_path, catalog):
    path = write_events(tmp_path, b"u1,A1,2024-01-01,view\nu\xff\xfe2,A2,2024-01-01,view\n")
    with pytest.raises(DataError, match=r"events.csv: line 3: field 'uid': undecodable text"):
        import_events(path, catalog, EVENTS_MAP)


def test_skip_bad_counts_every_bad_row_and_keeps_every_good_one(tmp_path, catalog):
    good = ["u1,A1,2024-01-01,view", "u2,A2,2024-01-02,cart", "u3,A3,2024-01-03,purchase"]
    bad = [",A1,2024-01-01,view", "u1,ZZ,2024-01-01,view", "u1,A1,never,view", "u1,A2,2024-01-01,fly"]
    rows = [good[0], bad[0], good[1], bad[1], bad[2], good[2], bad[3]]
    path = write_events(tmp_path, "\n".join(rows) + "\n")
    log, table = import_events(path, catalog, EVENTS_MAP, skip_bad=True)
    assert log.user_ids.tolist() == ["u1", "u2", "u3"]
    assert catalog.ids[log.item].tolist() == ["A1", "A2", "A3"]
    assert log.order.tolist() == [0, 2, 5]
    report = table.report
    assert (report.read, report.accepted, report.n_skipped) == (7, 3, 4)
    assert report.skipped[("sku", "unknown item")] == 1
    assert any("line 5" in e and "'ZZ'" in e for e in report.examples)
    assert "4 skipped" not in report.summary() and "1 skipped (uid: missing user id)" in report.summary()


def test_json_lines_bad_record_is_located(tmp_path, catalog):
    path = tmp_path / "events.jsonl"
    path.write_text('{"uid": "u1", "sku": "A1", "ts": 1704200000}\n{"uid": "u2", "sku": \n{"uid": "u3", "sku": "A2", "ts": 1704200001}\n')
    mapping = {"user_id": "uid", "item_id": "sku", "time": "ts"}
    with pytest.raises(DataError, match=r"events.jsonl: line 2: field '<record>': invalid JSON"):
        import_events(path, catalog, mapping)
    log, table = import_events(path, catalog, mapping, skip_bad=True)
    assert log.user_ids.tolist() == ["u1", "u3"] and table.report.n_skipped == 1


def test_parquet_events_report_rows(tmp_path, catalog):
    path = tmp_path / "events.parquet"
    pd.DataFrame({"user_id": ["u1", "u2"], "item_id": ["A1", "A7"], "time": ["2024-01-01", "2024-01-02"]}).to_parquet(path)
    with pytest.raises(DataError, match=r"events.parquet: row 2: field 'item_id': unknown item"):
        import_events(path, catalog)


def test_catalog_rejects_duplicates_and_bad_prices(tmp_path):
    path = tmp_path / "items.csv"
    path.write_text("sku,name,cost\nA1,one,1.0\nA1,again,2.0\nA2,two,cheap\nA3,three,3\n")
    with pytest.raises(DataError, match=r"line 3: field 'sku': duplicate item id"):
        import_catalog(path, {"item_id": "sku", "title": "name", "price": "cost"})
    items, table = import_catalog(path, {"item_id": "sku", "title": "name", "price": "cost"}, skip_bad=True)
    assert items.ids.tolist() == ["A1", "A3"] and items.frame["title"].tolist() == ["one", "three"]
    assert table.report.n_skipped == 2


def test_mapping_errors_are_clear(tmp_path, catalog):
    path = write_events(tmp_path, "u1,A1,2024-01-01,view\n")
    with pytest.raises(ValueError, match="unknown field"):
        import_events(path, catalog, {"customer": "uid"})
    with pytest.raises(ValueError, match=r"column\(s\) \['missing'\] not found"):
        import_events(path, catalog, {"user_id": "missing", "item_id": "sku", "time": "ts"})


def test_user_profile_cleans_interests():
    profile = UserProfile(user_id="u1", interests=[" Staplers ", "", "desk lamps"], locale="en-GB")
    assert profile.interests == ["Staplers", "desk lamps"]
    with pytest.raises(ValueError):
        UserProfile(user_id="", interests=[])


def test_item_catalog_id_sort_key_orders_numeric_ids_as_numbers():
    items = ItemCatalog.from_records(["10", "9", "100"], ["a", "b", "c"])
    assert items.id_sort_key().tolist() == [1, 0, 2]
    mixed = ItemCatalog.from_records(["b", "a10", "a9"], ["x", "y", "z"])
    assert mixed.id_sort_key().tolist() == [2, 0, 1]


# --- the real data sets -------------------------------------------------------------


def test_office_matches_the_benchmark_counts(office):
    log = office.log
    assert (len(log), log.n_users, len(office.catalog)) == (53_258, 4_905, 2_420)
    assert np.array_equal(log.order, np.arange(len(log)))
    leaf = pd.read_csv(office_path(office) / "leaf_category.tsv", sep="\t", dtype=str, keep_default_na=False, quoting=3)
    first = leaf.iloc[0]
    assert office.catalog.frame["category"][0] == first["leaf"] and office.catalog.frame["brand"][0] == first["brand_text"]


def office_path(_):
    from tests.conftest import DATA_ROOT

    return DATA_ROOT / "amazon14-office"


def test_uci_cleaning_follows_the_benchmark(data_root):
    ds = load_dataset("uci-online-retail", data_root)
    raw = pd.read_parquet(data_root / "uci-online-retail" / "customer_raw.parquet")
    clean = raw[
        ~raw["InvoiceNo"].astype(str).str.startswith("C")
        & raw["CustomerID"].notna()
        & (raw["Quantity"] > 0)
        & (raw["UnitPrice"] > 0)
        & raw["StockCode"].astype(str).str.match(r"^\d{5}")
    ]
    distinct = clean.drop_duplicates(["CustomerID", "StockCode", "InvoiceNo"])
    assert len(ds.log) == len(distinct)
    assert ds.log.n_users == distinct["CustomerID"].nunique()
    assert set(ds.catalog.ids) == set(distinct["StockCode"].astype(str))
    first_row = distinct.iloc[0]
    assert ds.log.user_ids[0] == str(int(first_row["CustomerID"])) and ds.catalog.ids[ds.log.item[0]] == first_row["StockCode"]
    assert ds.log.time[0] == pd.Timestamp(first_row["InvoiceDate"]).timestamp()
    # item text: the most frequent description of the stock code
    code = "85123A"
    expected = clean[clean["StockCode"] == code]["Description"].value_counts().index[0]
    assert ds.catalog.frame["title"][ds.catalog.index_of([code])[0]] == expected


def test_homedepot_judgments(data_root):
    ds = load_dataset("homedepot-search", data_root)
    assert len(ds.catalog) == 54_667 and len(ds.judgments) == 74_067
    assert ds.judgments["relevance"].between(1, 3).all() and (ds.judgments["item"] >= 0).all()


def test_cli_stats_prints_counts_and_writes_json(data_root, tmp_path):
    out = tmp_path / "stats.json"
    result = CliRunner().invoke(app, ["data", "stats", "--data", str(data_root), "-d", "amazon14-office", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "53,258" in result.output and "interactions per user" in result.output
    stats = json.loads(out.read_text())[0]
    assert stats["users"] == 4_905 and sum(stats["per_user"].values()) == 4_905
    assert sum(stats["per_item"].values()) == 2_420


def test_cli_reports_bad_rows_or_skips_them(tmp_path):
    catalog = tmp_path / "catalog.csv"
    catalog.write_text(CATALOG_CSV)
    events = write_events(tmp_path, "u1,A1,2024-01-01,view\nu2,A9,2024-01-01,view\n")
    args = ["data", "stats", "--catalog", str(catalog), "--events", str(events)]
    args += [f"--catalog-map={k}={v}" for k, v in CATALOG_MAP.items()]
    args += [f"--events-map={k}={v}" for k, v in EVENTS_MAP.items()]
    failed = CliRunner().invoke(app, args)
    assert failed.exit_code == 2 and "line 3" in failed.output and "'sku'" in failed.output
    skipped = CliRunner().invoke(app, args + ["--skip-bad"])
    assert skipped.exit_code == 0, skipped.output
    assert "1 skipped" in skipped.output and "A9" in skipped.output
