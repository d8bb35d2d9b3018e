"""The user split of BENCHMARK.md ("The user split: for logs without timestamps"), exactly as written.

Sequence logs (one ordered item list per user, no times) cannot take a time cut, so users are held out
instead: user `u` is cold when `int(md5(str(u)), 16) % 10 == 0`; cold users are revealed their first
k = 0, 1, 3 items and asked for the distinct rest; every other user's sequence without its last item is
the training log; warm users (a seeded sample of at most 2,000) are asked for that last item. The
validation split is the same procedure on the training log alone, with the salt "validation:" in the
hash and seed 1 for the warm sample. There is no onboarding, no cold-item segment and no 30-day
popularity (no time); seen items leave the ranking; popularity (for ties and the popularity baseline)
is distinct training-log users per item.

The result is a `Split` of kind "users" (`cut` 0, an empty cold-item segment), so the evaluation runs it
like the time split. Users in each segment are listed in id order (as strings).
"""

from __future__ import annotations

import hashlib

import numpy as np

from coldrec.data.catalog import ItemCatalog
from coldrec.data.context import UserContext
from coldrec.data.interactions import InteractionLog
from coldrec.data.split import COLD_KS, ColdItemSegment, Segment, Split, tie_break_rank

COLD_BUCKETS = 10
WARM_SAMPLE = 2000
VALIDATION_SALT = "validation:"


def is_cold(user_id: str, salt: str = "") -> bool:
    """MD5 of the UTF-8 text `salt + user id` (the id as written in the file), read as an integer, in bucket 0."""
    return int(hashlib.md5((salt + str(user_id)).encode("utf-8")).hexdigest(), 16) % COLD_BUCKETS == 0


def user_sequences(log: InteractionLog) -> tuple[np.ndarray, list[np.ndarray]]:
    """The users of `log` (codes) and each one's event rows in sequence order: file order, which is time
    order (an untimed log's `time` is the position in the sequence; a timed one is ordered by time, ties in
    file order, which is the same where the file is in time order)."""
    perm = np.lexsort((log.order, log.time, log.user))
    boundaries = np.flatnonzero(np.diff(log.user[perm])) + 1
    groups = [g for g in np.split(perm, boundaries) if len(g)]
    return np.array([int(log.user[g[0]]) for g in groups], np.int64), groups


def build_user_split(
    log: InteractionLog,
    catalog: ItemCatalog,
    *,
    salt: str = "",
    seed: int = 0,
    ks: tuple[int, ...] = COLD_KS,
    warm_sample: int = WARM_SAMPLE,
) -> Split:
    """The user split of `log` (the test split by default; `validation_user_split` for the validation one)."""
    codes, groups = user_sequences(log)
    ids = [str(log.users[c]) for c in codes]
    cold = np.array([is_cold(u, salt) for u in ids], bool)

    in_training = np.zeros(len(log), bool)
    for group, held_out in zip(groups, cold, strict=True):
        if not held_out:
            in_training[group[:-1]] = True
    past, future = log.select(in_training), log.select(~in_training)
    popularity = past.distinct_users_per_item(len(catalog))

    def context(user_id: str, rows: np.ndarray) -> UserContext:
        return UserContext(user_id=user_id, items=log.item[rows], times=log.time[rows], events=log.event[rows])

    segments = {f"cold k={k}": Segment(f"cold k={k}", [], [], []) for k in ks}
    by_id = sorted(range(len(ids)), key=ids.__getitem__)
    for at in (a for a in by_id if cold[a]):
        items = log.item[groups[at]]
        for k in ks:
            if len(items) <= k:
                continue
            targets = np.setdiff1d(items[k:], items[:k])
            if not len(targets):
                continue
            segment = segments[f"cold k={k}"]
            segment.contexts.append(context(ids[at], groups[at][:k]))
            segment.targets.append(targets.astype(np.int64))
            segment.exclude.append(np.unique(items[:k]).astype(np.int64))

    eligible = sorted(ids[a] for a in range(len(ids)) if not cold[a] and _last_is_new(log.item[groups[a]]))
    chosen = eligible
    if len(eligible) > warm_sample:
        chosen = sorted(str(u) for u in np.random.default_rng(seed).choice(np.array(eligible, dtype=object),
                                                                           warm_sample, replace=False))
    at_of = {u: a for a, u in enumerate(ids)}
    warm = segments["warm"] = Segment("warm", [], [], [])
    for user_id in chosen:
        rows = groups[at_of[user_id]]
        warm.contexts.append(context(user_id, rows[:-1]))
        warm.targets.append(log.item[rows[-1:]].astype(np.int64))
        warm.exclude.append(np.unique(log.item[rows[:-1]]).astype(np.int64))

    return Split(
        cut=0,
        past=past,
        future=future,
        segments=segments,
        cold_items=ColdItemSegment("cold items", [], []),
        popularity=popularity,
        tie_break=tie_break_rank(popularity, catalog),
        n_cold_items=0,
        info={"split": "users", "users": len(ids), "cold users": int(cold.sum()),
              "training users": int(past.n_users), "warm eligible": len(eligible), "salt": salt, "seed": seed},
        kind="users",
    )


def validation_user_split(training_log: InteractionLog, catalog: ItemCatalog, **options) -> Split:
    """The same procedure on the test split's training log alone: salt "validation:", warm sample seed 1."""
    return build_user_split(training_log, catalog, salt=VALIDATION_SALT, seed=1, **options)


def _last_is_new(items: np.ndarray) -> bool:
    """At least 2 items, and the last one not already in the rest of the sequence."""
    return len(items) >= 2 and not bool(np.isin(items[-1], items[:-1]))
