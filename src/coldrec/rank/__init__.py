"""Fusing many sources of evidence into one score per (shopper, item)."""

from coldrec.rank.learned import LearnedFusion

__all__ = ["LearnedFusion"]
