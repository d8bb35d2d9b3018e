"""Product search: BM25 + character 3-gram BM25 + dense, fused by weights, RRF or a learned ranker (`Searcher`)."""

from coldrec.search.searcher import (
    PROFILE_WEIGHT,
    CharNgramBM25,
    Searcher,
    char_ngrams,
    normalize_query,
)

__all__ = ["PROFILE_WEIGHT", "CharNgramBM25", "Searcher", "char_ngrams", "normalize_query"]
