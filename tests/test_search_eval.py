"""Retrieval indexes (BM25, dense) and the homedepot-search protocol."""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from coldrec.evaluate.search import (
    ndcg_at_k,
    paired_bootstrap,
    query_half,
    rank_candidates,
    recall_at_k,
    rerank_metrics,
    retrieve_metrics,
    search_queries,
)
from coldrec.retrieve import top_k
from coldrec.retrieve.dense import DenseIndex
from coldrec.retrieve.lexical import BM25Index, tokenize

DATA_ROOT = Path(os.environ.get("COLDREC_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))


# ---------------------------------------------------------------------------- split


def test_md5_split_rule_on_known_digests():
    # md5("") = d41d8cd98f00b204e9800998ecf8427e (last hex digit e: even)
    # md5("a") = 0cc175b9c0f1b6a831c399e269772661 (last hex digit 1: odd)
    assert hashlib.md5(b"").hexdigest().endswith("e")
    assert query_half("") == "tune"
    assert query_half("a") == "report"
    # md5("angle bracket") = ...2029 (odd), md5("drill") = ...94e9 (odd), md5("über") (UTF-8) = ...fd9c (even)
    assert query_half("angle bracket") == "report"
    assert query_half("drill") == "report"
    assert query_half("über") == "tune"
    # the UTF-8 bytes count: latin-1 bytes of "über" hash to a different digest
    assert hashlib.md5("über".encode("utf-8")).hexdigest() == "860828352d2d9e23a47335120b84fd9c"
    assert hashlib.md5("über".encode("latin-1")).hexdigest() != "860828352d2d9e23a47335120b84fd9c"


def test_search_queries_min_judged_and_duplicates():
    j = pd.DataFrame({
        "query": ["q"] * 6 + ["short"] * 4,
        "item": [0, 1, 2, 3, 4, 4, 0, 1, 2, 3],  # "q" judges item 4 twice -> 5 distinct products
        "relevance": [3, 2, 1, 1, 2, 3, 3, 3, 3, 3],
    })
    qs = search_queries(j, half="all")
    assert qs.queries == ["q"]
    assert qs.judged[0].tolist() == [0, 1, 2, 3, 4]
    assert qs.relevance[0][-1] == pytest.approx(2.5)  # duplicates averaged


@pytest.mark.skipif(not (DATA_ROOT / "homedepot-search" / "train.csv").is_file(), reason="homedepot data absent")
def test_real_homedepot_split_counts():
    from coldrec.data import load_dataset

    ds = load_dataset("homedepot-search", DATA_ROOT)
    assert len(ds.catalog) == 54_667
    assert not ds.judgments.duplicated(["query", "item"]).any()
    assert len(search_queries(ds.judgments, "tune")) == 4_026
    assert len(search_queries(ds.judgments, "report")) == 3_895


# ---------------------------------------------------------------------------- metrics


def test_ndcg_graded_gain_hand_computed():
    # judged relevances 3, 1, 2 -> gains 3, 0, 1; ranking puts them in order (rel 1, rel 3, rel 2)
    dcg = 0 / math.log2(2) + 3 / math.log2(3) + 1 / math.log2(4)
    ideal = 3 / math.log2(2) + 1 / math.log2(3) + 0
    assert ndcg_at_k(np.array([0.0, 3.0, 1.0]), np.array([3.0, 0.0, 1.0])) == pytest.approx(dcg / ideal)
    assert dcg / ideal == pytest.approx(0.659002, abs=1e-6)
    # the same through the re-rank path: items 10, 11, 12 with relevance 3, 1, 2
    from coldrec.evaluate.search import SearchQueries

    qs = SearchQueries(["q"], [np.array([10, 11, 12])], [np.array([3.0, 1.0, 2.0])])
    out = rerank_metrics(qs, [np.array([0.5, 0.9, 0.1])])["ndcg@10"]
    assert out[0] == pytest.approx(0.659002, abs=1e-6)
    # k cuts the list; a perfect ranking scores 1
    assert ndcg_at_k(np.array([3.0, 1.0, 0.0]), np.array([0.0, 1.0, 3.0]), k=2) == pytest.approx(1.0)
    assert math.isnan(ndcg_at_k(np.zeros(3), np.zeros(3)))


def test_retrieve_ndcg_counts_unjudged_as_zero_and_recall():
    from coldrec.evaluate.search import SearchQueries

    qs = SearchQueries(["q"], [np.array([5, 7, 9])], [np.array([3.0, 2.5, 1.0])])
    ranked = np.array([[100, 7, 5] + list(range(200, 297))])  # unjudged, rel 2.5, rel 3
    m = retrieve_metrics(qs, ranked)
    g3, g25 = 3.0, 2 ** 1.5 - 1
    dcg = 0 + g25 / math.log2(3) + g3 / math.log2(4)
    ideal = g3 + g25 / math.log2(3)
    assert m["ndcg@10"][0] == pytest.approx(dcg / ideal)
    assert m["recall@100"][0] == pytest.approx(1.0)
    assert recall_at_k(np.array([1, 2, 3]), np.array([3, 4])) == pytest.approx(0.5)
    assert recall_at_k(np.array([1, 2, 3]), np.array([3, 4]), k=2) == 0.0
    assert recall_at_k(np.arange(150), np.array([120, 5]), k=100) == pytest.approx(0.5)
    assert math.isnan(recall_at_k(np.array([1]), np.array([], dtype=int)))


def test_ties_break_by_position_ascending():
    assert rank_candidates(np.array([9, 3, 5]), np.array([1.0, 1.0, 1.0])).tolist() == [1, 2, 0]
    assert rank_candidates(np.array([9, 3, 5]), np.array([2.0, 1.0, 1.0])).tolist() == [0, 1, 2]
    pos, sc = top_k(np.array([[0.5, 1.0, 1.0, 0.5, 2.0]]), 3)
    assert pos.tolist() == [[4, 1, 2]]
    assert sc.tolist() == [[2.0, 1.0, 1.0]]


def test_paired_bootstrap_interval():
    a = np.array([1.0, 1.0, 1.0, 1.0])
    b = np.array([0.0, 0.0, 0.0, 0.0])
    assert paired_bootstrap(a, b) == (1.0, 1.0, 1.0)
    rng = np.random.default_rng(1)
    x = rng.normal(size=200)
    mean, low, high = paired_bootstrap(x + 0.5, x)
    assert mean == pytest.approx(0.5) and low == pytest.approx(0.5) and high == pytest.approx(0.5)
    mean, low, high = paired_bootstrap(rng.normal(size=200), np.zeros(200))
    assert low < mean < high


# ---------------------------------------------------------------------------- BM25


DOCS = [
    "DEWALT 20V MAX cordless drill driver kit",
    "Garden hose 50 ft heavy duty",
    "Ceiling fan with LED light kit",
    "Interior latex paint, eggshell white",
    "Round-up weed killer concentrate",
]


def test_bm25_english_stemming_finds_the_right_product():
    index = BM25Index(language="en").fit(DOCS)
    pos, scores = index.search(["drills", "garden hoses", "painting white walls", "ceiling fans"], k=2)
    assert pos[:, 0].tolist() == [0, 1, 3, 2]
    assert (scores[:, 0] > 0).all()
    assert pos[0, 1] == -1 and scores[0, 1] == 0  # nothing else matches "drills"
    assert tokenize(["Drills and drilling"], "en") == [["drill", "drill"]]
    # score() agrees with search()
    got = index.score(["drills", "garden hoses"], [np.array([0, 1, 4]), np.array([1])])
    assert got[0][0] == pytest.approx(scores[0, 0]) and got[0][1] == 0 and got[0][2] == 0
    assert got[1][0] == pytest.approx(scores[1, 0])
    two_d = index.score(["drills", "garden hoses"], np.array([[0, 1], [1, 0]]))
    assert two_d.shape == (2, 2) and two_d[0, 0] == pytest.approx(scores[0, 0])
    # fill=True completes the ranking with unmatched products in position order
    pos, _ = index.search(["garden hoses"], k=5, fill=True)
    assert pos.tolist() == [[1, 0, 2, 3, 4]]


def test_bm25_chinese_with_jieba():
    docs = ["充电式电钻套装", "花园浇水软管", "客厅吊扇灯", "白色乳胶漆"]
    index = BM25Index(language="zh").fit(docs)
    pos, scores = index.search(["我想买电钻", "软管", "吊扇", "乳胶漆"], k=1)
    assert pos[:, 0].tolist() == [0, 1, 2, 3]
    assert (scores > 0).all()


@pytest.mark.parametrize("language", ["en", "zh"])
def test_bm25_odd_queries_do_not_raise(language):
    index = BM25Index(language=language).fit(DOCS + ["充电式电钻套装"])
    queries = ["", "   ", "!!! ??? ...", "the and of a", "x" * 20_000, "drill " * 2_000,
               "дрель аккумуляторная", "電動ドリル", "🔨🪛", "\x00\t\n"]
    pos, scores = index.search(queries, k=3)
    assert pos.shape == (len(queries), 3) and scores.shape == (len(queries), 3)
    assert pos.dtype == np.int64 and scores.dtype == np.float32
    for i in (0, 1, 2, 3, 9):
        assert (pos[i] == -1).all() and (scores[i] == 0).all()
    out = index.score(queries, [np.array([0, 1])] * len(queries))
    assert all(len(o) == 2 for o in out)
    if language == "en":
        assert pos[5, 0] == 0  # the long "drill drill ..." query still finds the drill


def test_bm25_empty_catalog_and_unfitted():
    with pytest.raises(RuntimeError):
        BM25Index().search(["drill"], 3)
    index = BM25Index().fit(["", "the"])
    pos, scores = index.search(["drill"], 3)
    assert pos.shape == (1, 2) and (pos == -1).all()


# ---------------------------------------------------------------------------- dense


def test_dense_index_matches_numpy_brute_force():
    rng = np.random.default_rng(0)
    items = rng.normal(size=(500, 32)).astype(np.float32)
    items[100] = items[7]  # exact duplicates: a tie broken by position
    items[300] = items[7]
    queries = rng.normal(size=(25, 32)).astype(np.float32)
    queries[0] = items[7]
    index = DenseIndex().add(items[:200]).add(items[200:])
    assert len(index) == 500
    pos, scores = index.search(queries, 10)
    x = items / np.linalg.norm(items, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    want_pos, want_scores = top_k(q @ x.T, 10)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-5)
    assert (pos == want_pos).mean() > 0.99  # float rounding may swap near-ties
    assert pos[0, :3].tolist() == [7, 100, 300]
    got = index.score(queries[:2], [pos[0, :4], pos[1, :4]])
    np.testing.assert_allclose(got[0], scores[0, :4], rtol=1e-5, atol=1e-5)


def test_dense_ties_beyond_the_margin_are_exact():
    items = np.ones((100, 4), np.float32)  # every item ties
    pos, scores = DenseIndex().add(items).search(np.ones((2, 4), np.float32), 5)
    assert pos.tolist() == [[0, 1, 2, 3, 4]] * 2
    np.testing.assert_allclose(scores, 1.0, rtol=1e-6)


# ---------------------------------------------------------------------------- end to end with a fake encoder


class HashEncoder:
    """Deterministic bag-of-words encoder: each token maps to a fixed random vector."""

    dim = 64

    def encode(self, texts, batch_size=64, show_progress=None):
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, text in enumerate(texts):
            for tok in tokenize([text], "en")[0]:
                seed = int(hashlib.md5(tok.encode()).hexdigest()[:8], 16)
                out[i] += np.random.default_rng(seed).normal(size=self.dim)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms > 0, norms, 1)


def _toy_search_dataset():
    from coldrec.data import Dataset, ItemCatalog

    titles = [f"{c} {t} model {i}" for i, (c, t) in enumerate(
        (c, t) for c in ("red", "blue", "green", "white") for t in ("drill", "hose", "fan", "paint", "lamp", "saw"))]
    catalog = ItemCatalog.from_records([str(i) for i in range(len(titles))], titles)
    rows = []
    for query in ("red drill", "blue hose", "green fan", "white paint", "red saw", "blue lamp"):
        colour, thing = query.split()
        for i, t in enumerate(titles):
            if colour in t or thing in t:
                rows.append((query, i, 3.0 if (colour in t and thing in t) else 1.5))
    judgments = pd.DataFrame(rows, columns=["query", "item", "relevance"])
    return Dataset("toy-search", catalog, judgments=judgments)


def test_evaluate_search_end_to_end_with_fake_encoder():
    from coldrec.evaluate.search import evaluate_search, render_search_table

    ds = _toy_search_dataset()
    out = evaluate_search(ds, models=("bm25", "dense", "rrf"), half="all", encoder=HashEncoder())
    assert [(r["model"], r["task"]) for r in out] == [(m, t) for m in ("bm25", "dense", "rrf")
                                                      for t in ("rerank", "retrieve")]
    for r in out:
        assert r["n_queries"] == 6 and r["ms_per_query"] >= 0
        assert 0 <= r["ndcg@10"] <= 1
        if r["task"] == "retrieve":
            assert r["n_recall"] == 6 and r["recall@100"] == pytest.approx(1.0)  # 24 products < 100
        if r["model"] == "bm25":
            assert r["ndcg@10"] == pytest.approx(1.0) and "vs_bm25" not in r
        else:
            mean, low, high = r["vs_bm25"]["ndcg@10"]
            assert low <= mean <= high
    table = render_search_table(out)
    assert table.row_count == 6


def test_random_reference_sits_below_bm25_and_is_reproducible():
    from coldrec.evaluate.search import RandomModel, evaluate_search

    ds = _toy_search_dataset()
    out = {r["task"]: r for r in evaluate_search(ds, models=("random",), half="all") if r["model"] == "random"}
    assert 0 < out["rerank"]["ndcg@10"] < 1.0  # bm25 orders these toy judgments perfectly
    mean, low, high = out["rerank"]["vs_bm25"]["ndcg@10"]
    assert high < 0
    model = RandomModel(seed=3).fit(ds.catalog)
    ranked, _ = model.retrieve(["a", "b"], 10)
    assert ranked.shape == (2, 10) and all(len(set(row)) == 10 for row in ranked)
    np.testing.assert_array_equal(ranked, RandomModel(seed=3).fit(ds.catalog).retrieve(["a", "b"], 10)[0])
