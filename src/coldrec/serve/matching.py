"""When does a search result match its query, and when has a search found nothing?

A result *matches* when it shares a word with the query (a word-BM25 term after stemming and stop
words) or, for misspellings, holds at least `NGRAM_MATCH` of the query's character 3-grams. A
result that only the dense signal found must be at least `floor`-similar by meaning (cosine),
else it is left out; a query nothing matches and nothing is floor-similar to answers no results.

The floor is measured per catalog, never set by hand: the `FLOOR_QUANTILE` quantile of the top-1
cosine that meaningless probe queries (random letter strings) reach on this catalog. The top-1
cosine of meaningless text grows with the catalog (more items, more near misses), so one number
cannot serve every shop. Measured with the packaged MiniLM (p99 of the top-1 cosine):

| catalog | random letters | random 2-3 "words" | Chinese queries (zh-multicpr, 1,000) |
|---|---|---|---|
| amazon14-office (2,420 items) | 0.411 | 0.403 | 0.418 |
| homedepot-search (54,667 titles) | 0.479 | 0.515 | 0.466 |

so random letters stand in for a script the model does not know. On homedepot-search's 11,795 real
queries, 238 (2.0%) share no word with any title; 88% of those (typos, run-together words: "bateries",
"wheelbarow", "outdoorfurniture") hold >= half their 3-grams in some title, against 1.8% of the Chinese
queries and 3.8% of random letter strings on that catalog (1.0% and 1.6% on Office) - hence 0.5.

The rule's outcome (floor from the 500 probes: 0.504 on homedepot-search, 0.433 on Office): on
homedepot-search, 0.2% of the real queries find nothing (part numbers, "2X4 SRUDS", "roybi l18v"),
against 96.6% of the Chinese queries and 94% of fresh random strings; on Office, 98.1% of the Chinese
queries and 96.8% of random strings find nothing, and 13% of Home Depot's queries (lumber, plumbing).
"""

from __future__ import annotations

import numpy as np

from coldrec.search.text import char_ngrams, normalize_query

#: A result holding at least this share of the query's distinct character 3-grams matches it (typos).
NGRAM_MATCH = 0.5
#: The dense floor: this quantile of meaningless probes' top-1 cosine on the catalog.
FLOOR_QUANTILE = 0.99
#: Probe queries encoded to measure the floor.
N_PROBES = 500


def probe_queries(n: int = N_PROBES, seed: int = 0) -> list[str]:
    """Meaningless queries: half one random 4-12 letter string, half 2-3 random 3-8 letter strings."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))

    def word(low: int, high: int) -> str:
        return "".join(rng.choice(letters, int(rng.integers(low, high + 1))))

    return [word(4, 12) if i % 2 == 0 else " ".join(word(3, 8) for _ in range(int(rng.integers(2, 4))))
            for i in range(n)]


def floor_from_top1(top1: np.ndarray) -> float:
    """The dense floor from the probes' top-1 cosines on a catalog."""
    return float(np.quantile(np.asarray(top1, np.float64), FLOOR_QUANTILE)) if len(top1) else 1.0


def lexical_matches(searcher, query: str, items: np.ndarray) -> np.ndarray:
    """Per item: does it share a word-BM25 term with `query`, or hold `NGRAM_MATCH` of its 3-grams?

    Items the lexical indexes do not hold yet (added since their last refit) do not match.
    """
    items = np.asarray(items, np.int64)
    text = normalize_query(query)
    matched = np.zeros(len(items), bool)
    if searcher.bm25 is not None:
        matched |= searcher.bm25.term_counts(searcher.bm25.tokens([text])[0], items) > 0
    grams = set(char_ngrams(text))
    if searcher.ngram is not None and grams:
        matched |= searcher.ngram.term_counts(grams, items) >= NGRAM_MATCH * len(grams)
    return matched
