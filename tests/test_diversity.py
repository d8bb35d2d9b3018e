"""Diversity: the re-rank itself (MMR and the category / brand caps), coldrec's lists through `arrange` (evaluation)
and `arrange_ranked` (serving, with the per-request strength), and the evaluation's sweep and default choice."""

from __future__ import annotations

import numpy as np
import pytest

from coldrec.data import UserContext
from coldrec.evaluate.diversity import category_entropy, choose_strength, intra_list_diversity, segments_at
from coldrec.rank.diversity import cap, diversify, list_exposure, pool_size
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
    chosen, values, at_zero = choose_strength(model, split, [0.0, 0.2, 0.5, 1.0])
    assert model.diversity == chosen
    assert set(values) == {0.0, 0.2, 0.5, 1.0} and values[0.0] == pytest.approx(np.mean(list(at_zero.values())))
    segments = {s: segments_at(model, split, s) for s in values}
    assert segments[0.0] == at_zero and "cold items" not in at_zero

    def kept(s):  # every user segment within 3% of its own figure without the re-rank
        return all(segments[s][name] >= 0.97 * value for name, value in at_zero.items())

    assert kept(chosen) and not any(kept(s) for s in values if s > chosen)
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
        evaluation = run_evaluation(shop, ["pop", "coldrec"], tune=False, diversity=[0.3, 1.0], spread=[0.3])
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
    spread = coldrec.spread  # chosen first, against the same floor: the lists without any re-rank
    assert pop.spread is None and spread is not None and spread.knob == "spread"
    assert coldrec.params["spread"] == spread.chosen and set(spread.validation) == {0.0, 0.3}
    assert len(diversity_tables(evaluation)) == 2
    written = write_report(evaluation, tmp_path)
    assert {tmp_path / "diversity_tradeoff.png", tmp_path / "spread_tradeoff.png"} <= set(written)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["models"][1]["diversity"]["chosen"] == sweep.chosen
    assert report["models"][1]["spread"]["chosen"] == spread.chosen
    text = (tmp_path / "report.md").read_text()
    assert "by diversity strength" in text and "by spread strength" in text


def test_list_exposure_is_the_log_share_of_the_most_listed():
    exposure = list_exposure(np.array([[0, 1], [0, 2], [0, -1]]), 4)
    assert exposure.tolist() == pytest.approx([1.0, 0.5, 0.5, 0.0])
    assert list_exposure(np.full((2, 3), -1), 3).tolist() == [0.0, 0.0, 0.0]


def test_spread_lowers_the_items_that_crowd_every_list():
    vectors = unit(np.random.default_rng(2).normal(size=(4, 8)))
    scores = np.array([1.0, 0.95, 0.9, 0.85])
    exposure = np.array([1.0, 0.0, 0.0, 0.0])
    assert diversify(scores, vectors, 2, 0.0, exposure=exposure).tolist() == [0, 1]  # spread 0: the ranking
    assert diversify(scores, vectors, 2, 0.0, exposure=exposure, spread=0.5).tolist() == [1, 2]
    assert diversify(scores, vectors, 1, 0.0, exposure=exposure, spread=0.5).tolist() == [1]
    assert diversify(scores, vectors, 2, 0.0, spread=0.5).tolist() == [0, 1]  # no exposure known: nothing to lower
    # with diversity on top, the hub no longer leads
    assert diversify(scores, vectors, 2, 0.5, exposure=exposure, spread=0.5)[0] == 1


def test_exposure_contexts_are_each_shoppers_latest_events():
    from coldrec.recommend.exposure import MAX_KNOWN_ITEMS, exposure_contexts

    log = make_log(n_users=120, seed=5)
    contexts = exposure_contexts(log, now=123, random_state=0, shoppers=50)
    assert len(contexts) == 50
    assert [c.items.tolist() for c in contexts] == [c.items.tolist() for c in exposure_contexts(log, 123, 0, 50)]
    frame = log.to_frame().sort_values(["user_id", "time"], kind="stable")
    latest = {user: group["item"].tolist() for user, group in frame.groupby("user_id")} if "item" in frame else None
    for context in contexts:
        assert 1 <= len(context.items) <= MAX_KNOWN_ITEMS and context.now == 123
        assert (np.diff(context.times) >= 0).all()
    if latest is not None:
        tails = {tuple(items[-k:]) for items in latest.values() for k in range(1, MAX_KNOWN_ITEMS + 1)}
        assert all(tuple(c.items.tolist()) in tails for c in contexts)
    assert len(exposure_contexts(log, shoppers=10_000)) == log.n_users


def test_spread_shares_the_lists_out_and_survives_save_and_new_items(model, tmp_path):
    from coldrec.model.directory import load_model, save_model
    from coldrec.recommend.exposure import exposure_contexts

    exposure = model.exposure_
    assert exposure is not None and len(exposure) == len(model.catalog)
    assert exposure.max() == pytest.approx(1.0) and exposure.min() >= 0.0
    contexts = exposure_contexts(make_log(n_users=200, seed=6), random_state=1)
    contexts = [UserContext(), *contexts]  # a first visitor: one list for all, nothing to spread
    plain, _ = model.recommend(contexts, 5)
    model.set_params(spread=0.3)
    try:
        spread, _ = model.recommend(contexts, 5)
        ranked, _ = model.arrange_ranked(model.rank(contexts[1]), 5, context=contexts[1])
        first_visit, _ = model.arrange_ranked(model.rank(contexts[0]), 5, context=contexts[0])
        save_model(tmp_path / "m", model, kind="coldrec", params={}, fingerprint="test")
        loaded, _ = load_model(tmp_path / "m")
    finally:
        model.set_params(spread=0.0)
    # this shop's 24 items are all listed either way: the most listed item takes fewer lists
    assert np.bincount(spread[spread >= 0]).max() < np.bincount(plain[plain >= 0]).max()
    assert ranked.items.tolist() == spread[1].tolist()  # serving arranges as evaluation does
    assert spread[0].tolist() == plain[0].tolist() == first_visit.items.tolist()
    np.testing.assert_array_equal(loaded.exposure_, exposure)
    assert loaded.recommend(contexts[:20], 5)[0].tolist() == spread[:20].tolist()
    # an item added since the fit is in no list yet: no exposure, and the re-rank still serves it
    new = loaded.add_items(make_catalog().frame.head(1).assign(item_id="brand-new"), model.item_vectors[:1])
    lists, _ = loaded.recommend([UserContext(items=np.array([new[0]]))] + contexts[:5], 5)
    assert lists.shape == (6, 5) and (lists[:, 0] >= 0).all()
