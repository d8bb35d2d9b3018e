"""Sponsored products: campaigns, the calibrated click probability, the second-price auction and budget pacing.

Layered above `coldrec.recommend` (it reads a recommender's public scores, never its insides) and below
`coldrec.serve` (which keeps campaigns in the store and places the auction's winners in lists)."""

from coldrec.ads.auction import AdPolicy, Auctioned, list_auction, place_ads, second_price_auction
from coldrec.ads.campaigns import Campaign, CampaignError
from coldrec.ads.click import (
    ClickModel,
    CutRankings,
    ScoredPairs,
    fit_click_model,
    held_out_click_model,
    held_out_rankings,
    ranked_pairs,
)
from coldrec.ads.pacing import day_of, paced_budget
from coldrec.ads.tokens import AdToken, TokenError

__all__ = [
    "AdPolicy",
    "AdToken",
    "Auctioned",
    "Campaign",
    "CampaignError",
    "ClickModel",
    "CutRankings",
    "ScoredPairs",
    "TokenError",
    "day_of",
    "fit_click_model",
    "held_out_click_model",
    "held_out_rankings",
    "list_auction",
    "paced_budget",
    "place_ads",
    "ranked_pairs",
    "second_price_auction",
]
