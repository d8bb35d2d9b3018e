"""Product search: BM25 + character 3-gram BM25 + dense, fused (`Searcher`)."""

from coldrec.search.searcher import (
    CharNgramBM25,
    Searcher,
    char_ngrams,
    normalize_query,
)

__all__ = ["CharNgramBM25", "Searcher", "char_ngrams", "normalize_query"]
