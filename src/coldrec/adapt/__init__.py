"""Adapting the language model to the shop: training pairs from the log, augmentation, and
three modes (a head over frozen vectors, LoRA, full fine-tuning) behind `adapt`."""

from coldrec.adapt.adapter import Adaptation, AdaptConfig, adapt, training_pairs
from coldrec.adapt.augment import AugmentConfig
from coldrec.adapt.pairs import PairKind, TrainingPairs, pairs_from_log
from coldrec.adapt.train import TrainConfig

__all__ = ["AdaptConfig", "Adaptation", "AugmentConfig", "PairKind", "TrainConfig", "TrainingPairs", "adapt",
           "pairs_from_log", "training_pairs"]
