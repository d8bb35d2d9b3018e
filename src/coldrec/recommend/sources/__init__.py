"""Candidate sources: each proposes up to k items per shopper; the recommender ranks their union.

`SOURCES` maps a name to its class; `DEFAULT_SOURCES` are those coldrec uses unless told otherwise.
"""

from __future__ import annotations

from coldrec.recommend.sources.attributes import BrandSource, CategorySource
from coldrec.recommend.sources.base import Candidates, CandidateSource, top_positive
from coldrec.recommend.sources.collaborative import ALSSource, ItemKNNSource
from coldrec.recommend.sources.history import OwnPastSource
from coldrec.recommend.sources.popularity import (
    NEW_ARRIVALS_POOL,
    TIMED_SOURCES,
    NewArrivalsSource,
    PopularitySource,
)
from coldrec.recommend.sources.sequential import SessionKNNSource, TransitionSource
from coldrec.recommend.sources.text import TextSource

SOURCES: dict[str, type[CandidateSource]] = {
    cls.name: cls
    for cls in (TextSource, ALSSource, ItemKNNSource, CategorySource, BrandSource, PopularitySource,
                NewArrivalsSource, OwnPastSource, TransitionSource, SessionKNNSource)
}
#: the brand source is off: brand is a feature of every candidate, and a source of its own was not tried on
#: validation yet
DEFAULT_SOURCES = ("text", "als", "itemknn", "category", "popularity", "new_arrivals", "own_past", "transitions",
                   "session_knn")
#: sources whose evidence is also a feature of every candidate: with the source off, its feature is off too
SOURCE_FEATURES = {"transitions": ("transition",), "session_knn": ("session_knn",)}

__all__ = [
    "ALSSource", "BrandSource", "Candidates", "CandidateSource", "CategorySource", "DEFAULT_SOURCES", "ItemKNNSource",
    "NEW_ARRIVALS_POOL", "NewArrivalsSource", "OwnPastSource", "PopularitySource", "SessionKNNSource",
    "SOURCE_FEATURES", "SOURCES", "TIMED_SOURCES", "TextSource", "TransitionSource",
    "top_positive",
]
