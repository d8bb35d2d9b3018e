"""Running recommenders through the benchmark: tune on validation, refit on the past, score.

Two splits (BENCHMARK.md): "time", one global time cut, and "users", the user split for logs without
timestamps (`coldrec.data.usersplit`). A model whose idea needs time (a 30-day window, slots for new
arrivals) does not apply under the user split: it is left out with a note, never given invented times.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

import numpy as np

from coldrec.data.datasets import Dataset
from coldrec.data.profile import UserProfile
from coldrec.data.split import Split, build_split, validation_split
from coldrec.data.usersplit import build_user_split, validation_user_split
from coldrec.evaluate.diversity import DiversitySweep, choose_knobs, supports_diversity
from coldrec.evaluate.diversity import sweep as diversity_sweep
from coldrec.evaluate.lists import TUNING_METRIC, objective, rank_split, split_metrics
from coldrec.evaluate.metrics import paired_bootstrap
from coldrec.evaluate.privacy import supports_privacy
from coldrec.evaluate.privacy import sweep as privacy_sweep
from coldrec.recommend.base import Recommender
from coldrec.recommend.registry import is_baseline, model_class

SPLITS = ("time", "users")

#: models that need timestamps, and why: left out of a user-split evaluation
NEEDS_TIME: dict[str, str] = {
    "pop30": "the 30-day window needs timestamps",
    "coldrec-fresh": "its slots go to new arrivals, which need listing and purchase times",
    "coldrec-adapter": "its adapter stops early on an inner time cut",
}


class SplitOptions(TypedDict):
    """`build_split`'s per-data-set keywords."""

    remove_seen: bool
    onboarding: bool


# Per data set: whether seen items leave the ranking (people rebuy at UCI), and whether
# the onboarding segment applies (stated interests from leaf categories).
PROTOCOLS: dict[str, SplitOptions] = {
    "amazon14-office": {"remove_seen": True, "onboarding": True},
    "uci-online-retail": {"remove_seen": False, "onboarding": False},
}


@dataclass
class ModelResult:
    name: str
    baseline: bool
    params: dict[str, Any]
    grid: list[dict[str, Any]]  # each tried point: params and its validation objective
    fit_seconds: float
    score_seconds: float
    users_scored: int
    per_user: dict[str, dict[str, np.ndarray]]  # segment -> metric -> value per user
    coverage: dict[str, float]
    validation: dict[str, dict[str, float]]  # segment -> metric -> mean, at the chosen params
    diversity: DiversitySweep | None = None  # with strengths asked for: the sweep, the chosen default
    spread: DiversitySweep | None = None  # the same for the spread of the lists over the catalog
    privacy: list[dict[str, Any]] | None = None  # with epsilons asked for: per (epsilon, segment) figures


@dataclass
class Evaluation:
    dataset: str
    split: Split
    validation: Split
    results: list[ModelResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # e.g. models left out, and why

    @property
    def split_kind(self) -> str:
        return self.split.kind

    def segment_names(self) -> list[str]:
        """The user segments, then the cold-item segment (the time split only: the user split has none)."""
        return list(self.split.segments) + ([self.split.cold_items.name] if self.split.kind == "time" else [])

    def best_baseline(self, segment: str, metric: str) -> ModelResult | None:
        candidates = [r for r in self.results if r.baseline and segment in r.per_user]
        if not candidates:
            return None
        return max(candidates, key=lambda r: float(np.mean(r.per_user[segment][metric]))
                   if len(r.per_user[segment][metric]) else -1)

    def table(self) -> list[dict[str, Any]]:
        """One row per (segment, model): means, users and the interval against the best baseline."""
        rows = []
        for segment in self.segment_names():
            for result in self.results:
                values = result.per_user[segment]
                row = {"segment": segment, "model": result.name, "users": len(values["ndcg@10"])}
                for metric, per_user in values.items():
                    row[metric] = float(np.mean(per_user)) if len(per_user) else float("nan")
                    best = self.best_baseline(segment, metric)
                    if best is not None and best is not result:
                        diff, low, high = paired_bootstrap(per_user, best.per_user[segment][metric])
                        row[f"{metric} vs best"] = {"baseline": best.name, "diff": diff, "low": low, "high": high}
                row["coverage@10"] = result.coverage[segment]
                rows.append(row)
        return rows


def tune_params(
    cls: type[Recommender],
    val: Split,
    catalog,
    grid_points: list[dict[str, Any]] | None = None,
    on_step: Callable[[str], None] | None = None,
    profiles: dict[str, UserProfile] | None = None,
) -> tuple[dict[str, Any] | None, list[dict[str, Any]], dict[str, dict[str, float]]]:
    """The grid point (default: `cls.param_grid`) that scores best on `val`, by the class's objective: NDCG@10
    over the user segments unless it names another (`tuning_metric`, `tune_on_cold_items`). Returns it, every
    point with its value, and the chosen point's mean metrics per segment. The point is None when none scores
    (an empty grid, or no objective above -inf)."""
    metric, with_cold_items = getattr(cls, "tuning_metric", TUNING_METRIC), getattr(cls, "tune_on_cold_items", False)
    tried: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    best_value = -np.inf
    best_val_metrics: dict[str, dict[str, float]] = {}
    for point in grid_points if grid_points is not None else list(cls.param_grid):
        if on_step:
            on_step(f"{cls.name} {point or ''} (validation)")
        model = cls(**point).fit(val.past, catalog, profiles, now=val.cut)
        tops, _, _ = rank_split(model, val)
        per_user, _ = split_metrics(val, tops, len(catalog))
        value = objective(per_user, metric, cold_items=with_cold_items)
        tried.append({"params": point, f"validation {metric}" + (" with cold items" * with_cold_items): value})
        if value > best_value:
            best, best_value = point, value
            best_val_metrics = {s: {m: float(np.mean(v)) if len(v) else float("nan") for m, v in ms.items()}
                                for s, ms in per_user.items()}
    return best, tried, best_val_metrics


def evaluate_model(
    name: str,
    dataset: Dataset,
    split: Split,
    val: Split,
    tune: bool = True,
    params: dict[str, Any] | None = None,
    on_step: Callable[[str], None] | None = None,
    diversity: Sequence[float] | None = None,
    epsilons: Sequence[float] | None = None,
    epsilon_draws: int = 1,
    spread: Sequence[float] | None = None,
) -> ModelResult:
    """`epsilons`: for a model with differentially private aggregates, one more fit per finite epsilon with the
    chosen parameters (`coldrec.evaluate.privacy.sweep`; `epsilon_draws` fits, each its own noise draw), in
    `ModelResult.privacy`. `diversity`: strengths to
    sweep, for a model that re-ranks for diversity: its default strength is chosen
    on the validation cut (`coldrec.evaluate.diversity.choose_strength`), its result is at that strength, and
    `ModelResult.diversity` holds every strength's figures on the test cut. `spread`: the same for the spread of
    the lists over the catalog (chosen first, its sweep at diversity 0; diversity is then chosen and swept at the
    chosen spread, against the same floor: the lists without any re-rank)."""
    cls = model_class(name)
    catalog = dataset.catalog
    grid_points = [params] if params is not None else (list(cls.param_grid) if tune else [cls.param_grid[0]])
    best, tried, best_val_metrics = tune_params(cls, val, catalog, grid_points, on_step, dataset.profiles)
    if best is None:
        raise ValueError(f"{name}: no grid point scored on the validation cut")
    knobs = {knob: strengths for knob, strengths in (("spread", spread), ("diversity", diversity))
             if strengths and supports_diversity(cls, knob)}
    chosen: dict[str, float] = {}
    curves: dict[str, dict[float, float]] = {}
    if knobs:
        if on_step:
            on_step(f"{name} {best or ''}: {' and '.join(knobs)} strengths (validation)")
        val_model = cls(**best).fit(val.past, catalog, dataset.profiles, now=val.cut)
        chosen, curves = choose_knobs(val_model, val, knobs)
        best = {**best, **chosen}
    if on_step:
        on_step(f"{name} {best or ''} (test)")
    began = time.perf_counter()
    model = cls(**best).fit(split.past, catalog, dataset.profiles, now=split.cut)
    fit_seconds = time.perf_counter() - began
    tops, score_seconds, users = rank_split(model, split)
    per_user, covered = split_metrics(split, tops, len(catalog))
    result = ModelResult(name, is_baseline(name), best, tried, fit_seconds, score_seconds, users, per_user, covered,
                         best_val_metrics)
    vectors = model.item_vectors
    if chosen and vectors is not None:
        if on_step:
            on_step(f"{name}: {' and '.join(knobs)} strengths (test)")
        _, categories = np.unique(catalog.leaf_categories().astype(str), return_inverse=True)
        for knob, strengths in knobs.items():
            if knob == "spread":  # the spread alone: no diversity on top
                model.set_params(diversity=0.0)
            rows = diversity_sweep(model, split, strengths, vectors, categories, knob=knob)
            setattr(result, knob, DiversitySweep(chosen[knob], curves[knob], rows, knob))
            model.set_params(**chosen)
    if epsilons and supports_privacy(cls):
        result.privacy = privacy_sweep(cls, best, split, epsilons,
                                       lambda m: m.fit(split.past, catalog, dataset.profiles, now=split.cut),
                                       on_step, without_noise=per_user if best.get("epsilon") is None else None,
                                       draws=epsilon_draws,
                                       first_visit_without_noise=getattr(model, "first_visit_list_", None))
    return result


def protocol_options(dataset_name: str) -> SplitOptions:
    """The split options of a data set (PROTOCOLS; other shops: seen items removed, no onboarding segment)."""
    return PROTOCOLS.get(dataset_name, {"remove_seen": True, "onboarding": False})


def prepare_splits(dataset: Dataset, split: str = "time") -> tuple[Split, Split]:
    """The test and validation splits: "time" (one global time cut) or "users" (the user split)."""
    if dataset.log is None:
        raise ValueError(f"{dataset.name} has no interaction log: it is a search data set")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    if split == "users":
        test = build_user_split(dataset.log, dataset.catalog)
        return test, validation_user_split(test.past, dataset.catalog)
    if not dataset.log.timed:
        raise ValueError(f"{dataset.name}'s events have no timestamps (event order only): a time cut does not "
                         "apply; use the user split (--split users)")
    options = protocol_options(dataset.name)
    return (build_split(dataset.log, dataset.catalog, **options),
            validation_split(dataset.log, dataset.catalog, **options))


def tuning_split(dataset: Dataset) -> Split:
    """The split to choose a shop's parameters on before fitting on all of its data (`coldrec build --tune`): the
    time cut, or the user split where the events have no timestamps."""
    if dataset.log is None:
        raise ValueError(f"{dataset.name} has no interaction log")
    if not dataset.log.timed:
        return build_user_split(dataset.log, dataset.catalog)
    return build_split(dataset.log, dataset.catalog, **protocol_options(dataset.name))


def applicable(names: Iterable[str], split: str) -> tuple[list[str], list[str]]:
    """The models that apply under `split`, and a note for each one left out."""
    names = list(names)
    if split != "users":
        return names, []
    kept = [n for n in names if n not in NEEDS_TIME]
    notes = [f"{n} left out under the user split: {NEEDS_TIME[n]}" for n in names if n in NEEDS_TIME]
    return kept, notes


def run_evaluation(
    dataset: Dataset,
    names: Iterable[str],
    tune: bool = True,
    on_step: Callable[[str], None] | None = None,
    split: str = "time",
    diversity: Sequence[float] | None = None,
    epsilons: Sequence[float] | None = None,
    epsilon_draws: int = 1,
    spread: Sequence[float] | None = None,
) -> Evaluation:
    test, val = prepare_splits(dataset, split)
    kept, notes = applicable(names, split)
    evaluation = Evaluation(dataset.name, test, val, notes=notes)
    for name in kept:
        evaluation.results.append(evaluate_model(name, dataset, test, val, tune=tune, on_step=on_step,
                                                 diversity=diversity, epsilons=epsilons,
                                                 epsilon_draws=epsilon_draws, spread=spread))
    return evaluation
