"""What privacy costs: a model fitted once per epsilon (`coldrec.privacy.aggregates`), measured per segment.

The model keeps the parameters chosen for it (on validation, without noise); only `epsilon` changes. The point at
infinity is the model without noise (epsilon off). Each finite point is one draw of the noise: a shop re-running
it gets another draw, so differences of a few percent between two close epsilons are within that spread.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from coldrec.data.split import Split
from coldrec.evaluate.lists import rank_split, split_metrics
from coldrec.recommend.base import Recommender


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


def rows_of(epsilon: float, split: Split, per_user: dict[str, dict[str, np.ndarray]],
            release: dict | None) -> list[dict[str, Any]]:
    """Per segment: users, NDCG@10, Recall@20 and HR@10 at `epsilon`, with what the release spent."""
    return [{"epsilon": epsilon, "segment": segment, "users": len(metrics["ndcg@10"]),
             "ndcg@10": _mean(metrics["ndcg@10"]), "recall@20": _mean(metrics["recall@20"]),
             "hr@10": _mean(metrics["hr@10"]), "release": release}
            for segment, metrics in per_user.items()]


def sweep(cls: type[Recommender], params: dict[str, Any], split: Split, epsilons: Sequence[float], fit,
          on_step: Callable[[str], None] | None = None,
          without_noise: dict[str, dict[str, np.ndarray]] | None = None) -> list[dict[str, Any]]:
    """Per epsilon (ascending) and segment: the model with `params` and that epsilon, fitted by `fit(model)` on
    `split`'s past. `without_noise`: the per-user metrics of the model already fitted without noise (the point at
    infinity is then not fitted again)."""
    rows = []
    for epsilon in sorted(epsilons):
        if math.isinf(epsilon) and without_noise is not None:
            rows += rows_of(epsilon, split, without_noise, None)
            continue
        if on_step:
            on_step(f"{cls.name}: epsilon {epsilon:g} (test)")
        model = fit(cls(**{**params, "epsilon": None if math.isinf(epsilon) else epsilon}))
        tops, _, _ = rank_split(model, split)
        per_user, _ = split_metrics(split, tops, len(model.catalog))
        rows += rows_of(epsilon, split, per_user, getattr(model, "privacy_release", None))
    return rows


def _mean(values: np.ndarray) -> float:
    values = np.asarray(values, np.float64)
    return float(values.mean()) if len(values) else float("nan")
