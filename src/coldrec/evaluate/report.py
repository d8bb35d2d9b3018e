"""Evaluation reports: rich tables on the terminal, report.md, report.json and PNG plots.

Every figure of a user-split evaluation says so (titles, the JSON's `split` and `title`), as BENCHMARK.md
asks: its numbers are not comparable with the time split's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table

from coldrec.evaluate.diversity import DiversitySweep
from coldrec.evaluate.metrics import RECOMMENDATION_METRICS
from coldrec.evaluate.protocol import Evaluation, ModelResult

METRICS = tuple(m.name for m in RECOMMENDATION_METRICS)
SPLIT_NAMES = {"time": "time split", "users": "user split"}


def split_name(evaluation: Evaluation) -> str:
    return SPLIT_NAMES.get(evaluation.split_kind, evaluation.split_kind)


def title(evaluation: Evaluation) -> str:
    """The data set, and the split where it is not the usual time split: "amazon18-Office_Products-test (user
    split)"."""
    return evaluation.dataset if evaluation.split_kind == "time" else f"{evaluation.dataset} ({split_name(evaluation)})"


def _interval(row: dict[str, Any], metric: str) -> str:
    vs = row.get(f"{metric} vs best")
    if not vs:
        return ""
    mark = "+" if vs["low"] > 0 else ("-" if vs["high"] < 0 else "=")
    return f"{vs['diff']:+.4f} [{vs['low']:+.4f}, {vs['high']:+.4f}] {mark} {vs['baseline']}"


def rich_tables(evaluation: Evaluation) -> list[Table]:
    rows = evaluation.table()
    tables = []
    for segment in evaluation.segment_names():
        table = Table(title=f"{title(evaluation)}: {segment}", title_justify="left")
        for column in ("model", "users", *METRICS, "cov@10", "NDCG@10 - best baseline [95% CI]"):
            table.add_column(column, justify="left" if column in ("model",) else "right")
        segment_rows = [r for r in rows if r["segment"] == segment]
        best = max((r["ndcg@10"] for r in segment_rows), default=np.nan)
        for r in segment_rows:
            style = "bold green" if r["ndcg@10"] == best else None
            table.add_row(
                r["model"], f"{r['users']:,}", *(f"{r[m]:.4f}" for m in METRICS), f"{r['coverage@10']:.3f}",
                _interval(r, "ndcg@10"), style=style,
            )
        tables.append(table)
    return tables


def timing_rows(evaluation: Evaluation) -> list[dict[str, Any]]:
    return [
        {
            "model": r.name,
            "params": r.params,
            "grid points": len(r.grid),
            "fit s": round(r.fit_seconds, 2),
            "score s": round(r.score_seconds, 2),
            "users/s": round(r.users_scored / max(r.score_seconds, 1e-9)),
        }
        for r in evaluation.results
    ]


def to_json(evaluation: Evaluation) -> dict[str, Any]:
    split, val = evaluation.split, evaluation.validation
    segments = {name: len(s) for name, s in split.segments.items()}
    if split.kind == "time":
        segments["cold items"] = len(split.cold_items)
    timing = {"cut": split.cut, "validation_cut": val.cut, "cold_items_in_catalog": split.n_cold_items}
    return {
        "title": f"Evaluation: {title(evaluation)}",
        "dataset": evaluation.dataset,
        "split": split.kind,
        **(timing if split.kind == "time" else {"split_info": split.info, "validation_split_info": val.info}),
        "segments": segments,
        "validation_segments": {name: len(s) for name, s in val.segments.items()},
        "notes": evaluation.notes,
        "rows": evaluation.table(),
        "models": [
            {
                "name": r.name,
                "baseline": r.baseline,
                "params": r.params,
                "grid": r.grid,
                "validation": r.validation,
                "fit_seconds": r.fit_seconds,
                "score_seconds": r.score_seconds,
                "users_scored": r.users_scored,
                **{sweep.knob: {"chosen": sweep.chosen, "validation": sweep.validation, "test": sweep.rows}
                   for sweep in _sweeps(r)},
                **({"privacy": r.privacy} if r.privacy is not None else {}),
            }
            for r in evaluation.results
        ],
    }


DIVERSITY_COLUMNS = ("ndcg@10", "recall@20", "coverage@10", "ild@10", "entropy@10")


def _sweeps(result: ModelResult) -> list[DiversitySweep]:
    """A model's re-ranking sweeps (spread, then diversity), those it has."""
    return [sweep for sweep in (result.spread, result.diversity) if sweep is not None]


def diversity_tables(evaluation: Evaluation) -> list[Table]:
    """Per model and re-ranking knob swept: one table of every (strength, segment), the chosen default marked."""
    return [_sweep_table(evaluation, result.name, sweep) for result in evaluation.results for sweep in _sweeps(result)]


def _sweep_table(evaluation: Evaluation, name: str, sweep: DiversitySweep) -> Table:
    validation = ", ".join(f"{s:g}: {v:.4f}" for s, v in sorted(sweep.validation.items()))
    table = Table(title=f"{title(evaluation)}: {name} by {sweep.knob} strength (default {sweep.chosen:g}, chosen "
                        f"on validation; objective {validation})", title_justify="left")
    for column in ("strength", "segment", "users", *DIVERSITY_COLUMNS, "ndcg vs 0", "coverage vs 0"):
        table.add_column(column, justify="left" if column == "segment" else "right")
    at_zero = {row["segment"]: row for row in sweep.rows if row["strength"] == 0.0}
    for row in sweep.rows:
        base = at_zero[row["segment"]]
        mark = " *" if row["strength"] == sweep.chosen else ""
        table.add_row(f"{row['strength']:g}{mark}", row["segment"], f"{row['users']:,}",
                      *(f"{row[c]:.4f}" for c in DIVERSITY_COLUMNS),
                      _ratio(row["ndcg@10"], base["ndcg@10"]), _ratio(row["coverage@10"], base["coverage@10"]))
    return table


def _ratio(value: float, base: float) -> str:
    return f"{value / base:.3f}x" if base else "-"


def write_diversity_plot(evaluation: Evaluation, folder: Path) -> list[Path]:
    """NDCG@10 against Coverage@10 over the strengths, a panel per segment, a line per model: one plot per
    re-ranking knob swept (`<knob>_tradeoff.png`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for knob in dict.fromkeys(sweep.knob for r in evaluation.results for sweep in _sweeps(r)):
        swept = [(r.name, sweep) for r in evaluation.results for sweep in _sweeps(r) if sweep.knob == knob]
        segments = list(dict.fromkeys(row["segment"] for _, sweep in swept for row in sweep.rows))
        fig, axes = plt.subplots(1, len(segments), figsize=(3.6 * len(segments), 3.6), squeeze=False)
        for ax, segment in zip(axes[0], segments, strict=True):
            for name, sweep in swept:
                rows = [row for row in sweep.rows if row["segment"] == segment]
                ax.plot([r["coverage@10"] for r in rows], [r["ndcg@10"] for r in rows], marker="o", label=name)
                for r in rows:
                    mark = "*" if r["strength"] == sweep.chosen else ""
                    ax.annotate(f"{r['strength']:g}{mark}", (r["coverage@10"], r["ndcg@10"]), fontsize=7,
                                xytext=(3, 3), textcoords="offset points")
            ax.set_title(segment, fontsize=9)
            ax.set_xlabel("Coverage@10")
            ax.grid(alpha=0.3)
        axes[0][0].set_ylabel("NDCG@10")
        axes[0][0].legend(fontsize=7)
        fig.suptitle(f"{title(evaluation)}: {knob} strength (* the default)", fontsize=10)
        fig.tight_layout()
        path = folder / f"{knob}_tradeoff.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths


PRIVACY_COLUMNS = ("ndcg@10", "recall@20", "hr@10")


def _privacy_rows(result) -> list[tuple[dict[str, Any], str]]:
    """A sweep's rows, each with its NDCG@10 as a multiple of the same segment's without noise ("-" without one)."""
    exact = {row["segment"]: row["ndcg@10"] for row in result.privacy if np.isinf(row["epsilon"])}
    return [(row, _ratio(row["ndcg@10"], exact[row["segment"]]) if row["segment"] in exact else "-")
            for row in result.privacy]


def _sd(row: dict[str, Any]) -> str:
    return "-" if np.isnan(row["ndcg@10 sd"]) else f"{row['ndcg@10 sd']:.4f}"


def _epsilon(value: float) -> str:
    return "inf (off)" if np.isinf(value) else f"{value:g}"


def privacy_tables(evaluation: Evaluation) -> list[Table]:
    """Per model with an epsilon sweep: one table of every (epsilon, segment), NDCG@10 against no noise."""
    tables = []
    for result in evaluation.results:
        if result.privacy is None:
            continue
        release = next((row["release"] for row in result.privacy if row["release"]), None)
        about = "no finite epsilon"
        if release:
            guarantee = f"delta {release['delta']:g}" if release["delta"] else "pure DP"
            about = f"contribution bound c = {release['contribution_bound']}, {guarantee}"
        table = Table(title=f"{title(evaluation)}: {result.name} by epsilon per retrain ({about}; means over "
                            "the noise draws)", title_justify="left")
        for column in ("epsilon", "segment", "users", "draws", *PRIVACY_COLUMNS, "ndcg sd", "ndcg vs off",
                       "pairs released", "first-visit list"):
            table.add_column(column, justify="left" if column in ("segment", "first-visit list") else "right")
        for row, ratio in _privacy_rows(result):
            pairs = str(row["release"]["pairs_released"]) if row["release"] else "all"
            table.add_row(_epsilon(row["epsilon"]), row["segment"], f"{row['users']:,}", str(row["draws"]),
                          *(f"{row[c]:.4f}" for c in PRIVACY_COLUMNS), _sd(row), ratio, pairs, row["first visit"])
        tables.append(table)
    return tables


def write_privacy_plot(evaluation: Evaluation, folder: Path) -> list[Path]:
    """NDCG@10 against epsilon (log scale; no noise drawn at the right edge), a line per segment, a panel per
    model with a sweep: `privacy_cost.png`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    swept = [r for r in evaluation.results if r.privacy is not None]
    if not swept:
        return []
    fig, axes = plt.subplots(1, len(swept), figsize=(6 * len(swept), 4), squeeze=False)
    for ax, result in zip(axes[0], swept, strict=True):
        rows = result.privacy or []
        finite = sorted({row["epsilon"] for row in rows if np.isfinite(row["epsilon"])})
        # no noise drawn at twice the largest finite epsilon, labelled as such
        off = 2 * finite[-1] if finite else 1.0
        for segment in dict.fromkeys(row["segment"] for row in rows):
            points = [(off if np.isinf(row["epsilon"]) else row["epsilon"], row["ndcg@10"])
                      for row in rows if row["segment"] == segment]
            ax.plot(*zip(*sorted(points), strict=True), marker="o", label=segment)
        ax.set_xscale("log")
        ticks = [*finite, off]
        ax.set_xticks(ticks)
        ax.set_xticklabels([f"{t:g}" for t in finite] + ["off"])
        ax.set_xlabel("epsilon per retrain")
        ax.set_ylabel("NDCG@10")
        ax.set_title(f"{title(evaluation)}: {result.name}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("What differential privacy of the published aggregates costs", fontsize=10)
    fig.tight_layout()
    path = folder / "privacy_cost.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return [path]


def to_markdown(evaluation: Evaluation) -> str:
    split = evaluation.split
    if split.kind == "users":
        about = (f"User split (BENCHMARK.md, \"The user split\": the log has no timestamps): "
                 f"{split.info['cold users']:,} of {split.info['users']:,} users held out as cold by the MD5 of "
                 f"their id, warm users asked for their last item ({split.info['warm eligible']:,} eligible), "
                 f"models fitted on the other users' sequences without their last item "
                 f"({split.info['training users']:,} users); tuned on the same procedure applied to that training "
                 "log (MD5 of \"validation:\" + id, warm sample seed 1). No onboarding, cold-item or 30-day "
                 "figures (no time).")
    else:
        about = (f"Cut T = {_date(split.cut)} (validation cut {_date(evaluation.validation.cut)}); "
                 f"{split.n_cold_items:,} catalog items first bought after T.")
    lines = [
        f"# Evaluation: {title(evaluation)}",
        "",
        about + " Protocol: ../shared/BENCHMARK.md. Intervals: paired bootstrap 95% of the difference against "
        "the best baseline of the segment (1,000 resamples of users, seed 0).",
        "",
    ]
    lines += [f"Note: {note}." for note in evaluation.notes] + ([""] if evaluation.notes else [])
    rows = evaluation.table()
    for segment in evaluation.segment_names():
        heading = segment if evaluation.split_kind == "time" else f"{segment} ({split_name(evaluation)})"
        lines += [f"## {heading}", "",
                  "| model | users | NDCG@10 | Recall@20 | HR@10 | Coverage@10 | NDCG@10 vs best baseline |",
                  "|---|---:|---:|---:|---:|---:|---|"]
        for r in (r for r in rows if r["segment"] == segment):
            lines.append(
                f"| {r['model']} | {r['users']:,} | {r['ndcg@10']:.4f} | {r['recall@20']:.4f} | {r['hr@10']:.4f} "
                f"| {r['coverage@10']:.3f} | {_interval(r, 'ndcg@10')} |"
            )
        lines.append("")
    lines += ["## Models, tuning and time", "",
              "| model | chosen params (validation) | grid points | fit s | score s | users/s |",
              "|---|---|---:|---:|---:|---:|"]
    for t in timing_rows(evaluation):
        lines.append(f"| {t['model']} | `{t['params']}` | {t['grid points']} | {t['fit s']} | {t['score s']} "
                     f"| {t['users/s']:,} |")
    lines.append("")
    lines += ["Grids (validation NDCG@10 averaged over user segments, unless another objective is named):", ""]
    for result in evaluation.results:
        tried = ", ".join(
            f"`{g['params']}` " + " ".join(f"{v:.4f}" if key == "validation ndcg@10" else f"{key} {v:.4f}"
                                           for key, v in g.items() if key.startswith("validation "))
            for g in result.grid
        )
        lines.append(f"- {result.name}: {tried}")
    for name, sweep in ((result.name, sweep) for result in evaluation.results for sweep in _sweeps(result)):
        validation = ", ".join(f"{s:g}: {v:.4f}" for s, v in sorted(sweep.validation.items()))
        lines += ["", f"## {name} by {sweep.knob} strength", "",
                  f"Default strength {sweep.chosen:g}: the largest at which every user segment's validation NDCG@10 "
                  f"stays within 3% of the lists without re-ranking (objective, their mean, by strength: "
                  f"{validation}). Test cut:", "",
                  "| strength | segment | users | " + " | ".join(DIVERSITY_COLUMNS) + " |",
                  "|---|---|---|" + "---|" * len(DIVERSITY_COLUMNS)]
        for row in sweep.rows:
            mark = " (default)" if row["strength"] == sweep.chosen else ""
            lines.append(f"| {row['strength']:g}{mark} | {row['segment']} | {row['users']:,} | "
                         + " | ".join(f"{row[c]:.4f}" for c in DIVERSITY_COLUMNS) + " |")
    for result in evaluation.results:
        if result.privacy is None:
            continue
        lines += ["", f"## {result.name} by epsilon per retrain", "",
                  "Differentially private popularity and co-purchase counts (README, \"Privacy\"); the mean over "
                  "`draws` fits, each its own noise draw (sd: of NDCG@10 across them), the parameters chosen without "
                  "noise. Test cut:", "",
                  "| epsilon | segment | users | draws | " + " | ".join(PRIVACY_COLUMNS)
                  + " | NDCG@10 sd | NDCG@10 vs off | first-visit list |",
                  "|---|---|---|---|" + "---|" * (len(PRIVACY_COLUMNS) + 3)]
        for row, ratio in _privacy_rows(result):
            lines.append(f"| {_epsilon(row['epsilon'])} | {row['segment']} | {row['users']:,} | {row['draws']} | "
                         + " | ".join(f"{row[c]:.4f}" for c in PRIVACY_COLUMNS)
                         + f" | {_sd(row)} | {ratio} | {row['first visit']} |")
    return "\n".join(lines) + "\n"


def _date(seconds: int) -> str:
    import pandas as pd

    return str(pd.Timestamp(seconds, unit="s"))


def write_plots(evaluation: Evaluation, folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = evaluation.table()
    written = []
    ks = [name for name in evaluation.segment_names() if name.startswith("cold k=")]
    if ks:
        fig, ax = plt.subplots(figsize=(6, 4))
        xs = [int(k.split("=")[1]) for k in ks]
        for result in evaluation.results:
            ys = [next(r["ndcg@10"] for r in rows if r["segment"] == k and r["model"] == result.name) for k in ks]
            ax.plot(xs, ys, marker="o", label=result.name)
        ax.set_xlabel("revealed items k")
        ax.set_ylabel("NDCG@10")
        ax.set_xticks(xs)
        ax.set_title(f"{title(evaluation)}: cold users")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        path = folder / "cold_users_ndcg_vs_k.png"
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    for segment in evaluation.segment_names():
        seg_rows = [r for r in rows if r["segment"] == segment]
        fig, ax = plt.subplots(figsize=(6, 3.5))
        names = [r["model"] for r in seg_rows]
        values = [r["ndcg@10"] for r in seg_rows]
        colors = ["#4c72b0" if next(x for x in evaluation.results if x.name == n).baseline else "#dd8452"
                  for n in names]
        ax.bar(names, values, color=colors)
        ax.set_ylabel("NDCG@10")
        ax.set_title(f"{title(evaluation)}: {segment} ({seg_rows[0]['users'] if seg_rows else 0:,} users)")
        ax.tick_params(axis="x", rotation=30)
        fig.tight_layout()
        path = folder / f"segment_{segment.replace(' ', '_').replace('=', '')}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written


def write_report(evaluation: Evaluation, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.md").write_text(to_markdown(evaluation))
    (folder / "report.json").write_text(json.dumps(to_json(evaluation), indent=2, default=_jsonable))
    return [folder / "report.md", folder / "report.json", *write_plots(evaluation, folder),
            *write_diversity_plot(evaluation, folder), *write_privacy_plot(evaluation, folder)]


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
