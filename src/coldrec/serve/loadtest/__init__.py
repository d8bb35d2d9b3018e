"""`coldrec loadtest`: an asyncio aiohttp client measuring /recommend and /search on a running server.

The client (aiohttp, in the `bench` extra: ``pip install 'coldrec[bench]'``) is imported only when a load
runs; without it, `main` and `run_load` raise ImportError saying so. The client shares the machine with the
server, so its own cost per request counts: aiohttp's is about a third of httpx's.

Two modes per endpoint (/recommend, /search):
- rate: open loop, a fixed request rate for a duration; each request's latency is counted from the
  moment it was *scheduled*, so a slow server (or a lagging client) cannot hide queueing delay;
  requests not sent because the server is 5 s behind, or unanswered 30 s after the last send,
  count as errors;
- peak: closed loop, C concurrent clients each sending its next request when the last one
  returns: the maximum throughput.

The workload needs nothing but the HTTP API: item ids and titles come from /categories and
/recommend, shoppers with history are created first with POST /events (users and sessions, 1-10
views each; the users are erased with DELETE /users/{id} at the end), and shoppers without history
are fresh random ids. Search queries are words from item titles.

`items` measures freshness instead: the time from `POST /items` until a fresh connection's
/similar and /recommend both return the new item.

`writes` measures reads during writes: while 1,000-item `POST /items` batches are written one after
another, /healthz and /recommend are sent on schedule (open loop); a read counts when it was sent
while a write was in flight. The new items are deleted afterwards.

`ingest` measures the store's write rate through the API: `--concurrency` clients each POST /events batches of
100 new events as fast as they are acknowledged (events/s, and each batch's latency).

`swap` measures a model switch: /recommend at the fixed rate for the duration, then while `coldrec retrain`
(low priority, as `serve --retrain-every` runs it) refits the model and publishes a new version, then until
/healthz on fresh connections (any worker) names that version a dozen times in a row, then the duration again;
each stretch is a phase (failed requests, p50/p95/p99), with the versions /healthz named in it. It needs
`--model DIR` and runs on a throw-away copy of the model's current version and of its store.

`--synthetic N` (N items, hashing encoder) or `--model DIR` starts `coldrec serve` itself (with
`--workers` processes) with a throw-away state directory.

Modules: `workload` (requests and phases), `client` (the aiohttp loops), `report` (table, plot),
`runner` (a server of its own, the entry point).
"""

from .client import (
    MISSING_CLIENT,
    closed_loop,
    event_ingest,
    new_item_freshness,
    open_loop,
    reads_during_swap,
    reads_during_writes,
    require_client,
    run_load,
)
from .report import plot, table
from .runner import local_server, main, retrain_command, swap_copy
from .workload import (
    MAX_BACKLOG_S,
    PROBE_ITEMS,
    REQUEST_TIMEOUT_S,
    SETUP_BATCH,
    VISIBLE_WITHIN_S,
    WRITE_BATCH,
    WRITE_BATCHES,
    Phase,
    Workload,
)

__all__ = [
    "MAX_BACKLOG_S",
    "MISSING_CLIENT",
    "PROBE_ITEMS",
    "REQUEST_TIMEOUT_S",
    "SETUP_BATCH",
    "VISIBLE_WITHIN_S",
    "WRITE_BATCH",
    "WRITE_BATCHES",
    "Phase",
    "Workload",
    "closed_loop",
    "event_ingest",
    "local_server",
    "main",
    "new_item_freshness",
    "open_loop",
    "plot",
    "reads_during_swap",
    "reads_during_writes",
    "retrain_command",
    "require_client",
    "run_load",
    "swap_copy",
    "table",
]
