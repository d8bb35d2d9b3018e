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
    assert ivf._dense.is_approximate and not exact._dense.is_approximate
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


# ---------------------------------------------------------------------------- learned ranker


def test_learned_fusion_learns_an_obvious_graded_signal():
    from coldrec.rank.learned import LearnedFusion
    from coldrec.search.ltr import label_gain, relevance_labels

    rng = np.random.default_rng(0)
    groups = np.full(200, 10)
    X = rng.normal(size=(groups.sum(), 3))
    rel = np.clip(1 + np.round((X[:, 1] + 1.5) / 1.5 * 4) / 4, 1, 3)  # relevance follows feature 1 only
    labels = relevance_labels(rel)
    assert labels.min() >= 0 and labels.max() <= 24 and len(label_gain()) == 25
    assert label_gain()[relevance_labels(np.array([3.0]))[0]] == pytest.approx(3.0)  # 2^(3-1) - 1
    model = LearnedFusion(num_leaves=7, min_child_samples=20, n_estimators=100,
                          label_gain=label_gain()).fit(X, labels, groups, ["a", "b", "c"])
    assert max(model.importance(), key=model.importance().get) == "b"
    test = rng.normal(size=(500, 3))
    assert np.corrcoef(model.predict(test), test[:, 1])[0, 1] > 0.9
    assert model.best_score_ > 0.8


def _duplicate_shop():
    """Each thing sold twice under the same title: the later copy is good (3), the earlier poor (1)."""
    things = ["drill", "hose", "fan", "paint", "lamp", "saw", "rake", "mower", "ladder", "faucet", "sink", "grill",
              "heater", "shelf", "mulch", "valve", "hammer", "glove", "timer", "chain"]
    titles = [f"{t} model" for t in things for _ in range(2)]
    queries, judged, relevance = [], [], []
    for i, t in enumerate(things):
        other = (i + 1) % len(things)
        for q in (t, f"{t} model", f"best {t}", f"{t} deal", f"cheap {t}", f"{t} price"):
            queries.append(q)
            judged.append(np.array([2 * i, 2 * i + 1, 2 * other, 2 * other + 1]))
            relevance.append(np.array([1.0, 3.0, 1.0, 1.0]))
    return things, titles, queries, judged, relevance


def test_ltr_ranker_learns_text_match_and_the_product_prior():
    things, titles, queries, judged, relevance = _duplicate_shop()
    s = Searcher(encoder=FakeEncoder()).fit(titles)
    s.fit_ranker(queries, judged, relevance, n_estimators=60, num_leaves=7, min_child_samples=5,
                 rerank_params={"num_leaves": 7, "min_child_samples": 5})
    assert s.fusion == "learned" and set(s.ranker.models) == {"retrieve", "rerank"}
    new = [f"{t} for sale" for t in things]  # phrasings never judged
    pos, scores = s.search(new, k=3)
    for i in range(len(things)):
        # the good copy first (only the prior tells the copies apart; ties alone would put 2i first)
        assert pos[i, :2].tolist() == [2 * i + 1, 2 * i]
    assert (np.diff(scores, axis=1) <= 1e-6).all()
    out = s.score(new[:3], [np.array([2 * i, 2 * i + 1, 2 * ((i + 5) % 20)]) for i in range(3)])
    assert all(o.argmax() == 1 for o in out)
    # the default `search(queries, k)` call and odd queries still work under the learned fusion
    odd = ["", "!!! ??? ...", "x" * 5000, "дрель", "電動ドリル", "🔨", "1/2 in. x 10 ft."]
    pos, scores = s.search(odd, 3)
    assert pos.shape == (len(odd), 3) and (pos >= 0).all() and np.isfinite(scores).all()


def test_product_prior_is_leave_one_query_out():
    from coldrec.search.ltr import ProductPrior

    prior = ProductPrior().fit(["a", "b", "c"], [np.array([0, 1]), np.array([0, 2]), np.array([0])],
                               [np.array([3.0, 2.0]), np.array([1.0, 3.0]), np.array([2.0])], n_items=4)
    mean, count = prior.lookup(np.array([0, 1, 2, 3]))
    np.testing.assert_allclose(mean[:3], [2.0, 2.0, 3.0])
    np.testing.assert_allclose(count, [3, 1, 1, 0])
    assert np.isnan(mean[3])  # never judged
    mean, count = prior.lookup(np.array([0, 1, 2, 3]), exclude="a")
    assert mean[0] == pytest.approx(1.5) and count[0] == 2  # (1 + 2) / 2: a's own 3.0 left out
    assert np.isnan(mean[1]) and count[1] == 0  # only "a" judged item 1
    assert mean[2] == pytest.approx(3.0)
    mean, _ = prior.lookup(np.array([0]), exclude="unseen query")
    assert mean[0] == pytest.approx(2.0)


def test_ltr_training_rows_never_see_their_own_label():
    from coldrec.search.ltr import FEATURES, LearnedRanker

    _, titles, queries, judged, relevance = _duplicate_shop()
    s = Searcher(encoder=FakeEncoder()).fit(titles)
    ranker = LearnedRanker(n_estimators=5, num_leaves=7, min_child_samples=5,
                           rerank_params={"num_leaves": 7, "min_child_samples": 5})
    seen = []
    original = ranker.features

    def spy(searcher, query, cand, exclude=None):
        X = original(searcher, query, cand, exclude)
        seen.append((query, exclude, cand.items, X[:, FEATURES.index("prior_count")]))
        return X

    ranker.features = spy
    ranker.fit(s, queries, judged, relevance)
    assert seen and all(q == ex for q, ex, _, _ in seen)
    for q, _, items, count in seen:  # each judged product: 6 queries of its thing + 6 as "other"; one is q's own
        mask = np.isin(items, judged[queries.index(q)])
        assert (count[mask] == 11).all()


def test_number_tokens_match_units_as_people_type_them():
    from coldrec.search.ltr import number_tokens

    assert number_tokens("1/2 in. x 10 ft.") == ["1/2in", "10ft"]
    assert number_tokens('1/2 inch pipe') == number_tokens('1/2" pipe') == ["1/2in"]
    assert number_tokens("1-1/4 in. PVC") == ["1-1/4in"]
    assert number_tokens("DEWALT 20V MAX 3.5-GPM") == ["20v", "3.5gpm"]
    assert number_tokens("2x4 stud") == ["2", "4"]
    assert number_tokens("10.0 lbs") == ["10lb"] and number_tokens("no numbers") == []


def test_evaluate_search_reports_ltr():
    from coldrec.evaluate.search import MODELS, LTRModel, evaluate_search, make_model

    assert "ltr" in MODELS and isinstance(make_model("ltr", FakeEncoder()), LTRModel)
    ds = _toy_dataset()
    out = evaluate_search(ds, models=("bm25", "ltr"), half="report", encoder=FakeEncoder(), bootstrap_resamples=100)
    assert [(r["model"], r["task"]) for r in out] == [(m, t) for m in ("bm25", "ltr") for t in ("rerank", "retrieve")]
    for r in out:
        assert 0 <= r["ndcg@10"] <= 1
        if r["model"] == "ltr":
            assert r["tuned"]["ltr"]["retrieve"]["trees"] >= 1 and r["tuned"]["tune_queries"] > 0
            mean, low, high = r["vs_bm25"]["ndcg@10"]
            assert low <= mean <= high
    with pytest.raises(ValueError):
        evaluate_search(ds, models=("ltr",), half="tune", encoder=FakeEncoder())


# ---------------------------------------------------------------------------- personalised re-rank


def test_profile_pulls_matching_products_up_among_equal_lexical_matches():
    titles = ["red drill kit", "blue drill kit", "green drill kit", "garden hose reel"]
    enc = FakeEncoder()
    s = Searcher(encoder=enc, weights={"bm25": 1.0}, ngram=False).fit(titles)
    pos, _ = s.search(["drill"], k=4)
    assert pos[0, :3].tolist() == [0, 1, 2]  # equal BM25: ties by position
    blue = enc.encode(["blue"])[0]
    pos, _ = s.search(["drill"], k=4, profiles=[blue])
    assert pos[0, 0] == 1 and set(pos[0, :3].tolist()) == {0, 1, 2}
    # bounded: a profile for hoses cannot lift the non-matching hose over the drills
    hose = enc.encode(["garden hose reel"])[0]
    pos, _ = s.search(["drill"], k=4, profiles=[hose])
    assert pos[0, 3] == 3
    # weight 0, or a zero / missing profile: no change
    base, base_scores = s.search(["drill", "hose"], k=4)
    for profiles, weight in (([blue, blue], 0.0), ([None, np.zeros_like(blue)], None)):
        p, sc = s.search(["drill", "hose"], k=4, profiles=profiles, profile_weight=weight)
        np.testing.assert_array_equal(p, base)
        np.testing.assert_array_equal(sc, base_scores)
    # re-ranking given candidates works the same way
    got = s.score(["drill"], [np.array([0, 1, 2])], profiles=[blue])[0]
    assert got.argmax() == 1
    with pytest.raises(ValueError):
        s.search(["drill"], 3, profiles=[blue, blue])


@pytest.mark.parametrize("fusion", ["weighted", "rrf"])
def test_no_profile_gives_identical_results(searcher, fusion):
    s = Searcher(encoder=FakeEncoder(), fusion=fusion).fit(TITLES)
    queries = ["cordless drill", "garden hose", "", "drill bits concrete"]
    pos, scores = s.search(queries, k=5)
    for kwargs in ({"profiles": None}, {"profiles": [None] * 4}, {"user": None, "profiles": None}):
        p, sc = s.search(queries, 5, **kwargs)
        np.testing.assert_array_equal(p, pos)
        np.testing.assert_array_equal(sc, scores)
    cands = [np.array([0, 1, 7]), np.array([1, 2]), np.array([3]), np.array([0, 7])]
    for a, b in zip(s.score(queries, cands), s.score(queries, cands, profiles=[None] * 4)):
        np.testing.assert_array_equal(a, b)


def test_ltr_and_searcher_import_fresh_and_ltr_sits_below_searcher():
    import ast
    import subprocess
    import sys
    from pathlib import Path

    import coldrec.search as package

    for module in ("coldrec.search.ltr", "coldrec.search.searcher"):  # each first, in a fresh interpreter
        subprocess.run([sys.executable, "-c", f"import {module}"], check=True)
    folder = Path(package.__file__).parent
    for lower in ("ltr", "fusion", "signals", "text"):  # the modules searcher.py builds on never import it back
        tree = ast.parse((folder / f"{lower}.py").read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not imported & {"coldrec.search", "coldrec.search.searcher"}, lower


def test_dense_signal_shares_or_grows_its_vector_index():
    from coldrec.retrieve.index import VectorIndex

    encoder = FakeEncoder()
    own = Searcher(encoder=encoder, dense_index="auto").fit(TITLES)
    assert not own._dense.is_approximate  # "auto": exact below 20,000 items
    new = encoder.encode(["solar garden lights"])
    own.put_vectors(np.array([len(TITLES)]), new * 3)  # a new item past the end, normalised on the way in
    assert own.n_items == len(TITLES) + 1
    np.testing.assert_allclose(np.linalg.norm(own.vectors[-1]), 1.0, rtol=1e-5)
    assert own.dense_top(new, 1)[0, 0] == len(TITLES)
    shared = Searcher(encoder=encoder).fit(TITLES)
    index = VectorIndex(kind="exact").fit(own.vectors)
    shared.share_vectors(own.vectors, index)
    assert shared._dense is index and shared.dense_top(new, 3).tolist() == own.dense_top(new, 3).tolist()
    shared.query_encoder = encoder
    assert shared.query_encoder is encoder
