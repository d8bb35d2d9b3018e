"""Every known shopper's top-n, as served (`Engine.recommend`, reasons included), in one table: for e-mail
campaigns and other offline uses.

The shoppers are read from the store (its events and stated interests; keys are pseudonymised, so the table is
keyed by the store's user key unless the caller names the raw ids it wants) and split into partitions; each
partition is one call of `recommend_partition` on the current executor (`coldrec.parallel`): in this process, or
a Ray task. A task loads the model directory once per worker process, brings it up to the store's catalog (items
added, changed or removed since the model was built) and answers its shoppers with one clock and the store's
merchandising rules, so the result is the same wherever it runs.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from coldrec.parallel import current_executor
from coldrec.serve.store import USER_EVENT_COLUMNS, AnyStore

#: shoppers per partition (a Ray task each)
PARTITION_SHOPPERS = 2_000
COLUMNS = ["user", "rank", "item_id", "score", "reason"]


@dataclass(frozen=True)
class Shopper:
    user: str  # what the output calls the shopper: the store's key, or the raw id asked for
    events: dict[str, np.ndarray]  # the store's event columns (item_id, time, event, query), in time order
    interests: list[str]


@dataclass(frozen=True)
class BatchJob:
    """What every partition shares."""

    model: str  # a model directory
    items: pd.DataFrame  # the store's items (deleted ones included), as a serving host's catalog sync reads them
    items_version: int
    n: int
    now: int
    rules: tuple = ()  # the store's merchandising rules (coldrec.rank.rules.Rule), applied as /recommend does


@dataclass(frozen=True)
class BatchResult:
    frame: pd.DataFrame  # COLUMNS, n rows per shopper (fewer where fewer items qualify)
    shoppers: int
    partitions: int
    seconds: float


def batch_recommend(model: Path, store: AnyStore, n: int = 10, user_ids: list[str] | None = None,
                    partition_shoppers: int = PARTITION_SHOPPERS, now: int | None = None) -> BatchResult:
    """The top `n` of every shopper the store knows (each user key of its events and profiles; sessions too, whose
    keys the store cannot tell from users'), or of `user_ids` (raw ids, keyed here). `model`: a model directory."""
    started = time.perf_counter()
    snapshot = store.snapshot()
    events = snapshot.events.sort_values(["user_key", "time"], kind="stable")
    profiles = snapshot.profiles
    if user_ids is None:
        keys = sorted(set(events["user_key"].unique()) | set(profiles))
        names = keys
    else:
        names = [str(user) for user in user_ids]
        keys = [store.ids.user(user) for user in names]
    columns = USER_EVENT_COLUMNS
    by_key = {key: rows for key, rows in events.groupby("user_key", sort=False)}
    empty = {column: np.zeros(0, object if column in ("item_id", "query") else np.int64) for column in columns}
    shoppers = []
    for name, key in zip(names, keys, strict=True):
        rows = by_key.get(key)
        history = empty if rows is None else {column: rows[column].to_numpy() for column in columns}
        shoppers.append(Shopper(name, history, list(profiles.get(key, []))))
    from coldrec.rank.rules import Rule

    job = BatchJob(str(Path(model).resolve()), snapshot.items, snapshot.items_version, n,
                   int(time.time()) if now is None else int(now), tuple(Rule(**rule) for rule in store.rules()))
    parts = [shoppers[start : start + partition_shoppers] for start in range(0, len(shoppers), partition_shoppers)]
    frames = current_executor().map(recommend_partition, parts, job, description="batch recommendations")
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)
    return BatchResult(frame, len(shoppers), len(parts), time.perf_counter() - started)


def recommend_partition(shoppers: list[Shopper], job: BatchJob) -> pd.DataFrame:
    """One partition's lists: COLUMNS, in the partition's shopper order, ranks from 1."""
    engine = _engine(job)
    users: list[str] = []
    ranks: list[int] = []
    items: list[str] = []
    scores: list[float] = []
    reasons: list[str] = []
    for shopper in shoppers:
        listed = engine.recommend(engine.context(shopper.events, shopper.interests, now=job.now), job.n,
                                  rules=job.rules, now=job.now)
        users += [shopper.user] * len(listed)
        ranks += range(1, len(listed) + 1)
        items += [row.item_id for row in listed]
        scores += [row.score for row in listed]
        reasons += [row.reason for row in listed]
    return pd.DataFrame({"user": pd.Series(users, dtype=object), "rank": np.asarray(ranks, np.int32),
                         "item_id": pd.Series(items, dtype=object), "score": np.asarray(scores, np.float32),
                         "reason": pd.Series(reasons, dtype=object)}, columns=COLUMNS)


_ENGINES: dict[tuple[str, int], object] = {}
_ENGINES_LOCK = threading.Lock()


def _engine(job: BatchJob):
    """This process's engine for `job`: loaded once, with the store's catalog applied."""
    from coldrec.serve.engine import Engine

    key = (job.model, job.items_version)
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            for old in _ENGINES.values():
                old.close()  # type: ignore[attr-defined]
            _ENGINES.clear()
            engine = Engine.load(Path(job.model))
            engine.sync_items(job.items)
            _ENGINES[key] = engine
    return engine
