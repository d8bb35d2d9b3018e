"""Training pairs for teaching the encoder the shop, taken from the log it is fitted on.

Three kinds, one table:
- sequence: the shopper's recent items (up to `max_history`, most recent last) -> the next item;
- query: a search query -> the item clicked or bought after it (where the log has queries);
- co-bought: an item -> another item the same shopper bought at the same time (one
  basket of n items gives n pairs, each item -> the next round the basket).

A pair's `time` is the time of its target event; every item and query in it is from that
time or earlier, so `pairs.before(cut)` holds nothing from after `cut`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from itertools import pairwise

import numpy as np

from coldrec.data.interactions import InteractionLog

NO_ITEM = -1


class PairKind(IntEnum):
    SEQUENCE = 0
    QUERY = 1
    CO_BOUGHT = 2
    SYNTHETIC_QUERY = 3
    PSEUDO_LABEL = 4


@dataclass
class TrainingPairs:
    """Query -> target item. A query is either items (`history`, NO_ITEM-padded on the left,
    most recent last) or a text (`text` indexes `texts`; NO_ITEM when the query is items)."""

    history: np.ndarray  # (n, max_history) int64
    text: np.ndarray  # (n,) int64
    target: np.ndarray  # (n,) int64
    kind: np.ndarray  # (n,) int8, PairKind
    time: np.ndarray  # (n,) int64, time of the target event (0 for pairs made from the catalog)
    texts: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.target)

    @property
    def max_history(self) -> int:
        return self.history.shape[1]

    def select(self, rows: np.ndarray) -> TrainingPairs:
        rows = np.asarray(rows)
        return TrainingPairs(
            self.history[rows], self.text[rows], self.target[rows], self.kind[rows], self.time[rows], self.texts
        )

    def before(self, cut: int) -> TrainingPairs:
        """Pairs whose target event is at or before `cut`."""
        return self.select(self.time <= cut)

    def after(self, cut: int) -> TrainingPairs:
        return self.select(self.time > cut)

    def counts(self) -> dict[str, int]:
        kinds, counts = np.unique(self.kind, return_counts=True)
        return {PairKind(k).name.lower(): int(n) for k, n in zip(kinds, counts, strict=True)}

    @classmethod
    def empty(cls, max_history: int) -> TrainingPairs:
        return cls(np.zeros((0, max_history), np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64),
                   np.zeros(0, np.int8), np.zeros(0, np.int64), [])

    @classmethod
    def from_items(
        cls, history: np.ndarray, target: np.ndarray, kind: PairKind, time: np.ndarray | None = None
    ) -> TrainingPairs:
        n = len(target)
        return cls(np.asarray(history, np.int64), np.full(n, NO_ITEM, np.int64), np.asarray(target, np.int64),
                   np.full(n, kind, np.int8), np.zeros(n, np.int64) if time is None else np.asarray(time, np.int64), [])

    @classmethod
    def from_texts(cls, texts: list[str], target: np.ndarray, kind: PairKind, max_history: int,
                   time: np.ndarray | None = None) -> TrainingPairs:
        n = len(target)
        return cls(np.full((n, max_history), NO_ITEM, np.int64), np.arange(n, dtype=np.int64),
                   np.asarray(target, np.int64), np.full(n, kind, np.int8),
                   np.zeros(n, np.int64) if time is None else np.asarray(time, np.int64), list(texts))

    @staticmethod
    def concat(parts: list[TrainingPairs]) -> TrainingPairs:
        parts = [p for p in parts if len(p)] or parts[:1]
        texts: list[str] = []
        text_columns = []
        for part in parts:
            text_columns.append(np.where(part.text >= 0, part.text + len(texts), NO_ITEM))
            texts.extend(part.texts)
        return TrainingPairs(
            np.concatenate([p.history for p in parts]), np.concatenate(text_columns),
            np.concatenate([p.target for p in parts]), np.concatenate([p.kind for p in parts]),
            np.concatenate([p.time for p in parts]), texts,
        )


def pairs_from_log(
    log: InteractionLog, max_history: int = 5, cut: int | None = None, max_co_bought: int = 10
) -> TrainingPairs:
    """Sequence, query and co-bought pairs from `log` (events at or before `cut` only, when given).

    Sequence pairs skip a target already in the history (a rebuy teaches nothing about text).
    """
    if cut is not None:
        log = log.select(log.time <= cut)
    ordered = log.sorted_by_time()
    order = np.argsort(ordered.user, kind="stable")  # per user, in time order
    users, items, times = ordered.user[order], ordered.item[order].astype(np.int64), ordered.time[order]
    queries = None if ordered.query is None else ordered.query[order]
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    ends = np.r_[starts[1:], len(users)]
    histories, targets, target_times = [], [], []
    co_history: list[int] = []
    co_target: list[int] = []
    co_times: list[int] = []
    query_texts, query_targets, query_times = [], [], []
    for start, end in zip(starts, ends, strict=True):
        user_items, user_times = items[start:end], times[start:end]
        for position in range(1, len(user_items)):
            window = user_items[max(0, position - max_history) : position]
            if user_items[position] in window:
                continue
            histories.append(np.pad(window, (max_history - len(window), 0), constant_values=NO_ITEM))
            targets.append(user_items[position])
            target_times.append(user_times[position])
        # co-bought: distinct items sharing one timestamp (an invoice, an order day)
        boundaries = np.flatnonzero(np.r_[True, user_times[1:] != user_times[:-1], True])
        for left, right in pairwise(boundaries):
            basket = np.unique(user_items[left:right])[:max_co_bought]
            if len(basket) < 2:
                continue
            # each item -> the next one, round the basket: every item a query and a target once
            co_history.extend(basket)
            co_target.extend(np.roll(basket, -1))
            co_times.extend([user_times[left]] * len(basket))
        if queries is not None:
            for position in range(start, end):
                text = queries[position]
                if isinstance(text, str) and text.strip():
                    query_texts.append(text.strip())
                    query_targets.append(items[position])
                    query_times.append(times[position])
    sequence = TrainingPairs.from_items(
        np.array(histories, np.int64).reshape(-1, max_history), np.array(targets, np.int64), PairKind.SEQUENCE,
        np.array(target_times, np.int64))
    co_bought = TrainingPairs.from_items(
        np.pad(np.array(co_history, np.int64).reshape(-1, 1), ((0, 0), (max_history - 1, 0)), constant_values=NO_ITEM),
        np.array(co_target, np.int64), PairKind.CO_BOUGHT, np.array(co_times, np.int64))
    query = TrainingPairs.from_texts(query_texts, np.array(query_targets, np.int64), PairKind.QUERY, max_history,
                                     np.array(query_times, np.int64))
    return TrainingPairs.concat([sequence, query, co_bought])
