"""Empirical-Bayes estimates of the released popularity counts: closer to the truth than the released counts,
and they tell an item whose recent count is noise from one that really sells."""

from __future__ import annotations

import numpy as np
import pytest

from coldrec.privacy.aggregates import NoisyPopularity
from coldrec.privacy.denoise import FLAT_ABOVE_SCALES, posterior_counts

SCALE = 3.0


def discrete_laplace(rng: np.random.Generator, scale: float, size) -> np.ndarray:
    p = 1 - np.exp(-1 / scale)
    return rng.geometric(p, size) - rng.geometric(p, size)


def shop_counts(n_items: int = 3_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """True (recent, older) shopper counts of a long-tailed catalog, and the same released with noise."""
    rng = np.random.default_rng(seed)
    older = np.floor(rng.pareto(1.2, n_items) * 3)
    recent = rng.binomial(older.astype(np.int64), 0.2)
    true = np.column_stack([recent, older]).astype(np.int64)
    return true, true + discrete_laplace(rng, SCALE, true.shape)


@pytest.fixture(scope="module")
def estimated():
    true, released = shop_counts()
    return true, released, posterior_counts(released, SCALE)


def test_the_estimates_are_closer_to_the_true_counts_than_the_released_ones(estimated):
    true, released, estimate = estimated
    for bucket in (0, 1):
        raw_error = np.sqrt(np.mean((released[:, bucket] - true[:, bucket]) ** 2))
        error = np.sqrt(np.mean((estimate[:, bucket] - true[:, bucket]) ** 2))
        assert error < 0.8 * raw_error
    assert (estimate >= 0).all() and estimate.shape == released.shape


def test_the_recent_best_sellers_are_found_more_often_than_by_the_released_counts(estimated):
    true, released, estimate = estimated
    top = set(np.argsort(-true[:, 0], kind="stable")[:100])
    found_raw = len(top & set(np.argsort(-released[:, 0], kind="stable")[:100]))
    found = len(top & set(np.argsort(-estimate[:, 0], kind="stable")[:100]))
    assert found > found_raw


def test_a_recent_count_the_older_one_does_not_back_is_shrunk_more():
    true, released = shop_counts()
    # two items with the same released recent count: one sold nothing before, the other a lot
    probe = np.array([[15, 0], [15, 120]])
    estimate = posterior_counts(np.vstack([released, probe]), SCALE)[-2:]
    assert estimate[0, 0] < estimate[1, 0]
    assert estimate[0, 0] < 15


def test_counts_far_above_the_noise_are_kept_as_released():
    _, released = shop_counts()
    big = FLAT_ABOVE_SCALES * SCALE + 1
    counts = np.vstack([released, [[big, 5 * big]]])
    assert posterior_counts(counts, SCALE)[-1].tolist() == [big, 5 * big]


def test_one_bucket_keeps_the_order_of_the_released_counts():
    _, released = shop_counts()
    total = released.sum(axis=1, keepdims=True)
    estimate = posterior_counts(total, SCALE * np.sqrt(2))[:, 0]
    order = np.argsort(total[:, 0], kind="stable")
    assert (np.diff(estimate[order]) >= -1e-9).all()  # a posterior mean under Laplace noise is monotone


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="shape"):
        posterior_counts(np.zeros((4, 3)), SCALE)
    with pytest.raises(ValueError, match="scale"):
        posterior_counts(np.zeros((4, 2)), 0.0)
    assert posterior_counts(np.zeros((0, 2)), SCALE).shape == (0, 2)


def test_the_popularity_read_off_a_release_is_the_estimates():
    true, released = shop_counts(500)
    popularity = NoisyPopularity(released, SCALE)
    np.testing.assert_allclose(popularity.recent, popularity.estimated[:, 0], rtol=1e-6)
    np.testing.assert_allclose(popularity.distinct, popularity.estimated.sum(axis=1), rtol=1e-6)
    assert popularity.decayed.shape == (500,)
