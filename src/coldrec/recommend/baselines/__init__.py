"""The baselines every report includes (item-kNN, implicit ALS, LightFM hybrid, zero-shot text) and EASE, named on
request."""

from coldrec.recommend.baselines.als import ALSRecommender
from coldrec.recommend.baselines.ease import EASERecommender
from coldrec.recommend.baselines.itemknn import ItemKNNRecommender
from coldrec.recommend.baselines.lightfm_hybrid import LightFMRecommender
from coldrec.recommend.baselines.text import TextZeroShotRecommender

__all__ = ["ALSRecommender", "EASERecommender", "ItemKNNRecommender", "LightFMRecommender",
           "TextZeroShotRecommender"]
