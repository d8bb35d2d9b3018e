"""`LearnedFusion`: LambdaRank with early stopping on held-out groups."""

from __future__ import annotations

import numpy as np

from coldrec.rank.learned import LearnedFusion


def _noisy_groups(seed: int = 0):
    """Binary labels that follow feature 0 through heavy noise: held-out NDCG peaks at different tree counts."""
    rng = np.random.default_rng(seed)
    groups = np.full(300, 12)
    x = rng.normal(size=(groups.sum(), 4)).astype(np.float32)
    labels = (x[:, 0] + rng.normal(scale=1.5, size=len(x)) > 1.0).astype(np.int32)
    return x, labels, groups


def test_steadier_stop_refits_every_group_with_the_median_tree_count():
    x, labels, groups = _noisy_groups()
    params = {"n_estimators": 150, "early_stopping_rounds": 10, "num_leaves": 7, "min_child_samples": 20,
              "random_state": 4}
    steady = LearnedFusion(stopping_splits=3, **params).fit(x, labels, groups, ["a", "b", "c", "d"])
    assert len(steady.stopped_trees_) == 3
    assert steady.best_iteration_ == int(np.median(steady.stopped_trees_))
    # the final model is one refit, without a held-out set, of exactly the median number of trees
    assert steady.booster_.num_trees() == steady.best_iteration_
    assert not steady.booster_.best_iteration
    again = LearnedFusion(stopping_splits=3, **params).fit(x, labels, groups, ["a", "b", "c", "d"])
    np.testing.assert_array_equal(steady.predict(x[:100]), again.predict(x[:100]))
    assert max(steady.importance(), key=steady.importance().get) == "a"


def test_one_split_keeps_the_early_stopped_model():
    x, labels, groups = _noisy_groups(1)
    model = LearnedFusion(n_estimators=150, early_stopping_rounds=10, num_leaves=7, min_child_samples=20).fit(
        x, labels, groups, ["a", "b", "c", "d"])
    assert not hasattr(model, "stopped_trees_")
    assert model.best_iteration_ == model.booster_.best_iteration and 0 < model.best_iteration_ <= 150
    assert np.isfinite(model.best_score_)
