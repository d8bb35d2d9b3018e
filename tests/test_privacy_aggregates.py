"""Differentially private aggregates: contribution bounding, noisy releases, the model's accounting, the sweep."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from coldrec.data import InteractionLog, UserContext
from coldrec.privacy.aggregates import (
    PrivacyBudget,
    bound_contributions,
    release,
    release_co_counts,
    release_popularity,
    simulated_popularity,
)
from coldrec.recommend.coldstart import ColdStartRecommender
from coldrec.recommend.firstvisit import POPULARITY_LISTS, RANKER
from tests.synthetic import FakeEncoder, make_catalog, make_log

DAY = 86_400
N_ITEMS = 50


def shop_with_a_heavy_buyer(heavy_events: int = 10_000) -> InteractionLog:
    """200 shoppers with 3 random items each, and one shopper with `heavy_events` events over every item."""
    rng = np.random.default_rng(0)
    users = [f"u{u}" for u in range(200) for _ in range(3)]
    items = rng.integers(0, N_ITEMS, len(users)).tolist()
    times = rng.integers(0, 100 * DAY, len(users)).tolist()
    users += ["heavy"] * heavy_events
    items += (np.arange(heavy_events) % N_ITEMS).tolist()
    times += np.linspace(0, 100 * DAY, heavy_events).astype(int).tolist()
    return InteractionLog.from_arrays(users, items, times)


def without_the_heavy_buyer(log: InteractionLog) -> InteractionLog:
    return log.select(log.user_ids != "heavy")


@pytest.mark.parametrize("bound", [1, 3, 7])
def test_one_shopper_with_10000_events_moves_the_counts_by_at_most_c(bound):
    log = shop_with_a_heavy_buyer()
    with_heavy = bound_contributions(log, bound)
    without = bound_contributions(without_the_heavy_buyer(log), bound)
    assert with_heavy.per_user().max() == bound  # the heavy buyer keeps `bound` distinct items
    counts = np.bincount(with_heavy.item, minlength=N_ITEMS) - np.bincount(without.item, minlength=N_ITEMS)
    assert counts.min() >= 0 and counts.sum() <= bound and counts.max() <= 1
    # the kept items are the shopper's latest: the last `bound` distinct items of its time-ordered events
    heavy_items = with_heavy.item[with_heavy.user == with_heavy.user.max()]
    assert set(heavy_items) == set((np.arange(10_000) % N_ITEMS)[-bound:])


def test_the_released_counts_are_noisy_integers_for_every_item():
    log = shop_with_a_heavy_buyer(heavy_events=0)
    kept = bound_contributions(log, 3)
    exact = np.bincount(kept.item, minlength=N_ITEMS)
    released = release_popularity(kept, N_ITEMS, 100 * DAY, PrivacyBudget(1.0, 3, pair_share=0.25))
    assert released.counts.shape == (N_ITEMS, 2)  # the last 30 days and the rest
    assert released.counts.dtype == np.int64
    noisy = released.counts.sum(axis=1)
    assert not np.array_equal(noisy, exact)  # noise was applied (all 50 equal by chance: ~0.2^50)
    # scale c / epsilon_pop = 3 / 0.75 = 4 per bin: the noise is that of the mechanism, not wildly more
    assert np.abs(noisy - exact).mean() < 4 * 4
    assert (released.distinct >= 0).all() and (released.recent >= 0).all()


def test_the_noise_shrinks_as_epsilon_grows():
    log = shop_with_a_heavy_buyer(heavy_events=0)
    kept = bound_contributions(log, 3)
    exact = np.bincount(kept.item, minlength=N_ITEMS)
    error = {eps: np.mean([np.abs(release_popularity(kept, N_ITEMS, 100 * DAY, PrivacyBudget(eps, 3))
                                  .counts.sum(axis=1) - exact).mean() for _ in range(5)])
             for eps in (0.1, 10.0)}
    assert error[10.0] < error[0.1] / 10


def test_simulated_draws_have_the_release_s_shape_and_noise_scale():
    """The draws a model judges its first-visit lists by: the bounded histogram plus discrete Laplace noise of the
    release's scale (c / epsilon_pop), independent between draws, reproducible by seed."""
    log = shop_with_a_heavy_buyer()
    budget = PrivacyBudget(1.0, 3)
    exact = np.bincount(bound_contributions(log, 3).item, minlength=N_ITEMS)
    draws = simulated_popularity(log, N_ITEMS, 100 * DAY, budget, draws=200, random_state=7)
    assert len(draws) == 200 and all(d.counts.shape == (N_ITEMS, 2) and d.counts.dtype == np.int64 for d in draws)
    noise = np.stack([d.counts.sum(axis=1) for d in draws]) - exact  # two bins' noise per item
    assert abs(noise.mean()) < 0.2  # centred on the exact bounded counts
    # each bin: discrete Laplace of scale 3, variance 2 p' / (1 - p')^2 with p' = exp(-1/3), about 17.5 a bin
    p = math.exp(-1 / 3)
    assert noise.var() == pytest.approx(2 * 2 * p / (1 - p) ** 2, rel=0.1)
    assert not np.array_equal(draws[0].counts, draws[1].counts)
    again = simulated_popularity(log, N_ITEMS, 100 * DAY, budget, draws=2, random_state=7)
    assert np.array_equal(again[1].counts, draws[1].counts)
    untimed = simulated_popularity(log, N_ITEMS, None, budget, draws=1)
    assert untimed[0].counts.shape == (N_ITEMS, 1)


def test_only_pairs_over_the_threshold_are_released_and_symmetric():
    # 400 shoppers buy items 0 and 1 together; 5 buy 2 and 3: only the first pair clears the threshold
    users = [f"a{u}" for u in range(400) for _ in range(2)] + [f"b{u}" for u in range(5) for _ in range(2)]
    items = [0, 1] * 400 + [2, 3] * 5
    log = InteractionLog.from_arrays(users, items, np.arange(len(users)))
    co = release_co_counts(bound_contributions(log, 2), 4, PrivacyBudget(4.0, 2, pair_share=0.25))
    assert (co != co.T).nnz == 0
    assert abs(co[0, 1] - 400) < 50  # released with noise of scale 1 (epsilon_pairs 1, one pair a shopper)
    assert co[2, 3] == 0  # 5 buyers: under the threshold (about 15 at delta 1e-6)
    assert co.nnz == 2


def test_the_account_adds_up_and_bad_settings_name_the_field():
    budget = PrivacyBudget(2.0, 4, delta=1e-7, pair_share=0.25)
    _, _, account = release(shop_with_a_heavy_buyer(), N_ITEMS, 100 * DAY, budget)
    assert account.popularity_epsilon + account.pairs_epsilon == pytest.approx(2.0)
    assert (account.epsilon, account.delta, account.contribution_bound) == (2.0, 1e-7, 4)
    assert PrivacyBudget.of(None) is None and PrivacyBudget.of(math.inf) is None
    for bad, field in ((dict(epsilon=0.0), "epsilon"), (dict(epsilon=-1.0), "epsilon"),
                       (dict(epsilon=1.0, contribution_bound=0), "contribution_bound"),
                       (dict(epsilon=1.0, contribution_bound=100_000), "contribution_bound"),
                       (dict(epsilon=1.0, delta=1.5), "delta"), (dict(epsilon=1.0, pair_share=1.0), "pair_share"),
                       (dict(epsilon=1.0, pair_share=-0.1), "pair_share")):
        with pytest.raises(ValueError, match=field):
            PrivacyBudget(**bad)


def test_without_a_co_purchase_release_popularity_gets_the_whole_epsilon():
    log = shop_with_a_heavy_buyer()
    for budget in (PrivacyBudget(2.0, 3, pair_share=0.0), PrivacyBudget(2.0, 1, pair_share=0.25)):
        _, co, account = release(log, N_ITEMS, 100 * DAY, budget)
        assert not budget.releases_pairs and co.nnz == 0 and account.pairs_released == 0
        assert (account.popularity_epsilon, account.pairs_epsilon, account.delta) == (2.0, 0.0, 0.0)
        assert "pairs" not in account.mechanism
    shared = PrivacyBudget(2.0, 3, pair_share=0.25)
    assert shared.releases_pairs and (shared.popularity_epsilon, shared.pairs_epsilon) == (1.5, 0.5)


@pytest.fixture(scope="module")
def shop():
    return make_log(n_users=200, seed=3), make_catalog()


def test_a_private_model_differs_from_the_exact_one_and_records_its_budget(shop):
    log, catalog = shop
    exact = ColdStartRecommender(encoder=FakeEncoder(), max_training_users=300).fit(log, catalog)
    private = ColdStartRecommender(encoder=FakeEncoder(), max_training_users=300, epsilon=0.5,
                                   contribution_bound=2).fit(log, catalog)
    assert exact.privacy_release is None
    assert private.privacy_release["epsilon"] == 0.5 and private.privacy_release["contribution_bound"] == 2
    assert not np.allclose(exact.signals.pop, private.signals.pop)
    assert np.isnan(private.signals.age_days).all()  # the time of an item's first event is never released
    assert private.get_params()["epsilon"] == 0.5
    # the list every first visitor sees is read off the release: a popularity ordering, judged over noise draws
    assert private.first_visit_list_ in POPULARITY_LISTS and RANKER not in private.first_visit_ndcg_
    assert set(private.first_visit_ndcg_) == set(POPULARITY_LISTS)
    served = private.score([UserContext()])[0]
    released = getattr(private.signals, private.first_visit_list_)
    order = np.lexsort((np.arange(len(released)), -private.signals.pop, -released))
    np.testing.assert_array_equal(np.argsort(-served, kind="stable"), order)
    with pytest.raises(ValueError, match="epsilon"):
        ColdStartRecommender(encoder=FakeEncoder(), epsilon=-1).fit(log, catalog)


def test_the_evaluation_sweeps_epsilons_and_reports_them(tmp_path):
    from coldrec.data.datasets import Dataset
    from coldrec.encode.shared import set_default_encoder
    from coldrec.evaluate.protocol import run_evaluation
    from coldrec.evaluate.report import privacy_tables, write_report

    shop = Dataset("synthetic", make_catalog(), make_log(n_users=300, seed=2))
    set_default_encoder(FakeEncoder())
    try:
        evaluation = run_evaluation(shop, ["pop", "coldrec"], tune=False, epsilons=[0.5, math.inf], epsilon_draws=2)
    finally:
        set_default_encoder(None)
    pop, coldrec = evaluation.results
    assert pop.privacy is None  # a baseline publishes no aggregates
    rows = coldrec.privacy
    assert {row["epsilon"] for row in rows} == {0.5, math.inf}
    segments = {row["segment"] for row in rows}
    assert {"cold k=0", "cold k=1", "warm"} <= segments
    off = next(r for r in rows if r["segment"] == "warm" and math.isinf(r["epsilon"]))
    assert off["ndcg@10"] == pytest.approx(np.mean(coldrec.per_user["warm"]["ndcg@10"]))  # the model without noise
    assert off["release"] is None
    assert all(r["release"]["epsilon"] == 0.5 and r["draws"] == 2 for r in rows if r["epsilon"] == 0.5)
    assert next(r for r in rows if r["segment"] == "warm" and r["epsilon"] == 0.5)["ndcg@10 sd"] >= 0
    assert off["draws"] == 1
    # which list the first visitors got, per draw: names of `first_visit_list_`, counted over the draws
    noisy_first = next(r for r in rows if r["segment"] == "cold k=0" and r["epsilon"] == 0.5)["first visit"]
    counted = dict(part.rsplit(" x", 1) for part in noisy_first.split(", "))
    assert sum(int(n) for n in counted.values()) == 2
    assert set(counted) <= set(POPULARITY_LISTS)  # with noise: the release's lists, never the ranker's
    exact_first = next(r for r in rows if r["segment"] == "cold k=0" and math.isinf(r["epsilon"]))["first visit"]
    name, count = exact_first.rsplit(" x", 1)
    assert name in {RANKER, *POPULARITY_LISTS} and count == "1"
    assert all(r["first visit"] == "" for r in rows if r["segment"] != "cold k=0")  # said once, where it applies
    assert len(privacy_tables(evaluation)) == 1
    written = write_report(evaluation, tmp_path)
    assert (tmp_path / "privacy_cost.png") in written
    report = json.loads((tmp_path / "report.json").read_text())
    assert len(report["models"][1]["privacy"]) == len(rows)
    assert "by epsilon per retrain" in (tmp_path / "report.md").read_text()
    assert noisy_first in (tmp_path / "report.md").read_text()  # the table says it on the first visitors' row


def test_cli_epsilons_are_checked():
    from coldrec.evaluate.privacy import parse_epsilons

    assert parse_epsilons("2, 0.1,inf,1") == [0.1, 1.0, 2.0, math.inf]
    for bad in ("0", "-1", "abc", ""):
        with pytest.raises(ValueError):
            parse_epsilons(bad)
