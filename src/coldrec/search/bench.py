"""Per-query latency of the learned fusion next to the weighted one, on homedepot-search.

``python -m coldrec.search.bench [--limit N]``: the `coldrec search-bench` set-up (titles' vectors
from the on-disk cache, queries encoded uncached, FAISS IVF dense candidates, one reporting-half
query at a time) with the `LearnedRanker` fitted on the *tuning* half; the same searcher is timed
under ``fusion="weighted"`` and ``fusion="learned"`` in turn.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import numpy as np


def time_queries(searcher, queries: Sequence[str], k: int = 10, warmup: int = 20) -> np.ndarray:
    """Milliseconds of each ``searcher.search([query], k)`` (after ``warmup`` untimed queries)."""
    for query in queries[:warmup]:
        searcher.search([query], k)
    ms = np.empty(len(queries))
    for i, query in enumerate(queries):
        started = time.perf_counter()
        searcher.search([query], k)
        ms[i] = (time.perf_counter() - started) * 1000
    return ms


def main(argv: Sequence[str] | None = None) -> None:
    from coldrec.data.datasets import load_dataset
    from coldrec.encode import load_encoder
    from coldrec.encode.cache import CachedEncoder
    from coldrec.encode.registry import default_cache_dir
    from coldrec.evaluate.search import search_queries
    from coldrec.search import Searcher

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=int, default=0, help="time only the first N reporting-half queries")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--dense-index", default="ivf")
    args = parser.parse_args(argv)
    ds = load_dataset("homedepot-search", None)
    if ds.judgments is None:
        raise SystemExit(f"data set {ds.name!r} has no search judgments")
    items_encoder = load_encoder("onnx", cache_dir=default_cache_dir())
    query_encoder = items_encoder.encoder if isinstance(items_encoder, CachedEncoder) else items_encoder
    searcher = Searcher(encoder=items_encoder, query_encoder=query_encoder, dense_index=args.dense_index)
    searcher.fit(ds.catalog)
    tune = search_queries(ds.judgments, "tune")
    started = time.perf_counter()
    searcher.fit_ranker(tune.queries, tune.judged, tune.relevance)
    fit_s = time.perf_counter() - started
    queries = search_queries(ds.judgments, "report").queries
    queries = queries[: args.limit] if args.limit else queries
    print(f"homedepot-search, {searcher.n_items:,} titles, {args.dense_index} dense, k={args.k}, "
          f"{len(queries):,} reporting-half queries; ranker fitted in {fit_s:.0f} s "
          f"({searcher.ranker.info['retrieve']['trees']} trees, depth {searcher.ranker.depth})")
    print(f"{'fusion':10} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8} {'mean ms':>8}")
    for fusion in ("weighted", "learned"):
        searcher.fusion = fusion
        ms = time_queries(searcher, queries, args.k)
        p50, p90, p99 = np.percentile(ms, [50, 90, 99])
        print(f"{fusion:10} {p50:8.2f} {p90:8.2f} {p99:8.2f} {ms.max():8.2f} {ms.mean():8.2f}", flush=True)


if __name__ == "__main__":
    main()
