"""Diversity: the re-rank itself (MMR and the category / brand caps), coldrec's lists through `arrange` (evaluation)
and `arrange_ranked` (serving, with the per-request strength), and the evaluation's sweep and default choice."""

from __future__ import annotations

import numpy as np
import pytest

from coldrec.data import UserContext
from coldrec.evaluate.diversity import category_entropy, choose_strength, intra_list_diversity
from coldrec.rank.diversity import cap, diversify, pool_size
from coldrec.recommend.coldstart import ColdStartRecommender
from tests.synthetic import FakeEncoder, make_catalog, make_log


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def test_strength_zero_keeps_the_ranking():
    rng = np.random.default_rng(0)
    vectors = unit(rng.normal(size=(30, 8)))
    assert diversify(np.linspace(1, 0, 30), vectors, 10, 0.0).tolist() == list(range(10))
    assert diversify(np.linspace(1, 0, 3), vectors[:3], 10, 0.5).tolist() in ([0, 1, 2], [0, 2, 1])


def test_near_duplicates_give_way_to_a_different_item():
    base = np.eye(4, dtype=np.float32)
    vectors = unit(np.array([base[0], base[0] + 0.01 * base[1], base[0] + 0.02 * base[2], base[3]]))
    scores = np.array([1.0, 0.99, 0.98, 0.9])
    assert diversify(scores, vectors, 2, 0.0).tolist() == [0, 1]
    assert diversify(scores, vectors, 2, 0.6).tolist() == [0, 3]  # the twin of the first is passed over


def test_the_category_and_brand_caps_hold_and_the_list_is_always_full():
    rng = np.random.default_rng(1)
    vectors = unit(rng.normal(size=(50, 16)))
    categories = np.repeat(np.arange(5), 10)  # the best ten all in category 0
    brands = np.where(np.arange(50) % 7 == 0, -1, np.arange(50) % 3)
    for strength in (0.2, 0.5, 1.0):
        order = diversify(np.linspace(1, 0, 50), vectors, 10, strength, categories, brands)
        assert len(order) == len(set(order.tolist())) == 10
        assert np.bincount(categories[order]).max() <= cap(10, strength)
    # one category only: the caps cannot be met, the best of the rest fill the list
    order = diversify(np.linspace(1, 0, 12), vectors[:12], 10, 1.0, np.zeros(12, np.int64))
    assert len(set(order.tolist())) == 10
    assert cap(10, 0.0) == 10 and cap(10, 1.0) == 2 and pool_size(10) == 50


def test_list_measures():
    vectors = np.eye(3, dtype=np.float32)
    top = np.array([[0, 1, 2], [0, 0, -1]])
    ild = intra_list_diversity(top, vectors)
    assert ild[0] == pytest.approx(1.0) and ild[1] == pytest.approx(0.0)
    entropy = category_entropy(np.array([[0, 1, 2, 3], [0, 1, -1, -1]]), np.array([0, 0, 1, 1]))
    assert entropy.tolist() == [1.0, 0.0]


@pytest.fixture(scope="module")
def model():
    return ColdStartRecommender(encoder=FakeEncoder(), random_state=0).fit(make_log(n_users=200), make_catalog())


def test_coldrec_lists_diversify_through_arrange(model):
    contexts = [UserContext(items=np.array([1])), UserContext(items=np.array([13])),
                UserContext(interests=["router cable"])]
    exclude = [np.array([2, 3]), np.array([14]), np.array([], np.int64)]
    plain, _ = model.recommend(contexts, 10, exclude)
    model.set_params(diversity=1.0)
    try:
        diverse, scores = model.recommend(contexts, 10, exclude)
    finally:
        model.set_params(diversity=0.0)
    assert diverse.shape == plain.shape == (3, 10)
    assert not (plain == diverse).all()
    for row, excluded in enumerate(exclude):
        assert len(set(diverse[row].tolist())) == 10 and not np.isin(diverse[row], excluded).any()
    categories = model.catalog.leaf_categories()
    for row in range(3):  # a cluster-A shopper now sees cluster B too (two leaf categories in this shop)
        assert len(set(categories[diverse[row]])) >= len(set(categories[plain[row]]))
        assert len(set(categories[diverse[row]])) == 2


def test_serving_takes_the_strength_per_request(model):
    context = UserContext(items=np.array([1]))
    ranked = model.rank(context)
    plain, _ = model.arrange_ranked(ranked, 10)
    diverse, moved = model.arrange_ranked(ranked, 10, diversity=1.0)
    assert len(diverse) == 10 and not moved.any()
    assert set(diverse.items) != set(plain.items)
    categories = model.catalog.leaf_categories()
    assert len(set(categories[diverse.items])) > len(set(categories[plain.items]))


def test_the_default_strength_is_the_largest_within_the_tolerance(model):
    from coldrec.data.split import build_split

    split = build_split(make_log(n_users=200, seed=4), make_catalog(), remove_seen=True, onboarding=False)
    chosen, values = choose_strength(model, split, [0.0, 0.2, 0.5, 1.0])
    assert set(values) == {0.0, 0.2, 0.5, 1.0}
    assert values[chosen] >= 0.97 * values[0.0]
    assert all(values[s] < 0.97 * values[0.0] for s in values if s > chosen)
    assert model.diversity == chosen
    model.set_params(diversity=0.0)


def test_the_evaluation_sweeps_strengths_and_reports_them(tmp_path):
    import json

    from coldrec.data.datasets import Dataset
    from coldrec.encode.shared import set_default_encoder
    from coldrec.evaluate.protocol import run_evaluation
    from coldrec.evaluate.report import diversity_tables, write_report

    shop = Dataset("synthetic", make_catalog(), make_log(n_users=300, seed=2))
    set_default_encoder(FakeEncoder())
    try:
        evaluation = run_evaluation(shop, ["pop", "coldrec"], tune=False, diversity=[0.3, 1.0])
    finally:
        set_default_encoder(None)
    pop, coldrec = evaluation.results
    assert pop.diversity is None  # a baseline does not diversify
    sweep = coldrec.diversity
    assert sweep is not None and set(sweep.validation) == {0.0, 0.3, 1.0}
    assert coldrec.params["diversity"] == sweep.chosen
    assert {row["strength"] for row in sweep.rows} == {0.0, 0.3, 1.0}
    warm = {row["strength"]: row for row in sweep.rows if row["segment"] == "warm"}
    assert warm[1.0]["entropy@10"] > warm[0.0]["entropy@10"]  # the lists mix both categories
    assert warm[1.0]["ild@10"] > warm[0.0]["ild@10"]
    chosen_row = next(r for r in sweep.rows if r["segment"] == "warm" and r["strength"] == sweep.chosen)
    assert np.mean(coldrec.per_user["warm"]["ndcg@10"]) == pytest.approx(chosen_row["ndcg@10"])
    assert len(diversity_tables(evaluation)) == 1
    written = write_report(evaluation, tmp_path)
    assert (tmp_path / "diversity_tradeoff.png") in written
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["models"][1]["diversity"]["chosen"] == sweep.chosen
    assert "by diversity strength" in (tmp_path / "report.md").read_text()
