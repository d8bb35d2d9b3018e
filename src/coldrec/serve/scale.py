"""`coldrec scale-bench`: what a generated shop of N items and M events costs, end to end, on this machine.

Steps, each timed: generate the shop (`coldrec.serve.synthetic.synthetic_shop`: random words, Zipf-like
popularity within categories), build the engine on it (`Engine.build`, the hashing encoder: a language model's
encoding cost is measured apart, `coldrec encode --bench`, and scales with the catalog alone), save the model
directory, start `coldrec serve` on it (`--workers W`), then measure with the load-test client: each worker's
memory (RSS, and PSS, which splits the pages the workers share, the memory-mapped model among them, between
them), `/recommend` latency at a fixed rate, and the event ingest rate through `POST /events` into the server's
store (the SQLite default, and a PostgreSQL database when a URL is given).

The peak memory of the build is this process's peak resident set (generation included).
"""

from __future__ import annotations

import asyncio
import os
import resource
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: the engine's settings at scale: the ranker learns from a sample of simulated shoppers (as synthetic_engine)
SCALE_PARAMS = {"max_training_users": 500, "max_negatives": 50, "als_factors": 32}


@dataclass
class ScaleReport:
    items: int
    events: int
    rows: list[tuple[str, str, str]] = field(default_factory=list)  # (step, figure, value)
    figures: dict[str, Any] = field(default_factory=dict)

    def add(self, step: str, figure: str, value: float | int | str, unit: str = "") -> None:
        text = f"{value:,.1f}" if isinstance(value, float) else f"{value:,}" if isinstance(value, int) else value
        self.rows.append((step, figure, f"{text} {unit}".strip()))
        self.figures[f"{step}: {figure}"] = value


def peak_rss_mb() -> float:
    """This process's peak resident set so far, MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_scale_bench(n_items: int, n_events: int, *, dim: int = 384, workers: int = 1, rate: float = 100.0,
                    seconds: float = 20.0, store_url: str | None = None, keep: Path | None = None,
                    log: Callable[[str], None] = print) -> ScaleReport:
    from coldrec.serve.engine import Engine
    from coldrec.serve.synthetic import HashingEncoder, synthetic_shop

    report = ScaleReport(n_items, n_events)
    started = time.perf_counter()
    log(f"generating a shop of {n_items:,} items and about {n_events:,} events ...")
    catalog, log_ = synthetic_shop(n_items, n_users=max(1, n_events // 10), events_per_user=10)
    report.add("generate", "time", time.perf_counter() - started, "s")
    report.add("generate", "events", len(log_))
    report.add("generate", "peak memory", peak_rss_mb(), "MB")

    started = time.perf_counter()
    log("building the engine (hashing encoder) ...")
    engine = Engine.build(catalog, log_, encoder=HashingEncoder(dim), model_params=SCALE_PARAMS)
    report.add("build", "time", time.perf_counter() - started, "s")
    report.add("build", "peak memory", peak_rss_mb(), "MB")
    del catalog, log_

    with _model_folder(keep) as folder:
        started = time.perf_counter()
        engine.save(folder)
        engine.close()
        del engine
        report.add("save", "time", time.perf_counter() - started, "s")
        report.add("save", "model directory", _size_mb(folder), "MB")
        _serve_and_load(folder, report, workers=workers, rate=rate, seconds=seconds, store_url=None, log=log)
        if store_url is not None:
            _serve_and_load(folder, report, workers=workers, rate=rate, seconds=seconds, store_url=store_url,
                            log=log)
    return report


def _serve_and_load(folder: Path, report: ScaleReport, *, workers: int, rate: float, seconds: float,
                    store_url: str | None, log: Callable[[str], None]) -> None:
    import psutil

    from coldrec.serve.loadtest import local_server, run_load

    where = "postgresql" if store_url else "sqlite"
    env = {**os.environ, "COLDREC_ID_KEY": secrets.token_hex(16)}
    started = time.perf_counter()
    with local_server(["--model", str(folder), "--workers", str(workers), "--no-access-log"], f"{folder} ({where})",
                      log=log, env=env, store=store_url) as url:
        report.add(f"serve ({where})", "start", time.perf_counter() - started, "s")
        endpoints = ["recommend", "ingest"] if store_url is None else ["ingest"]
        phases = asyncio.run(run_load(url, endpoints=endpoints, modes=["rate"], rate=rate, concurrency=4,
                                      seconds=seconds, users=200, log=log))
        for phase in phases:
            summary = phase.summary()
            if phase.endpoint == "recommend":
                report.add(f"serve ({where})", f"/recommend at {rate:g}/s: p50", summary["p50_ms"], "ms")
                report.add(f"serve ({where})", f"/recommend at {rate:g}/s: p99", summary["p99_ms"], "ms")
                report.add(f"serve ({where})", "/recommend errors", summary["errors"])
            else:
                report.add(f"ingest ({where})", "4 clients x batches of 100", int(phase.notes["events_per_s"]),
                           "events/s")
                report.add(f"ingest ({where})", "batch p99", summary["p99_ms"], "ms")
                report.add(f"ingest ({where})", "errors", summary["errors"])
        for number, (rss, pss) in enumerate(_worker_memory(url, psutil)):
            report.add(f"serve ({where})", f"worker {number + 1} RSS", rss, "MB")
            report.add(f"serve ({where})", f"worker {number + 1} PSS", pss, "MB")


def _worker_memory(url: str, psutil) -> list[tuple[float, float]]:
    """(RSS, PSS) in MB of each process answering on `url`'s port (the server, or its worker processes)."""
    port = int(url.rsplit(":", 1)[1])
    listening = {c.pid for c in psutil.net_connections("tcp") if c.laddr and c.laddr.port == port and c.pid}
    found = []
    for pid in sorted(listening):
        process = psutil.Process(pid)
        children = process.children()
        for worker in children or [process]:
            info = worker.memory_full_info()
            found.append((info.rss / 2**20, getattr(info, "pss", info.rss) / 2**20))
    return found


@contextmanager
def _model_folder(keep: Path | None) -> Iterator[Path]:
    if keep is not None:
        if keep.exists():
            shutil.rmtree(keep)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="coldrec-scale-") as scratch:
        yield Path(scratch) / "model"


def _size_mb(folder: Path) -> float:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()) / 2**20
