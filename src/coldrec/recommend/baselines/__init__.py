"""The baselines every report includes: item-kNN, implicit ALS, LightFM hybrid, zero-shot text."""

from coldrec.recommend.baselines.als import ALSRecommender
from coldrec.recommend.baselines.itemknn import ItemKNNRecommender
from coldrec.recommend.baselines.lightfm_hybrid import LightFMRecommender
from coldrec.recommend.baselines.text import TextZeroShotRecommender

__all__ = ["ALSRecommender", "ItemKNNRecommender", "LightFMRecommender", "TextZeroShotRecommender"]
