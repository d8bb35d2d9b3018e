"""Personalised re-rank for `coldrec.search.Searcher`: a shopper profile per query.

A profile is a vector in the item-vector space (e.g. the mean of the vectors of the shopper's recent
items and stated interests). The candidates' fused scores get ``weight * spread * cos(profile, item)``,
``spread`` the max - min fused score over the query's candidates: bounded to ``weight`` (default
`PROFILE_WEIGHT`) of the query's score range, so it reorders close matches but cannot lift a poor
match over a clearly better one. Without a profile, results are unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Default weight of the shopper-profile term: a share of the query's score range.
PROFILE_WEIGHT = 0.1


def unit_profiles(profiles: Sequence[np.ndarray | None] | None, n: int, dim: int) -> list[np.ndarray | None]:
    """One unit vector (or None: no profile, or a zero or non-finite one) per query."""
    if profiles is None:
        return [None] * n
    if len(profiles) != n:
        raise ValueError(f"{n} queries but {len(profiles)} profiles")
    out: list[np.ndarray | None] = []
    for profile in profiles:
        if profile is None:
            out.append(None)
            continue
        p = np.asarray(profile, np.float64).ravel()
        norm = np.linalg.norm(p) if np.isfinite(p).all() else 0.0
        if p.shape[0] != dim and norm > 0:
            raise ValueError(f"profile dimension {p.shape[0]} != item vector dimension {dim}")
        out.append(p / norm if norm > 0 else None)
    return out


def personalised(fused: np.ndarray, similarity: np.ndarray, weight: float) -> np.ndarray:
    """``fused + weight * spread * similarity`` (similarity clipped to [-1, 1]; spread 1 if all tie)."""
    spread = float(fused.max() - fused.min())
    return fused + weight * (spread if spread > 0 else 1.0) * np.clip(similarity.astype(np.float64), -1.0, 1.0)


__all__ = ["PROFILE_WEIGHT", "personalised", "unit_profiles"]
