"""Recommenders by name, imported only when asked for (some pull in heavy libraries)."""

from __future__ import annotations

import importlib

from coldrec.recommend.base import Recommender

# name -> (module, class, is a baseline)
MODELS: dict[str, tuple[str, str, bool]] = {
    "pop": ("coldrec.recommend.popularity", "PopularityRecommender", True),
    "pop30": ("coldrec.recommend.popularity", "RecentPopularityRecommender", True),
    "popcat": ("coldrec.recommend.popularity", "CategoryPopularityRecommender", True),
    "itemknn": ("coldrec.recommend.baselines.itemknn", "ItemKNNRecommender", True),
    "als": ("coldrec.recommend.baselines.als", "ALSRecommender", True),
    "lightfm": ("coldrec.recommend.baselines.lightfm_hybrid", "LightFMRecommender", True),
    # not in BENCHMARK.md's list: a stronger co-purchase model, named on request (a dense inverse over the 5,000
    # most-bought items)
    "ease": ("coldrec.recommend.baselines.ease", "EASERecommender", True),
    "text": ("coldrec.recommend.baselines.text", "TextZeroShotRecommender", True),
    # the field's sequential baseline: self-attention over the item sequence (torch, imported when fitted)
    "sasrec": ("coldrec.recommend.baselines.sasrec", "SASRecRecommender", True),
    "coldrec": ("coldrec.recommend.coldstart", "ColdStartRecommender", False),
    # the same top 10; positions 11 on partly kept for new arrivals (slots chosen on validation)
    "coldrec-fresh": ("coldrec.recommend.coldstart", "FreshColdStartRecommender", False),
    # ablations of the sequential evidence (directed transitions, session-kNN): each off, and both off
    "coldrec-notransitions": ("coldrec.recommend.coldstart", "WithoutTransitions", False),
    "coldrec-nosknn": ("coldrec.recommend.coldstart", "WithoutSessionKNN", False),
    "coldrec-unordered": ("coldrec.recommend.coldstart", "WithoutSequentialEvidence", False),
    # the same model with its language model adapted to the shop (coldrec.adapt)
    "coldrec-adapter": ("coldrec.recommend.adapted", "AdaptedColdStartRecommender", False),
    "coldrec-adapter-noaug": ("coldrec.recommend.adapted", "AdapterNoAugmentation", False),
    "coldrec-adapter-noseq": ("coldrec.recommend.adapted", "AdapterNoSequenceAugmentation", False),
    "coldrec-adapter-noqueries": ("coldrec.recommend.adapted", "AdapterNoSyntheticQueries", False),
    "coldrec-adapter-nopseudo": ("coldrec.recommend.adapted", "AdapterNoPseudoLabels", False),
    "coldrec-adapter-norefit": ("coldrec.recommend.adapted", "AdapterWithoutRefit", False),
    "coldrec-adapter-mlp": ("coldrec.recommend.adapted", "ResidualAdapter", False),
    "coldrec-lora": ("coldrec.recommend.adapted", "LoraAdapted", False),
    "coldrec-full": ("coldrec.recommend.adapted", "FullyFineTuned", False),
}


# ablation and slow variants: named explicitly, left out of "all"
NOT_IN_ALL = frozenset(
    name for name in MODELS if name.startswith("coldrec-") and name not in ("coldrec-adapter", "coldrec-fresh")
) | {"ease"}


def model_class(name: str) -> type[Recommender]:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    module, cls, _ = MODELS[name]
    return getattr(importlib.import_module(module), cls)


def is_baseline(name: str) -> bool:
    return MODELS[name][2]


def resolve_names(spec: str) -> list[str]:
    """'all' or a comma-separated list of names, validated."""
    if spec.strip() == "all":
        names = [n for n in MODELS if n not in NOT_IN_ALL]
    else:
        names = [n.strip() for n in spec.split(",") if n.strip()]
    for name in names:
        if name not in MODELS:
            raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    return names
