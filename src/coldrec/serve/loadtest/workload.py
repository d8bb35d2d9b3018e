"""What the load test sends and what it counts: random requests over a server's own items, and one `Phase` each."""

from __future__ import annotations

import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

REQUEST_TIMEOUT_S = 10.0
VISIBLE_WITHIN_S = 10.0  # a probe item not in /similar and /recommend by then counts as an error
PROBE_ITEMS = 10
WRITE_BATCH = 1000  # items per POST in the reads-during-writes phase
WRITE_BATCHES = 3
MAX_BACKLOG_S = 5.0  # rate mode stops sending when this many seconds of requests are unanswered
SETUP_BATCH = 1000
SWAP_PROBE_EVERY_S = 0.25  # /healthz on a fresh connection (any worker) this often during a swap run
SWAP_SETTLED_PROBES = 12  # the swap counts as done once this many probes in a row name the new version
SWAP_TIMEOUT_S = 60.0  # from the publish; later counts as an error
INGEST_BATCH = 100  # events per POST in the ingest phase
INGEST_USERS = 200  # the ingest phase's shoppers where the load made none


@dataclass
class Phase:
    """One measured run: an endpoint under one mode."""

    endpoint: str
    mode: str  # "rate" or "peak"
    target: str  # "100/s" or "16 clients"
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)  # successful requests
    errors: Counter[str] = field(default_factory=Counter)  # status code or exception name -> count
    notes: dict[str, Any] = field(default_factory=dict)  # what else the phase saw (e.g. model versions)

    @property
    def label(self) -> str:
        return f"{self.endpoint} {self.mode} ({self.target})"

    def summary(self) -> dict[str, Any]:
        lat = np.asarray(self.latencies_ms)
        pct = {f"p{q}_ms": round(float(np.percentile(lat, q)), 2) if len(lat) else None for q in (50, 95, 99)}
        return {"endpoint": self.endpoint, "mode": self.mode, "target": self.target, "requests": len(lat),
                "errors": sum(self.errors.values()), "error_kinds": dict(self.errors),
                "rps": round(len(lat) / self.seconds, 1) if self.seconds else 0.0, **pct,
                "max_ms": round(float(lat.max()), 2) if len(lat) else None, **self.notes}


class Workload:
    """Random requests: known items and titles, shoppers with and without history."""

    def __init__(self, items: list[dict], seed: int = 0, diversity: float | None = None):
        self.rng = np.random.default_rng(seed)
        self.diversity = diversity
        self.items = items
        self.run = secrets.token_hex(4)
        self.users: list[str] = []
        self.sessions: list[str] = []
        self.probe_items: list[str] = []  # added by new_item_freshness, deleted at the end

    def histories(self, n_users: int, n_sessions: int) -> list[dict]:
        """View events giving n_users users and n_sessions sessions 1-10 views each."""
        self.users = [f"loadtest-{self.run}-u{i}" for i in range(n_users)]
        self.sessions = [f"loadtest-{self.run}-s{i}" for i in range(n_sessions)]
        events: list[dict] = []
        now = time.time()
        for key, ids in (("user_id", self.users), ("session_id", self.sessions)):
            for shopper in ids:
                for item in self.rng.choice(len(self.items), self.rng.integers(1, 11)):
                    events.append({"event_id": f"{shopper}-{len(events)}", key: shopper,
                                   "item_id": self.items[item]["item_id"], "type": "view", "time": now})
        return events

    def ingest_batch(self, client: int, number: int, size: int) -> list[dict]:
        """Batch `number` of ingest client `client`: `size` new views by the load's users (created on first use)."""
        if not self.users:
            self.users = [f"loadtest-{self.run}-u{i}" for i in range(INGEST_USERS)]
        now = time.time()
        picks = self.rng.integers(len(self.items), size=size)
        shoppers = self.rng.integers(len(self.users), size=size)
        return [{"event_id": f"ingest-{self.run}-{client}-{number}-{i}", "user_id": self.users[shopper],
                 "item_id": self.items[item]["item_id"], "type": "view", "time": now}
                for i, (item, shopper) in enumerate(zip(picks, shoppers, strict=True))]

    def recommend(self) -> tuple[str, dict]:
        """50% users with history, 20% sessions with history, 30% first visits (a fresh id)."""
        draw = self.rng.random()
        if draw < 0.5 and self.users:
            params = {"user": self.users[self.rng.integers(len(self.users))]}
        elif draw < 0.7 and self.sessions:
            params = {"session": self.sessions[self.rng.integers(len(self.sessions))]}
        else:
            params = {"user": f"loadtest-{self.run}-new-{self.rng.integers(1 << 30)}"}
        extra = {} if self.diversity is None else {"diversity": self.diversity}
        return "/recommend", {**params, **extra, "n": 10}

    def search(self) -> tuple[str, dict]:
        """Two or three words of a random title; half of them personalised by a user with history."""
        words = (self.items[self.rng.integers(len(self.items))]["title"] or "product").split()
        start = self.rng.integers(max(1, len(words) - 2))
        params: dict[str, str | int] = {"q": " ".join(words[start:start + self.rng.integers(2, 4)]), "n": 10}
        if self.users and self.rng.random() < 0.5:
            params["user"] = self.users[self.rng.integers(len(self.users))]
        return "/search", params
