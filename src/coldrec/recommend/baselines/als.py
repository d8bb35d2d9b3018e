"""Implicit ALS (Hu, Koren & Volinsky) with every user folded in from their known items."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from coldrec.data.catalog import ItemCatalog
from coldrec.data.interactions import InteractionLog
from coldrec.recommend.base import Recommender, UserContext
from coldrec.recommend.baselines.features import (
    context_matrix,
    n_threads,
    single_threaded_blas,
)


def fold_in(
    item_factors: np.ndarray, confidence: sp.csr_matrix, regularization: float
) -> np.ndarray:
    """Least-squares user factors for rows of `confidence` (users x items), in numpy.

    Solves (YtY + reg I + Yt (Cu - I) Y) x = Yt Cu p_u per user, as implicit does
    (p_ui = 1 where c_ui > 0); users without items get zeros. A reference for tests
    (memory grows as nnz x factors^2: small batches only).
    """
    y = np.asarray(item_factors, np.float64)
    f = y.shape[1]
    confidence = sp.csr_matrix(confidence)
    base = y.T @ y + regularization * np.eye(f)
    out = np.zeros((confidence.shape[0], f), np.float32)
    counts = np.diff(confidence.indptr)
    users = np.flatnonzero(counts)
    if not len(users):
        return out
    c = confidence.data.astype(np.float64)
    yi = y[confidence.indices]
    row_of = np.repeat(np.arange(confidence.shape[0]), counts)
    # A_u = base + sum_i (c_ui - 1) y_i y_i^T, summed per user with one sparse product
    outer = (yi[:, :, None] * yi[:, None, :]).reshape(len(c), f * f) * (c - 1)[:, None]
    sums = sp.csr_matrix((np.ones(len(c)), (row_of, np.arange(len(c)))), shape=(confidence.shape[0], len(c)))
    # sparse @ dense is a dense ndarray (np.asarray: no copy; the stubs allow a sparse result)
    a = np.asarray(sums[users] @ outer).reshape(len(users), f, f) + base
    b = np.asarray(sums[users] @ (yi * c[:, None]))
    out[users] = np.linalg.solve(a, b[:, :, None])[:, :, 0]
    return out


class ALSRecommender(Recommender):
    """`implicit`'s CPU ALS on the binary past user-item matrix, confidence = alpha * r.

    At scoring time every context (new or known user) is folded in from its known items
    with implicit's own batch least-squares solve (`recalculate_user`), then scored by one
    matrix product with the item factors. Items without past buyers have no evidence:
    their factors are set to zero, so they score 0 for everyone.
    """

    name = "als"
    # alpha = 1 (no confidence weighting) was far behind on amazon14-office; 10 and 40 are tried
    param_grid = (
        {"factors": 32, "regularization": 0.1, "alpha": 10.0},
        {"factors": 64, "regularization": 0.1, "alpha": 10.0},
        {"factors": 128, "regularization": 0.1, "alpha": 10.0},
        {"factors": 128, "regularization": 0.01, "alpha": 10.0},
        {"factors": 64, "regularization": 0.1, "alpha": 40.0},
        {"factors": 128, "regularization": 0.1, "alpha": 40.0},
    )

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.1,
        alpha: float = 10.0,
        iterations: int = 15,
        random_state: int = 0,
        num_threads: int | None = None,
    ):
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.random_state = random_state
        self.num_threads = num_threads

    def _fit(self, log: InteractionLog, catalog: ItemCatalog, profiles) -> None:
        from implicit.cpu.als import AlternatingLeastSquares

        user_items = log.user_item_matrix(len(catalog), binary=True)
        with single_threaded_blas():
            self._model = AlternatingLeastSquares(
                factors=self.factors,
                regularization=self.regularization,
                alpha=self.alpha,
                iterations=self.iterations,
                random_state=self.random_state,
                num_threads=self.num_threads or n_threads(),
            )
            self._model.fit(user_items, show_progress=False)
        # items nobody bought keep their random start otherwise; they carry no evidence
        bought = np.asarray(user_items.sum(axis=0)).ravel() > 0
        self._model.item_factors[~bought] = 0.0
        self._model._YtY = None

    @property
    def item_factors(self) -> np.ndarray:
        return np.asarray(self._model.item_factors, np.float32)

    def user_factors(self, contexts: Sequence[UserContext]) -> np.ndarray:
        """Folded-in factors of each context (zeros for a context without items)."""
        known = context_matrix(contexts, self.fitted_items_)
        out = np.zeros((len(contexts), self.factors), np.float32)
        rows = np.flatnonzero(np.diff(known.indptr))
        if len(rows):
            with single_threaded_blas():
                out[rows] = self._model.recalculate_user(rows, known[rows])
        return out

    def score(self, contexts: Sequence[UserContext]) -> np.ndarray:
        return (self.user_factors(contexts) @ self.item_factors.T).astype(np.float32)
