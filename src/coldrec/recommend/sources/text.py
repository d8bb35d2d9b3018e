"""Text: the items closest to the shopper's interest vectors, their mean, and their stated words."""

from __future__ import annotations

import numpy as np

from coldrec.recommend.shoppers import ShopperBatch
from coldrec.recommend.sources.base import Candidates, CandidateSource, top_positive


class TextSource(CandidateSource):
    """Three lists per shopper, k each: by the best of their interest vectors, by their mean vector and by
    their stated interests and queries. The index (exact, or IVF on a big catalog) gives each query vector's
    top k; their union is re-scored exactly and each list keeps its top k with a positive cosine."""

    name = "text"

    def candidates(self, shoppers: ShopperBatch, k: int) -> Candidates:
        profiles = shoppers.profiles
        m = profiles.interests.shape[1]
        queries = np.concatenate([profiles.interests, profiles.mean[:, None], profiles.stated[:, None]], axis=1)
        flat = queries.reshape(-1, queries.shape[-1])
        found_flat = np.full((len(flat), k), -1, np.int64)
        asked = np.flatnonzero(np.abs(flat).sum(axis=1) > 0)  # an empty profile part asks nothing
        if len(asked):
            found_flat[asked] = self.state.index.search(flat[asked], k)[1]
        found = found_flat.reshape(len(shoppers), m + 2, k)
        vectors = self.state.vectors
        rows, items, values = [], [], []
        for row in range(len(shoppers)):
            pool = np.unique(found[row][found[row] >= 0])
            if not len(pool):
                continue
            scores = queries[row] @ vectors[pool].T  # (m + 2, pool)
            for part in (scores[:m].max(axis=0), scores[m], scores[m + 1]):
                picked = top_positive(part, k)
                rows.append(np.full(len(picked), row, np.int64))
                items.append(pool[picked])
                values.append(part[picked])
        if not rows:
            return Candidates.empty()
        return Candidates(np.concatenate(rows), np.concatenate(items), np.concatenate(values).astype(np.float32))
