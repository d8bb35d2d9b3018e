"""`coldrec.evaluate.stability`: a model's validation objective at earlier cuts of the past."""

from __future__ import annotations

import numpy as np
import pytest

from coldrec.evaluate.protocol import prepare_splits, tune_params
from coldrec.evaluate.stability import stability, summarise, write_plot
from coldrec.recommend.popularity import PopularityRecommender


def test_the_08_cut_is_the_validation_cut_and_earlier_cuts_differ(office):
    rows = stability(office, "pop", [{}], seeds=(0, 1), quantiles=(0.8, 0.6))
    assert [(r["quantile"], r["seed"]) for r in rows] == [(0.8, 0), (0.6, 0)]  # pop has no seed: once per cut
    _, val = prepare_splits(office)
    _, tried, _ = tune_params(PopularityRecommender, val, office.catalog, [{}])
    assert rows[0]["objective"] == pytest.approx(tried[0]["validation ndcg@10"])
    assert rows[1]["objective"] != pytest.approx(rows[0]["objective"])
    assert set(rows[0]["segments"]) >= {"cold k=1", "warm"}


def test_seeds_and_configs_each_get_a_run_and_the_summary_keeps_the_worst(office, tmp_path):
    configs = [{"factors": 8, "iterations": 3}, {"factors": 16, "iterations": 3}]
    rows = stability(office, "als", configs, seeds=(0, 1), quantiles=(0.8,))
    assert len(rows) == 4 and {r["seed"] for r in rows} == {0, 1}
    summaries = summarise(rows)
    assert [s["config"] for s in summaries] == configs
    for summary in summaries:
        mine = [r["objective"] for r in rows if r["config"] == summary["config"]]
        assert summary["worst"] == min(mine) and summary["mean"] == pytest.approx(np.mean(mine))
    assert write_plot(rows, tmp_path / "s.png", "als").stat().st_size > 0


def test_a_cut_outside_the_past_is_refused(office):
    with pytest.raises(ValueError, match="quantile"):
        stability(office, "pop", [{}], quantiles=(1.5,))
