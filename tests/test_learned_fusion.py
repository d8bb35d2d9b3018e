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


def _big_batch(model: LearnedFusion, seed: int = 5) -> np.ndarray:
    """More rows than `MIN_ROWS`, some features missing (NaN), some far outside the training range."""
    from coldrec.rank.compiled import MIN_ROWS

    rng = np.random.default_rng(seed)
    x = rng.normal(scale=2.0, size=(MIN_ROWS + 1000, 4)).astype(np.float32)
    x[rng.random(x.shape) < 0.05] = np.nan
    return x


def test_a_big_batch_is_scored_by_the_compiled_trees_with_lightgbms_scores(tmp_path, monkeypatch):
    monkeypatch.setenv("COLDREC_CACHE", str(tmp_path))
    x, labels, groups = _noisy_groups(2)
    model = LearnedFusion(n_estimators=150, early_stopping_rounds=10, num_leaves=7, min_child_samples=20).fit(
        x, labels, groups, ["a", "b", "c", "d"])
    model.best_iteration_ = model.booster_.num_trees() // 2  # the compiled forest must stop where LightGBM does
    batch = _big_batch(model)
    lightgbm = model.booster_.predict(batch, num_iteration=model.best_iteration_)
    scores = model.raw_scores(batch)
    assert model._compiled is not None and list((tmp_path / "trees").glob("*.so"))
    np.testing.assert_allclose(scores, lightgbm, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(model.predict(batch), lightgbm.astype(np.float32))
    # a small batch stays with LightGBM: the same scores
    np.testing.assert_allclose(model.raw_scores(batch[:50]), lightgbm[:50], rtol=0, atol=1e-9)


def test_the_compiled_forest_is_cached_per_forest_and_refit_recompiles(tmp_path, monkeypatch):
    from coldrec.rank.compiled import compile_trees

    monkeypatch.setenv("COLDREC_CACHE", str(tmp_path))
    x, labels, groups = _noisy_groups(3)
    model = LearnedFusion(n_estimators=40, early_stopping_rounds=10, num_leaves=7, min_child_samples=20).fit(
        x, labels, groups, ["a", "b", "c", "d"])
    batch = _big_batch(model)
    first = model.raw_scores(batch)
    cached = sorted((tmp_path / "trees").glob("*.so"))
    assert len(cached) == 1
    again = compile_trees(model.booster_, model.best_iteration_)  # loaded from the cache file
    assert again is not None and sorted((tmp_path / "trees").glob("*.so")) == cached
    np.testing.assert_allclose(again.predict(batch), first, rtol=0, atol=1e-9)
    # other trees, another cache entry; the refitted model does not score with the old forest
    model.fit(x, 1 - labels, groups, ["a", "b", "c", "d"])
    flipped = model.raw_scores(batch)
    np.testing.assert_allclose(flipped, model.booster_.predict(batch, num_iteration=model.best_iteration_),
                               rtol=0, atol=1e-9)
    assert len(list((tmp_path / "trees").glob("*.so"))) == 2
    assert list((tmp_path / "trees").glob("*.txt")) == [] and list((tmp_path / "trees").glob("*.partial")) == []


def test_without_lleaves_lightgbm_scores_every_batch(tmp_path, monkeypatch, caplog):
    import sys

    monkeypatch.setenv("COLDREC_CACHE", str(tmp_path))
    monkeypatch.setitem(sys.modules, "lleaves", None)  # import lleaves raises ImportError
    x, labels, groups = _noisy_groups(4)
    model = LearnedFusion(n_estimators=40, early_stopping_rounds=10, num_leaves=7, min_child_samples=20).fit(
        x, labels, groups, ["a", "b", "c", "d"])
    batch = _big_batch(model)
    with caplog.at_level("WARNING", logger="coldrec.rank.compiled"):
        scores = model.raw_scores(batch)
    assert model._compiled is None
    np.testing.assert_array_equal(scores, model.booster_.predict(batch, num_iteration=model.best_iteration_))
    assert not (tmp_path / "trees").exists() or not list((tmp_path / "trees").iterdir())


def test_a_saved_model_keeps_no_compiled_code_and_compiles_after_loading(tmp_path, monkeypatch):
    from coldrec.model.directory import load_model, save_model

    monkeypatch.setenv("COLDREC_CACHE", str(tmp_path / "cache"))
    x, labels, groups = _noisy_groups(5)
    model = LearnedFusion(n_estimators=40, early_stopping_rounds=10, num_leaves=7, min_child_samples=20).fit(
        x, labels, groups, ["a", "b", "c", "d"])
    batch = _big_batch(model)
    scores = model.raw_scores(batch)
    save_model(tmp_path / "m", model, kind="fusion", params={}, fingerprint="test")
    loaded, _ = load_model(tmp_path / "m")
    assert not hasattr(loaded, "_compiled")
    np.testing.assert_allclose(loaded.raw_scores(batch), scores, rtol=0, atol=1e-9)
    assert loaded._compiled is not None
