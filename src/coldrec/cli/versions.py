"""`coldrec retrain` and `coldrec rollback`: new model versions from the store, and going back to an older one."""

from __future__ import annotations

import re
import time
from pathlib import Path

import typer

from coldrec.cli.common import app, console, fail, open_store
from coldrec.model.versions import KEEP

_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400}

ModelOption = typer.Option(..., "--model", help="The folder written by `coldrec build` (its versions/ and state/).")


def parse_duration(text: str) -> float:
    """Seconds in "90s", "30m", "6h", "1d" (a number and a unit); ValueError otherwise."""
    match = _DURATION.fullmatch(text or "")
    if match is None or float(match[1]) <= 0:
        raise ValueError(f"expected a duration such as 30m, 6h or 1d (s, m, h, d), not {text!r}")
    return float(match[1]) * _UNIT_S[match[2]]


def duration_option(text: str | None, option: str) -> float | None:
    """`parse_duration` of an optional CLI value; a bad one is a usage error naming `option`."""
    if text is None:
        return None
    try:
        return parse_duration(text)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint=option) from None


@app.command("retrain")
def retrain(
    model: Path = ModelOption,
    state: Path = typer.Option(None, "--state", help="The SQLite store to learn from (default: MODEL/state)."),
    store_target: str = typer.Option(None, "--store", help="The store to learn from: a state folder (as --state) or "
                                     "a postgresql://... URL, the store the service writes."),
    keep: int = typer.Option(KEEP, "--keep", min=1, help="Versions kept (the current one always)."),
    id_key_file: Path = typer.Option(None, "--id-key-file", help="The pseudonymisation key's file, as for "
                                     "`coldrec serve` (default: $COLDREC_ID_KEY_FILE or ~/.config/coldrec/id.key)."),
    every: str = typer.Option(None, "--every", help="Keep retraining on this schedule (30m, 6h, 1d) until stopped; "
                              "`coldrec serve --retrain-every` starts this."),
    nice: int = typer.Option(0, "--nice", min=0, max=19, help="Lower this process's priority by N, in a "
                             "scheduling group of its own where it can (a server on the same machine keeps its "
                             "cores; serve --retrain-every uses 10)."),
    parent: int = typer.Option(None, "--parent", hidden=True, help="Exit when this process is gone."),
    retention_days: float = typer.Option(None, "--retention-days", min=1e-9, help="Retention: before "
                                         "each refit, delete the store's events older than this many days (from "
                                         "its files too), so no version trained from now on holds them."),
) -> None:
    """Refit the served model on the store's items, events and profiles as they are now (everything accepted
    since the build; erased users' data is gone from it), and publish it as the next version: every running
    `coldrec serve` on MODEL switches to it without a restart."""
    from coldrec.model import ModelDirectoryError
    from coldrec.model.versions import ModelVersions
    from coldrec.serve.retrain import lower_priority, retrain_every
    from coldrec.serve.settings import DATABASE_FILE
    from coldrec.serve.store import is_postgres_url
    from coldrec.serve.store.postgres import redacted

    seconds = duration_option(every, "--every")
    if not ModelVersions.holds_versions(model):
        fail(f"{model}: not a folder written by `coldrec build` (no versions/ or model/ in it)")
    if store_target is not None and state is not None and Path(store_target) != state:
        fail(f"--store {store_target} and --state {state} name two different stores: give one")
    target: str | Path = store_target if store_target is not None else (state or model / "state")
    if not is_postgres_url(target) and not (Path(target) / DATABASE_FILE).is_file():
        fail(f"{target}: holds no store ({DATABASE_FILE}); give the one the service writes with --store")
    lower_priority(nice)
    store = open_store(target, None, id_key_file)
    where = redacted(str(target)) if is_postgres_url(target) else str(target)

    def once() -> None:
        try:
            _retrain_once(model, store, keep, retention_days)
        except ModelDirectoryError as error:
            if seconds is None:
                fail(str(error))
            raise

    try:
        if seconds is None:
            once()
        else:
            console.print(f"retraining {model} every {every.strip()} from {where}")
            retrain_every(seconds, once, parent_pid=parent)
    finally:
        store.close()


def _retrain_once(model: Path, store, keep: int, retention_days: float | None = None) -> None:
    from coldrec.progress import StepProgress
    from coldrec.serve.retrain import estimated_steps, retrain

    steps = estimated_steps(store.counts()["events"])
    started = time.perf_counter()
    with StepProgress(steps, console, title="retrain") as progress:
        result = retrain(model, store, keep=keep, on_step=progress.step, retention_days=retention_days)
    console.print(
        f"version {result.version} (was {result.previous}): {result.kind} on {result.items:,} items "
        f"({result.deleted_items:,} deleted), {result.events:,} events, {result.users:,} shoppers, "
        f"{result.profiles:,} profiles; {time.perf_counter() - started:.1f} s"
        + (f"; {result.purged:,} events past the retention deleted" if result.purged else ""))


@app.command("rollback")
def rollback(
    model: Path = ModelOption,
    to: int = typer.Option(None, "--to", min=1, help="This version rather than the one before the current."),
) -> None:
    """Serve the version before the current one (or --to N): every running `coldrec serve` on MODEL switches
    back within a second or two. The next retrain still takes a new number."""
    from coldrec.model import ModelDirectoryError
    from coldrec.model.versions import ModelVersions

    if not ModelVersions.holds_versions(model):
        fail(f"{model}: not a folder written by `coldrec build` (no versions/ in it)")
    versions = ModelVersions(model)
    try:
        before = versions.current()
        now = versions.rollback(to)
    except ModelDirectoryError as error:
        fail(str(error))
    kept = ", ".join(str(v) for v in versions.versions())
    console.print(f"{model}: now serving version {now} (was {before}); kept: {kept}")
