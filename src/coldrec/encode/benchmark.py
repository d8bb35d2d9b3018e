"""Encoder benchmark: throughput, load time, peak RSS, cached re-run and ONNX-vs-torch agreement.

Each (corpus, backend) runs in a fresh ``python -m coldrec.encode.benchmark`` process so
that peak RSS belongs to that backend alone.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .base import TextEncoder
from .env import default_cache_dir

_WARMUP = ["warm-up text", "a slightly longer warm-up text for the encoder"]


def run_encode_benchmark(
    corpora: dict[str, list[str]],
    backends: Sequence[str] = ("torch", "onnx"),
    cache_dir: str | Path | None = None,
    batch_size: int | None = None,
) -> list[dict[str, Any]]:
    """One row per (corpus, backend), then one ``import coldrec`` row.

    Row keys: corpus, backend, n, load_s, encode_s, items_per_s, peak_rss_mb, cached_s,
    min_cos_vs_torch (None for torch or when torch was not run). ``cache_dir`` holds the
    ONNX export (default: `default_cache_dir()`); the embedding cache is a fresh temporary
    folder inside it, removed afterwards.
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix="bench-") as tmp_name:
        tmp = Path(tmp_name)
        for corpus, texts in corpora.items():
            texts_file = tmp / "texts.json"
            texts_file.write_text(json.dumps(list(texts)))
            vectors: dict[str, np.ndarray] = {}
            for backend in backends:
                job: dict[str, Any] = {
                    "backend": backend,
                    "texts": str(texts_file),
                    "cache_dir": str(cache_dir),
                    "emb_cache": str(tmp / "embeddings"),
                    "out": str(tmp / f"{backend}.npy"),
                    "batch_size": batch_size,
                }
                proc = subprocess.run(
                    [sys.executable, "-m", "coldrec.encode.benchmark", json.dumps(job)],
                    capture_output=True,
                    text=True,
                )
                if proc.returncode != 0:
                    raise RuntimeError(f"benchmark child for {backend!r} failed:\n{proc.stderr[-4000:]}")
                row = {"corpus": corpus, **json.loads(proc.stdout.strip().splitlines()[-1])}
                vectors[backend] = np.load(job["out"])
                rows.append(row)
            for row in rows:
                if row["corpus"] == corpus:
                    ref = vectors.get("torch")
                    row["min_cos_vs_torch"] = (
                        None if ref is None or row["backend"] == "torch" or ref.shape != vectors[row["backend"]].shape
                        else float(np.einsum("ij,ij->i", vectors[row["backend"]], ref).min())
                    )
    rows.append({"corpus": "-", "backend": "import coldrec", "import_s": measure_import_time()})
    return rows


def measure_import_time(module: str = "coldrec") -> float:
    """Seconds to ``import module`` in a fresh interpreter (interpreter start excluded)."""
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def render_benchmark(rows: list[dict[str, Any]]) -> Any:
    """A rich `Table` of `run_encode_benchmark` rows."""
    from rich.table import Table

    table = Table(title="coldrec encode benchmark")
    columns = ("corpus", "backend", "n", "load s", "encode s", "items/s", "peak RSS MB", "cached s", "min cos vs torch")
    for col in columns:
        table.add_column(col, justify="left" if col in ("corpus", "backend") else "right")

    def fmt(value: Any, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    for r in rows:
        if "import_s" in r:
            table.caption = f"import coldrec: {r['import_s'] * 1000:.0f} ms"
            continue
        table.add_row(
            r["corpus"],
            r["backend"],
            fmt(r["n"], ","),
            fmt(r["load_s"], ".2f"),
            fmt(r["encode_s"], ".2f"),
            fmt(r["items_per_s"], ",.0f"),
            fmt(r["peak_rss_mb"], ",.0f"),
            fmt(r["cached_s"], ".3f"),
            fmt(r["min_cos_vs_torch"], ".6f"),
        )
    return table


def _child(job: dict[str, Any]) -> dict[str, Any]:
    import resource

    from .cache import CachedEncoder, EmbeddingCache
    from .onnx_backend import OnnxEncoder
    from .registry import load_encoder

    texts = json.loads(Path(job["texts"]).read_text())
    t0 = time.perf_counter()
    encoder: TextEncoder
    if job["backend"] == "onnx":
        encoder = OnnxEncoder(cache_dir=Path(job["cache_dir"]) / "onnx")
    else:
        encoder = load_encoder(job["backend"])
    encoder.encode(_WARMUP)
    load_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    vecs = encoder.encode(texts, batch_size=job["batch_size"], show_progress=False)
    encode_s = time.perf_counter() - t0
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    np.save(job["out"], vecs)

    EmbeddingCache(job["emb_cache"]).put_many(encoder.fingerprint, texts, vecs)
    t0 = time.perf_counter()  # fresh cache object: includes reading the shards from disk
    cached = CachedEncoder(encoder, EmbeddingCache(job["emb_cache"])).encode(texts, show_progress=False)
    cached_s = time.perf_counter() - t0
    # Not bit-identical when the corpus repeats a text: the cache keeps one vector per
    # text, while a fresh encode can differ in the last bits with the batch's padding.
    cached_min_cos = float(np.einsum("ij,ij->i", cached, vecs).min()) if len(texts) else 1.0
    if cached_min_cos < 0.999:
        raise AssertionError(f"cached vectors differ from the encoded ones (min cos {cached_min_cos})")
    return {
        "backend": job["backend"],
        "n": len(texts),
        "load_s": load_s,
        "encode_s": encode_s,
        "items_per_s": len(texts) / encode_s if encode_s > 0 else None,
        "peak_rss_mb": peak_kb / 1024,
        "cached_s": cached_s,
    }


if __name__ == "__main__":
    print(json.dumps(_child(json.loads(sys.argv[1]))))
