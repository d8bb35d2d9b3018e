"""Sponsored slots measured offline (`coldrec evaluate-ads`): generated campaigns on the benchmark's test cut.

A seeded `SHARE` of the catalog is advertised (one campaign per item, log-normal bids, budgets large enough never
to bind). Every test shopper gets the model's organic top `N` as the server builds it (seen items excluded), and
each policy fills `SLOTS` of its positions with the winners of a second-price auction:

- "bid": expected value = the bid (no click estimate);
- "popularity x bid": the item's past purchase rate (distinct past buyers / past shoppers) as its click
  estimate, what a simple ad server does; a new product's is 0;
- "coldrec": the `ClickModel`'s probability (fitted on the validation cut) x bid, among the shopper's top
  `DEPTH` ranked items, above a relevance floor (`FLOOR` x the median probability of the organic list).

A sponsored item counts as clicked when the shopper buys it afterwards (it is among their targets); a click pays
the second price. Per policy and segment: sponsored-slot hit rate (hits / slots filled), revenue per 1,000 lists,
organic NDCG@10 of the list with the slots and without them. The click model's calibration is measured on the test
cut over every advertised item among each shopper's top `DEPTH` (cold users, warm users, new products: items
with no past purchase): expected calibration error (`BINS` equal-count bins) and log loss, against predicting the
population's own base rate for everyone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from coldrec.ads.auction import place_ads, second_price_auction
from coldrec.ads.click import DEPTH, ClickModel, ScoredPairs, ranked_pairs, split_pairs
from coldrec.data import Dataset
from coldrec.evaluate.metrics import user_metrics
from coldrec.evaluate.protocol import prepare_splits
from coldrec.recommend.base import Ranked, Recommender
from coldrec.recommend.registry import model_class

SHARE = 0.1
N = 10
SLOTS = (2, 7)  # 0-based positions of the sponsored slots in a list of N
FLOOR = 0.5
RESERVE = 0.05
BID_MEDIAN, BID_SIGMA = 0.5, 0.75
BINS = 10
POLICIES = ("bid", "popularity x bid", "coldrec")
COLD = "cold users"


@dataclass
class AdEvaluation:
    dataset: str
    params: dict[str, Any]
    campaigns: int
    rows: list[dict[str, Any]] = field(default_factory=list)  # policy x segment
    calibration: list[dict[str, Any]] = field(default_factory=list)  # segment
    reliability: dict[str, list[tuple[float, float, int]]] = field(default_factory=dict)  # segment -> bins


def generated_campaigns(n_items: int, seed: int = 0, share: float = SHARE) -> tuple[np.ndarray, np.ndarray]:
    """The advertised positions (a seeded `share` of the catalog) and their bids (log-normal, median BID_MEDIAN)."""
    rng = np.random.default_rng(seed)
    items = np.sort(rng.choice(n_items, max(1, round(share * n_items)), replace=False))
    bids = BID_MEDIAN * np.exp(rng.normal(0.0, BID_SIGMA, len(items)))
    return items, bids


def ndcg(lists: np.ndarray, targets: list[np.ndarray]) -> np.ndarray:
    return user_metrics(lists, targets)["ndcg@10"]


def expected_calibration_error(p: np.ndarray, y: np.ndarray, bins: int = BINS) -> tuple[float, list]:
    """ECE over `bins` equal-count bins of p (sorted), and each bin's (mean p, rate, count)."""
    order = np.argsort(p, kind="stable")
    parts = [part for part in np.array_split(order, bins) if len(part)]
    table = [(float(p[part].mean()), float(y[part].mean()), len(part)) for part in parts]
    ece = sum(count * abs(mean_p - rate) for mean_p, rate, count in table) / max(len(p), 1)
    return float(ece), table


def log_loss(p: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def evaluate_ads(dataset: Dataset, model_name: str = "coldrec", params: dict[str, Any] | None = None,
                 floor: float = FLOOR, seed: int = 0, on_step: Callable[[str], None] | None = None,
                 fitted: tuple[Recommender, Recommender] | None = None) -> AdEvaluation:
    """The comparison above. `fitted`: (the model fitted on the validation cut's past, on the test cut's past)."""
    step = on_step or (lambda text: None)
    test, val = prepare_splits(dataset)
    cls = model_class(model_name)
    params = dict(params if params is not None else cls.param_grid[0])
    catalog = dataset.catalog
    if fitted is None:
        step(f"{model_name}: fit on the validation cut's past")
        val_model = cls(**params).fit(val.past, catalog, dataset.profiles, now=val.cut)
        step(f"{model_name}: fit on the test cut's past")
        test_model = cls(**params).fit(test.past, catalog, dataset.profiles, now=test.cut)
    else:
        val_model, test_model = fitted
    step("click model: rank the validation shoppers")
    val_pairs, _ = split_pairs(val_model, val)
    click = ClickModel().fit(ScoredPairs.concat(list(val_pairs.values())))
    step("rank the test shoppers")
    test_pairs, ranked = split_pairs(test_model, test)
    campaign_items, bids = generated_campaigns(len(catalog), seed)
    bid_of = np.full(len(catalog), np.nan)
    bid_of[campaign_items] = bids
    past_users = max(1, test.past.n_users)
    purchase_rate = np.asarray(test.popularity, np.float64) / past_users
    result = AdEvaluation(dataset.name, params, len(campaign_items))
    step("auctions")
    totals: dict[str, dict[str, list]] = {}
    for name, segment in test.segments.items():
        lists = _segment_lists(test_model, click, ranked[name], segment, campaign_items, bid_of, purchase_rate, floor)
        for policy, (shown, sponsored, prices, organic) in lists.items():
            row = _policy_row(policy, name, shown, sponsored, prices, organic, segment.targets)
            result.rows.append(row)
            if name.startswith("cold") or name == "onboarding":
                pooled = totals.setdefault(policy, {"shown": [], "sponsored": [], "prices": [], "organic": [],
                                                    "targets": []})
                for key, value in (("shown", shown), ("sponsored", sponsored), ("prices", prices),
                                   ("organic", organic), ("targets", segment.targets)):
                    pooled[key].append(value)
    for policy, pooled in totals.items():
        shown, sponsored, prices, organic = (np.concatenate(pooled[k]) for k in
                                             ("shown", "sponsored", "prices", "organic"))
        result.rows.append(_policy_row(policy, COLD, shown, sponsored, prices, organic,
                                       [t for part in pooled["targets"] for t in part]))
    _calibration(result, click, test_pairs, ranked, campaign_items, test.popularity)
    return result


def _segment_lists(model, click, ranked_lists: list[Ranked], segment, campaign_items, bid_of, purchase_rate, floor):
    n_users = len(ranked_lists)
    out = {policy: (np.full((n_users, N), -1, np.int64), np.full((n_users, N), False), np.zeros((n_users, N)),
                    np.full((n_users, N), -1, np.int64)) for policy in POLICIES}
    slots = len(SLOTS)
    for row, (ranked, context, exclude) in enumerate(zip(ranked_lists, segment.contexts, segment.exclude,
                                                         strict=True)):
        top, _ = model.arrange_ranked(ranked, N)
        organic = np.full(N, -1, np.int64)
        organic[: len(top)] = top.items
        # everyone's auction: every advertised item the shopper has not bought (bid and popularity policies)
        open_items = campaign_items[~np.isin(campaign_items, exclude)]
        depth = ranked.take(slice(0, DEPTH))
        p = click.predict(ranked_pairs(depth, context))
        p_of = dict(zip(depth.items.tolist(), p.tolist(), strict=True))
        organic_p = np.array([p_of.get(int(i), 0.0) for i in organic if i >= 0])
        advertised = np.isin(depth.items, campaign_items)
        candidates = {
            "bid": (open_items, np.ones(len(open_items)), 0.0),
            "popularity x bid": (open_items, purchase_rate[open_items], 0.0),
            "coldrec": (depth.items[advertised], p[advertised],
                        floor * float(np.median(organic_p)) if len(organic_p) else 0.0),
        }
        for policy, (items, estimate, min_p) in candidates.items():
            sold = second_price_auction(estimate, bid_of[items], slots, reserve=RESERVE, min_p=min_p)
            ads = items[sold.winners]
            shown = place_ads(organic, ads, SLOTS, N)
            lists, sponsored, prices, organics = out[policy]
            lists[row] = shown
            organics[row] = organic
            for ad, price in zip(ads, sold.prices, strict=True):
                at = int(np.flatnonzero(shown == ad)[0])
                sponsored[row, at] = True
                prices[row, at] = price
    return out


def _policy_row(policy, segment, shown, sponsored, prices, organic, targets) -> dict[str, Any]:
    hits = np.array([np.isin(s, t) for s, t in zip(shown, targets, strict=True)]).reshape(shown.shape) & sponsored
    filled = int(sponsored.sum())
    with_ads, without = ndcg(shown, targets), ndcg(organic, targets)
    return {
        "policy": policy, "segment": segment, "lists": len(shown), "slots filled": filled,
        "hit rate": float(hits.sum() / filled) if filled else float("nan"),
        "revenue / 1000 lists": float(1000 * (prices * hits).sum() / max(len(shown), 1)),
        "ndcg@10 with slots": float(with_ads.mean()) if len(with_ads) else float("nan"),
        "ndcg@10 organic": float(without.mean()) if len(without) else float("nan"),
    }


def _calibration(result: AdEvaluation, click: ClickModel, pairs: dict[str, ScoredPairs],
                 ranked: dict[str, list[Ranked]], campaign_items: np.ndarray, popularity: np.ndarray) -> None:
    groups: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for name, segment_pairs in pairs.items():
        items = np.concatenate([r.items[:DEPTH] for r in ranked[name]]) if ranked[name] else np.zeros(0, np.int64)
        advertised = np.isin(items, campaign_items)
        p, y = click.predict(segment_pairs)[advertised], segment_pairs.labels[advertised]  # type: ignore[index]
        new = np.asarray(popularity)[items[advertised]] == 0
        kind = COLD if name.startswith("cold") or name == "onboarding" else "warm users"
        groups.setdefault(name, []).append((p, y))
        groups.setdefault(kind, []).append((p, y))
        groups.setdefault("new products", []).append((p[new], y[new]))
        groups.setdefault("all", []).append((p, y))
    for name, parts in groups.items():
        p = np.concatenate([a for a, _ in parts])
        y = np.concatenate([b for _, b in parts]).astype(np.float64)
        if not len(p):
            continue
        rate = float(y.mean())
        ece, table = expected_calibration_error(p, y)
        constant = log_loss(np.full(len(y), rate), y) if 0 < rate < 1 else float("nan")
        loss = log_loss(p, y)
        result.calibration.append({
            "segment": name, "pairs": len(p), "positives": int(y.sum()), "base rate": rate,
            "mean p": float(p.mean()), "ece": ece, "ece / base rate": ece / rate if rate else float("nan"),
            "log loss": loss, "base-rate log loss": constant,
            "log loss ratio": loss / constant if constant == constant and constant else float("nan"),
        })
        result.reliability[name] = table
