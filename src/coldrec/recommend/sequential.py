"""Order in the log: which items came *after* which (directed transitions), and whose sequences a shopper's
looks like (the neighbour sequences of session-kNN).

Both are read per shopper through their known items (`coldrec.recommend.shoppers.ShopperBatch`); both are
scale-free (transition shares, shares of neighbours), so a ranker trained on the inner cut's signals applies
unchanged to signals fitted on the whole log.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from coldrec.data.interactions import InteractionLog
from coldrec.recommend.baselines.features import top_k_per_row

DAY = 86_400


def by_user_in_time_order(log: InteractionLog) -> InteractionLog:
    """The events grouped by user, each user's in time order (file order for ties)."""
    ordered = log.sorted_by_time()
    return ordered.select(np.argsort(ordered.user, kind="stable"))


def rows_as_shares(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """Each row divided by its sum (empty rows stay empty)."""
    totals = np.asarray(matrix.sum(axis=1)).ravel()
    return sp.csr_matrix(sp.diags(np.divide(1.0, totals, out=np.zeros_like(totals), where=totals > 0)) @ matrix)


def directed_transitions(log: InteractionLog, n_items: int, window: int = 3,
                         half_life_days: float | None = 90.0, now: int | None = None) -> sp.csr_matrix:
    """(from item, to item): the share of item i's weighted successors that are item j.

    Within each user's sequence (time order, file order for ties), item j at s <= `window` steps after item i
    counts 1/s (the "sequential rules" of the session-based literature), times 2^(-age / half-life) of the
    later event on a timed log (none on an untimed one, where positions are not times). A step to the same
    item counts nothing: rebuying is the shopper's own-past evidence, not a transition. Each row sums to 1
    (or is empty)."""
    ordered = by_user_in_time_order(log)
    user, item = ordered.user, ordered.item.astype(np.int64)
    if log.timed and half_life_days:
        at = int(now if now is not None else (log.time.max() if len(log) else 0))
        recency = np.exp2(-(at - ordered.time) / (half_life_days * DAY)).astype(np.float64)
    else:
        recency = np.ones(len(ordered), np.float64)
    sources, targets, weights = [], [], []
    for step in range(1, window + 1):
        same = (user[step:] == user[:-step]) & (item[step:] != item[:-step])
        sources.append(item[:-step][same])
        targets.append(item[step:][same])
        weights.append(recency[step:][same] / step)
    counts = sp.csr_matrix(
        (np.concatenate(weights) if weights else np.zeros(0),
         (np.concatenate(sources) if sources else np.zeros(0, np.int64),
          np.concatenate(targets) if targets else np.zeros(0, np.int64))),
        shape=(n_items, n_items), dtype=np.float64,
    )
    counts.sum_duplicates()
    out = sp.csr_matrix(rows_as_shares(counts), dtype=np.float32)
    out.sort_indices()
    return out


def recent_sequences(log: InteractionLog, n_items: int, length: int = 50) -> sp.csr_matrix:
    """(user code, item): 1 for each of the user's last `length` distinct items (the neighbours of
    session-kNN; the most recent part of a long history says most about what comes next)."""
    ordered = by_user_in_time_order(log)
    user, item = ordered.user.astype(np.int64), ordered.item.astype(np.int64)
    # the last occurrence of each (user, item), then each user's last `length` of those
    key = user * n_items + item
    last_at = np.unique(key[::-1], return_index=True)[1]
    keep = np.sort(len(key) - 1 - last_at)
    user, item = user[keep], item[keep]
    ends = np.searchsorted(user, user, side="right")
    recent = (ends - 1 - np.arange(len(user))) < length
    n_users = int(len(log.users))
    out = sp.csr_matrix((np.ones(int(recent.sum()), np.float32), (user[recent], item[recent])),
                        shape=(n_users, n_items), dtype=np.float32)
    out.sort_indices()
    return out


def sequences_by_item(sequences: sp.csr_matrix) -> sp.csr_matrix:
    """(items x sequences): which sequences hold each item, each sequence's column scaled by 1 / sqrt(its length):
    what `neighbour_shares` multiplies a shopper's known items by (built once, not per request: transposing
    the sequences for every request cost a request at 100k items 3 ms)."""
    lengths = np.asarray(sequences.sum(axis=1)).ravel()
    scale = sp.diags(1.0 / np.sqrt(np.maximum(lengths, 1.0)))
    out = sp.csr_matrix(sequences.T @ scale, dtype=np.float32)
    out.sort_indices()
    return out


def neighbour_shares(known: sp.csr_matrix, sequences: sp.csr_matrix, neighbours: int,
                     by_item: sp.csr_matrix | None = None) -> sp.csr_matrix:
    """(shoppers x items) session-kNN: among the `neighbours` sequences most similar to each shopper's known
    items (`known`: recency-weighted, shoppers x items), the similarity-weighted share that hold each item.
    `by_item`: `sequences_by_item(sequences)`, made beforehand.

    Similarity = weighted overlap / sqrt(the sequence's length), cosine up to the shopper's own norm (the same
    for all of one shopper's neighbours). A shopper sharing no item with any sequence gets an empty row."""
    by_item = sequences_by_item(sequences) if by_item is None else by_item
    similarity = sp.csr_matrix(known @ by_item, dtype=np.float32)
    nearest = top_k_per_row(similarity, neighbours)
    out = sp.csr_matrix(rows_as_shares(nearest) @ sequences, dtype=np.float32)
    out.sort_indices()
    return out


def with_more_columns(matrix: sp.csr_matrix, count: int, rows_too: bool = False) -> sp.csr_matrix:
    """`matrix` with `count` empty columns appended (and as many empty rows, for an item x item matrix)."""
    n_rows = matrix.shape[0] + (count if rows_too else 0)
    indptr = np.concatenate([matrix.indptr, np.full(count, matrix.indptr[-1])]) if rows_too else matrix.indptr
    return sp.csr_matrix((matrix.data, matrix.indices, indptr), shape=(n_rows, matrix.shape[1] + count))
