"""What diversity costs and buys: a model's lists at several re-ranking strengths (`coldrec.rank.diversity`: the
`spread` of all lists over the catalog, the `diversity` within one), measured per segment, and the strength a shop
gets by default.

Per strength and segment: NDCG@10 and Recall@20 (as everywhere), Coverage@10 (distinct items in all top-10
lists / catalog), intra-list diversity (mean pairwise 1 - cosine of a top 10's text vectors) and the category
entropy of a top 10 (bits, over leaf categories). The default strength is chosen on the validation cut: the
largest tried at which every user segment's validation NDCG@10 stays within `TOLERANCE` of the lists without
re-ranking (each segment, not their mean: on amazon14-office's validation cut a spread of 0.5 kept the mean but
took warm shoppers to 0.89x); spread is chosen first, then diversity at the chosen spread, against the same
floors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from coldrec.data.split import Split
from coldrec.evaluate.lists import rank_split, segment_lists, segment_means, split_metrics
from coldrec.recommend.base import Recommender

#: the default strength keeps every user segment's validation NDCG@10 within this share of the lists without re-ranking
TOLERANCE = 0.03
#: the strengths `coldrec build --tune` tries (spread and diversity alike)
STRENGTHS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.7)
#: the re-ranking knobs, in the order they are chosen
KNOBS = ("spread", "diversity")
K = 10


def supports_diversity(model: Recommender | type[Recommender], knob: str = "diversity") -> bool:
    """Does the model re-rank its lists with this knob (a `diversity` or `spread` parameter)?"""
    return hasattr(model, knob)


def intra_list_diversity(top: np.ndarray, vectors: np.ndarray, k: int = K) -> np.ndarray:
    """Per list: the mean pairwise 1 - cosine of its first k items' vectors (unit length); NaN below 2 items."""
    out = np.full(len(top), np.nan)
    for row, items in enumerate(top[:, :k]):
        items = items[items >= 0]
        if len(items) < 2:
            continue
        x = np.asarray(vectors[items], np.float32)
        similarity = x @ x.T
        pairs = len(items) * (len(items) - 1)
        out[row] = 1.0 - (similarity.sum() - np.trace(similarity)) / pairs
    return out


def category_entropy(top: np.ndarray, categories: np.ndarray, k: int = K) -> np.ndarray:
    """Per list: the entropy (bits) of its first k items' category codes."""
    out = np.zeros(len(top))
    for row, items in enumerate(top[:, :k]):
        items = items[items >= 0]
        if not len(items):
            continue
        _, counts = np.unique(categories[items], return_counts=True)
        share = counts / counts.sum()
        out[row] = float(-(share * np.log2(share)).sum())
    return out


@dataclass
class DiversitySweep:
    """A model's lists at each strength of one knob (`knob`: "diversity" or "spread"): `rows` (strength, segment,
    metrics), and the chosen default."""

    chosen: float
    validation: dict[float, float]  # strength -> validation objective
    rows: list[dict[str, Any]] = field(default_factory=list)
    knob: str = "diversity"


def segments_at(model: Recommender, split: Split, strength: float, knob: str = "diversity") -> dict[str, float]:
    """Each user segment's mean NDCG@10 (the tuning metric; cold items left out) at this strength of the knob."""
    model.set_params(**{knob: strength})
    tops, _, _ = rank_split(model, split)
    per_user, _ = split_metrics(split, tops, len(model.catalog))
    return segment_means(per_user)


def choose_strength(model: Recommender, val: Split, strengths: Sequence[float], tolerance: float = TOLERANCE,
                    knob: str = "diversity", reference: dict[str, float] | None = None
                    ) -> tuple[float, dict[float, float], dict[str, float]]:
    """The largest strength at which every user segment's validation NDCG@10 is at least (1 - tolerance) x its
    value in `reference` (default: at strength 0); each strength's objective (the mean over the segments); and
    the segments' values at strength 0. `model` is fitted on the validation cut's past; its knob is left at the
    choice."""
    segments = {float(s): segments_at(model, val, float(s), knob) for s in sorted({0.0, *map(float, strengths)})}
    floors = {name: (1.0 - tolerance) * value for name, value in (reference or segments[0.0]).items()}
    chosen = max((s for s, values in segments.items()
                  if all(values.get(name, 0.0) >= floor for name, floor in floors.items())), default=0.0)
    model.set_params(**{knob: chosen})
    return chosen, {s: float(np.mean(list(values.values()))) for s, values in segments.items()}, segments[0.0]


def choose_knobs(model: Recommender, val: Split, knobs: Mapping[str, Sequence[float]],
                 tolerance: float = TOLERANCE) -> tuple[dict[str, float], dict[str, dict[float, float]]]:
    """Each knob's strength (`KNOBS` order: spread, then diversity at the chosen spread) by `choose_strength`,
    every one against the same floors: each segment's NDCG@10 without any re-rank. The chosen strengths and each knob's
    objective per strength; `model` is left at the choice."""
    chosen: dict[str, float] = {}
    curves: dict[str, dict[float, float]] = {}
    reference = None
    for knob in sorted(knobs, key=KNOBS.index):
        chosen[knob], curves[knob], at_zero = choose_strength(model, val, knobs[knob], tolerance, knob, reference)
        reference = at_zero if reference is None else reference
    return chosen, curves


def sweep(model: Recommender, split: Split, strengths: Sequence[float], vectors: np.ndarray,
          categories: np.ndarray, knob: str = "diversity") -> list[dict[str, Any]]:
    """Per strength and segment: users, NDCG@10, Recall@20, Coverage@10, ILD@10 and category entropy@10."""
    rows = []
    before = model.get_params()[knob]
    for strength in sorted({0.0, *map(float, strengths)}):
        model.set_params(**{knob: strength})
        tops, _, _ = rank_split(model, split)
        per_user, covered = split_metrics(split, tops, len(model.catalog))
        lists = segment_lists(split, tops, len(model.catalog))
        for segment, metrics in per_user.items():
            top = lists[segment]
            rows.append({
                "strength": strength, "segment": segment, "users": len(metrics["ndcg@10"]),
                "ndcg@10": _mean(metrics["ndcg@10"]), "recall@20": _mean(metrics["recall@20"]),
                "coverage@10": covered[segment],
                "ild@10": _mean(intra_list_diversity(top, vectors)),
                "entropy@10": _mean(category_entropy(top, categories)),
            })
    model.set_params(**{knob: before})
    return rows


def _mean(values: np.ndarray) -> float:
    values = np.asarray(values, np.float64)
    values = values[~np.isnan(values)]
    return float(values.mean()) if len(values) else float("nan")
