"""The asyncio HTTP client of the load test (aiohttp, from the `bench` extra): open and closed loops, freshness
of new items, reads during writes, and `run_load`, which sets a workload up, measures it and cleans up after it."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

import numpy as np

from .workload import (
    INGEST_BATCH,
    MAX_BACKLOG_S,
    PROBE_ITEMS,
    REQUEST_TIMEOUT_S,
    SETUP_BATCH,
    SWAP_PROBE_EVERY_S,
    SWAP_SETTLED_PROBES,
    SWAP_TIMEOUT_S,
    VISIBLE_WITHIN_S,
    WRITE_BATCH,
    WRITE_BATCHES,
    Phase,
    Workload,
)

if TYPE_CHECKING:
    import aiohttp

MISSING_CLIENT = "the load test's HTTP client, aiohttp, is not installed: pip install 'coldrec[bench]'"

Request = AbstractAsyncContextManager["aiohttp.ClientResponse"]


def require_client() -> None:
    """Raise ImportError, saying which extra to install, when aiohttp is missing."""
    try:
        import aiohttp  # noqa: F401 - imported here for the message; the functions import it again
    except ImportError as error:
        raise ImportError(MISSING_CLIENT) from error


def aiohttp_timeout(seconds: float) -> aiohttp.ClientTimeout:
    import aiohttp

    return aiohttp.ClientTimeout(total=seconds)


async def _items(client: aiohttp.ClientSession) -> list[dict]:
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


async def _ok(request: Request) -> Any:
    async with request as response:
        response.raise_for_status()
        return await response.json()


async def _timed(client: aiohttp.ClientSession, phase: Phase, path: str, params: dict, started: float) -> None:
    try:
        # the session's timeout: never cancelled from outside
        async with client.get(path, params=params) as response:
            await response.read()
            if response.status == 200:
                phase.latencies_ms.append((time.perf_counter() - started) * 1000)
            else:
                phase.errors[str(response.status)] += 1
    except Exception as error:  # noqa: BLE001 - every failure (timeouts, resets, ...) is counted, none stops the run
        phase.errors[type(error).__name__] += 1


async def _settle(client: aiohttp.ClientSession, limit_s: float = 300.0) -> None:
    """Wait until /healthz answers promptly: requests the client gave up on may still be queued in the server."""
    deadline = time.perf_counter() + limit_s
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        try:
            async with client.get("/healthz", timeout=aiohttp_timeout(limit_s)) as response:
                await response.read()
            if time.perf_counter() - started < 0.05:
                return
        except Exception:  # noqa: BLE001, S110 - keep waiting
            pass
        await asyncio.sleep(0.5)


async def open_loop(client: aiohttp.ClientSession, make: Callable[[], tuple[str, dict]], phase: Phase, rate: float,
                    seconds: float) -> Phase:
    """`rate` requests per second for `seconds`, each sent on schedule whatever the previous ones do.

    When the server falls more than MAX_BACKLOG_S behind, the rest is not sent (counted as errors),
    so an overloaded server is not left with minutes of work for the next phase.
    """
    tasks: list[asyncio.Task[None]] = []
    start = time.perf_counter()
    total, in_flight = int(rate * seconds), Counter[str]()
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
    pending: set[asyncio.Task[None]] = set()
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=3 * REQUEST_TIMEOUT_S)
    for task in pending:
        task.cancel()
    if pending:
        phase.errors["unanswered"] += len(pending)
    phase.seconds = time.perf_counter() - start
    return phase


async def closed_loop(client: aiohttp.ClientSession, make: Callable[[], tuple[str, dict]], phase: Phase,
                      concurrency: int, seconds: float) -> Phase:
    """`concurrency` clients, each sending its next request as soon as the last one returns."""
    start = time.perf_counter()
    deadline = start + seconds

    async def worker() -> None:
        while time.perf_counter() < deadline:
            await _timed(client, phase, *make(), time.perf_counter())

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    phase.seconds = time.perf_counter() - start
    return phase


async def event_ingest(client: aiohttp.ClientSession, workload: Workload, concurrency: int, seconds: float,
                       batch: int = INGEST_BATCH) -> Phase:
    """`concurrency` clients, each POSTing its next batch of `batch` new events as soon as the last one is
    acknowledged: the store's ingest rate through the API. Each latency is one batch's; a batch counts only when
    every event in it was accepted."""
    phase = Phase("ingest", "peak", f"{concurrency} clients x {batch} events")
    start = time.perf_counter()
    deadline = start + seconds
    accepted = [0]

    async def worker(number: int) -> None:
        sent = 0
        while time.perf_counter() < deadline:
            body = {"events": workload.ingest_batch(number, sent, batch)}
            sent += 1
            began = time.perf_counter()
            try:
                async with client.post("/events", json=body) as response:
                    answer = await response.json() if response.status == 200 else None
            except Exception as error:  # noqa: BLE001 - counted, the next batch goes on
                phase.errors[type(error).__name__] += 1
                continue
            if answer is None or answer.get("accepted") != batch:
                phase.errors[str(response.status) if answer is None else "not all accepted"] += 1
                continue
            phase.latencies_ms.append((time.perf_counter() - began) * 1000)
            accepted[0] += batch

    await asyncio.gather(*(worker(number) for number in range(concurrency)))
    phase.seconds = time.perf_counter() - start
    phase.notes["events_per_s"] = round(accepted[0] / phase.seconds)
    phase.notes["events"] = accepted[0]
    return phase


async def new_item_freshness(probe_client: Callable[[], aiohttp.ClientSession], workload: Workload,
                             count: int = PROBE_ITEMS) -> Phase:
    """POST /items one new item at a time, then ask /similar/{item} and /recommend (filtered to the item's own,
    new category) on fresh connections (any worker process may answer) until both return it: each latency is
    the time from sending the POST until then."""
    phase = Phase("items", "post -> visible", f"{count} items")
    start = time.perf_counter()
    async with probe_client() as client:
        for i in range(count):
            template = workload.items[workload.rng.integers(len(workload.items))]
            item_id, category = f"loadtest-{workload.run}-item{i}", f"Loadtest > Probe {workload.run}-{i}"
            title = f"{template['title'] or 'product'} {i}"
            body = {"items": [{"item_id": item_id, "title": title, "category": category}]}
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


async def reads_during_writes(new_client: Callable[[], aiohttp.ClientSession], workload: Workload, rate: float,
                              batches: int = WRITE_BATCHES, batch_size: int = WRITE_BATCH) -> list[Phase]:
    """`batches` POSTs of `batch_size` new items, one after another, while /recommend and /healthz are each sent
    at `rate`/2 per second; returns the POSTs' latencies and the reads sent while a POST was in flight."""
    posts = Phase("items", f"POST {batch_size:,}", f"{batches} batches")
    reads = {name: Phase(name, "during writes", f"{rate / 2:g}/s") for name in ("recommend", "healthz")}
    writing = asyncio.Event()
    done = asyncio.Event()

    async def writer(client: aiohttp.ClientSession) -> None:
        started = time.perf_counter()
        for batch in range(batches):
            items = []
            for i in range(batch_size):
                template = workload.items[workload.rng.integers(len(workload.items))]
                items.append({"item_id": f"loadtest-{workload.run}-w{batch}-{i}",
                              "title": f"{template['title'] or 'product'} {workload.run}-w{batch}-{i}",  # not cached
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

    async def reader(client: aiohttp.ClientSession, path: str, make: Callable[[], dict], phase: Phase) -> None:
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


SWAP_PHASES = ("before swap", "during retrain", "during switch", "after swap")


async def reads_during_swap(new_client: Callable[..., aiohttp.ClientSession], workload: Workload, rate: float,
                            seconds: float, swap: Callable[[], Coroutine[Any, Any, object]]) -> list[Phase]:
    """/recommend at `rate` per second (open loop) for `seconds`, then while `swap()` runs (a retrain publishing a
    new model version), then until /healthz on fresh connections (any worker process) names the new version
    SWAP_SETTLED_PROBES times in a row, then `seconds` more. Returns a phase per stretch (each request counted in
    the stretch it was scheduled in), the whole run, and the /healthz probes; each notes the versions /healthz
    named in it."""
    phases = {name: Phase("recommend", name, f"{rate:g}/s") for name in SWAP_PHASES}
    probes = Phase("healthz", "whole run", f"every {SWAP_PROBE_EVERY_S:g} s, fresh connections")
    seen: dict[str, Counter[str]] = {name: Counter() for name in SWAP_PHASES}
    now = [SWAP_PHASES[0]]
    began = {SWAP_PHASES[0]: time.perf_counter()}
    done = asyncio.Event()

    def enter(name: str) -> None:
        phases[now[0]].seconds = time.perf_counter() - began[now[0]]
        now[0], began[name] = name, time.perf_counter()

    async def reader(client: aiohttp.ClientSession) -> None:
        started, sent, tasks = time.perf_counter(), 0, []
        in_flight = Counter[str]()
        while not done.is_set():
            scheduled = started + sent / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            sent += 1
            phase = phases[now[0]]
            if in_flight["sent"] - in_flight["done"] >= rate * MAX_BACKLOG_S:
                phase.errors[f"not sent: {MAX_BACKLOG_S:g} s behind"] += 1
                continue
            tasks.append(asyncio.create_task(_timed(client, phase, *workload.recommend(), scheduled)))
            tasks[-1].add_done_callback(lambda _: in_flight.update(["done"]))
            in_flight["sent"] += 1
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=3 * REQUEST_TIMEOUT_S)
            for task in pending:
                task.cancel()
            if pending:
                phases[now[0]].errors["unanswered"] += len(pending)

    async def probe(client: aiohttp.ClientSession) -> str | None:
        started, phase = time.perf_counter(), now[0]
        try:
            async with client.get("/healthz") as response:
                body = await response.json()
                if response.status != 200:
                    probes.errors[str(response.status)] += 1
                    return None
        except Exception as error:  # noqa: BLE001 - counted
            probes.errors[type(error).__name__] += 1
            return None
        probes.latencies_ms.append((time.perf_counter() - started) * 1000)
        version = str(body.get("model_version"))
        seen[phase][version] += 1
        return version

    async def probe_for(client: aiohttp.ClientSession, duration: float) -> None:
        deadline = time.perf_counter() + duration
        while time.perf_counter() < deadline:
            await probe(client)
            await asyncio.sleep(SWAP_PROBE_EVERY_S)

    async def control(client: aiohttp.ClientSession) -> None:
        try:
            await probe_for(client, seconds)
            old = seen[SWAP_PHASES[0]].most_common(1)[0][0] if seen[SWAP_PHASES[0]] else None
            enter("during retrain")
            swapping: asyncio.Task[object] = asyncio.create_task(swap())
            while not swapping.done():
                await probe(client)
                await asyncio.wait([swapping], timeout=SWAP_PROBE_EVERY_S)
            swapping.result()  # a failed retrain ends the run here, saying why
            enter("during switch")
            published, streak = time.perf_counter(), 0
            while streak < SWAP_SETTLED_PROBES:
                if time.perf_counter() - published > SWAP_TIMEOUT_S:
                    probes.errors[f"old version still served {SWAP_TIMEOUT_S:g} s after the publish"] += 1
                    break
                version = await probe(client)
                streak = streak + 1 if version not in (None, old) else 0
                await asyncio.sleep(SWAP_PROBE_EVERY_S)
            phases["during switch"].notes["settled_s"] = round(time.perf_counter() - published, 2)
            enter("after swap")
            await probe_for(client, seconds)
            phases["after swap"].seconds = time.perf_counter() - began["after swap"]
        finally:
            done.set()

    async with new_client() as read_client, new_client(fresh_connections=True) as probe_client:
        await asyncio.gather(reader(read_client), control(probe_client))
    whole = Phase("recommend", "whole run", f"{rate:g}/s", seconds=sum(p.seconds for p in phases.values()))
    for name, phase in phases.items():
        phase.notes["versions"] = dict(seen[name])
        whole.latencies_ms += phase.latencies_ms
        whole.errors.update(phase.errors)
    probes.seconds = whole.seconds
    probes.notes["versions"] = dict(sum(seen.values(), Counter[str]()))
    return [*phases.values(), whole, probes]


async def _measure(new_client: Callable[..., aiohttp.ClientSession], workload: Workload, endpoint: str,
                   modes: list[str], rate: float, concurrency: int, seconds: float, warmup: float,
                   log: Callable[[str], None],
                   swap: Callable[[], Coroutine[Any, Any, object]] | None = None) -> list[Phase]:
    """One endpoint's phases: freshness for "items", reads during writes for "writes", reads during a retrain
    and the switch to its version for "swap", else a warm-up and `modes`."""
    if endpoint == "items":
        log(f"items: {PROBE_ITEMS} new items, each until /similar and /recommend return it")
        return [await new_item_freshness(lambda: new_client(fresh_connections=True), workload)]
    if endpoint == "writes":
        log(f"writes: {WRITE_BATCHES} POSTs of {WRITE_BATCH:,} new items; /recommend and /healthz meanwhile")
        async with new_client() as client:
            await _settle(client)
        return await reads_during_writes(new_client, workload, rate)
    if endpoint == "swap":
        if swap is None:
            raise ValueError("the swap load needs a server whose model folder it can retrain (--model)")
        log(f"swap: /recommend at {rate:g}/s for {seconds:g} s, during a retrain and the switch to its version, "
            f"and {seconds:g} s after")
        async with new_client() as client:
            await _settle(client)
            await closed_loop(client, workload.recommend, Phase(endpoint, "warmup", ""), 4, warmup)
        return await reads_during_swap(new_client, workload, rate, seconds, swap)
    if endpoint == "ingest":
        log(f"ingest: {concurrency} clients posting batches of {INGEST_BATCH} new events for {seconds:g} s")
        async with new_client() as client:
            await _settle(client)
            return [await event_ingest(client, workload, concurrency, seconds)]
    make = getattr(workload, endpoint)
    phases = []
    for mode in ["warmup", *modes]:
        async with new_client() as client:
            await _settle(client)
            if mode == "warmup":
                await closed_loop(client, make, Phase(endpoint, mode, ""), 4, warmup)
                continue
            phase = Phase(endpoint, mode, f"{rate:g}/s" if mode == "rate" else f"{concurrency} clients")
            log(f"{phase.label}: {seconds:g} s")
            measured: Awaitable[Phase] = (open_loop(client, make, phase, rate, seconds) if mode == "rate"
                                          else closed_loop(client, make, phase, concurrency, seconds))
            phases.append(await measured)
    return phases


async def _erase(client: aiohttp.ClientSession, workload: Workload, log: Callable[[str], None]) -> None:
    """Delete what the load wrote: its users, sessions and probe items."""
    import aiohttp

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


async def run_load(url: str, *, endpoints: list[str], modes: list[str], rate: float, concurrency: int,
                   seconds: float, users: int = 200, warmup: float = 2.0, api_key: str | None = None,
                   log: Callable[[str], None] = print,
                   swap: Callable[[], Coroutine[Any, Any, object]] | None = None,
                   diversity: float | None = None) -> list[Phase]:
    """Set the workload up, measure every endpoint, erase what the load wrote. `swap`: for the "swap" endpoint,
    what publishes the new model version (a retrain). `diversity`: the strength /recommend asks for (None: the
    server's own)."""
    require_client()
    import aiohttp

    def new_client(fresh_connections: bool = False) -> aiohttp.ClientSession:
        # one per phase: a phase's abandoned connections stay in it; fresh_connections: a new connection (so any
        # worker) per request
        return aiohttp.ClientSession(base_url=url, headers={"X-API-Key": api_key} if api_key else {},
                                     connector=aiohttp.TCPConnector(limit=max(concurrency, 64),
                                                                    force_close=fresh_connections),
                                     timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S))

    async with new_client() as client:
        workload = Workload(await _items(client), diversity=diversity)
        events = workload.histories(users, users // 2)
        for i in range(0, len(events), SETUP_BATCH):
            await _ok(client.post("/events", json={"events": events[i:i + SETUP_BATCH]}))
    log(f"workload: {len(workload.items)} items, {len(workload.users)} users and {len(workload.sessions)} "
        f"sessions with {len(events)} views, plus first visits")
    phases: list[Phase] = []
    try:
        for endpoint in endpoints:
            phases += await _measure(new_client, workload, endpoint, modes, rate, concurrency, seconds, warmup, log,
                                     swap)
    finally:
        async with new_client() as client:
            await _erase(client, workload, log)
    return phases
