"""What is known about one shopper at request time: the input of every recommender."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class UserContext:
    """Whatever is known about one shopper at request time.

    `items` are catalog positions of known events in time order (history for a known
    user, revealed items for a new one), with their `times` (unix seconds) and `events`
    (EventType codes). `interests` are stated interests as text (category names or free
    text), `queries` recent search queries. All may be empty: a first visit.
    """

    user_id: str | None = None
    items: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    times: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    events: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))
    interests: list[str] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)
    now: int | None = None  # request time, unix seconds

    def __post_init__(self):
        self.items = np.asarray(self.items, dtype=np.int32)
        n = len(self.items)
        self.times = np.zeros(n, np.int64) if len(self.times) != n else np.asarray(self.times, np.int64)
        self.events = np.full(n, 3, np.int8) if len(self.events) != n else np.asarray(self.events, np.int8)
