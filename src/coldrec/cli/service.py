"""`coldrec build`, `coldrec serve` and `coldrec loadtest`: the service's commands."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

from coldrec.cli.common import DataOption, app, console, fail, load_or_exit, open_store


@app.command("serve")
def serve(
    model: Path = typer.Option(None, "--model", help="A folder written by `coldrec build` (its current version is "
                               "served, and each new one as it is published), or one model directory."),
    data: Path = DataOption,
    dataset: str = typer.Option("amazon14-office", "--dataset", "-d", help="Without --model: build on this data set."),
    synthetic: int = typer.Option(0, "--synthetic", min=0, help="Serve a synthetic engine of N items (load tests)."),
    state: Path = typer.Option(None, "--state", help="The SQLite store (default: MODEL/state or ./coldrec-state)."),
    store_target: str = typer.Option(None, "--store", help="The store: a state folder (SQLite, as --state) or a "
                                     "postgresql://USER@HOST:PORT/DATABASE URL (PostgreSQL; the password in "
                                     "PGPASSWORD or ~/.pgpass). Default: --state's."),
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
    retrain_every: str = typer.Option(None, "--retrain-every", help="Retrain from the store on this schedule "
                                      "(30m, 6h, 1d) in a low-priority process; every worker switches to each "
                                      "new version. Needs --model FOLDER."),
    ad_positions: str = typer.Option("3,8", "--ad-positions", help="List positions (1 = first) of sponsored items, "
                                     "comma-separated; '' for none."),
    ad_floor: float = typer.Option(None, "--ad-floor", min=0, help="An ad's click probability must reach this share "
                                   "of the organic list's median (default: the floor the build chose)."),
    retention_days: float = typer.Option(None, "--retention-days", min=1e-9, help="With "
                                         "--retrain-every: before each retrain, delete the store's events older "
                                         "than this many days."),
) -> None:
    """Serve recommendations, search and events over HTTP (docs at /docs, demo page at /)."""
    import logging

    import uvicorn

    from coldrec.cli.versions import duration_option
    from coldrec.encode.onnx_backend import SPIN_ENV, THREADS_ENV
    from coldrec.model import ModelDirectoryError
    from coldrec.model.versions import locate
    from coldrec.serve.access import ExposedServiceError, check_exposure
    from coldrec.serve.app import create_app, freeze_startup_objects
    from coldrec.serve.protocol import HTTP_PROTOCOL
    from coldrec.serve.settings import Settings
    from coldrec.serve.store import is_postgres_url
    from coldrec.serve.store.postgres import redacted

    # before the encoder loads (inherited by --workers processes): a bulk encode (POST /items) takes half the
    # cores, its idle threads sleep, and requests keep the rest. Office, 1,000-item POST under 100 reads/s, 2 cores:
    # /recommend p50 20 -> 10 ms, p95 35-90 -> 14 ms (3 runs each); the POST 6.7 -> 7.8 s
    os.environ.setdefault(SPIN_ENV, "0")
    os.environ.setdefault(THREADS_ENV, str(max(1, (os.cpu_count() or 2) // 2)))
    if api_key is not None:
        fail("--api-key VALUE would show the key to anyone who can list processes (ps): "
              "put it in COLDREC_API_KEY or in a file given with --api-key-file")
    versions, version, directory = None, None, None
    if model is not None:
        try:
            versions, version, directory = locate(model)
        except ModelDirectoryError as error:
            fail(str(error))
        model = versions.root if versions is not None else directory
    every = duration_option(retrain_every, "--retrain-every")
    if retention_days is not None and every is None:
        fail("--retention-days applies at each retrain: give --retrain-every too (or run `coldrec retrain "
             "--retention-days` on a schedule)")
    if every is not None and versions is None:
        fail("--retrain-every needs --model FOLDER, a folder written by `coldrec build`: the retrains publish "
             "their versions there")
    postgres_url = store_target if is_postgres_url(store_target) else None
    if store_target is not None and postgres_url is None:  # a folder: the SQLite store, as --state
        if state is not None and Path(store_target) != state:
            fail(f"--store {store_target} and --state {state} name two different stores: give one")
        state = Path(store_target)
    if state is None:
        state = model / "state" if model is not None and (model / "state").is_dir() else Path("coldrec-state")
    try:
        settings = Settings.from_env(
            key_files={"api_key": api_key_file, "read_key": read_key_file}, state_dir=state, host=host, port=port,
            id_key_file=id_key_file, trust_network=trust_network, ad_positions=_positions(ad_positions),
            ad_floor=ad_floor,
        )
        check_exposure(settings)
    except (ValueError, ExposedServiceError) as error:
        fail(str(error))
    store = open_store(postgres_url or settings.state_dir,
                       settings.id_key.get_secret_value() if settings.id_key else None, settings.id_key_file)
    where = str(settings.database_path) if postgres_url is None else redacted(postgres_url)
    started = time.perf_counter()
    engine = _serving_engine(directory, data, dataset, synthetic, store)
    # the store is the live catalog: it learns the model's items it lacks (all of them in a fresh state dir);
    # the app's CatalogSync then teaches the engine the items added or deleted live
    model_items = engine.catalog.frame
    missing = ~model_items["item_id"].isin(store.items_frame()["item_id"]).to_numpy()
    if missing.any():
        store.upsert_items(model_items[missing])
    counts = store.counts()
    console.print(f"engine ready in {time.perf_counter() - started:.1f} s: {counts['items']:,} items, "
                  f"{counts['events']:,} events in {where}"
                  + (f"; model version {version} of {model}" if versions is not None else ""))
    keys = ("  [write key required" + (", read key for GET" if settings.read_key else "") + "]"
            if settings.api_key else "")
    console.print(f"serving on http://{host}:{port}/  (API docs: /docs)" + keys
                  + (f"  [{workers} worker processes]" if workers > 1 else ""))
    logging.basicConfig(level=logging.INFO if access_log else logging.WARNING,
                        format="%(asctime)s %(name)s %(message)s")
    # uvicorn's own access log prints raw paths and query strings (user ids): ours logs route templates
    retrainer = None
    if every is not None and versions is not None:
        retrainer = _start_retrainer(versions.root, postgres_url or str(settings.state_dir), every, id_key_file,
                                     retention_days)
        console.print(f"retraining every {retrain_every.strip()} (process {retrainer.pid}, low priority)")
    try:
        if workers == 1:
            served = create_app(engine, store, settings, versions, version)
            freeze_startup_objects()
            uvicorn.run(served, host=host, port=port, access_log=False, log_level="info", http=HTTP_PROTOCOL)
        else:
            with _saved_model(engine, model, settings.state_dir) as folder:
                del engine  # each worker loads its own
                _serve_workers(folder, settings, workers, access_log, postgres_url)
    finally:
        if retrainer is not None:
            _stop(retrainer)
    store.close()


def _start_retrainer(root: Path, store: str, every_s: float, id_key_file: Path | None,
                     retention_days: float | None = None) -> subprocess.Popen:
    """`coldrec retrain --every` in a child process at low priority, exiting with this one. `store`: a state folder
    or a PostgreSQL URL."""
    command = [sys.executable, "-m", "coldrec.cli", "retrain", "--model", str(root), "--store", store,
               "--every", f"{every_s:g}s", "--nice", "10", "--parent", str(os.getpid())]
    if id_key_file is not None:
        command += ["--id-key-file", str(id_key_file)]
    if retention_days is not None:
        command += ["--retention-days", f"{retention_days:g}"]
    return subprocess.Popen(command)


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def _saved_model(engine, model: Path | None, scratch_parent: Path) -> Iterator[Path]:
    """The folder the workers load from: --model's own (a versions folder or a model directory), or a scratch
    folder (removed afterwards) for a built or synthetic engine."""
    if model is not None:
        yield model
        return
    with tempfile.TemporaryDirectory(prefix="coldrec-workers-", dir=scratch_parent) as scratch:
        engine.save(Path(scratch))
        yield Path(scratch)


def _serve_workers(directory: Path, settings, workers: int, access_log: bool, store_url: str | None) -> None:
    """uvicorn's worker processes, each loading the engine saved in `directory` and opening the shared store (the
    SQLite file in the settings' state folder, or `store_url`)."""
    import uvicorn

    from coldrec.serve.protocol import HTTP_PROTOCOL
    from coldrec.serve.worker import worker_environment

    os.environ.update(worker_environment(directory, settings, access_log, store_url))
    uvicorn.run("coldrec.serve.worker:create_worker_app", factory=True, workers=workers, host=settings.host,
                port=settings.port, access_log=False, log_level="info", http=HTTP_PROTOCOL)


def _serving_engine(directory: Path | None, data: Path | None, dataset: str, synthetic: int, store):
    """The engine from a model directory, a synthetic shop, or built on a data set (seeding an empty store)."""
    from coldrec.serve.engine import Engine

    if directory is not None:
        from coldrec.model import ModelDirectoryError

        try:
            return Engine.load(directory)
        except ModelDirectoryError as error:
            fail(str(error))
    if synthetic:
        from coldrec.serve.synthetic import synthetic_engine

        return synthetic_engine(n_items=synthetic)
    ds = load_or_exit(dataset, data, skip_bad=False)
    if ds.log is None:
        fail(f"data set {ds.name!r} has no interaction log")
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
                                       help="recommend, search, items (POST /items until visible), ingest "
                                            "(--concurrency clients POSTing batches of 100 new events), writes "
                                            "(/recommend and /healthz during 1,000-item POST /items), swap "
                                            "(/recommend at --rate before, during and after a retrain and the "
                                            "switch to its version; needs --model, retrains a copy)."),
    mode: list[str] = typer.Option(["rate", "peak"], "--mode", help="rate (open loop) and/or peak (closed loop)."),
    rate: float = typer.Option(100.0, "--rate", min=1, help="Requests per second in rate mode."),
    concurrency: int = typer.Option(16, "--concurrency", "-c", min=1, help="Concurrent clients in peak mode."),
    duration: float = typer.Option(20.0, "--duration", min=1, help="Seconds per endpoint and mode."),
    users: int = typer.Option(200, "--users", min=0, help="Users given a history first (and half as many sessions)."),
    out: Path = typer.Option(Path("reports/loadtest.png"), "--out",
                             help="Latency histogram/CDF PNG (+ .json figures)."),
    api_key_file: Path = typer.Option(None, "--api-key-file", help="File holding the server's write key, if any "
                                      "(or set COLDREC_API_KEY)."),
    workers: int = typer.Option(1, "--workers", min=1, help="With --synthetic or --model: the server's processes."),
    store: str = typer.Option(None, "--store", help="With --synthetic or --model: the server's store, a "
                              "postgresql://... URL (default: a throw-away SQLite state folder)."),
    diversity: float = typer.Option(None, "--diversity", min=0, max=1, help="/recommend?diversity= on every "
                                    "request (default: the server's own strength)."),
) -> None:
    """Requests/s and p50/p95/p99 latency of /recommend and /search at a fixed rate and at peak (and of /recommend
    while the model is retrained and swapped: --endpoint swap)."""
    from coldrec.serve.loadtest import main
    from coldrec.serve.settings import read_secret

    api_key = read_secret(api_key_file) if api_key_file else os.environ.get("COLDREC_API_KEY")
    endpoints = ("recommend", "search", "items", "ingest", "writes", "swap")
    for value, allowed, name in ((endpoint, endpoints, "--endpoint"), (mode, ("rate", "peak"), "--mode")):
        if not set(value) <= set(allowed):
            raise typer.BadParameter(f"choose from {', '.join(allowed)}", param_hint=name)
    if "swap" in endpoint and model is None:
        raise typer.BadParameter("swap retrains the model of a server the load test starts: give --model",
                                 param_hint="--endpoint")
    main(url, synthetic=synthetic, model=model, endpoints=endpoint, modes=mode, rate=rate, concurrency=concurrency,
         seconds=duration, users=users, out=out, api_key=api_key, workers=workers, console=console, store=store,
         diversity=diversity)



@app.command("scale-bench")
def scale_bench(
    items: int = typer.Option(1_000_000, "--items", min=100, help="Items in the generated shop."),
    events: int = typer.Option(10_000_000, "--events", min=1_000, help="Events in the generated shop (10 a shopper)."),
    dim: int = typer.Option(384, "--dim", min=8, help="Vector dimension (the hashing encoder's; MiniLM's is 384)."),
    workers: int = typer.Option(1, "--workers", min=1, help="Server processes."),
    rate: float = typer.Option(100.0, "--rate", min=1, help="/recommend requests per second."),
    duration: float = typer.Option(20.0, "--duration", min=1, help="Seconds per measured phase."),
    store: str = typer.Option(None, "--store", help="Also measure ingest into this PostgreSQL database "
                              "(postgresql://...; the load's users are erased afterwards)."),
    keep: Path = typer.Option(None, "--keep", help="Keep the built model directory here."),
    out: Path = typer.Option(Path("reports/scale.json"), "--out", help="The figures as JSON."),
) -> None:
    """Build time and peak memory, per-worker memory, /recommend latency and ingest rate on a generated shop."""
    import json

    from rich.table import Table

    from coldrec.serve.scale import run_scale_bench

    report = run_scale_bench(items, events, dim=dim, workers=workers, rate=rate, seconds=duration, store_url=store,
                             keep=keep, log=console.print)
    table = Table(title=f"coldrec at scale: {items:,} items, {events:,} events, {os.cpu_count()} cores "
                        "(client and server share them)", title_justify="left")
    for name in ("step", "figure", "value"):
        table.add_column(name, justify="right" if name == "value" else "left")
    for row in report.rows:
        table.add_row(*row)
    console.print(table)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"items": items, "events": events, "dim": dim, "workers": workers,
                               "figures": report.figures}, indent=2))
    console.print(f"figures: {out}")


def _positions(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise typer.BadParameter(f"expected list positions separated by commas, not {text!r}",
                                 param_hint="--ad-positions") from None
