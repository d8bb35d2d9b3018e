"""What privacy costs: a model fitted once per epsilon (`coldrec.privacy.aggregates`), measured per segment.

The model keeps the parameters chosen for it (on validation, without noise); only `epsilon` changes. The point at
infinity is the model without noise (epsilon off). Each finite point is fitted `draws` times, each with its own
draw of the noise, and reports the mean over the draws and their standard deviation: a shop retraining gets one
draw, and on a segment whose NDCG@10 is small (first visitors of a shop with thousands of items) one draw can land
well above or below the mean.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from coldrec.data.split import Split
from coldrec.evaluate.lists import rank_split, split_metrics
from coldrec.recommend.base import Recommender
from coldrec.recommend.firstvisit import FIRST_VISITORS


def supports_privacy(model: Recommender | type[Recommender]) -> bool:
    """Does the model release its aggregates with differential privacy (an `epsilon` parameter)?"""
    return hasattr(model, "epsilon")


def parse_epsilons(text: str) -> list[float]:
    """"0.1,0.5,1,2,inf" as numbers (inf: no noise); ValueError naming the bad part."""
    values = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            value = float(part)
        except ValueError:
            raise ValueError(f"{part!r} is not a number (epsilons are numbers > 0, or inf)") from None
        if not value > 0 or math.isnan(value):
            raise ValueError(f"epsilon must be > 0 (or inf: no noise), not {part!r}")
        values.append(value)
    if not values:
        raise ValueError("no epsilon given")
    return sorted(set(values))


def rows_of(epsilon: float, split: Split, draws: list[dict[str, dict[str, np.ndarray]]],
            release: dict | None, first_visits: Sequence[str | None] = ()) -> list[dict[str, Any]]:
    """Per segment: users, NDCG@10, Recall@20 and HR@10 at `epsilon`, the means over the noise `draws` (per-user
    metrics of one fit each), the standard deviation of NDCG@10 across them, what a release spent, and, on the first
    visitors' row (one list for all of them), which list each draw gave them (`first_visits`, as
    `first_visit_list_` names it; "pop30 x2, ranker x1")."""
    chosen = Counter(name for name in first_visits if name)
    first_visit = ", ".join(f"{name} x{count}" for name, count in chosen.most_common())
    rows = []
    for segment, metrics in draws[0].items():
        means = {m: [_mean(draw[segment][m]) for draw in draws] for m in ("ndcg@10", "recall@20", "hr@10")}
        rows.append({"epsilon": epsilon, "segment": segment, "users": len(metrics["ndcg@10"]), "draws": len(draws),
                     **{m: float(np.mean(values)) for m, values in means.items()},
                     "ndcg@10 sd": float(np.std(means["ndcg@10"], ddof=1)) if len(draws) > 1 else float("nan"),
                     "release": release, "first visit": first_visit if segment == FIRST_VISITORS else ""})
    return rows


def sweep(cls: type[Recommender], params: dict[str, Any], split: Split, epsilons: Sequence[float], fit,
          on_step: Callable[[str], None] | None = None,
          without_noise: dict[str, dict[str, np.ndarray]] | None = None, draws: int = 1,
          first_visit_without_noise: str | None = None) -> list[dict[str, Any]]:
    """Per epsilon (ascending) and segment: the model with `params` and that epsilon, fitted by `fit(model)` on
    `split`'s past, `draws` times for a finite epsilon. `without_noise`: the per-user metrics of the model already
    fitted without noise (the point at infinity is then not fitted again), whose first visitors got
    `first_visit_without_noise`."""
    if draws < 1:
        raise ValueError(f"draws must be >= 1, not {draws}")
    rows = []
    for epsilon in sorted(epsilons):
        if math.isinf(epsilon) and without_noise is not None:
            rows += rows_of(epsilon, split, [without_noise], None, [first_visit_without_noise])
            continue
        results, release, first_visits = [], None, []
        for draw in range(1 if math.isinf(epsilon) else draws):
            if on_step:
                on_step(f"{cls.name}: epsilon {epsilon:g}, draw {draw + 1} (test)")
            model = fit(cls(**{**params, "epsilon": None if math.isinf(epsilon) else epsilon}))
            tops, _, _ = rank_split(model, split)
            results.append(split_metrics(split, tops, len(model.catalog))[0])
            release = getattr(model, "privacy_release", None)
            first_visits.append(getattr(model, "first_visit_list_", None))
        rows += rows_of(epsilon, split, results, release, first_visits)
    return rows


def _mean(values: np.ndarray) -> float:
    values = np.asarray(values, np.float64)
    return float(values.mean()) if len(values) else float("nan")
