"""The event log: who did what to which item, when. Columnar numpy arrays."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np
import pandas as pd
import scipy.sparse as sp


class EventType(IntEnum):
    VIEW = 0
    CLICK = 1
    CART = 2
    PURCHASE = 3
    RATING = 4
    SEARCH = 5

    @classmethod
    def parse(cls, names: np.ndarray) -> np.ndarray:
        """Event codes for names (case-insensitive); -1 where a name is unknown."""
        lookup = {e.name.lower(): int(e) for e in cls}
        lookup.update({"add_to_cart": int(cls.CART), "buy": int(cls.PURCHASE), "order": int(cls.PURCHASE)})
        lowered = pd.Series(names, dtype="string").str.strip().str.lower()
        return lowered.map(lookup).fillna(-1).astype(np.int8).to_numpy()


#: the default of `InteractionLog.order`, a marker (never stored): "number the events in file order"
_FILE_ORDER = np.empty(0, np.int64)


@dataclass
class InteractionLog:
    """Events in file order.

    `user` holds codes into `users` (the distinct user ids), `item` holds positions in the
    ItemCatalog the log was loaded against, `time` unix seconds. Subsets made with
    `select` keep the same `users` vocabulary, so codes stay comparable across them.

    A log without timestamps (`timed` False: sequence files, next-item samples) knows event
    order only: there `time` is each event's position in its user's sequence (0, 1, ...), so
    ordering still works, but no duration, window or age may be read from it.
    """

    users: np.ndarray  # distinct user ids (str), indexed by `user`
    user: np.ndarray  # int32
    item: np.ndarray  # int32
    time: np.ndarray  # int64, unix seconds
    event: np.ndarray  # int8, EventType
    weight: np.ndarray  # float32
    query: np.ndarray | None = None  # object (str or None) per event, where queries exist
    #: int64 position in the source files; by default 0..n-1 (filled in by __post_init__)
    order: np.ndarray = field(default_factory=lambda: _FILE_ORDER)
    #: False: `time` holds positions in each user's sequence, not unix seconds (event order only)
    timed: bool = True

    def __post_init__(self) -> None:
        n = len(self.user)
        if self.order is _FILE_ORDER or self.order is None:
            self.order = np.arange(n, dtype=np.int64)
        for name in ("item", "time", "event", "weight", "order"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"InteractionLog column '{name}' has {len(getattr(self, name))} rows, expected {n}")

    @classmethod
    def from_arrays(
        cls,
        user_ids,
        item,
        time,
        event=None,
        weight=None,
        query=None,
        timed: bool = True,
    ) -> InteractionLog:
        """Build a log from per-event user ids (any hashable, stored as str) and item positions (`time`: unix
        seconds, or positions in each user's sequence when not `timed`)."""
        codes, users = pd.factorize(pd.Series(user_ids, dtype="string"), sort=False)
        n = len(codes)
        return cls(
            users=np.asarray(users, dtype=object),
            user=codes.astype(np.int32),
            item=np.asarray(item, dtype=np.int32),
            time=np.asarray(time, dtype=np.int64),
            event=np.full(n, EventType.PURCHASE, np.int8) if event is None else np.asarray(event, np.int8),
            weight=np.ones(n, np.float32) if weight is None else np.asarray(weight, np.float32),
            query=None if query is None else np.asarray(query, dtype=object),
            timed=timed,
        )

    def __len__(self) -> int:
        return len(self.user)

    def __repr__(self) -> str:
        untimed = "" if self.timed else ", event order only"
        return f"InteractionLog({len(self):,} events, {self.n_users:,} users{untimed})"

    @property
    def n_users(self) -> int:
        return int(np.unique(self.user).size)

    @property
    def user_ids(self) -> np.ndarray:
        """The user id (str) of each event."""
        return self.users[self.user]

    def select(self, mask_or_index: np.ndarray) -> InteractionLog:
        take = np.asarray(mask_or_index)
        return InteractionLog(
            users=self.users,
            user=self.user[take],
            item=self.item[take],
            time=self.time[take],
            event=self.event[take],
            weight=self.weight[take],
            query=None if self.query is None else self.query[take],
            order=self.order[take],
            timed=self.timed,
        )

    def sorted_by_time(self) -> InteractionLog:
        """Events by time, ties in file order (untimed: by position in the user's sequence)."""
        return self.select(np.lexsort((self.order, self.time)))

    def user_item_matrix(self, n_items: int, binary: bool = True) -> sp.csr_matrix:
        """Users (all of `users`) x items; distinct users per item when `binary`."""
        data = np.ones(len(self), np.float32) if binary else self.weight
        matrix = sp.csr_matrix(
            (data, (self.user, self.item)), shape=(len(self.users), n_items), dtype=np.float32
        )
        if binary:
            matrix.data[:] = 1.0
        return matrix

    def distinct_users_per_item(self, n_items: int) -> np.ndarray:
        """Popularity as the benchmark counts it: distinct users per item (float32)."""
        if not len(self):
            return np.zeros(n_items, np.float32)
        pairs = np.unique(self.user.astype(np.int64) * n_items + self.item)
        return np.bincount(pairs % n_items, minlength=n_items).astype(np.float32)

    def to_frame(self) -> pd.DataFrame:
        frame = pd.DataFrame(
            {
                "user_id": self.user_ids,
                "item": self.item,
                # untimed: the position in the user's sequence, never a made-up date
                "time": pd.to_datetime(self.time, unit="s") if self.timed else self.time,
                "event": [EventType(e).name.lower() for e in self.event],
                "weight": self.weight,
            }
        )
        if self.query is not None:
            frame["query"] = self.query
        return frame

    @staticmethod
    def concat(logs: list[InteractionLog]) -> InteractionLog:
        """Concatenate logs loaded separately (their user vocabularies are merged); timed only if all are."""
        user_ids = np.concatenate([log.user_ids for log in logs])
        queries = None
        if any(log.query is not None for log in logs):
            queries = np.concatenate(
                [log.query if log.query is not None else np.full(len(log), None, object) for log in logs]
            )
        merged = InteractionLog.from_arrays(
            user_ids,
            np.concatenate([log.item for log in logs]),
            np.concatenate([log.time for log in logs]),
            np.concatenate([log.event for log in logs]),
            np.concatenate([log.weight for log in logs]),
            queries,
            timed=all(log.timed for log in logs),
        )
        return merged
