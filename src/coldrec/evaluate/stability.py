"""How steady a model's validation figure is: earlier time cuts of the past, several seeds.

One validation cut of a few hundred new shoppers is a noisy judge, and a model learned on
the shop's own past can fail at one cut and not at the next. `stability` refits a model at
several earlier cuts of the benchmark's past (the same split rule, `build_split(cut=...)` at
each quantile of first-interaction times) with several seeds, and reports the validation
objective of each, so a change can be judged by its mean *and* its worst case across cuts.
Only the past is read: nothing after the test cut T.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from coldrec.data.datasets import Dataset
from coldrec.data.split import build_split, time_cut
from coldrec.evaluate.lists import TUNING_METRIC, objective, rank_split, split_metrics
from coldrec.evaluate.protocol import protocol_options
from coldrec.recommend.registry import model_class


def stability(
    dataset: Dataset,
    model: str,
    configs: Sequence[dict[str, Any]],
    seeds: Sequence[int] = (0, 1, 2),
    quantiles: Sequence[float] = (0.8, 0.7, 0.6),
    on_step: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """One row per (config, cut quantile, seed): the objective and each segment's NDCG@10.

    The cut at quantile q of the past is `time_cut(past, q)`; 0.8 is the benchmark's validation cut.
    Seeds go to ``random_state`` where the model has one (others run once per cut).
    """
    if dataset.log is None:
        raise ValueError(f"{dataset.name} has no interaction log: it is a search data set")
    if not dataset.log.timed:
        raise ValueError(f"{dataset.name}'s events have no timestamps (event order only): earlier time cuts do "
                         "not apply")
    cls = model_class(model)
    options = protocol_options(dataset.name)
    past = build_split(dataset.log, dataset.catalog, **options).past
    seeded = "random_state" in cls().get_params()
    rows = []
    for quantile in quantiles:
        if not 0.0 < quantile <= 1.0:
            raise ValueError(f"cut quantile {quantile} must lie in (0, 1]")
        fold = build_split(past, dataset.catalog, cut=time_cut(past, quantile), **options)
        for config in configs:
            for seed in seeds if seeded else seeds[:1]:
                if on_step:
                    on_step(f"{model} {config or ''} cut {quantile} seed {seed}")
                params = {**config, "random_state": seed} if seeded else dict(config)
                fitted = cls(**params).fit(fold.past, dataset.catalog, now=fold.cut)
                tops, _, _ = rank_split(fitted, fold)
                per_user, _ = split_metrics(fold, tops, len(dataset.catalog))
                segments = {s: float(np.mean(m[TUNING_METRIC])) for s, m in per_user.items() if len(m[TUNING_METRIC])}
                rows.append({"config": config, "quantile": quantile, "seed": seed,
                             "objective": objective(per_user), "segments": segments})
    return rows


def summarise(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per config: the mean objective at each cut, the mean over cuts, and the worst single run."""
    out = []
    for config in _distinct(r["config"] for r in rows):
        mine = [r for r in rows if r["config"] == config]
        quantiles = sorted({r["quantile"] for r in mine}, reverse=True)
        per_cut = {q: float(np.mean([r["objective"] for r in mine if r["quantile"] == q])) for q in quantiles}
        out.append({"config": config, "per_cut": per_cut, "mean": float(np.mean(list(per_cut.values()))),
                    "worst": float(min(r["objective"] for r in mine)), "runs": len(mine)})
    return out


def write_plot(rows: Sequence[dict[str, Any]], path: Path, title: str) -> Path:
    """Objective against cut quantile, one line (mean) and points (seeds) per config."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for summary in summarise(rows):
        config = summary["config"]
        label = ", ".join(f"{k}={v}" for k, v in config.items()) or "defaults"
        xs = list(summary["per_cut"])
        line, = ax.plot(xs, list(summary["per_cut"].values()), marker="o", label=label)
        mine = [r for r in rows if r["config"] == config]
        ax.scatter([r["quantile"] for r in mine], [r["objective"] for r in mine], color=line.get_color(), alpha=0.4,
                   s=12)
    ax.set_xlabel("cut quantile of the past (0.8 = the validation cut)")
    ax.set_ylabel(f"objective (mean {TUNING_METRIC} over segments)")
    ax.set_title(title)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _distinct(configs) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    for config in configs:
        if config not in seen:
            seen.append(config)
    return seen
