"""The benchmark split: one global time cut by users' first interactions, and the segments.

Follows ../shared/BENCHMARK.md: cold users at k = 0, 1, 3 revealed items, onboarding
(one stated interest), warm users, cold items, and the same rule inside the past for
the validation cut.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from coldrec.data.catalog import ItemCatalog
from coldrec.data.context import UserContext
from coldrec.data.interactions import InteractionLog

COLD_KS = (0, 1, 3)


@dataclass
class Segment:
    """Users of one kind, each with a context (what the model sees), targets and exclusions."""

    name: str
    contexts: list[UserContext]
    targets: list[np.ndarray]
    exclude: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.contexts)


@dataclass
class ColdItemSegment:
    """Users of other segments with cold items among their targets, scored on those alone."""

    name: str
    sources: list[tuple[str, int]]  # (segment name, user row in that segment)
    targets: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.sources)


@dataclass
class Split:
    """The segments of one cut, what models fit on (`past`) and what they are scored against.

    `kind` "time": one global time cut (`cut` = T, unix seconds; the past is time <= T). "users": the user
    split of `coldrec.data.usersplit` for logs without timestamps: `past` is the training log, `future` the
    held-out events, `cut` 0 (there is no time), and the cold-item segment is empty."""

    cut: int  # T, unix seconds: the past is time <= cut (0 under the user split)
    past: InteractionLog
    future: InteractionLog
    segments: dict[str, Segment]
    cold_items: ColdItemSegment
    popularity: np.ndarray  # distinct past users per item
    tie_break: np.ndarray  # rank of each item: past popularity desc, then item id asc
    n_cold_items: int
    info: dict = field(default_factory=dict)
    kind: str = "time"  # "time" or "users"


def time_cut(log: InteractionLog, quantile: float = 0.8) -> int:
    """First-interaction time of the user at the ceil(q * U)-th place in first-interaction order."""
    ordered = log.sorted_by_time()
    _, first = np.unique(ordered.user, return_index=True)
    first.sort()  # users in order of their first interaction (ties: file order, kept by the sort above)
    position = math.ceil(quantile * len(first)) - 1
    return int(ordered.time[first[position]])


def tie_break_rank(popularity: np.ndarray, catalog: ItemCatalog) -> np.ndarray:
    """Rank 0 = first among equal scores: more past users first, then lower item id."""
    order = np.lexsort((catalog.id_sort_key(), -popularity))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank


def build_split(
    log: InteractionLog,
    catalog: ItemCatalog,
    *,
    remove_seen: bool,
    onboarding: bool,
    ks: tuple[int, ...] = COLD_KS,
    cut: int | None = None,
) -> Split:
    """Split `log` at the 80th-percentile first-interaction time (or at `cut`)."""
    cut = time_cut(log) if cut is None else cut
    ordered = log.sorted_by_time()
    is_past = ordered.time <= cut
    past, future = ordered.select(is_past), ordered.select(~is_past)
    popularity = past.distinct_users_per_item(len(catalog))
    tie_break = tie_break_rank(popularity, catalog)
    past_users = np.zeros(len(log.users), bool)
    past_users[past.user] = True
    leaves = catalog.leaf_categories()

    def context(user_events: InteractionLog, now: int) -> UserContext:
        return UserContext(
            user_id=str(log.users[user_events.user[0]]) if len(user_events) else None,
            items=user_events.item,
            times=user_events.time,
            events=user_events.event,
            now=now,
        )

    segments = {f"cold k={k}": Segment(f"cold k={k}", [], [], []) for k in ks}
    if onboarding:
        segments["onboarding"] = Segment("onboarding", [], [], [])
    segments["warm"] = Segment("warm", [], [], [])
    no_items = np.zeros(0, np.int64)

    future_groups = _group_rows(future.user)
    past_groups = _group_rows(past.user)
    for user, rows in future_groups.items():
        events = future.select(rows)
        if past_users[user]:
            history = past.select(past_groups[user])
            segment = segments["warm"]
            segment.contexts.append(context(history, cut))
            segment.targets.append(np.unique(events.item))
            segment.exclude.append(np.unique(history.item) if remove_seen else no_items)
            continue
        for k in ks:
            if len(events) <= k:
                continue
            revealed = events.select(np.arange(k))
            targets = np.setdiff1d(events.item[k:], revealed.item)
            if not len(targets):
                continue
            ctx = context(revealed, int(max(cut, revealed.time.max())) if k else cut)
            ctx.user_id = str(log.users[user])
            segment = segments[f"cold k={k}"]
            segment.contexts.append(ctx)
            segment.targets.append(targets)
            segment.exclude.append(np.unique(revealed.item) if remove_seen else no_items)
        if onboarding and len(events) > 1:
            first = events.item[0]
            targets = np.setdiff1d(events.item[1:], [first])
            if len(targets) and leaves[first]:
                segment = segments["onboarding"]
                segment.contexts.append(
                    UserContext(user_id=str(log.users[user]), interests=[str(leaves[first])], now=cut)
                )
                segment.targets.append(targets)
                segment.exclude.append(no_items)

    first_seen = np.full(len(catalog), np.iinfo(np.int64).max)
    np.minimum.at(first_seen, log.item, log.time)
    cold = first_seen > cut
    sources, cold_targets = [], []
    for name in ("warm", "cold k=1"):
        source = segments.get(name)
        if source is None:
            continue
        for row, targets in enumerate(source.targets):
            cold_here = targets[cold[targets]]
            if len(cold_here):
                sources.append((name, row))
                cold_targets.append(cold_here)
    return Split(
        cut=cut,
        past=past,
        future=future,
        segments=segments,
        cold_items=ColdItemSegment("cold items", sources, cold_targets),
        popularity=popularity,
        tie_break=tie_break,
        n_cold_items=int(cold.sum()),
        info={"users": int(log.n_users), "past users": int(past_users.sum())},
    )


def validation_split(log: InteractionLog, catalog: ItemCatalog, **options) -> Split:
    """The same rule applied to the past of the test cut alone."""
    past = log.select(log.time <= time_cut(log))
    return build_split(past, catalog, **options)


def _group_rows(codes: np.ndarray) -> dict[int, np.ndarray]:
    """Row positions per code, each in the original (time) order."""
    order = np.argsort(codes, kind="stable")
    boundaries = np.flatnonzero(np.diff(codes[order])) + 1
    return {int(codes[g[0]]): g for g in np.split(order, boundaries) if len(g)}


def future_prefix_segment(split: Split, k: int, name: str | None = None) -> Segment:
    """Every user of the future seen as a new shopper: reveal their first k future events only.

    For users who were new anyway this is the cold k segment; for known users it hides
    their history, which turns them into more examples of a first visit (used to train
    rankers on the cold-start regime; never for reporting).
    """
    segment = Segment(name or f"future prefix k={k}", [], [], [])
    for user, rows in _group_rows(split.future.user).items():
        if len(rows) <= k:
            continue
        events = split.future.select(rows)
        revealed = events.select(np.arange(k))
        targets = np.setdiff1d(events.item[k:], revealed.item)
        if not len(targets):
            continue
        segment.contexts.append(
            UserContext(
                user_id=str(split.future.users[user]),
                items=revealed.item,
                times=revealed.time,
                events=revealed.event,
                now=int(max(split.cut, revealed.time.max())) if k else split.cut,
            )
        )
        segment.targets.append(targets)
        segment.exclude.append(np.zeros(0, np.int64))
    return segment
