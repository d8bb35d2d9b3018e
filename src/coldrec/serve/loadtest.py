"""`coldrec loadtest`: an asyncio aiohttp client measuring /recommend and /search on a running server.

The client shares the machine with the server, so its own cost per request counts: aiohttp's is
about a third of httpx's.

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

`--synthetic N` (N items, hashing encoder) or `--model DIR` starts `coldrec serve` itself (with
`--workers` processes) with a throw-away state directory.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REQUEST_TIMEOUT_S = 10.0
VISIBLE_WITHIN_S = 10.0  # a probe item not in /similar and /recommend by then counts as an error
PROBE_ITEMS = 10
WRITE_BATCH = 1000  # items per POST in the reads-during-writes phase
WRITE_BATCHES = 3
MAX_BACKLOG_S = 5.0  # rate mode stops sending when this many seconds of requests are unanswered
SETUP_BATCH = 1000


@dataclass
class Phase:
    """One measured run: an endpoint under one mode."""

    endpoint: str
    mode: str  # "rate" or "peak"
    target: str  # "100/s" or "16 clients"
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)  # successful requests
    errors: Counter = field(default_factory=Counter)  # status code or exception name -> count

    @property
    def label(self) -> str:
        return f"{self.endpoint} {self.mode} ({self.target})"

    def summary(self) -> dict:
        lat = np.asarray(self.latencies_ms)
        pct = {f"p{q}_ms": round(float(np.percentile(lat, q)), 2) if len(lat) else None for q in (50, 95, 99)}
        return {"endpoint": self.endpoint, "mode": self.mode, "target": self.target, "requests": len(lat),
                "errors": sum(self.errors.values()), "error_kinds": dict(self.errors),
                "rps": round(len(lat) / self.seconds, 1) if self.seconds else 0.0, **pct,
                "max_ms": round(float(lat.max()), 2) if len(lat) else None}


class Workload:
    """Random requests: known items and titles, shoppers with and without history."""

    def __init__(self, items: list[dict], seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.items = items
        self.run = secrets.token_hex(4)
        self.users: list[str] = []
        self.sessions: list[str] = []
        self.probe_items: list[str] = []  # added by new_item_freshness, deleted at the end

    def histories(self, n_users: int, n_sessions: int) -> list[dict]:
        """View events giving n_users users and n_sessions sessions 1-10 views each."""
        self.users = [f"loadtest-{self.run}-u{i}" for i in range(n_users)]
        self.sessions = [f"loadtest-{self.run}-s{i}" for i in range(n_sessions)]
        events, now = [], time.time()
        for key, ids in (("user_id", self.users), ("session_id", self.sessions)):
            for shopper in ids:
                for item in self.rng.choice(len(self.items), self.rng.integers(1, 11)):
                    events.append({"event_id": f"{shopper}-{len(events)}", key: shopper,
                                   "item_id": self.items[item]["item_id"], "type": "view", "time": now})
        return events

    def recommend(self) -> tuple[str, dict]:
        """50% users with history, 20% sessions with history, 30% first visits (a fresh id)."""
        draw = self.rng.random()
        if draw < 0.5 and self.users:
            params = {"user": self.users[self.rng.integers(len(self.users))]}
        elif draw < 0.7 and self.sessions:
            params = {"session": self.sessions[self.rng.integers(len(self.sessions))]}
        else:
            params = {"user": f"loadtest-{self.run}-new-{self.rng.integers(1 << 30)}"}
        return "/recommend", {**params, "n": 10}

    def search(self) -> tuple[str, dict]:
        """Two or three words of a random title; half of them personalised by a user with history."""
        words = (self.items[self.rng.integers(len(self.items))]["title"] or "product").split()
        start = self.rng.integers(max(1, len(words) - 2))
        params = {"q": " ".join(words[start:start + self.rng.integers(2, 4)]), "n": 10}
        if self.users and self.rng.random() < 0.5:
            params["user"] = self.users[self.rng.integers(len(self.users))]
        return "/search", params


async def _items(client) -> list[dict]:
    """Items (ids, titles) from the popular list and up to 30 categories."""
    categories = (await _ok(client.get("/categories")))["categories"]
    rng = np.random.default_rng(0)
    picked = rng.choice(categories, min(30, len(categories)), replace=False).tolist() if categories else []
    found = {}
    for params in [{"n": 100}] + [{"n": 50, "category": c} for c in picked]:
        for item in (await _ok(client.get("/recommend", params=params)))["items"]:
            found[item["item_id"]] = item
    if not found:
        raise RuntimeError("the server recommended no items: is its catalog empty?")
    return list(found.values())


async def _ok(request) -> dict:
    async with request as response:
        response.raise_for_status()
        return await response.json()


async def _timed(client, phase: Phase, path: str, params: dict, started: float) -> None:
    try:
        async with client.get(path, params=params) as response:  # the session's timeout: never cancelled from outside
            await response.read()
            if response.status == 200:
                phase.latencies_ms.append((time.perf_counter() - started) * 1000)
            else:
                phase.errors[str(response.status)] += 1
    except Exception as error:  # noqa: BLE001 - every failure (timeouts, resets, ...) is counted, none stops the run
        phase.errors[type(error).__name__] += 1


async def _settle(client, limit_s: float = 300.0) -> None:
    """Wait until /healthz answers promptly: requests the client gave up on may still be queued in the server."""
    import aiohttp

    deadline = time.perf_counter() + limit_s
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        try:
            async with client.get("/healthz", timeout=aiohttp.ClientTimeout(total=limit_s)) as response:
                await response.read()
            if time.perf_counter() - started < 0.05:
                return
        except Exception:  # noqa: BLE001, S110 - keep waiting
            pass
        await asyncio.sleep(0.5)


async def open_loop(client, make: Callable[[], tuple[str, dict]], phase: Phase, rate: float, seconds: float) -> Phase:
    """`rate` requests per second for `seconds`, each sent on schedule whatever the previous ones do.

    When the server falls more than MAX_BACKLOG_S behind, the rest is not sent (counted as errors),
    so an overloaded server is not left with minutes of work for the next phase.
    """
    tasks, start = [], time.perf_counter()
    total, in_flight = int(rate * seconds), Counter()
    for i in range(total):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if in_flight["sent"] - in_flight["done"] >= rate * MAX_BACKLOG_S:
            phase.errors[f"not sent: {MAX_BACKLOG_S:g} s behind"] += total - i
            break
        tasks.append(asyncio.create_task(_timed(client, phase, *make(), scheduled)))
        tasks[-1].add_done_callback(lambda _: in_flight.update(["done"]))
        in_flight["sent"] += 1
    _, pending = await asyncio.wait(tasks, timeout=3 * REQUEST_TIMEOUT_S) if tasks else ((), ())
    for task in pending:
        task.cancel()
    if pending:
        phase.errors["unanswered"] += len(pending)
    phase.seconds = time.perf_counter() - start
    return phase


async def closed_loop(client, make: Callable[[], tuple[str, dict]], phase: Phase, concurrency: int,
                      seconds: float) -> Phase:
    """`concurrency` clients, each sending its next request as soon as the last one returns."""
    start = time.perf_counter()
    deadline = start + seconds

    async def worker():
        while time.perf_counter() < deadline:
            await _timed(client, phase, *make(), time.perf_counter())

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    phase.seconds = time.perf_counter() - start
    return phase


async def new_item_freshness(probe_client: Callable, workload: Workload, count: int = PROBE_ITEMS) -> Phase:
    """POST /items one new item at a time, then ask /similar/{item} and /recommend (filtered to the item's own,
    new category) on fresh connections (any worker process may answer) until both return it: each latency is
    the time from sending the POST until then."""
    phase = Phase("items", "post -> visible", f"{count} items")
    start = time.perf_counter()
    async with probe_client() as client:
        for i in range(count):
            template = workload.items[workload.rng.integers(len(workload.items))]
            item_id, category = f"loadtest-{workload.run}-item{i}", f"Loadtest > Probe {workload.run}-{i}"
            body = {"items": [{"item_id": item_id, "title": f"{template['title'] or 'product'} {i}", "category": category}]}
            began = time.perf_counter()
            try:
                await _ok(client.post("/items", json=body))
            except Exception as error:  # noqa: BLE001 - counted, the next probe goes on
                phase.errors[type(error).__name__] += 1
                continue
            workload.probe_items.append(item_id)
            while time.perf_counter() - began < VISIBLE_WITHIN_S:
                async with client.get(f"/similar/{item_id}", params={"n": 5}) as response:
                    similar = response.status == 200
                recommended = await _ok(client.get("/recommend", params={"category": category, "n": 10}))
                if similar and item_id in [r["item_id"] for r in recommended["items"]]:
                    phase.latencies_ms.append((time.perf_counter() - began) * 1000)
                    break
            else:
                phase.errors[f"not visible in {VISIBLE_WITHIN_S:g} s"] += 1
    phase.seconds = time.perf_counter() - start
    return phase


async def reads_during_writes(new_client: Callable, workload: Workload, rate: float,
                              batches: int = WRITE_BATCHES, batch_size: int = WRITE_BATCH) -> list[Phase]:
    """`batches` POSTs of `batch_size` new items, one after another, while /recommend and /healthz are each sent
    at `rate`/2 per second; returns the POSTs' latencies and the reads sent while a POST was in flight."""
    posts = Phase("items", f"POST {batch_size:,}", f"{batches} batches")
    reads = {name: Phase(name, "during writes", f"{rate / 2:g}/s") for name in ("recommend", "healthz")}
    writing = asyncio.Event()
    done = asyncio.Event()

    async def writer(client) -> None:
        started = time.perf_counter()
        for batch in range(batches):
            items = []
            for i in range(batch_size):
                template = workload.items[workload.rng.integers(len(workload.items))]
                items.append({"item_id": f"loadtest-{workload.run}-w{batch}-{i}",
                              "title": f"{template['title'] or 'product'} {workload.run}-w{batch}-{i}",  # never cached
                              "category": template.get("category") or ""})
            began = time.perf_counter()
            writing.set()
            try:
                await _ok(client.post("/items", json={"items": items}, timeout=aiohttp_timeout(120)))
                posts.latencies_ms.append((time.perf_counter() - began) * 1000)
                workload.probe_items.extend(item["item_id"] for item in items)
            except Exception as error:  # noqa: BLE001 - counted
                posts.errors[type(error).__name__] += 1
            finally:
                writing.clear()
            await asyncio.sleep(0.5)  # the reads in between are not counted: a gap marks the batches apart
        posts.seconds = time.perf_counter() - started
        done.set()

    async def reader(client, path: str, make: Callable[[], dict], phase: Phase) -> None:
        started, sent, tasks = time.perf_counter(), 0, []
        while not done.is_set():
            scheduled = started + sent / (rate / 2)
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            sent += 1
            if writing.is_set():
                tasks.append(asyncio.create_task(_timed(client, phase, path, make(), scheduled)))
        if tasks:
            await asyncio.wait(tasks, timeout=3 * REQUEST_TIMEOUT_S)
        phase.seconds = posts.seconds

    async with new_client() as write_client, new_client() as read_client:
        await asyncio.gather(
            writer(write_client),
            reader(read_client, "/recommend", lambda: workload.recommend()[1], reads["recommend"]),
            reader(read_client, "/healthz", dict, reads["healthz"]),
        )
    return [posts, *reads.values()]


def aiohttp_timeout(seconds: float):
    import aiohttp

    return aiohttp.ClientTimeout(total=seconds)


async def run_load(url: str, *, endpoints: list[str], modes: list[str], rate: float, concurrency: int,
                   seconds: float, users: int = 200, warmup: float = 2.0, api_key: str | None = None,
                   log: Callable[[str], None] = print) -> list[Phase]:
    import aiohttp

    def new_client(fresh_connections: bool = False) -> aiohttp.ClientSession:  # one per phase: a phase's
        # abandoned connections stay in it; fresh_connections: a new connection (so any worker) per request
        return aiohttp.ClientSession(base_url=url, headers={"X-API-Key": api_key} if api_key else {},
                                     connector=aiohttp.TCPConnector(limit=max(concurrency, 64),
                                                                    force_close=fresh_connections),
                                     timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S))

    async with new_client() as client:
        workload = Workload(await _items(client))
        events = workload.histories(users, users // 2)
        for i in range(0, len(events), SETUP_BATCH):
            await _ok(client.post("/events", json={"events": events[i:i + SETUP_BATCH]}))
    log(f"workload: {len(workload.items)} items, {len(workload.users)} users and {len(workload.sessions)} "
        f"sessions with {len(events)} views, plus first visits")
    phases = []
    try:
        for endpoint in endpoints:
            if endpoint == "items":
                log(f"items: {PROBE_ITEMS} new items, each until /similar and /recommend return it")
                phases.append(await new_item_freshness(lambda: new_client(fresh_connections=True), workload))
                continue
            if endpoint == "writes":
                log(f"writes: {WRITE_BATCHES} POSTs of {WRITE_BATCH:,} new items; /recommend and /healthz meanwhile")
                async with new_client() as client:
                    await _settle(client)
                phases.extend(await reads_during_writes(new_client, workload, rate))
                continue
            make = getattr(workload, endpoint)
            for mode in ["warmup", *modes]:
                async with new_client() as client:
                    await _settle(client)
                    if mode == "warmup":
                        await closed_loop(client, make, Phase(endpoint, mode, ""), 4, warmup)
                        continue
                    phase = Phase(endpoint, mode, f"{rate:g}/s" if mode == "rate" else f"{concurrency} clients")
                    log(f"{phase.label}: {seconds:g} s")
                    if mode == "rate":
                        phases.append(await open_loop(client, make, phase, rate, seconds))
                    else:
                        phases.append(await closed_loop(client, make, phase, concurrency, seconds))
    finally:
        async with new_client() as client:
            await _settle(client)
            failed = 0
            erase = ([f"/users/{user}" for user in workload.users] + [f"/sessions/{s}" for s in workload.sessions]
                     + [f"/items/{item}" for item in workload.probe_items])
            for path in erase:
                try:
                    async with client.delete(path) as response:
                        response.raise_for_status()
                except aiohttp.ClientError:
                    failed += 1
            if failed:
                log(f"warning: {failed} of the load's {len(workload.users)} users and "
                    f"{len(workload.probe_items)} probe items could not be erased")
    return phases


# ---------------------------------------------------------------- report


def table(phases: list[Phase], title: str):
    from rich.table import Table

    out = Table(title=title)
    for name in ("endpoint", "mode", "target", "requests", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "errors"):
        out.add_column(name, justify="left" if name in ("endpoint", "mode", "target") else "right")
    for phase in phases:
        s = phase.summary()
        out.add_row(s["endpoint"], s["mode"], s["target"], str(s["requests"]), f"{s['rps']:.1f}",
                    _ms(s["p50_ms"]), _ms(s["p95_ms"]), _ms(s["p99_ms"]), _ms(s["max_ms"]),
                    str(s["errors"]) + (f" {s['error_kinds']}" if s["errors"] else ""))
    return out


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def plot(phases: list[Phase], out: Path, title: str) -> None:
    """Latency histograms (log scale) and CDFs, one line per phase."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (hist, cdf) = plt.subplots(1, 2, figsize=(12, 4.5))
    measured = [p for p in phases if p.latencies_ms]
    low = max(0.1, min(min(p.latencies_ms) for p in measured)) if measured else 0.1
    high = max(max(p.latencies_ms) for p in measured) if measured else 10.0
    bins = np.geomspace(low, max(high, low * 2), 60)
    for phase in measured:
        lat = np.sort(phase.latencies_ms)
        hist.hist(lat, bins=bins, histtype="step", label=phase.label)
        cdf.plot(lat, np.arange(1, len(lat) + 1) / len(lat))
    for ax in (hist, cdf):
        ax.set_xscale("log")
        ax.set_xlabel("latency (ms)")
        ax.grid(alpha=0.3)
    hist.set_ylabel("requests")
    cdf.set_ylabel("fraction of requests")
    for q in (0.5, 0.99):
        cdf.axhline(q, color="grey", lw=0.6, ls="--")
    fig.suptitle(title, fontsize=10)
    fig.legend(*hist.get_legend_handles_labels(), loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------- a server of our own, in its own process


@contextmanager
def local_server(serve_args: list[str], what: str, log: Callable[[str], None] = print) -> Iterator[str]:
    """`coldrec serve SERVE_ARGS` in a child process with a throw-away state directory; yields its URL.

    The state is fresh (items from the engine's catalog, no events, a random id key), so the
    load's own users and events never reach a real store.
    """
    from coldrec.serve.process import free_port, start_server, stop_server

    port = free_port()
    with tempfile.TemporaryDirectory(prefix="coldrec-loadtest-") as state:
        started = time.perf_counter()
        log(f"starting a server on {what} ...")
        process = start_server([*serve_args, "--state", state], port, Path(state) / "server.log",
                               env={**os.environ, "COLDREC_ID_KEY": secrets.token_hex(16)})
        url = f"http://127.0.0.1:{port}"
        log(f"server ready at {url} (process {process.pid}) after {time.perf_counter() - started:.0f} s")
        try:
            yield url
        finally:
            stop_server(process, wait=15)


# ---------------------------------------------------------------- entry point (the CLI calls this)


def main(url: str, *, synthetic: int = 0, model: Path | None = None, endpoints: list[str], modes: list[str], rate: float, concurrency: int,
         seconds: float, users: int, out: Path, api_key: str | None, console, workers: int = 1) -> list[Phase]:
    cores = os.cpu_count()
    log = console.print

    def measure(target: str, what: str) -> list[Phase]:
        log(f"load on {target} ({what}); this client and the server share this machine's {cores} cores, "
            "the server in its own process(es)")
        phases = asyncio.run(run_load(target, endpoints=endpoints, modes=modes, rate=rate, concurrency=concurrency,
                                      seconds=seconds, users=users, api_key=api_key, log=log))
        title = f"coldrec load test: {what}; client and server share {cores} cores (separate processes)"
        console.print(table(phases, title))
        plot(phases, out, title)
        out.with_suffix(".json").write_text(json.dumps(
            {"target": target, "what": what, "cores": cores, "phases": [p.summary() for p in phases]}, indent=2))
        log(f"latency plot: {out}; figures: {out.with_suffix('.json')}")
        return phases

    if synthetic or model is not None:
        what = f"synthetic {synthetic:,}-item shop" if synthetic else f"model {model}"
        what += f", {workers} server processes" if workers > 1 else ", 1 server process"
        serve_args = ["--synthetic", str(synthetic)] if synthetic else ["--model", str(model)]
        serve_args += ["--workers", str(workers)]
        with local_server(serve_args, what, log=log) as server_url:
            return measure(server_url, what)
    return measure(url, "running server")
