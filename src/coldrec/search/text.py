"""Query text for search: normalisation, character n-grams and the n-gram BM25 index.

Queries are normalised before lexical scoring (`normalize_query`: Unicode NFKC, lowercase,
punctuation to spaces, whitespace collapsed, cut at `MAX_QUERY_CHARS`); the dense encoder gets
`_clean`'s text (NFKC, whitespace collapsed, cut; case and punctuation kept: the encoder has its
own tokenizer).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from coldrec.model.registry import register_class
from coldrec.retrieve.lexical import BM25Index

#: Queries are cut to this many characters (after NFKC) before scoring.
MAX_QUERY_CHARS = 512

_NON_WORD = re.compile(r"[^\w\s]+|_+")
_WORD = re.compile(r"\w+")


def _clean(text) -> str:
    text = "" if text is None else str(text)
    text = unicodedata.normalize("NFKC", text[: 4 * MAX_QUERY_CHARS])
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    return " ".join(text.split())[:MAX_QUERY_CHARS]


def normalize_query(text) -> str:
    """NFKC, lowercase, punctuation -> space, whitespace collapsed, at most `MAX_QUERY_CHARS`."""
    return " ".join(_NON_WORD.sub(" ", _clean(text).lower()).split())


def char_ngrams(text: str, n: int = 3) -> list[str]:
    """Character n-grams of each word, padded with '#': 'Drill' -> ['#dr', 'dri', 'ril', 'ill', 'll#']."""
    out: list[str] = []
    for word in _WORD.findall(normalize_query(text)):
        padded = f"#{word}#"
        if len(padded) <= n:
            out.append(padded)
        else:
            out.extend(padded[i:i + n] for i in range(len(padded) - n + 1))
    return out


@register_class
class CharNgramBM25(BM25Index):
    """`BM25Index` whose tokens are the words' character n-grams (`char_ngrams`)."""

    def __init__(self, n: int = 3, k1: float = 1.2, b: float = 0.75, method: str = "lucene") -> None:
        super().__init__(language="en", k1=k1, b=b, method=method)
        self.n = n

    def _tokens(self, texts: Sequence[str]) -> list[list[str]]:
        return [char_ngrams(t, self.n) for t in texts]


__all__ = ["MAX_QUERY_CHARS", "CharNgramBM25", "char_ngrams", "normalize_query"]
