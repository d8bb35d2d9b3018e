"""`coldrec.search.Searcher`: fusion, typo tolerance, odd queries, tuning, evaluation hook."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from coldrec.search import CharNgramBM25, Searcher, char_ngrams, normalize_query
from tests.synthetic import FakeEncoder

TITLES = [
    "DEWALT 20V MAX cordless drill driver kit",
    "Garden hose 50 ft heavy duty",
    "Ceiling fan with LED light kit",
    "Interior latex paint, eggshell white",
    "Round-up weed killer concentrate",
    "Deck screws #8 x 2 in. star flat head",
    "Cordless leaf blower 40V",
    "Hammer drill bit set for concrete",
]


@pytest.fixture(scope="module")
def searcher() -> Searcher:
    return Searcher(encoder=FakeEncoder()).fit(TITLES)


# ---------------------------------------------------------------------------- normalisation


def test_normalize_query_nfkc_case_punctuation():
    assert normalize_query("  Cordless   DRILL!!! ") == "cordless drill"
    assert normalize_query("ＤＥＷＡＬＴ　ｄｒｉｌｌ") == "dewalt drill"  # full-width -> ASCII (NFKC)
    assert normalize_query("1/2 in. x 10-ft.") == "1 2 in x 10 ft"
    assert normalize_query("!!! ??? ...") == ""
    assert normalize_query(None) == ""
    assert normalize_query("\x00\tdrill\n") == "drill"
    assert normalize_query("Дрель 電動ドリル") == "дрель 電動ドリル"
    assert len(normalize_query("x" * 5000)) <= 512


def test_char_ngrams():
    assert char_ngrams("Drill") == ["#dr", "dri", "ril", "ill", "ll#"]
    assert char_ngrams("a 20V") == ["#a#", "#20", "20v", "0v#"]
    assert char_ngrams("...") == []


def test_ngram_index_matches_misspellings():
    index = CharNgramBM25().fit(TITLES)
    pos, scores = index.search(["cordles dril", "gardn hoze", "celing fam"], k=1)
    assert pos[:, 0].tolist() == [0, 1, 2]
    assert (scores > 0).all()


# ---------------------------------------------------------------------------- search


def test_search_shapes_and_ties(searcher):
    pos, scores = searcher.search(["cordless drill", "garden hose"], k=5)
    assert pos.shape == (2, 5) and scores.shape == (2, 5)
    assert pos.dtype == np.int64 and scores.dtype == np.float32
    assert (pos >= 0).all()
    assert pos[0, 0] == 0 and pos[1, 0] == 1
    assert (np.diff(scores, axis=1) <= 1e-7).all()
    for row in pos:
        assert len(set(row.tolist())) == 5
    # k beyond the catalog returns the whole catalog
    pos, _ = searcher.search(["drill"], k=100)
    assert pos.shape == (1, len(TITLES)) and sorted(pos[0].tolist()) == list(range(len(TITLES)))
    with pytest.raises(TypeError):
        searcher.search("drill", 3)


def test_typo_tolerance_through_ngram_signal():
    plain = Searcher(encoder=FakeEncoder(), weights={"bm25": 1.0, "ngram": 0.0, "dense": 0.0}).fit(TITLES)
    typo = Searcher(encoder=FakeEncoder(), weights={"bm25": 0.5, "ngram": 0.5, "dense": 0.0}).fit(TITLES)
    _, s = plain.search(["gardn hoze"], k=1)
    assert s[0, 0] == 0  # BM25 and the bag-of-words encoder see no known word
    pos, s = typo.search(["gardn hoze", "celing fam", "laef blowr"], k=1)
    assert pos[:, 0].tolist() == [1, 2, 6] and (s > 0).all()


def test_weighted_fusion_reduces_to_single_signals():
    bm25_only = Searcher(encoder=FakeEncoder(), weights={"bm25": 1.0}, ngram=False).fit(TITLES)
    pos, scores = bm25_only.search(["cordless"], k=2)
    assert sorted(pos[0].tolist()) == [0, 6] and scores[0, 0] == pytest.approx(1.0)  # normalised by the max
    dense_only = Searcher(encoder=FakeEncoder(), weights={"dense": 1.0}, ngram=False).fit(TITLES)
    pos, scores = dense_only.search(["garden hose"], k=3)
    enc = FakeEncoder()
    want = enc.encode(TITLES) @ enc.encode(["garden hose"])[0]
    assert pos[0].tolist() == np.lexsort((np.arange(len(TITLES)), -want))[:3].tolist()
    np.testing.assert_allclose(scores[0], np.sort(want)[::-1][:3], rtol=1e-5, atol=1e-6)


def test_rrf_fusion_and_score_agree_with_search(searcher):
    rrf = Searcher(encoder=FakeEncoder(), fusion="rrf", rrf_k=60).fit(TITLES)
    pos, scores = rrf.search(["cordless drill"], k=3)
    assert pos[0, 0] == 0
    assert scores[0, 0] == pytest.approx(2 / 61)  # first in both BM25 and dense
    # re-rank scores of a candidate set order it like search() for weighted fusion
    pos, scores = searcher.search(["garden hose"], k=4)
    got = searcher.score(["garden hose"], [pos[0][::-1]])[0]
    np.testing.assert_allclose(got[::-1], scores[0], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError):
        Searcher(fusion="max")
    with pytest.raises(ValueError):
        Searcher(weights={"bm99": 1.0})


@pytest.mark.parametrize("fusion", ["weighted", "rrf"])
def test_odd_queries_answered(fusion):
    s = Searcher(encoder=FakeEncoder(), fusion=fusion).fit(TITLES)
    queries = ["", "   ", "!!! ??? ...", "x" * 5000, "drill " * 1000, "дрель аккумуляторная", "電動ドリル",
               "🔨🪛", "\x00\t\n", "ＤＲＩＬＬ"]
    pos, scores = s.search(queries, k=3)
    assert pos.shape == (len(queries), 3) and (pos >= 0).all()
    assert np.isfinite(scores).all()
    assert pos[4, 0] == 0 or pos[4, 0] == 7  # the long "drill drill ..." query finds a drill
    assert pos[9, 0] in (0, 7)  # full-width letters are NFKC-normalised
    out = s.score(queries, [np.array([0, 1])] * len(queries))
    assert all(len(o) == 2 and np.isfinite(o).all() for o in out)


def test_unfitted_and_empty_catalog():
    with pytest.raises(RuntimeError):
        Searcher(encoder=FakeEncoder()).search(["drill"], 3)
    s = Searcher(encoder=FakeEncoder()).fit([])
    pos, scores = s.search(["drill", ""], 3)
    assert pos.shape == (2, 0) and scores.shape == (2, 0)


# ---------------------------------------------------------------------------- tuning and evaluation


def _toy_dataset():
    from coldrec.data import Dataset, ItemCatalog
    from coldrec.evaluate.search import query_half

    titles = [f"{c} {t} model {i}" for i, (c, t) in enumerate(
        (c, t) for c in ("red", "blue", "green", "white") for t in ("drill", "hose", "fan", "paint", "lamp", "saw"))]
    catalog = ItemCatalog.from_records([str(i) for i in range(len(titles))], titles)
    rows, halves = [], set()
    for colour in ("red", "blue", "green", "white"):
        for thing in ("drill", "hose", "fan", "paint", "lamp", "saw"):
            query = f"{colour} {thing}"
            halves.add(query_half(query))
            for i, t in enumerate(titles):
                if colour in t or thing in t:
                    rows.append((query, i, 3.0 if (colour in t and thing in t) else 1.5))
    assert halves == {"tune", "report"}
    return Dataset("toy-search", catalog, judgments=pd.DataFrame(rows, columns=["query", "item", "relevance"]))


def test_tune_uses_the_tuning_half_only():
    from coldrec.evaluate.search import WeightedModel, query_half

    ds = _toy_dataset()
    model = WeightedModel(encoder=FakeEncoder()).fit(ds.catalog)
    s = model.searcher
    seen = []
    original = s._candidates
    s._candidates = lambda queries, depth: seen.extend(queries) or original(queries, depth)
    s.tune = lambda queries, metrics, depth, **kw: Searcher.tune(
        s, queries, metrics, depth, weight_grid=(0.2, 0.5, 0.8), ngram_grid=(0.0, 0.2), rrf_grid=(10, 60))
    best = model.tune(ds)

    assert seen and all(query_half(q) == "tune" for q in seen)
    assert len(s.tuning) == 3 * 2 + 2
    assert best["weights"] == s.weights and s.rrf_k in (10.0, 60.0)
    assert best["weighted"]["ndcg@10"] == max(r["ndcg@10"] for r in s.tuning if r["fusion"] == "weighted")
    assert sum(s.weights.values()) == pytest.approx(1.0)


def test_evaluate_search_reports_weighted():
    from coldrec.evaluate.search import evaluate_search, render_search_table

    ds = _toy_dataset()
    out = evaluate_search(ds, models=("bm25", "rrf", "weighted"), half="report", encoder=FakeEncoder(),
                          bootstrap_resamples=200)
    assert [(r["model"], r["task"]) for r in out] == [(m, t) for m in ("bm25", "rrf", "weighted")
                                                      for t in ("rerank", "retrieve")]
    for r in out:
        assert 0 <= r["ndcg@10"] <= 1
        if r["model"] == "weighted":
            assert sum(r["tuned"]["weights"].values()) == pytest.approx(1.0)
            assert r["tuned"]["tune_queries"] > 0
            mean, low, high = r["vs_bm25"]["ndcg@10"]
            assert low <= mean <= high
    assert render_search_table(out).row_count == 6
    with pytest.raises(ValueError):
        evaluate_search(ds, models=("weighted",), half="tune", encoder=FakeEncoder())


def test_ivf_dense_index_agrees_with_exact():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(2000, 16)).astype(np.float32)
    texts = [f"item {i}" for i in range(2000)]

    class Fixed:  # query i -> item i's vector plus noise
        def encode(self, queries, batch_size=64, show_progress=None):
            return np.stack([vectors[int(q.split()[1])] + 0.1 * rng.normal(size=16) for q in queries]).astype(np.float32)

    exact = Searcher(encoder=Fixed(), weights={"dense": 1.0}, ngram=False).fit(texts, vectors=vectors)
    ivf = Searcher(encoder=Fixed(), weights={"dense": 1.0}, ngram=False, dense_index="ivf", nprobe=8).fit(texts, vectors=vectors)
    assert type(ivf._dense).__name__.startswith("IndexIVF")
    queries = [f"q {i}" for i in range(0, 2000, 40)]
    pe, _ = exact.search(queries, 5)
    pi, si = ivf.search(queries, 5)
    assert (pi[:, 0] == np.arange(0, 2000, 40)).all() and (pe[:, 0] == pi[:, 0]).all()
    assert (np.diff(si, axis=1) <= 1e-6).all()


def test_pool_top1_chinese_counts_ties_against_the_model():
    from coldrec.search.pools import pool_top1

    docs = ["充电式电钻套装", "花园浇水软管", "客厅吊扇灯", "白色乳胶漆"]
    judgments = pd.DataFrame({
        "query": ["我想买电钻"] * 3 + ["软管"] * 3 + ["绿色植物"] * 2,
        "item": [0, 1, 2, 1, 2, 3, 2, 3],
        "relevance": [1, 0, 0, 1, 0, 0, 1, 0],
    })
    s = Searcher(encoder=FakeEncoder(), language="zh", weights={"bm25": 0.5, "dense": 0.5}).fit(docs)
    assert s.ngram is None
    rows = {r["model"]: r for r in pool_top1(s, judgments)}
    assert set(rows) == {"bm25", "dense", "weighted", "rrf"}
    assert rows["bm25"]["n_queries"] == 3
    # BM25 finds the drill and the hose; "绿色植物" matches nothing: a tie, a miss when strict
    assert rows["bm25"]["top1_strict"] == pytest.approx(2 / 3)
    assert rows["bm25"]["top1_position_ties"] == pytest.approx(1.0)
