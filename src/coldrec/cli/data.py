"""`coldrec data stats` and `coldrec encode`: what the data holds, and the encoder's speed."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.table import Table

from coldrec.cli.common import DataOption, SkipBadOption, app, console, data_app, fail, load_or_exit, parse_mapping
from coldrec.data import DataError, Dataset, available_datasets, default_data_root


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
            items, items_table = import_catalog(catalog, parse_mapping(catalog_map), skip_bad=skip_bad)
            reports = [items_table.report]
            log = None
            if events is not None:
                log, events_table = import_events(events, items, parse_mapping(events_map), skip_bad=skip_bad)
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
        loaded = [load_or_exit(name, data, skip_bad) for name in names]

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
    encoder_name: str = typer.Option(None, "--encoder", help="A named encoder: minilm, usem3, e5 or hashing "
                                     "(as `coldrec build --encoder`); overrides --backend and --model."),
    backend: str = typer.Option("torch", help="torch, onnx, usem3 or e5 (without --encoder)."),
    model: Path = typer.Option(None, help="A local sentence-transformers model folder (default: packaged MiniLM)."),
    cache: Path = typer.Option(None, help="Embedding cache folder (default: $COLDREC_CACHE or ~/.cache/coldrec)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Encode everything, ignore the cache."),
    batch_size: int = typer.Option(None, min=1, max=4096, help="Default: the backend's fastest."),
    limit: int = typer.Option(0, min=0, help="Encode only the catalog's first N texts (0: all)."),
    out: Path = typer.Option(None, help="Write the vectors to this .npy file."),
    bench: bool = typer.Option(False, "--bench", help="Benchmark torch vs ONNX on Office and Home Depot instead."),
) -> None:
    """Encode a catalog's item texts and report items/s (the encoder loaded and warmed up first, not timed)."""
    from coldrec.encode import load_encoder
    from coldrec.encode.registry import default_cache_dir

    cache_dir = None if no_cache else (cache or default_cache_dir())
    if bench:
        _encode_benchmark(data, cache_dir or default_cache_dir())
        return
    ds = load_or_exit(dataset, data, skip_bad=False)
    texts = ds.catalog.texts()[: limit or None]
    if encoder_name is not None:
        from coldrec.encode.named import load_named_encoder

        try:
            encoder = load_named_encoder(encoder_name, cache_dir=cache, cache=not no_cache)
        except ValueError as error:
            raise typer.BadParameter(str(error), param_hint="--encoder") from error
        except ImportError as error:
            fail(str(error))
        what = encoder_name
    else:
        try:
            encoder = load_encoder(backend, model_path=model, cache_dir=cache_dir)
        except ValueError as error:
            raise typer.BadParameter(str(error), param_hint="--backend") from error
        what = backend
    encoder.encode(["warm-up text"], show_progress=False)
    started = time.perf_counter()
    vectors = encoder.encode(texts, batch_size=batch_size)
    seconds = time.perf_counter() - started
    console.print(
        f"{ds.name}: {len(texts):,} items, dim {vectors.shape[1]}, {what} "
        f"({encoder.fingerprint}): {seconds:.2f} s, {len(texts) / max(seconds, 1e-9):,.0f} items/s"
    )
    if out is not None:
        import numpy as np

        np.save(out, vectors)
        console.print(f"wrote {out}")


def _encode_benchmark(data: Path | None, cache_dir: Path) -> None:
    from coldrec.encode.benchmark import render_benchmark, run_encode_benchmark

    office = load_or_exit("amazon14-office", data, skip_bad=False)
    homedepot = load_or_exit("homedepot-search", data, skip_bad=False)
    corpora = {"amazon14-office": office.catalog.texts(), "homedepot-search": homedepot.catalog.texts()}
    rows = run_encode_benchmark(corpora, backends=("torch", "onnx"), cache_dir=cache_dir)
    console.print(render_benchmark(rows))


