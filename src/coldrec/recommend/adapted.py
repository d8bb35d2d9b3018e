"""The cold-start recommender with its language model adapted to the shop inside `fit`.

`fit` first trains the adapter on the fit data up to its inner time cut (the same cut the
recommender's ranker is trained on), stopping early on the pairs after that cut; the
ranker is then trained on those vectors, so the text evidence it learns to trust is no
better than what the adapter would give for a future it has not seen. Then the adapter is
retrained on all the fit data for the chosen number of epochs and the catalog re-encoded
through it (a new encoder fingerprint, so no vector of the pretrained model is reused).

Registered variants (`coldrec.recommend.registry`): `coldrec-adapter` (head, every
augmentation), `coldrec-adapter-noaug`, `-noseq`, `-noqueries`, `-nopseudo` (one
augmentation off each), `coldrec-adapter-norefit` (serves with the inner-cut adapter),
`coldrec-adapter-mlp` (residual MLP head), `coldrec-lora`, `coldrec-full`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from coldrec.data.catalog import ItemCatalog
from coldrec.data.interactions import InteractionLog
from coldrec.data.split import time_cut
from coldrec.recommend.coldstart import ColdStartRecommender
from coldrec.recommend.items import ItemState

if TYPE_CHECKING:
    from coldrec.adapt.adapter import Mode
    from coldrec.encode.base import TextEncoder

log = logging.getLogger(__name__)


class AdaptedColdStartRecommender(ColdStartRecommender):
    name = "coldrec-adapter"
    # coldrec's candidate depths (compared at equal footing), its usual interests setting
    param_grid: Sequence[dict[str, Any]] = (
        {"max_interests": 3, "decay": 0.7}, {"max_interests": 3, "decay": 0.7, "candidates_per_source": 100},
    )

    def __init__(
        self,
        adapt_mode: Mode = "head",
        head: str = "linear",
        augment_sequences: bool = True,
        synthetic_queries: bool = True,
        pseudo_labels: bool = True,
        epochs: int | None = None,
        learning_rate: float | None = None,
        temperature: float = 0.05,
        refit_adapter: bool = True,
        device: str | None = None,
        adapter_seed: int = 0,
        **coldrec_params: Any,
    ):
        super().__init__(**coldrec_params)
        self.adapt_mode = adapt_mode
        self.head = head
        self.augment_sequences = augment_sequences
        self.synthetic_queries = synthetic_queries
        self.pseudo_labels = pseudo_labels
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.temperature = temperature
        self.refit_adapter = refit_adapter
        self.device = device
        self.adapter_seed = adapter_seed
        self._base_encoder: TextEncoder | None = None

    def adapt_config(self):
        from dataclasses import replace

        from coldrec.adapt import AdaptConfig, AugmentConfig

        config = AdaptConfig.for_mode(
            self.adapt_mode,
            head=self.head,
            augment=AugmentConfig(sequences=self.augment_sequences, synthetic_queries=self.synthetic_queries,
                                  pseudo_labels=self.pseudo_labels),
            device=self.device,
            seed=self.adapter_seed,
        )
        train = replace(config.train, temperature=self.temperature)
        if self.epochs is not None:
            train = replace(train, epochs=self.epochs)
        if self.learning_rate is not None:
            train = replace(train, learning_rate=self.learning_rate)
        return replace(config, train=train)

    def _fit(self, log_: InteractionLog, catalog: ItemCatalog, profiles) -> None:
        from coldrec.adapt import adapt

        if self._base_encoder is None:
            self._base_encoder = self.encoder
        base, config = self._base_encoder, self.adapt_config()
        inner = adapt(base, log_, catalog, config, held_out_cut=time_cut(log_))
        self.adaptation_ = inner
        log.info("adapter (inner cut): best epoch %d of %d, %.1fs", inner.report.best_epoch, inner.report.epochs_run,
                 inner.seconds)
        self._encoder = inner.encoder
        super()._fit(log_, catalog, profiles)  # the ranker learns on the inner-cut adapter's vectors
        if self.refit_adapter and inner.report.best_epoch > 0:
            full = adapt(base, log_, catalog, config, epochs=inner.report.best_epoch)
            self.adaptation_ = full
            self._encoder = full.encoder
            self._items = ItemState(catalog, self._text_vectors(catalog))
            # borrowed behaviour depends on the vectors; the sources read the new item state either way
            self._use_signals(self._behaviour(log_, catalog, self.now) if self.neighbours_for_new_items
                              else self._signals)


class _Variant(AdaptedColdStartRecommender):
    """A registered configuration: its fixed settings are the one grid point's extra keys."""

    settings: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.param_grid = tuple({**point, **cls.settings} for point in AdaptedColdStartRecommender.param_grid)


class AdapterNoAugmentation(_Variant):
    name = "coldrec-adapter-noaug"
    settings: ClassVar[dict[str, Any]] = {"augment_sequences": False, "synthetic_queries": False,
                                          "pseudo_labels": False}


class AdapterNoSequenceAugmentation(_Variant):
    name = "coldrec-adapter-noseq"
    settings: ClassVar[dict[str, Any]] = {"augment_sequences": False}


class AdapterNoSyntheticQueries(_Variant):
    name = "coldrec-adapter-noqueries"
    settings: ClassVar[dict[str, Any]] = {"synthetic_queries": False}


class AdapterNoPseudoLabels(_Variant):
    name = "coldrec-adapter-nopseudo"
    settings: ClassVar[dict[str, Any]] = {"pseudo_labels": False}


class AdapterWithoutRefit(_Variant):
    """Serves with the inner-cut adapter the ranker was trained on (no retraining on everything)."""

    name = "coldrec-adapter-norefit"
    settings: ClassVar[dict[str, Any]] = {"refit_adapter": False}


class ResidualAdapter(_Variant):
    name = "coldrec-adapter-mlp"
    settings: ClassVar[dict[str, Any]] = {"head": "residual"}


class LoraAdapted(_Variant):
    name = "coldrec-lora"
    settings: ClassVar[dict[str, Any]] = {"adapt_mode": "lora", "refit_adapter": False}


class FullyFineTuned(_Variant):
    name = "coldrec-full"
    settings: ClassVar[dict[str, Any]] = {"adapt_mode": "full", "refit_adapter": False}
