"""The baselines: item-kNN, ALS, LightFM hybrid and the zero-shot text model."""

from __future__ import annotations

import time

import numpy as np
import pytest
import scipy.sparse as sp

from coldrec.recommend import UserContext, top_n
from coldrec.recommend.baselines import (
    ALSRecommender,
    EASERecommender,
    ItemKNNRecommender,
    LightFMRecommender,
    TextZeroShotRecommender,
)
from coldrec.recommend.baselines.als import fold_in
from coldrec.recommend.baselines.ease import ease_dense, ease_weights
from coldrec.recommend.baselines.features import (
    context_matrix,
    item_feature_matrix,
    top_k_per_row,
)
from tests.synthetic import (  # noqa: F401
    A_ITEMS,
    B_ITEMS,
    N_PER_CLUSTER,
    NEW_A,
    NEW_B,
    FakeEncoder,
    make_catalog,
    make_log,
)


@pytest.fixture(scope="module")
def catalog():
    return make_catalog()


@pytest.fixture(scope="module")
def log():
    return make_log()


@pytest.fixture(scope="module")
def encoder():
    return FakeEncoder()


def build(name: str, encoder=None, **params):
    if name == "itemknn":
        return ItemKNNRecommender(**params)
    if name == "als":
        return ALSRecommender(**{"factors": 4, "regularization": 1.0, "alpha": 10.0, **params})
    if name == "lightfm":
        return LightFMRecommender(**{"no_components": 16, "epochs": 30, **params})
    if name == "text":
        return TextZeroShotRecommender(encoder=encoder or FakeEncoder(), **params)
    raise ValueError(name)


NAMES = ["itemknn", "als", "lightfm", "text"]


@pytest.fixture(scope="module")
def fitted(catalog, log, encoder):
    return {name: build(name, encoder).fit(log, catalog) for name in NAMES}


def a_user() -> UserContext:
    return UserContext(items=np.array([0, 3, 5]), times=np.array([1, 2, 3]))


def b_user() -> UserContext:
    return UserContext(items=np.array([N_PER_CLUSTER + 1, N_PER_CLUSTER + 4]))


# --- shared contract -------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_shape_dtype_and_finite(fitted, catalog, name):
    contexts = [a_user(), b_user(), UserContext()]
    scores = fitted[name].score(contexts)
    assert scores.shape == (3, len(catalog))
    assert scores.dtype == np.float32
    assert np.isfinite(scores).all()


@pytest.mark.parametrize("name", NAMES)
def test_cluster_user_gets_cluster_items(fitted, name):
    scores = fitted[name].score([a_user(), b_user()])
    old_a = np.setdiff1d(A_ITEMS, a_user().items)
    old_b = np.setdiff1d(B_ITEMS, b_user().items)
    # the A shopper: every unseen bought A item above every B item; the B shopper likewise
    assert scores[0, old_a].min() > scores[0, B_ITEMS].max()
    assert scores[1, old_b].min() > scores[1, A_ITEMS].max()
    top, _ = top_n(scores, 5, exclude=[a_user().items, b_user().items])
    assert np.isin(top[0], np.append(A_ITEMS, NEW_A)).all()
    assert np.isin(top[1], np.append(B_ITEMS, NEW_B)).all()


@pytest.mark.parametrize("name", NAMES)
def test_no_items_gives_zero_scores(fitted, catalog, name):
    scores = fitted[name].score([UserContext(), a_user(), UserContext(user_id="x")])
    assert not scores[0].any() and not scores[2].any()
    assert scores[1].any()


@pytest.mark.parametrize("name", NAMES)
def test_empty_batch(fitted, catalog, name):
    assert fitted[name].score([]).shape == (0, len(catalog))


@pytest.mark.parametrize("name", ["lightfm", "text"])
def test_new_item_carried_by_content(fitted, name):
    scores = fitted[name].score([a_user(), b_user()])
    assert scores[0, NEW_A] > scores[0, B_ITEMS].max()
    assert scores[0, NEW_A] > scores[0, NEW_B]
    assert scores[1, NEW_B] > scores[1, A_ITEMS].max()


@pytest.mark.parametrize("name", ["itemknn", "als"])
def test_new_items_score_zero_for_behaviour_models(fitted, name):
    scores = fitted[name].score([a_user(), b_user()])
    assert (scores[:, [NEW_A, NEW_B]] == 0).all()


@pytest.mark.parametrize("name", ["itemknn", "als", "lightfm"])
def test_deterministic_given_seed(catalog, log, name):
    first = build(name, random_state=3) if name != "itemknn" else build(name)
    second = build(name, random_state=3) if name != "itemknn" else build(name)
    contexts = [a_user(), b_user()]
    np.testing.assert_array_equal(first.fit(log, catalog).score(contexts), second.fit(log, catalog).score(contexts))


@pytest.mark.parametrize("name", ["als", "lightfm"])
def test_seed_matters(catalog, log, name):
    contexts = [a_user()]
    one = build(name, random_state=1).fit(log, catalog).score(contexts)
    two = build(name, random_state=2).fit(log, catalog).score(contexts)
    assert not np.array_equal(one, two)


@pytest.mark.parametrize("name", [*NAMES, "ease"])
def test_param_grid_is_small_and_valid(name):
    cls = {"itemknn": ItemKNNRecommender, "als": ALSRecommender, "lightfm": LightFMRecommender,
           "ease": EASERecommender}.get(name)
    cls = cls or TextZeroShotRecommender
    assert 1 <= len(cls.param_grid) <= 6
    for params in cls.param_grid:
        model = cls(**params)
        assert {k: model.get_params()[k] for k in params} == params


# --- item-kNN ------------------------------------------------------------------------------


def test_itemknn_matches_dense_cosine(catalog, log):
    model = ItemKNNRecommender(neighbours=None, shrink=0.0).fit(log, catalog)
    x = log.user_item_matrix(len(catalog)).toarray().astype(np.float64)
    norms = np.linalg.norm(x, axis=0)
    sim = (x.T @ x) / np.maximum(np.outer(norms, norms), 1e-12)
    np.fill_diagonal(sim, 0)
    expected = sim[[0, 3, 5]].sum(axis=0)
    np.testing.assert_allclose(model.score([a_user()])[0], expected, rtol=1e-5, atol=1e-6)


def test_itemknn_neighbours_and_shrink(catalog, log):
    full = ItemKNNRecommender(neighbours=None).fit(log, catalog)
    pruned = ItemKNNRecommender(neighbours=2).fit(log, catalog)
    # each target item keeps at most 2 known items: a one-item context reaches at most ... all
    # targets whose top-2 neighbours include it; column j of the similarity has <= 2 entries
    assert (np.diff(sp.csc_matrix(pruned._similarity).indptr) <= 2).all()
    assert pruned._similarity.nnz < full._similarity.nnz
    shrunk = ItemKNNRecommender(neighbours=None, shrink=10.0).fit(log, catalog)
    ratio = shrunk.score([a_user()]) / np.where(full.score([a_user()]) == 0, 1, full.score([a_user()]))
    assert (ratio <= 1 + 1e-6).all() and (ratio[full.score([a_user()]) > 0] < 1).all()


def test_top_k_per_row_keeps_largest():
    m = sp.csr_matrix(np.array([[0.1, 0.5, 0.3, 0.0], [0.0, 0.0, 0.0, 0.0], [0.2, 0.2, 0.9, 0.1]], np.float32))
    kept = top_k_per_row(m, 2).toarray()
    np.testing.assert_allclose(kept, [[0, 0.5, 0.3, 0], [0, 0, 0, 0], [0.2, 0, 0.9, 0]], rtol=1e-6)


# --- ALS -----------------------------------------------------------------------------------


def test_als_fold_in_matches_implicit(catalog, log):
    model = ALSRecommender(factors=8, regularization=0.1, alpha=10.0).fit(log, catalog)
    contexts = [a_user(), b_user(), UserContext(items=np.array([2])), UserContext(items=np.array([0, 13, 20]))]
    batch = model.user_factors(contexts)
    known = context_matrix(contexts, len(catalog))
    for row in range(len(contexts)):
        single = model._model.recalculate_user(0, known[row])
        np.testing.assert_allclose(batch[row], single, rtol=1e-4, atol=1e-5)
    reference = fold_in(model.item_factors, model.alpha * known, model.regularization)
    np.testing.assert_allclose(batch, reference, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(model.score(contexts), batch @ model.item_factors.T, rtol=1e-5, atol=1e-6)


def test_als_known_user_fold_in_close_to_training_factors(catalog, log):
    # folding a training user back in from their own items lands near their trained factors
    model = ALSRecommender(factors=8, regularization=0.1, alpha=10.0, iterations=30).fit(log, catalog)
    items = log.item[log.user == 0]
    folded = model.user_factors([UserContext(items=items)])[0]
    trained = model._model.user_factors[0]
    cosine = folded @ trained / (np.linalg.norm(folded) * np.linalg.norm(trained))
    assert cosine > 0.95


# --- LightFM -------------------------------------------------------------------------------


def test_item_features(catalog):
    features, names = item_feature_matrix(catalog, identity_items=np.arange(2 * N_PER_CLUSTER))
    assert features.shape == (len(catalog), len(names))
    np.testing.assert_allclose(np.asarray(features.sum(axis=1)).ravel(), 1.0, rtol=1e-6)
    assert "cat:paper goods" in names and "brand:acme" in names and "word:stapler" in names
    # a word found in one item only, and the stop word "model"-less tokens, are dropped
    assert "word:a0" not in names
    # new items carry no identity feature
    identity = features[:, : len(catalog)].toarray()
    assert identity[NEW_A].sum() == 0 and identity[0, 0] > 0


def test_lightfm_user_is_mean_of_items(fitted, catalog):
    model = fitted["lightfm"]
    scores = model.score([a_user()])[0]
    emb = model._item_embedding
    expected = emb[a_user().items].mean(axis=0) @ emb.T + model._item_bias
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5)


# --- text ----------------------------------------------------------------------------------


def test_text_scores_are_cosines_of_weighted_mean(catalog, log):
    enc = FakeEncoder()
    model = TextZeroShotRecommender(decay=0.5, encoder=enc).fit(log, catalog)
    vectors = enc.encode(catalog.texts())
    user = 0.25 * vectors[0] + 0.5 * vectors[3] + 1.0 * vectors[5]
    user /= np.linalg.norm(user)
    np.testing.assert_allclose(model.score([a_user()])[0], vectors @ user, rtol=1e-5, atol=1e-6)


def test_text_interests_and_queries(fitted, catalog):
    model = fitted["text"]
    contexts = [
        UserContext(interests=["Paper Goods"]),
        UserContext(queries=["electronics by bolt"]),
        UserContext(interests=["   "]),
    ]
    scores = model.score(contexts)
    assert scores[0, A_ITEMS].min() > scores[0, B_ITEMS].max()
    assert scores[1, B_ITEMS].min() > scores[1, A_ITEMS].max()
    assert not scores[2].any()


def test_text_item_vectors_cached_across_fits(catalog, log):
    enc = FakeEncoder(fingerprint="fake-cache-test")
    for params in TextZeroShotRecommender.param_grid:
        TextZeroShotRecommender(encoder=enc, **params).fit(log, catalog)
    assert enc.calls == 1


def test_text_encoder_not_a_param():
    model = TextZeroShotRecommender(decay=0.5, encoder=FakeEncoder())
    assert model.get_params() == {"decay": 0.5}


def test_context_matrix_decay_and_repeats():
    contexts = [UserContext(items=np.array([4, 1, 4, 2])), UserContext()]
    m = context_matrix(contexts, 6, decay=0.5).toarray()
    np.testing.assert_allclose(m[0], [0, 0.25, 1.0, 0, 0.5, 0])
    assert not m[1].any()
    np.testing.assert_array_equal(context_matrix(contexts, 6).toarray()[0], [0, 1, 1, 0, 1, 0])
    with pytest.raises(ValueError):
        context_matrix([UserContext(items=np.array([6]))], 6)


# --- real data -----------------------------------------------------------------------------


@pytest.mark.slow
def test_baselines_on_amazon14_office(office):
    log, catalog = office.log.sorted_by_time(), office.catalog
    first_seen = np.unique(log.user, return_index=True)[1]
    firsts = np.sort(log.time[first_seen])
    cut = firsts[int(np.ceil(0.8 * len(firsts))) - 1]
    past, future = log.select(log.time <= cut), log.select(log.time > cut)
    past_users = set(np.unique(past.user).tolist())
    contexts, targets = [], []
    for user in np.unique(future.user):
        items = future.item[future.user == user]
        if user in past_users or len(items) < 2:
            continue
        contexts.append(UserContext(items=items[:1]))
        targets.append(set(items[1:].tolist()) - {int(items[0])})
    assert len(contexts) > 500

    def hit_rate(scores):
        top, _ = top_n(scores, 10, exclude=[c.items for c in contexts])
        return np.mean([len(t & set(row.tolist())) > 0 for t, row in zip(targets, top)])

    random_hr = hit_rate(np.random.default_rng(0).random((len(contexts), len(catalog)), dtype=np.float32))
    for model in (ItemKNNRecommender(), ALSRecommender(), LightFMRecommender(), TextZeroShotRecommender()):
        start = time.perf_counter()
        model.fit(past, catalog)
        hr = hit_rate(model.score(contexts))
        print(f"{model.name}: fit+score {time.perf_counter() - start:.1f}s HR@10 {hr:.3f} (random {random_hr:.3f})")
        assert hr > 2.5 * random_hr, (model.name, hr, random_hr)


# --- EASE ------------------------------------------------------------------------------------


def test_ease_weights_solve_the_constrained_ridge_regression(catalog, log):
    l2 = 5.0
    x = log.user_item_matrix(len(catalog))
    weights = ease_dense(x, l2)
    gram = (x.T @ x).toarray().astype(np.float64)
    assert np.all(np.diag(weights) == 0)
    # stationarity of ||X - XB||^2 + l2 ||B||^2 under diag(B) = 0: the gradient of column j is zero
    # everywhere except at row j, where the constraint's multiplier absorbs it
    gradient = (gram + l2 * np.eye(len(catalog))) @ weights - gram
    off_diagonal = gradient * (1 - np.eye(len(catalog)))
    assert np.abs(off_diagonal).max() < 1e-6 * np.abs(gram).max()


def test_ease_keeps_the_strongest_positive_weights_of_the_most_bought_items(catalog, log):
    x = log.user_item_matrix(len(catalog))
    full = ease_dense(x, 5.0)
    kept = ease_weights(log, len(catalog), 5.0, neighbours=None).toarray()
    np.testing.assert_allclose(kept, np.clip(full, 0, None), rtol=1e-5, atol=1e-7)
    pruned = ease_weights(log, len(catalog), 5.0, neighbours=2)
    assert (np.diff(sp.csc_matrix(pruned).indptr) <= 2).all() and pruned.nnz < (kept > 0).sum()
    buyers = np.asarray(x.sum(axis=0)).ravel()
    few = ease_weights(log, len(catalog), 5.0, max_items=4, neighbours=None)
    top4 = np.argsort(-buyers, kind="stable")[:4]
    touched = np.union1d(*few.nonzero())
    assert len(touched) and np.isin(touched, top4).all()


def test_ease_ranks_the_shoppers_cluster_first(catalog, log):
    model = EASERecommender(l2=5.0).fit(log, catalog)
    scores = model.score([a_user(), b_user()])
    assert scores[0, A_ITEMS].mean() > scores[0, B_ITEMS].mean()
    assert scores[1, B_ITEMS].mean() > scores[1, A_ITEMS].mean()
    assert (scores[:, [NEW_A, NEW_B]] == 0).all()
