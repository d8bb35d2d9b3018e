"""Loaders for the real data sets in `../shared/data` (or any folder laid out the same way).

Every loader returns a `Dataset`; the loading rules for the benchmark sets follow
`BENCHMARK.md` (file order, UCI Online Retail cleaning).
"""

from __future__ import annotations

import ast
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from coldrec.data.catalog import ItemCatalog
from coldrec.data.errors import DataError, LoadReport, RowChecker
from coldrec.data.importer import catalog_from_table, events_from_table
from coldrec.data.interactions import EventType, InteractionLog
from coldrec.data.profile import UserProfile
from coldrec.data.tables import RawTable, read_table


@dataclass
class Dataset:
    name: str
    catalog: ItemCatalog
    log: InteractionLog | None = None  # recommendation data sets
    judgments: pd.DataFrame | None = None  # search data sets: query, item (position), relevance
    reports: list[LoadReport] = field(default_factory=list)
    profiles: dict[str, UserProfile] = field(default_factory=dict)  # stated interests by user id

    def __repr__(self) -> str:
        parts = [f"{len(self.catalog):,} items"]
        if self.log is not None:
            parts.append(f"{len(self.log):,} events")
        if self.judgments is not None:
            parts.append(f"{len(self.judgments):,} judgments")
        return f"Dataset({self.name!r}, {', '.join(parts)})"


def default_data_root() -> Path:
    """`$COLDREC_DATA`, else `../shared/data` seen from the working directory."""
    return Path(os.environ.get("COLDREC_DATA", "../shared/data"))


def load_amazon14_office(root: Path, skip_bad: bool = False) -> Dataset:
    folder = Path(root) / "amazon14-office"
    items = read_table(folder / "leaf_category.tsv", skip_bad=skip_bad)
    catalog = catalog_from_table(
        items, {"item_id": "item_key", "title": "title", "brand": "brand_text", "category": "leaf"}, skip_bad
    )
    logs = []
    for name in ("train.csv", "dev.csv", "test.csv"):
        table = read_table(folder / name, columns=["user_id", "item_id", "time"], sep="\t", skip_bad=skip_bad)
        logs.append((events_from_table(table, catalog, skip_bad=skip_bad), table.report))
    log = _concat_in_file_order([log for log, _ in logs])
    return Dataset("amazon14-office", catalog, log, reports=[items.report] + [r for _, r in logs])


def _concat_in_file_order(logs: list[InteractionLog]) -> InteractionLog:
    merged = InteractionLog.concat(logs)
    merged.order = np.arange(len(merged), dtype=np.int64)
    return merged


UCI_RULES = {
    "cancellation (InvoiceNo starts with C)": lambda f: f["InvoiceNo"].str.startswith("C"),
    "no CustomerID": lambda f: f["CustomerID"] == "",
    "Quantity <= 0": lambda f: pd.to_numeric(f["Quantity"], errors="coerce") <= 0,
    "UnitPrice <= 0": lambda f: pd.to_numeric(f["UnitPrice"], errors="coerce") <= 0,
    "StockCode not five digits (postage, fees, adjustments)": lambda f: ~f["StockCode"].str.match(r"^\d{5}"),
}


def load_uci_online_retail(root: Path, skip_bad: bool = False) -> Dataset:
    """Cleaned as BENCHMARK.md says; one interaction per distinct (customer, stock code, invoice)."""
    path = Path(root) / "uci-online-retail" / "customer_raw.parquet"
    raw = pd.read_parquet(path)
    frame = pd.DataFrame(
        {
            "InvoiceNo": raw["InvoiceNo"].astype("string").fillna("").str.strip(),
            "StockCode": raw["StockCode"].astype("string").fillna("").str.strip(),
            "Description": raw["Description"].astype("string").fillna("").str.strip(),
            "Quantity": raw["Quantity"].astype("string").fillna(""),
            "InvoiceDate": raw["InvoiceDate"].astype("string").fillna(""),
            "UnitPrice": raw["UnitPrice"].astype("string").fillna(""),
            # float ids in the source (17850.0): keep the integer spelling
            "CustomerID": raw["CustomerID"].astype("Int64").astype("string").fillna(""),
        }
    )
    table = RawTable(frame, np.arange(1, len(frame) + 1), "row", LoadReport(path.name))
    check = table.checker(skip_bad)
    for rule, drop in UCI_RULES.items():
        check.filter(drop(frame).fillna(False).to_numpy(dtype=bool), rule)
    for column in ("Quantity", "UnitPrice"):
        check.check(pd.to_numeric(frame[column], errors="coerce").isna().to_numpy(), column, "not a number",
                    frame[column].to_numpy())
    keep = check.keep
    clean = frame[keep]
    distinct = ~clean.duplicated(["CustomerID", "StockCode", "InvoiceNo"], keep="first").to_numpy()
    check.filter(_expand(keep, ~distinct), "repeat of a (customer, stock code, invoice)")
    check.finish()
    clean = frame[check.keep]

    described = clean[clean["Description"] != ""]
    counts = described.groupby(["StockCode", "Description"], sort=False).size().rename("n").reset_index()
    first_seen = {code: i for i, code in enumerate(pd.unique(clean["StockCode"]))}
    best = counts.sort_values(["StockCode", "n", "Description"], ascending=[True, False, True])
    best = best.drop_duplicates("StockCode")
    title = dict(zip(best["StockCode"], best["Description"], strict=True))
    codes = sorted(first_seen, key=first_seen.__getitem__)
    catalog = ItemCatalog.from_records(codes, [title.get(c, "") for c in codes])
    events = RawTable(
        pd.DataFrame({"user_id": clean["CustomerID"], "item_id": clean["StockCode"], "time": clean["InvoiceDate"]}),
        table.lines[check.keep], "row", LoadReport(path.name + " (events)"),
    )
    log = events_from_table(events, catalog, skip_bad=skip_bad)
    log.order = np.arange(len(log), dtype=np.int64)
    return Dataset("uci-online-retail", catalog, log, reports=[table.report])


def _expand(mask: np.ndarray, sub: np.ndarray) -> np.ndarray:
    """A full-length mask that is `sub` at the positions where `mask` is True."""
    full = np.zeros(len(mask), dtype=bool)
    full[np.flatnonzero(mask)] = sub
    return full


def load_homedepot_search(root: Path, skip_bad: bool = False) -> Dataset:
    """Products (distinct product_uid with its title) and graded (query, product) judgments."""
    table = read_table(Path(root) / "homedepot-search" / "train.csv", encoding="latin-1", skip_bad=skip_bad)
    frame = table.frame
    check = table.checker(skip_bad)
    for column in ("product_uid", "search_term"):
        check.check((frame[column].str.strip() == "").to_numpy(), column, "missing value")
    relevance = pd.to_numeric(frame["relevance"], errors="coerce")
    check.check((relevance.isna() | (relevance < 1) | (relevance > 3)).to_numpy(), "relevance",
                "not a number in [1, 3]", frame["relevance"].to_numpy())
    keep = check.finish()
    kept = frame[keep]
    products = kept.drop_duplicates("product_uid")
    catalog = ItemCatalog.from_records(products["product_uid"].to_numpy(), products["product_title"].to_numpy())
    judgments = pd.DataFrame(
        {
            "query": kept["search_term"].str.strip().to_numpy(),
            "item": catalog.index_of(kept["product_uid"].to_numpy()),
            "relevance": relevance[keep].to_numpy(),
        }
    )
    return Dataset("homedepot-search", catalog, judgments=judgments, reports=[table.report])


def load_amazon18(root: Path, category: str = "Office_Products", split: str = "test",
                  skip_bad: bool = False) -> Dataset:
    """Next-item samples as a log: each user's longest sample (history then target).

    The samples carry no timestamps, only order: the log is untimed (`InteractionLog.timed` False),
    its `time` the position in the user's sequence, so only the user split applies to it."""
    folder = Path(root) / "amazon18-office-industrial"
    raw_items = json.loads((folder / "index" / f"{category}.item.json").read_text())
    ids = sorted(raw_items, key=int)
    catalog = ItemCatalog.from_records(
        ids,
        [raw_items[i].get("title", "") or "" for i in ids],
        description=[_first_text(raw_items[i].get("description", "")) for i in ids],
        brand=[raw_items[i].get("brand", "") or "" for i in ids],
        category=[(raw_items[i].get("categories", "") or "").replace(",", " > ") for i in ids],
    )
    (csv_path,) = (folder / split).glob(f"{category}_*.csv")
    table = read_table(csv_path, skip_bad=skip_bad)
    frame = table.frame
    check = table.checker(skip_bad)
    histories = frame["history_item_id"].map(_parse_id_list)
    check.check(histories.isna().to_numpy(), "history_item_id", "not a list of item ids",
                frame["history_item_id"].to_numpy())
    keep = check.keep
    longest = (
        pd.DataFrame({"user": frame["user_id"], "n": histories.map(lambda h: -1 if h is None else len(h))})[keep]
        .sort_values("n", kind="stable")
        .drop_duplicates("user", keep="last")
        .sort_index()
    )
    users, items, times, lines = [], [], [], []
    for row in longest.index:
        sequence = [str(i) for i in histories[row]] + [frame["item_id"][row]]
        users += [frame["user_id"][row]] * len(sequence)
        items += sequence
        times += list(range(len(sequence)))
        lines += [int(table.lines[row])] * len(sequence)
    check.finish()
    events = RawTable(pd.DataFrame({"user_id": users, "item_id": items, "time": [str(t) for t in times]}),
                      np.asarray(lines), "line", LoadReport(csv_path.name + " (events)"))
    log = events_from_table(events, catalog, skip_bad=skip_bad)
    log.timed = False
    return Dataset(f"amazon18-{category}-{split}", catalog, log, reports=[table.report, events.report])


def _parse_id_list(text: str):
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None
    return value if isinstance(value, list) else None


def _first_text(value) -> str:
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    text = str(value or "")
    if text.startswith("["):
        parsed = _parse_id_list(text)
        if parsed is not None:
            return " ".join(str(v) for v in parsed)
    return text


def load_zh_multicpr(root: Path, skip_bad: bool = False) -> Dataset:
    """Chinese query -> title matching: each query's pool of titles, one judged relevant."""
    path = Path(root) / "zh-multicpr" / "ecomgpt" / "ZH-Multi_CPR-CLS-query_item_matching" / "test.json"
    table = read_table(path, skip_bad=skip_bad)
    check = table.checker(skip_bad)
    pairs = table.frame["sentences"].str.extract(r"^Query:\s*(?P<query>.*?)\nDoc:\s*(?P<title>.*)$", expand=True)
    check.check(pairs["query"].isna().to_numpy(), "sentences", "not a 'Query: ... Doc: ...' pair")
    labels = table.frame["labels"].map(lambda v: (v or {}).get("en", [None])[0] if isinstance(v, dict) else None)
    check.check(~labels.isin(["match", "not match"]).to_numpy(), "labels", "not match / not match")
    keep = check.finish()
    pairs, labels = pairs[keep], labels[keep]
    titles: list[str] = pairs["title"].drop_duplicates().tolist()  # first-seen order, as pd.unique
    catalog = ItemCatalog.from_records([str(i) for i in range(len(titles))], titles)
    position = {t: i for i, t in enumerate(titles)}
    judgments = pd.DataFrame(
        {
            "query": pairs["query"].to_numpy(),
            "item": pairs["title"].map(position).to_numpy(),
            "relevance": (labels == "match").astype(float).to_numpy(),
        }
    )
    return Dataset("zh-multicpr", catalog, judgments=judgments, reports=[table.report])


LOADERS: dict[str, Callable[..., Dataset]] = {
    "amazon14-office": load_amazon14_office,
    "uci-online-retail": load_uci_online_retail,
    "homedepot-search": load_homedepot_search,
    "amazon18-office": lambda root, skip_bad=False: load_amazon18(root, "Office_Products", "test", skip_bad),
    "amazon18-industrial": lambda root, skip_bad=False: load_amazon18(
        root, "Industrial_and_Scientific", "test", skip_bad
    ),
    "zh-multicpr": load_zh_multicpr,
}


def load_dataset(name: str, root: str | Path | None = None, skip_bad: bool = False) -> Dataset:
    """Load a bundled data set by name from `root` (default: `default_data_root()`)."""
    if name not in LOADERS:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(LOADERS)}")
    root = Path(root) if root is not None else default_data_root()
    if not root.exists():
        raise FileNotFoundError(f"data folder {root} does not exist (pass --data or set COLDREC_DATA)")
    return LOADERS[name](root, skip_bad=skip_bad)


def available_datasets(root: str | Path | None = None) -> list[str]:
    root = Path(root) if root is not None else default_data_root()
    folders = {"amazon18-office": "amazon18-office-industrial", "amazon18-industrial": "amazon18-office-industrial"}
    return [name for name in LOADERS if (root / folders.get(name, name)).is_dir()]


__all__ = ["Dataset", "DataError", "EventType", "RowChecker", "load_dataset", "available_datasets", "LOADERS"]
