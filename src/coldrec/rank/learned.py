"""A learned fusion: a LightGBM LambdaRank model over per-(shopper, item) features."""

from __future__ import annotations

from typing import Any

import numpy as np

from coldrec.model.registry import register_class
from coldrec.rank.compiled import MIN_ROWS, CompiledTrees, compile_trees


@register_class
class LearnedFusion:
    """Learns how much each source counts, given what is known about the shopper and the item.

    `fit` takes one group of candidate rows per shopper (or query) with integer labels
    (binary, or graded with ``label_gain`` giving each label's gain); a fifth of the groups
    (``held_out_share``) is held out for early stopping on NDCG@10, so the number of trees
    is chosen on data the trees did not see.

    With ``stopping_splits`` = s > 1 the stop is steadier: each of s different held-out fifths
    picks a tree count (``stopped_trees_``), and the final model is refitted on *all* groups
    with their median. One held-out fifth of a few hundred shoppers can stop after 3 trees
    (seen on amazon14-office at an earlier time cut, where that model scored a tenth of the others).

    Batches of `MIN_ROWS` rows or more are scored by the trees compiled to machine code (`compile_trees`), the
    same scores several times faster; smaller ones, or where compiling is not possible, by LightGBM.
    """

    __transient__ = ("_compiled",)

    def __init__(
        self,
        n_estimators: int = 400,
        learning_rate: float = 0.05,
        num_leaves: int = 31,
        min_child_samples: int = 50,
        early_stopping_rounds: int = 40,
        random_state: int = 0,
        n_jobs: int = 2,
        label_gain: list[float] | None = None,
        held_out_share: float = 0.2,
        stopping_splits: int = 1,
    ):
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.early_stopping_rounds = early_stopping_rounds
        self.random_state = random_state
        self.n_jobs = n_jobs
        #: gain of each integer label (LightGBM's default, 2^label - 1, when None): graded relevance
        self.label_gain = label_gain
        self.held_out_share = held_out_share
        self.stopping_splits = stopping_splits

    def fit(self, features: np.ndarray, labels: np.ndarray, groups: np.ndarray,
            feature_names: list[str]) -> LearnedFusion:
        groups = np.asarray(groups, np.int64)
        self.__dict__.pop("_compiled", None)  # compiled from the trees this fit replaces
        self.feature_names_ = list(feature_names)
        if self.stopping_splits <= 1:
            model, self.best_iteration_, self.best_score_ = self._fit_stopped(features, labels, groups,
                                                                              self.random_state)
            self.booster_ = model.booster_
            return self
        stops = [self._fit_stopped(features, labels, groups, self.random_state + s)
                 for s in range(self.stopping_splits)]
        self.stopped_trees_ = [trees for _, trees, _ in stops]
        self.best_iteration_ = max(1, int(np.median(self.stopped_trees_)))
        self.best_score_ = float(np.nanmean([score for _, _, score in stops]))
        model = self._ranker(self.best_iteration_, self.random_state).fit(
            features, labels, group=groups, feature_name=self.feature_names_)
        self.booster_ = model.booster_  # the fitted trees alone: LightGBM's own text format when saved
        return self

    def _ranker(self, n_estimators: int, seed: int):
        import lightgbm as lgb

        gain: dict[str, Any] = {} if self.label_gain is None else {"label_gain": list(self.label_gain)}
        return lgb.LGBMRanker(
            objective="lambdarank",
            n_estimators=n_estimators,
            learning_rate=self.learning_rate,
            num_leaves=self.num_leaves,
            min_child_samples=self.min_child_samples,
            subsample=0.8,
            subsample_freq=1,
            colsample_bytree=0.8,
            random_state=seed,
            n_jobs=self.n_jobs,
            verbose=-1,
            **gain,
        )

    def _fit_stopped(self, features, labels, groups, seed: int):
        """A ranker early-stopped on a random held-out share of the groups: (model, trees, held-out NDCG@10)."""
        import lightgbm as lgb

        rng = np.random.default_rng(seed)
        held_out = rng.random(len(groups)) < self.held_out_share
        if len(groups) >= 2 and not held_out.any():  # tiny inputs: still one group to stop on
            held_out[len(groups) - 1] = True
        if held_out.all():
            held_out[0] = False
        row_group = np.repeat(np.arange(len(groups)), groups)
        train_rows = ~held_out[row_group]
        stopping = {
            "eval_X": (features[~train_rows],),
            "eval_y": (labels[~train_rows],),
            "eval_group": [groups[held_out]],
            "eval_at": [10],
            "callbacks": [lgb.early_stopping(self.early_stopping_rounds, verbose=False)],
        } if held_out.any() else {}
        model = self._ranker(self.n_estimators, seed).fit(
            features[train_rows], labels[train_rows], group=groups[~held_out], feature_name=self.feature_names_,
            **stopping)
        scores = model.best_score_.get("valid_0", {})
        held_out_ndcg = float(scores.get("ndcg@10", np.nan)) if scores else float("nan")
        return model, int(model.best_iteration_ or self.n_estimators), held_out_ndcg

    def predict(self, features: np.ndarray, num_threads: int | None = None) -> np.ndarray:
        """Scores of the rows (`num_threads`: default n_jobs; one for a single request's few hundred rows)."""
        return self.raw_scores(features, num_threads).astype(np.float32)

    def raw_scores(self, features: np.ndarray, num_threads: int | None = None) -> np.ndarray:
        """The booster's float64 scores (`predict` rounds them to float32, which adds ties)."""
        if not len(features):
            return np.zeros(0, np.float64)
        threads = self.n_jobs if num_threads is None else num_threads
        compiled = self._compiled_trees() if len(features) >= MIN_ROWS else None
        if compiled is not None:
            return np.asarray(compiled.predict(features, n_jobs=threads), np.float64)
        return np.asarray(self.booster_.predict(features, num_iteration=self.best_iteration_, num_threads=threads))

    def _compiled_trees(self) -> CompiledTrees | None:
        if not hasattr(self, "_compiled"):  # once per fitted (or loaded) forest; None: LightGBM scores
            self._compiled = compile_trees(self.booster_, self.best_iteration_)
        return self._compiled

    def contributions(self, features: np.ndarray, num_threads: int = 1) -> np.ndarray:
        """Per-row, per-feature contributions to the score (SHAP values; the bias column dropped)."""
        out = self.booster_.predict(features, num_iteration=self.best_iteration_, num_threads=num_threads,
                                    pred_contrib=True)
        return out[:, : len(self.feature_names_)]

    def importance(self) -> dict[str, float]:
        gains = self.booster_.feature_importance(importance_type="gain")
        total = gains.sum() or 1.0
        pairs = zip(self.feature_names_, gains, strict=True)  # one gain per feature the booster was fitted on
        return {name: float(g / total) for name, g in sorted(pairs, key=lambda x: -x[1])}
