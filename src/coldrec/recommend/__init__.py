"""Recommenders: the common interface, ranking helpers and the models."""

from coldrec.recommend.base import Recommender, UserContext
from coldrec.retrieve.ranking import top_n

__all__ = ["Recommender", "UserContext", "top_n"]
