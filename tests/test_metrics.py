"""`coldrec.evaluate.metrics`: metric objects over graded and binary judgements, and the paired bootstrap."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest

from coldrec.evaluate import metrics
from coldrec.evaluate.metrics import (
    MRR,
    NDCG,
    RECOMMENDATION_METRICS,
    HitRate,
    Judgments,
    RankedGains,
    Recall,
    evaluate_rankings,
    paired_bootstrap,
    user_metrics,
)
from coldrec.evaluate.queries import SearchQueries, ndcg_at_k, retrieve_metrics


def test_names_and_cutoffs():
    assert [m.name for m in RECOMMENDATION_METRICS] == ["ndcg@10", "recall@20", "hr@10"]
    assert MRR(5).name == "mrr@5" and NDCG(3) == NDCG(3) and NDCG(3) != NDCG(4)
    with pytest.raises(ValueError):
        NDCG(0)


def test_graded_ndcg_recall_hit_rate_mrr_by_hand():
    # one query: items 5 (gain 3, relevant), 7 (gain 1, relevant), 9 (gain 0); ranked [100, 7, 5]
    judged = Judgments([np.array([5, 7, 9])], [np.array([3.0, 1.0, 0.0])], [np.array([True, True, False])])
    ranked = np.array([[100, 7, 5]])
    dcg = 1 / math.log2(3) + 3 / math.log2(4)
    ideal = 3 + 1 / math.log2(3)
    out = evaluate_rankings(ranked, judged, [NDCG(10), Recall(2), HitRate(1), MRR(10)])
    assert out["ndcg@10"][0] == pytest.approx(dcg / ideal)
    assert out["recall@2"][0] == pytest.approx(0.5)
    assert out["hr@1"][0] == 0.0
    assert out["mrr@10"][0] == pytest.approx(0.5)
    assert ndcg_at_k(np.array([0.0, 1.0, 3.0]), np.array([3.0, 1.0, 0.0])) == pytest.approx(dcg / ideal)


def test_binary_is_graded_with_gain_one():
    rng = np.random.default_rng(0)
    top = np.stack([rng.permutation(50)[:20] for _ in range(40)])
    targets = [rng.choice(50, int(rng.integers(1, 25)), replace=False) for _ in range(40)]
    binary = user_metrics(top, targets)
    graded = Judgments(targets, [np.ones(len(t)) for t in targets], [np.ones(len(t), bool) for t in targets])
    again = evaluate_rankings(top, graded, RECOMMENDATION_METRICS)
    for name in binary:
        np.testing.assert_array_equal(binary[name], again[name])
    # the recommendation protocol's definitions, written out
    for u, (row, t) in enumerate(zip(top, targets, strict=True)):
        hits = np.isin(row, t)
        ideal = sum(1 / math.log2(r + 2) for r in range(min(len(t), 10)))
        dcg = sum(1 / math.log2(r + 2) for r in np.flatnonzero(hits[:10]))
        assert binary["ndcg@10"][u] == pytest.approx(dcg / ideal)
        assert binary["recall@20"][u] == pytest.approx(hits.sum() / min(len(t), 20))
        assert binary["hr@10"][u] == float(hits[:10].any())


def test_undefined_units_padding_and_repeats():
    judged = Judgments([np.array([1]), np.array([2])], [np.array([0.0]), np.array([1.0])],
                       [np.array([False]), np.array([True])])
    out = evaluate_rankings([np.array([1, 2]), np.array([-1, 2, 2, 2])], judged, [NDCG(10), Recall(10), MRR(10)])
    assert math.isnan(out["ndcg@10"][0]) and math.isnan(out["recall@10"][0]) and out["mrr@10"][0] == 0.0
    assert out["ndcg@10"][1] == pytest.approx(1 / math.log2(3))  # -1 is padding; a repeated item counts once
    assert out["recall@10"][1] == 1.0 and out["mrr@10"][1] == pytest.approx(0.5)


def test_capped_recall_and_short_lists():
    judged = Judgments.binary([np.arange(30)])
    assert Recall(20, capped=True)(np.arange(20)[None], judged)[0] == 1.0
    assert Recall(20)(np.arange(20)[None], judged)[0] == pytest.approx(20 / 30)
    short = RankedGains.of(np.array([[0, 1]]), judged)  # a list shorter than the cutoff
    assert HitRate(10).compute(short)[0] == 1.0 and NDCG(10).compute(short)[0] == pytest.approx(
        (1 + 1 / math.log2(3)) / sum(1 / math.log2(r + 2) for r in range(10)))


def test_search_metrics_through_the_shared_core():
    qs = SearchQueries(["q"], [np.array([5, 7, 9])], [np.array([3.0, 2.5, 1.0])])
    m = retrieve_metrics(qs, [np.array([100, 7, 5])])  # a list of ranked arrays works too
    g3, g25 = 3.0, 2 ** 1.5 - 1
    assert m["ndcg@10"][0] == pytest.approx((g25 / math.log2(3) + g3 / math.log2(4)) / (g3 + g25 / math.log2(3)))
    assert m["recall@100"][0] == 1.0


def _old_bootstrap(a, b, resamples=1000, seed=0):
    """The implementation scipy replaced (all resamples at once)."""
    diff = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    diff = diff[~np.isnan(diff)]
    means = diff[np.random.default_rng(seed).integers(0, len(diff), size=(resamples, len(diff)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(diff.mean()), float(low), float(high)


def test_paired_bootstrap_is_seeded_batched_and_matches_the_old_draws(monkeypatch):
    rng = np.random.default_rng(3)
    a, b = rng.random(500), rng.random(500)
    a[::7] = np.nan  # undefined units are left out
    result = paired_bootstrap(a, b)
    assert result == paired_bootstrap(a, b)
    assert result != paired_bootstrap(a, b, seed=1)
    np.testing.assert_allclose(result, _old_bootstrap(a, b), rtol=0, atol=1e-15)
    monkeypatch.setattr(metrics, "BOOTSTRAP_CELLS", 1000)  # 2 resamples a batch: the same draws
    assert paired_bootstrap(a, b) == result
    assert paired_bootstrap([0.5], [0.25]) == (0.25, 0.25, 0.25)
    assert all(math.isnan(x) for x in paired_bootstrap([np.nan], [1.0]))


def test_paired_bootstrap_memory_is_bounded_on_100k_users():
    rng = np.random.default_rng(0)
    a, b = rng.random(100_000), rng.random(100_000)
    paired_bootstrap(a[:10], b[:10])  # scipy imported outside the measurement
    tracemalloc.start()
    try:
        paired_bootstrap(a, b, resamples=200)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 128 * 2**20  # all 200 resamples at once would take 200 x 100k x 8 B x 3 = 480 MB
