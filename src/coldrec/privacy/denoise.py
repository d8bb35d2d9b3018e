"""Empirical-Bayes estimates of counts released with Laplace noise: post-processing, so it costs no privacy.

A released histogram holds, per item, one noisy count per age bucket (`coldrec.privacy.aggregates`). Read as
it is, an item nobody bought lately can draw noise as large as the last 30 days' best sellers: over thousands
of items the largest of the noise draws is about scale x ln(items). What tells the two apart is the item's
*other* bucket: an item that really sold 20 in the last month rarely sold nothing before.

`posterior_counts` estimates each item's true counts as their posterior mean given its released counts, under a
prior over (recent, older) count pairs that is itself estimated from the released counts of all items: the
nonparametric maximum-likelihood prior (Kiefer and Wolfowitz) on a grid, fitted by EM, with the noise's known
Laplace likelihood. It has no setting to tune: the grid and the prior follow from the noise scale and the data.

Cost: the likelihood factorises over buckets, so each EM step is two matrix products over (items, grid points
per bucket); the prior is fitted on at most `PRIOR_ITEMS` items (a fixed-seed sample) and the posterior computed
for all items in blocks.
"""

from __future__ import annotations

import numpy as np

#: counts above this many noise scales are left as released: noise that large has probability e^-20, and a prior
#: that wide is flat on the noise's scale, where the posterior mean is the released count itself
FLAT_ABOVE_SCALES = 20.0
#: grid points over the rest of the range (geometric), per bucket
TAIL_POINTS = 20
#: EM stops after this many steps (the posterior means settle within 25 on simulated shops), or once a step gains
#: less than `EM_TOLERANCE` nats of log-likelihood per item
EM_STEPS = 50
EM_TOLERANCE = 1e-6
#: the share of the prior spread evenly over the grid, so that no released count has zero evidence
PRIOR_FLOOR = 1e-9
#: items the prior is fitted on (a sample beyond that: the prior has a few thousand grid points at most)
PRIOR_ITEMS = 10_000
BLOCK = 65_536


def posterior_counts(counts: np.ndarray, scale: float, seed: int = 0) -> np.ndarray:
    """Posterior means (float64, >= 0) of the true counts behind `counts` (items x buckets, 1 or 2 buckets),
    released with (discrete) Laplace noise of `scale` on every count."""
    counts = np.asarray(counts, np.float64)
    if counts.ndim != 2 or counts.shape[1] not in (1, 2):
        raise ValueError(f"expected counts of shape (items, 1 or 2), not {counts.shape}")
    if not scale > 0:
        raise ValueError(f"the noise scale must be > 0, not {scale!r}")
    n, buckets = counts.shape
    if not n:
        return counts.copy()
    grids = [_grid(counts[:, b], scale) for b in range(buckets)]
    sample = np.arange(n) if n <= PRIOR_ITEMS else np.sort(np.random.default_rng(seed).choice(n, PRIOR_ITEMS, False))
    prior = _fit_prior([_kernel(counts[sample, b], g, scale) for b, g in enumerate(grids)])
    out = np.empty_like(counts)
    for start in range(0, n, BLOCK):
        rows = slice(start, min(n, start + BLOCK))
        kernels = [_kernel(counts[rows, b], g, scale) for b, g in enumerate(grids)]
        out[rows] = _posterior_means(kernels, grids, prior)
    flat = counts > FLAT_ABOVE_SCALES * scale
    return np.where(flat, counts, np.maximum(out, 0.0))


def _grid(values: np.ndarray, scale: float) -> np.ndarray:
    """Support points for one bucket's true counts: every third of a noise scale (at least 1) up to the flat
    range, then `TAIL_POINTS` geometric steps to the largest released count."""
    flat = FLAT_ABOVE_SCALES * scale
    grid = np.arange(0.0, flat + 1e-9, max(1.0, scale / 3))
    top = float(values.max())
    if top > flat:
        grid = np.r_[grid, np.geomspace(flat, top, TAIL_POINTS + 1)[1:]]
    return grid


def _kernel(values: np.ndarray, grid: np.ndarray, scale: float) -> np.ndarray:
    """Laplace likelihood of each released value under each grid point, up to a factor per row (which cancels in
    every posterior): rows scaled so their largest entry is 1, so no row underflows."""
    distance = np.abs(values[:, None] - grid[None, :])
    return np.exp(-(distance - distance.min(axis=1, keepdims=True)) / scale)


def _fit_prior(kernels: list[np.ndarray]) -> np.ndarray:
    """The grid prior (one axis per bucket) maximising the released counts' likelihood: EM from uniform."""
    first, second = kernels[0], kernels[1] if len(kernels) > 1 else np.ones((len(kernels[0]), 1))
    uniform = np.full((first.shape[1], second.shape[1]), 1.0 / (first.shape[1] * second.shape[1]))
    prior, fit = uniform, -np.inf
    for _ in range(EM_STEPS):
        evidence = np.einsum("ia,ia->i", first @ prior, second)
        gained, fit = float(np.log(evidence).mean()) - fit, float(np.log(evidence).mean())
        if gained < EM_TOLERANCE:
            break
        prior = prior * (first.T @ (second / evidence[:, None])) / len(first)
    return (1 - PRIOR_FLOOR) * prior + PRIOR_FLOOR * uniform


def _posterior_means(kernels: list[np.ndarray], grids: list[np.ndarray], prior: np.ndarray) -> np.ndarray:
    first = kernels[0]
    second = kernels[1] if len(kernels) > 1 else np.ones((len(first), 1))
    evidence = np.einsum("ia,ia->i", first @ prior, second)
    means = [np.einsum("ia,ia->i", (first * grids[0]) @ prior, second) / evidence]
    if len(kernels) > 1:
        means.append(np.einsum("ia,ia->i", first @ (prior * grids[1]), second) / evidence)
    return np.column_stack(means)


__all__ = ["posterior_counts"]
