"""Retraining from the store: refit the served model on everything the store holds now, as the next version.

The store is the whole training set: its items (every row in position order; deleted ones are fitted as
rows and then removed through the engine, so nothing is renumbered), its events (the pseudonymised user key
is the user id: the model never needs raw ids) and its stated-interest profiles. The bundled data set is not
read again. The refit uses the current version's recommender kind, parameters and encoder, and the result is
published as the next version (`coldrec.model.versions`); every running server switches to it.

Erasure: a user erased from the store is in no version trained after the erasure. A refit reads one
snapshot of the store; if an erasure lands while it fits, that fit is thrown away and done again.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from coldrec.data.catalog import ItemCatalog
from coldrec.data.interactions import InteractionLog
from coldrec.data.profile import UserProfile
from coldrec.model.versions import KEEP, ModelVersions, write_info
from coldrec.serve.store import AnyStore, ErasurePending, Snapshot

logger = logging.getLogger(__name__)

#: A refit overtaken by an erasure is done again, this many times at most.
ATTEMPTS = 3
#: Expected seconds per 10k events of each step on 2 cores (the progress display's estimate).
COSTS = {"read": 0.2, "fit": 5.5, "publish": 0.5}


@dataclass(frozen=True)
class Retrained:
    """What `retrain` published."""

    version: int
    previous: int | None
    kind: str
    items: int
    deleted_items: int
    events: int
    users: int
    profiles: int
    fingerprint: str
    items_version: int
    erasures: int
    seconds: float
    purged: int = 0  # events older than the retention deleted before the fit


class ErasedMeanwhile(RuntimeError):
    """An erasure landed after the snapshot a refit was fitted on."""


def training_data(snapshot: Snapshot) -> tuple[ItemCatalog, InteractionLog, dict[str, UserProfile], np.ndarray]:
    """The catalog (every stored item, in position order), the event log (item events; user ids are the store's
    pseudonymised keys), the profiles, and the positions of the deleted items."""
    items = snapshot.items
    deleted = np.flatnonzero(items["deleted"].to_numpy(bool))
    catalog = ItemCatalog(items.drop(columns="deleted").reset_index(drop=True))
    events = snapshot.events
    positions = catalog.index_of(events["item_id"].where(events["item_id"].notna(), "").astype(str))
    keep = positions >= 0  # search events have no item
    queries = events["query"].to_numpy(object)[keep]
    log = InteractionLog.from_arrays(
        events["user_key"].to_numpy(object)[keep], positions[keep], events["time"].to_numpy(np.int64)[keep],
        events["event"].to_numpy(np.int8)[keep], query=queries if pd.notna(queries).any() else None,
        timed=snapshot.timed,
    )
    profiles = {key: UserProfile(user_id=key, interests=interests)
                for key, interests in snapshot.profiles.items() if key}
    return catalog, log, profiles, deleted


def retrain(root: Path, store: AnyStore, *, keep: int = KEEP, on_step: Callable[[str, str], None] | None = None,
            retention_days: float | None = None) -> Retrained:
    """Refit the current version of `root` on `store` and publish the result as the next version.

    `retention_days`: events older than this are first deleted from the store (`purge_events_before`, out of its
    files as an erasure), so neither the store nor this or any later version holds them. `on_step(step, detail)`
    is told "read", "fit" and "publish" as they start."""
    from coldrec.ads.click import held_out_click_model
    from coldrec.recommend.base import clone
    from coldrec.recommend.registry import model_class
    from coldrec.serve.engine import Engine

    started = time.perf_counter()
    step = on_step or (lambda name, detail: None)
    versions = ModelVersions(root)
    previous = versions.current()
    with threadpool_limits(limits=None):  # the engine limits BLAS to 1 thread for requests; a fit wants them all
        current = Engine.load(versions.current_path())
    try:
        kind = current.model.name
        model_cls = model_class(kind)
        accepted = inspect.signature(model_cls).parameters
        params = {k: v for k, v in current.model.get_params().items() if k in accepted and k != "encoder"}
        encoder = current.encoder
        previous_click = current.click_model
    finally:
        current.close()
    purged = 0
    for attempt in range(1, ATTEMPTS + 1):
        step("read", "" if attempt == 1 else f"again: an erasure landed during the fit (try {attempt})")
        if retention_days is not None:
            purged += purge_expired(store, retention_days)
        snapshot = store.snapshot()
        catalog, log, profiles, deleted = training_data(snapshot)
        step("fit", f"{kind} on {len(catalog):,} items, {len(log):,} events, {log.n_users:,} shoppers")
        engine = Engine.build(catalog, log, profiles, encoder=encoder, model_params=params, recommender=kind)
        if previous_click is not None:  # calibrated again: it maps the new ranker's scores; floor and reserve kept
            step("fit", "the click model, on a time cut of the same data")
            engine.click_model = held_out_click_model(functools.partial(clone, engine.model), log, catalog, profiles)
            engine.click_model.floor_ = previous_click.floor_
            engine.click_model.reserve_ = previous_click.reserve_
        try:
            for item_id in catalog.ids[deleted]:
                engine.remove_item(str(item_id))
            step("publish", "")
            info = {"trained_at": datetime.now(UTC).isoformat(timespec="seconds"), "source": "store",
                    "store_id": snapshot.store_id, "items_version": snapshot.items_version,
                    "erasures": snapshot.erasures, "items": len(catalog),
                    "deleted_items": len(deleted), "events": len(log), "users": log.n_users,
                    "profiles": len(profiles), "fingerprint": engine.fingerprint}

            def write(folder: Path, engine=engine, info=info, erasures=snapshot.erasures) -> None:
                engine.save(folder)
                write_info(folder, info)
                if store.erasures() != erasures:  # checked last: the publish follows at once
                    raise ErasedMeanwhile

            try:
                version = versions.publish(write, keep=keep)
            except ErasedMeanwhile:
                continue
        finally:
            engine.close()
        return Retrained(version=version, previous=previous, kind=kind, items=len(catalog),
                         deleted_items=len(deleted), events=len(log), users=log.n_users, profiles=len(profiles),
                         fingerprint=engine.fingerprint, items_version=snapshot.items_version,
                         erasures=snapshot.erasures, seconds=time.perf_counter() - started, purged=purged)
    raise RuntimeError(f"erasures kept landing during the refit ({ATTEMPTS} tries); nothing was published")


def purge_expired(store: AnyStore, retention_days: float, now: float | None = None) -> int:
    """Delete the events older than `retention_days` from `store`; how many. A purge whose rows a long read still
    holds in the files (ErasurePending) is finished by the store in the background: the rows are out of every
    query, and so out of the snapshot a retrain reads next."""
    if not retention_days > 0:
        raise ValueError(f"retention_days must be > 0, not {retention_days!r}")
    cutoff = (time.time() if now is None else now) - retention_days * 86_400
    try:
        return store.purge_events_before(cutoff)
    except ErasurePending as pending:
        logger.warning("%s", pending)
        return int(pending.counts.get("events", 0))


def estimated_steps(events: int) -> list[tuple[str, float]]:
    """`StepProgress` steps for a retrain over `events` events."""
    size = max(events, 1) / 10_000
    return [(name, cost * size) for name, cost in COSTS.items()]


# ---------------------------------------------------------------------- beside a server


def lower_priority(nice: int) -> None:
    """Make this process yield the CPU to a server on the same machine: `nice` steps lower, and, where Linux
    groups processes by session for scheduling (autogroups), a session of its own whose group is lowered too;
    a nice value only counts within its group, so a retrain sharing none with the server would still take half
    the cores. (Not possible for a process that leads its process group, e.g. one started from a shell: then
    the nice value alone.)"""
    if nice <= 0:
        return
    os.nice(nice)
    try:
        os.setsid()
    except OSError:
        return
    try:
        with open("/proc/self/autogroup", "w") as autogroup:
            autogroup.write(str(nice))
    except OSError:
        pass  # no autogroups here: the nice value is enough


# ---------------------------------------------------------------------- on a schedule
def retrain_every(seconds: float, run: Callable[[], object], parent_pid: int | None = None,
                  stop: threading.Event | None = None) -> None:
    """Call `run()` every `seconds` (the first time after one period) until `stop` is set or, given
    `parent_pid`, the parent process is gone; a failed run is logged and the next one goes ahead."""
    stop = stop or threading.Event()
    if parent_pid is not None:
        _stop_with_parent(parent_pid, stop)
    while not stop.wait(seconds):
        try:
            run()
        except Exception:
            logger.exception("scheduled retrain failed; the next one is in %.0f s", seconds)


def _stop_with_parent(parent_pid: int, stop: threading.Event) -> None:
    """Exit once the parent (the server) is gone, even mid-refit (nothing is published half-way)."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        stop.set()
        os._exit(0)

    threading.Thread(target=watch, daemon=True, name="coldrec-retrain-parent").start()
