"""The load test's output: a table of requests/s and latency percentiles, and a latency histogram/CDF plot."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .workload import Phase

if TYPE_CHECKING:
    from rich.table import Table


def table(phases: list[Phase], title: str) -> Table:
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
