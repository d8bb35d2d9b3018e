"""Sequence files (a header, then one user a line with their item ids in time order) as an untimed log."""

from __future__ import annotations

import numpy as np
import pytest

from coldrec.data import DataError, ItemCatalog
from coldrec.data.sequences import UNKNOWN_ITEM, import_sequences
from coldrec.data.shopfiles import load_shop


@pytest.fixture
def catalog() -> ItemCatalog:
    return ItemCatalog.from_records(["10", "20", "30", "40"], ["ten", "twenty", "thirty", "forty"])


def write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


def events(log) -> list[tuple[str, str, int]]:
    """(user id, item position, time) per event, in the log's order."""
    return [(str(u), int(i), int(t)) for u, i, t in zip(log.user_ids, log.item, log.time, strict=True)]


@pytest.mark.parametrize("sep", [",", "\t"])
def test_csv_and_tsv_give_the_same_untimed_log(tmp_path, catalog, sep):
    path = write(tmp_path / "seq.txt", f"user_id{sep}item_ids\nb7{sep}30 10 30\na1{sep}20\n")
    log, table = import_sequences(path, catalog)
    assert not log.timed
    # time is the position in the user's sequence; users keep file order, repeats are kept
    assert events(log) == [("b7", 2, 0), ("b7", 0, 1), ("b7", 2, 2), ("a1", 1, 0)]
    assert log.order.tolist() == [0, 1, 2, 3]
    assert (table.report.read, table.report.accepted, table.report.n_skipped) == (2, 2, 0)
    # what is derived from it stays untimed
    assert not log.select(log.item > 0).timed and not log.sorted_by_time().timed


def test_columns_by_name_by_position_or_mapped(tmp_path, catalog):
    named = write(tmp_path / "named.csv", "item_ids,extra,user_id\n10 20,x,u1\n")
    assert events(import_sequences(named, catalog)[0]) == [("u1", 0, 0), ("u1", 1, 1)]
    positional = write(tmp_path / "positional.tsv", "\ufeffcustomer\tbasket\nu2\t40\n")
    assert events(import_sequences(positional, catalog)[0]) == [("u2", 3, 0)]
    mapped = write(tmp_path / "mapped.csv", "a,who,what\nz,u3,30 40\n")
    log, _ = import_sequences(mapped, catalog, {"user_id": "who", "item_ids": "what"})
    assert events(log) == [("u3", 2, 0), ("u3", 3, 1)]
    with pytest.raises(ValueError, match="unknown field"):
        import_sequences(mapped, catalog, {"items": "what"})
    with pytest.raises(ValueError, match="not found|needs a user column"):
        import_sequences(mapped, catalog, {"user_id": "nobody"})


@pytest.mark.parametrize(
    ("body", "line", "field", "reason"),
    [
        ("u1,10\n,20\n", 3, "user_id", "missing user id"),
        ("u1,10\nu1,20\n", 3, "user_id", "repeated user id"),
        ("u1,10\nu2,\n", 3, "item_ids", "no item ids"),
        ("u1,10 20\nu2,20 99 30\n", 3, "item_ids", "unknown item id '99' (item 2 of the sequence)"),
    ],
)
def test_a_bad_record_names_file_line_and_field(tmp_path, catalog, body, line, field, reason):
    path = write(tmp_path / "shop.csv", "user_id,item_ids\n" + body)
    with pytest.raises(DataError) as raised:
        import_sequences(path, catalog)
    error = raised.value
    assert (error.source, error.line, error.field) == ("shop.csv", f"line {line}", field)
    assert reason in str(error) and str(error).startswith(f"shop.csv: line {line}: field '{field}'")


def test_skip_bad_counts_rows_and_drops_only_the_unknown_items(tmp_path, catalog):
    path = write(
        tmp_path / "shop.csv",
        "user_id,item_ids\n"
        "u1,10 99 20 98\n"  # two unknown ids dropped, the rest kept
        ",10\n"  # no user: skipped
        "u2,97\n"  # nothing known left: skipped
        "u1,30\n"  # repeated user: skipped
        "u3,40\n",
    )
    log, table = import_sequences(path, catalog, skip_bad=True)
    assert events(log) == [("u1", 0, 0), ("u1", 1, 1), ("u3", 3, 0)]  # positions renumbered after the drop
    report = table.report
    assert (report.read, report.accepted) == (5, 2)
    assert report.skipped[("item_ids", UNKNOWN_ITEM)] == 3
    assert report.skipped[("user_id", "missing user id")] == 1
    assert report.skipped[("user_id", "repeated user id (one line per user)")] == 1
    assert report.skipped[("item_ids", "no known item ids")] == 1
    assert any("line 2" in e and "'99'" in e for e in report.examples)
    assert "3 skipped (item_ids: unknown item id" in report.summary()


def test_load_shop_reads_sequences(tmp_path):
    catalog = write(tmp_path / "catalog.csv", "sku,name\nA,stapler\nB,paper\n")
    seqs = write(tmp_path / "seqs.tsv", "uid\tseq\nx\tA B A\ny\tB\n")
    ds = load_shop(catalog, seqs, catalog_map={"item_id": "sku", "title": "name"}, events_format="sequences")
    assert ds.log is not None and not ds.log.timed
    assert np.array_equal(ds.log.item, [0, 1, 0, 1]) and ds.log.time.tolist() == [0, 1, 2, 0]
    assert [r.accepted for r in ds.reports] == [2, 2]
