"""Differentially private aggregates: the popularity and co-purchase counts a model publishes, released with
OpenDP after each shopper's contribution is bounded.

The unit of privacy is one shopper (one user key of the log): two logs are neighbours when one holds a shopper
the other lacks. A release per (re)train spends `PrivacyBudget.epsilon` (and `delta` where co-purchases are
released), by sequential composition of up to two OpenDP measurements:

1. **Bounding** (`bound_contributions`): each shopper keeps at most `c` distinct items, their `c` most recently
   touched (ties: the later event in the log); every other event of theirs is left out of both releases. The
   choice depends on that shopper's own events only, so it is a stable per-shopper transformation.
2. **Popularity** (`release_popularity`, epsilon x (1 - `pair_share`): all of it by default, pure DP): one
   histogram over (item, age bucket), counting the kept (shopper, item) pairs by the age of the shopper's latest
   event on the item (`AGE_BUCKETS`; one bucket when the log has no timestamps). A shopper adds at most c
   records, each moving one count by one: L1 sensitivity c. Every bin (items nobody bought included) gets
   discrete Laplace noise of scale c / epsilon_pop (OpenDP's `make_laplace` on an integer vector, its privacy map
   checked at d_in = c). Distinct buyers overall (the bins' sum), in the last 30 days (the first bin) and decayed
   (the bins weighted by the decay at their typical age) are all read off this one release: post-processing, no
   further cost.
3. **Co-purchase counts** (`release_co_counts`, epsilon x `pair_share` and `delta`, approximate DP; only with a
   `pair_share` above 0 and c above 1): the pairs of each shopper's kept items, counted per pair. A shopper adds
   at most c(c - 1)/2 pairs, each once: OpenDP's `make_laplace_threshold` over the sparse map of pair counts, with
   d_in = (c(c-1)/2, c(c-1)/2, 1) (pairs touched, L1, L-infinity), releases a noisy count for each pair present
   whose noisy count clears a threshold, and nothing for the rest. Only pairs someone bought are candidates, so
   the release stays as sparse as the data; the threshold (the smallest whose delta fits the budget) is what
   makes that safe, and is why the guarantee is (epsilon, delta) and not pure epsilon.

Total per release: (epsilon_pop + epsilon_pairs, delta) = (epsilon, delta); pure epsilon-DP without the
co-purchase release. The noise is drawn by OpenDP's
sampler (not seeded: a reproducible noise draw would not be private). Everything computed from the released
arrays afterwards (log-scale popularity shares, category shares, cosine similarities, top-k pruning) is
post-processing. What this does *not* cover: a model's other behaviour evidence (ALS factors, transitions, the
session-kNN sequences) and its learned ranker are fitted on the raw log.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import scipy.sparse as sp

from coldrec.data.interactions import InteractionLog

DAY = 86_400
#: upper edges (days) of the age buckets of the popularity histogram (the last bucket is open-ended): the last 30
#: days and the rest. Every bucket adds its noise to the all-time count: more buckets would blur it (measured on the
#: validation cuts: four buckets took the all-time list's NDCG@10 on UCI's first visitors from 0.085 to 0.059)
AGE_BUCKETS = (30,)
#: a typical age (days) per bucket, for the decayed popularity read off the histogram
BUCKET_AGES = (15.0, 180.0)
#: the decayed popularity's half-life (as `coldrec.recommend.signals`)
HALF_LIFE_DAYS = 90.0
#: each shopper counts with at most this many distinct items, unless the model says otherwise. The noise grows with
#: it and the counts stop growing once it passes what most shoppers buy: 3 to 5 did best on both validation cuts
#: (amazon14-office: a median of 4 items a shopper; uci-online-retail: 26), 1 and 10 worse
DEFAULT_CONTRIBUTION_BOUND = 3
DEFAULT_DELTA = 1e-6
#: the largest bound OpenDP's pair-count measurement takes: a shopper's c(c-1)/2 pairs must fit its 32-bit distance
MAX_CONTRIBUTION_BOUND = 10_000
#: the share of epsilon spent on the co-purchase counts (the rest: popularity, which every first visitor sees). 0
#: by default: a pair is released only when its noisy count clears a threshold that depends on the budget alone
#: (about 170 shoppers buying both at epsilon 1, c = 3, a share of 0.25, delta 1e-6), which no pair of
#: amazon14-office's or uci-online-retail's reaches at epsilon 2 or below; spent on popularity instead, that share
#: took the first visitors' NDCG@10 on UCI's validation cut from 0.83x to 0.89x of the exact model's (one draw each)
DEFAULT_PAIR_SHARE = 0.0


@dataclass(frozen=True)
class PrivacyBudget:
    """What one release of a model's aggregates may spend: `epsilon` (finite, > 0) and `delta` in total, each
    shopper counted with at most `contribution_bound` distinct items, `pair_share` of epsilon on co-purchases."""

    epsilon: float
    contribution_bound: int = DEFAULT_CONTRIBUTION_BOUND
    delta: float = DEFAULT_DELTA
    pair_share: float = DEFAULT_PAIR_SHARE

    def __post_init__(self) -> None:
        if not (isinstance(self.epsilon, int | float) and math.isfinite(self.epsilon) and self.epsilon > 0):
            raise ValueError(f"epsilon must be a finite number > 0 (None or inf: no noise), not {self.epsilon!r}")
        if isinstance(self.contribution_bound, bool) or not isinstance(self.contribution_bound, int | np.integer) \
                or not 1 <= self.contribution_bound <= MAX_CONTRIBUTION_BOUND:
            raise ValueError(f"contribution_bound must be an integer from 1 to {MAX_CONTRIBUTION_BOUND:,}, not "
                             f"{self.contribution_bound!r}")
        if not 0 < self.delta < 1:
            raise ValueError(f"delta must be in (0, 1), not {self.delta!r}")
        if not 0 <= self.pair_share < 1:
            raise ValueError(f"pair_share must be in [0, 1) (0: no co-purchase counts released), not "
                             f"{self.pair_share!r}")

    @classmethod
    def of(cls, epsilon: float | None, contribution_bound: int = DEFAULT_CONTRIBUTION_BOUND,
           delta: float = DEFAULT_DELTA, pair_share: float = DEFAULT_PAIR_SHARE) -> PrivacyBudget | None:
        """The budget for a model's settings; None (no noise) when epsilon is None or infinite."""
        if epsilon is None or (isinstance(epsilon, int | float) and math.isinf(epsilon) and epsilon > 0):
            return None
        return cls(float(epsilon), int(contribution_bound), float(delta), float(pair_share))

    @property
    def releases_pairs(self) -> bool:
        """Is there a co-purchase release? Not with no share of epsilon, nor with one item a shopper (no pairs)."""
        return self.pair_share > 0 and self.contribution_bound > 1

    @property
    def popularity_epsilon(self) -> float:
        return self.epsilon - self.pairs_epsilon

    @property
    def popularity_scale(self) -> float:
        """The discrete Laplace scale of the popularity release: L1 sensitivity c over its epsilon."""
        return self.contribution_bound / self.popularity_epsilon

    @property
    def pairs_epsilon(self) -> float:
        return self.epsilon * self.pair_share if self.releases_pairs else 0.0

    @property
    def pairs_per_shopper(self) -> int:
        c = self.contribution_bound
        return c * (c - 1) // 2


@dataclass(frozen=True)
class Contributions:
    """The bounded log: one row per kept (shopper, item), with the time of the shopper's latest event on it."""

    user: np.ndarray  # int64 codes
    item: np.ndarray  # int64 positions
    time: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.user)

    def per_user(self) -> np.ndarray:
        """Kept items per shopper (of the shoppers with any)."""
        return np.unique(self.user, return_counts=True)[1]


def bound_contributions(log: InteractionLog, bound: int) -> Contributions:
    """Each shopper's `bound` most recently touched distinct items (ties: the later event in the log)."""
    if bound < 1:
        raise ValueError(f"contribution_bound must be >= 1, not {bound}")
    if not len(log):
        empty = np.zeros(0, np.int64)
        return Contributions(empty, empty, empty)
    # newest first within each shopper; the first row per (shopper, item) is its latest event
    order = np.lexsort((-log.order, -log.time, log.user))
    user, item, when = (np.asarray(a, np.int64)[order] for a in (log.user, log.item, log.time))
    _, first = np.unique(user * (int(item.max()) + 1) + item, return_index=True)
    first.sort()  # back to shopper, newest-first order
    user, item, when = user[first], item[first], when[first]
    starts = np.flatnonzero(np.r_[True, user[1:] != user[:-1]])
    rank = np.arange(len(user)) - np.repeat(starts, np.diff(np.r_[starts, len(user)]))
    keep = rank < bound
    return Contributions(user[keep], item[keep], when[keep])


@dataclass(frozen=True)
class NoisyPopularity:
    """Released counts of shoppers per (item, age bucket) (`counts`, integers, possibly negative: noise), and what
    follows from them. `buckets` = 1 on an untimed log."""

    counts: np.ndarray  # (items, buckets) int64

    @property
    def distinct(self) -> np.ndarray:
        """Noisy distinct shoppers per item, clipped at 0 (float32)."""
        return np.clip(self.counts.sum(axis=1), 0, None).astype(np.float32)

    @property
    def recent(self) -> np.ndarray:
        """Noisy distinct shoppers per item in the first age bucket (the last 30 days), clipped at 0."""
        return np.clip(self.counts[:, 0], 0, None).astype(np.float32)

    @property
    def decayed(self) -> np.ndarray:
        """Noisy shoppers per item weighted by the decay at each bucket's typical age, clipped at 0."""
        weights = np.exp2(-np.asarray(BUCKET_AGES[: self.counts.shape[1]]) / HALF_LIFE_DAYS)
        return np.clip(self.counts @ weights, 0, None).astype(np.float32)


def age_bucket(age_seconds: np.ndarray) -> np.ndarray:
    """Each age's bucket (0: the last 30 days, then `AGE_BUCKETS`' ranges, then older)."""
    return np.searchsorted(np.asarray(AGE_BUCKETS) * DAY, np.asarray(age_seconds), side="left").astype(np.int64)


def release_popularity(kept: Contributions, n_items: int, now: int | None, budget: PrivacyBudget,
                       timed: bool = True) -> NoisyPopularity:
    """The (item, age bucket) histogram of `kept` with discrete Laplace noise on every bin (module docstring)."""
    exact = _histogram(kept, n_items, now, timed)
    buckets = exact.shape[1]
    exact = exact.ravel()
    measurement = _laplace_vector(budget.popularity_scale)
    spent = float(measurement.map(budget.contribution_bound))
    if spent > budget.popularity_epsilon * (1 + 1e-9):
        raise RuntimeError(f"the popularity release would spend epsilon {spent}, over {budget.popularity_epsilon}")
    noisy = np.asarray(measurement(exact.tolist()), np.int64) if len(exact) else exact
    return NoisyPopularity(noisy.reshape(n_items, buckets))


def simulated_popularity(log: InteractionLog, n_items: int, now: int | None, budget: PrivacyBudget, draws: int,
                         random_state: int = 0) -> list[NoisyPopularity]:
    """`draws` independent draws of what `release(log, ...)` could give as popularity: the bounded histogram with
    discrete Laplace noise of the same scale, from numpy's seeded sampler. For choices a model makes inside its fit
    on its own inner cut (which list suits the shop at this noise level), never for anything published: a seeded
    draw is not private."""
    exact = _histogram(bound_contributions(log, budget.contribution_bound), n_items, now, log.timed)
    rng = np.random.default_rng(random_state)
    # a discrete Laplace draw of scale b is the difference of two geometric draws with p = 1 - exp(-1 / b)
    p = -math.expm1(-1 / budget.popularity_scale)
    return [NoisyPopularity(exact + rng.geometric(p, exact.shape) - rng.geometric(p, exact.shape))
            for _ in range(draws)]


def _histogram(kept: Contributions, n_items: int, now: int | None, timed: bool) -> np.ndarray:
    """Kept (shopper, item) pairs per (item, age bucket): (items, buckets) int64, one bucket without times."""
    buckets = len(AGE_BUCKETS) + 1 if timed and now is not None else 1
    bins = kept.item * buckets + (age_bucket(int(now) - kept.time) if now is not None and buckets > 1 else 0)
    return np.bincount(bins, minlength=n_items * buckets).astype(np.int64).reshape(n_items, buckets)


def release_co_counts(kept: Contributions, n_items: int, budget: PrivacyBudget) -> sp.csr_matrix:
    """Noisy co-purchase counts (items x items, symmetric, float32) of the pairs whose noisy count clears the
    threshold; every other pair is absent (module docstring)."""
    pairs = budget.pairs_per_shopper
    if not budget.releases_pairs or not len(kept):
        return _no_pairs(n_items)
    users = int(kept.user.max()) + 1
    bought = sp.csr_matrix((np.ones(len(kept), np.int64), (kept.user, kept.item)), shape=(users, n_items))
    co = sp.coo_matrix(sp.triu(bought.T @ bought, k=1))  # each unordered pair once
    keys = co.row.astype(np.int64) * n_items + co.col.astype(np.int64)
    measurement = _laplace_threshold(pairs, budget.pairs_epsilon, budget.delta)
    released = measurement({int(k): int(v) for k, v in zip(keys, co.data, strict=True)}) if len(keys) else {}
    if not released:
        return _no_pairs(n_items)
    keys = np.fromiter(released.keys(), np.int64, len(released))
    values = np.fromiter(released.values(), np.float64, len(released)).astype(np.float32)
    row, col = keys // n_items, keys % n_items
    return sp.csr_matrix((np.r_[values, values], (np.r_[row, col], np.r_[col, row])), shape=(n_items, n_items))


def _no_pairs(n_items: int) -> sp.csr_matrix:
    return sp.csr_matrix((np.zeros(0, np.float32), (np.zeros(0, np.int64), np.zeros(0, np.int64))),
                         shape=(n_items, n_items))


def _laplace_vector(scale: float):
    import opendp.prelude as dp

    dp.enable_features("contrib")
    space = dp.vector_domain(dp.atom_domain(T="i64")), dp.l1_distance(T="i64")
    return space >> dp.m.then_laplace(scale=scale)


def _laplace_threshold(pairs: int, epsilon: float, delta: float):
    """OpenDP's Laplace-threshold measurement on a map of pair counts: scale pairs / epsilon, and the smallest
    threshold whose delta at d_in = (pairs, pairs, 1) is within `delta`."""
    import opendp.prelude as dp

    dp.enable_features("contrib")
    domain = dp.map_domain(dp.atom_domain(T="i64"), dp.atom_domain(T="i64"))
    metric = dp.l01inf_distance(dp.absolute_distance(T="i64"))
    scale = pairs / epsilon
    d_in = (pairs, pairs, 1)

    def measurement(threshold: int):
        return dp.m.make_laplace_threshold(domain, metric, scale=scale, threshold=threshold)

    threshold = int(dp.binary_search(lambda t: measurement(int(t)).map(d_in)[1] <= delta, bounds=(1, 2**30), T=int))
    chosen = measurement(threshold)
    spent, spent_delta = chosen.map(d_in)
    if spent > epsilon * (1 + 1e-9) or spent_delta > delta:
        raise RuntimeError(f"the co-purchase release would spend ({spent}, {spent_delta}), over ({epsilon}, {delta})")
    return chosen


POPULARITY_MECHANISM = "OpenDP 0.16: discrete Laplace on the (item, age bucket) histogram (pure DP)"
BOTH_MECHANISMS = (POPULARITY_MECHANISM + ", Laplace threshold on the co-purchase pairs ((epsilon, delta)-DP); "
                   "sequential composition")


@dataclass(frozen=True)
class Release:
    """What one release spent and gave: for the model directory's manifest and /healthz (`delta` 0: pure DP, no
    co-purchase release)."""

    epsilon: float
    delta: float
    contribution_bound: int
    popularity_epsilon: float
    pairs_epsilon: float
    pairs_released: int
    mechanism: str = POPULARITY_MECHANISM

    def to_dict(self) -> dict:
        return asdict(self)


def release(log: InteractionLog, n_items: int, now: int | None, budget: PrivacyBudget,
            ) -> tuple[NoisyPopularity, sp.csr_matrix, Release]:
    """Both releases of one log under `budget`: popularity, co-purchase counts, and their account."""
    kept = bound_contributions(log, budget.contribution_bound)
    popularity = release_popularity(kept, n_items, now, budget, timed=log.timed)
    co = release_co_counts(kept, n_items, budget)
    pairs = budget.releases_pairs
    account = Release(budget.epsilon, budget.delta if pairs else 0.0, budget.contribution_bound,
                      budget.popularity_epsilon, budget.pairs_epsilon, co.nnz // 2,
                      BOTH_MECHANISMS if pairs else POPULARITY_MECHANISM)
    return popularity, co, account
