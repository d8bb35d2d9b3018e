"""Sponsored slots measured offline (`coldrec evaluate-ads`): generated campaigns on the benchmark's test cut.

A seeded `SHARE` of the catalog is advertised (one campaign per item, log-normal bids, budgets large enough never
to bind). Every test shopper gets the model's organic top `N` as the server builds it (seen items excluded), and
each policy fills `SLOTS` of its positions with the winners of a second-price auction:

- "bid": expected value = the bid (no click estimate);
- "popularity x bid": the item's past purchase rate (distinct past buyers / past shoppers) as its click
  estimate, what a simple ad server does; a new product's is 0;
- "coldrec": the `ClickModel`'s probability (fitted on the validation cut) x bid, among the shopper's top
  `DEPTH` ranked items, above the relevance floor chosen on the validation cut (`choose_policy`).

Every policy pays the reserve price chosen on the validation cut (the one that earns coldrec's policy the most).

A sponsored item counts as clicked when the shopper buys it afterwards (it is among their targets); a click pays
the second price. Per policy and segment: sponsored-slot hit rate (hits / slots filled), revenue per 1,000 lists,
organic NDCG@10 of the list with the slots and without them.

The click model's calibration is measured on the test cut, per segment (cold users, warm users, new products:
items nobody bought before the cut), on two populations: "advertised" is every (shopper, advertised item) pair the
auction prices, the items past a shopper's top `DEPTH` at the model's rate for them; "top" is only the advertised
items within each shopper's top `DEPTH` (the harder one: the model's own candidates). Expected calibration error
over `BINS` equal-count bins of p, and log loss, each against predicting the population's own base rate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from coldrec.ads.auction import AdPolicy, list_auction, place_ads, second_price_auction
from coldrec.ads.click import DEPTH, ClickModel, CutRankings, known_count, ranked_pairs, split_pairs
from coldrec.data import Dataset
from coldrec.data.split import Split
from coldrec.evaluate.metrics import user_metrics
from coldrec.evaluate.protocol import prepare_splits
from coldrec.recommend.base import Ranked, Recommender
from coldrec.recommend.registry import model_class

SHARE = 0.1
N = 10
SLOTS = AdPolicy().slots
RESERVE = AdPolicy().reserve
BID_MEDIAN, BID_SIGMA = 0.5, 0.75
BINS = 10
#: the relevance floors tried on the validation cut, and the share of organic NDCG@10 the chosen one may give up
FLOORS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
#: the reserve prices tried on the validation cut (the generated bids' median is BID_MEDIAN)
RESERVES = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)
TOLERANCE = 0.03
POLICIES = ("bid", "popularity x bid", "coldrec")
COLD = "cold users"
NEW = "new products"


@dataclass
class ChosenPolicy:
    policy: AdPolicy
    floors: dict[float, float]  # floor -> validation NDCG@10 with slots / without
    reserves: dict[float, float]  # reserve -> validation revenue per 1,000 lists at the chosen floor


@dataclass
class AdEvaluation:
    dataset: str
    params: dict[str, Any]
    campaigns: int
    chosen: ChosenPolicy
    rows: list[dict[str, Any]] = field(default_factory=list)  # policy x segment
    calibration: list[dict[str, Any]] = field(default_factory=list)  # population x segment
    reliability: dict[str, list[tuple[float, float, int]]] = field(default_factory=dict)  # segment -> bins


def generated_campaigns(n_items: int, seed: int = 0, share: float = SHARE) -> tuple[np.ndarray, np.ndarray]:
    """The advertised positions (a seeded `share` of the catalog) and their bids (log-normal, median BID_MEDIAN)."""
    rng = np.random.default_rng(seed)
    items = np.sort(rng.choice(n_items, max(1, round(share * n_items)), replace=False))
    bids = BID_MEDIAN * np.exp(rng.normal(0.0, BID_SIGMA, len(items)))
    return items, bids


def is_cold_segment(name: str) -> bool:
    return name.startswith("cold") or name == "onboarding"


def choose_policy(model: Recommender, click: ClickModel, split: Split, ranked: CutRankings, n_items: int,
                 floors: Sequence[float] = FLOORS, tolerance: float = TOLERANCE, reserves: Sequence[float] = RESERVES,
                 seed: int = 1) -> ChosenPolicy:
    """The auction's policy chosen on a held-out cut with generated campaigns (`seed`): the lowest relevance floor
    (most ads shown) whose lists keep at least 1 - `tolerance` of the organic NDCG@10 (averaged over the user
    segments; none does: the highest floor), then the reserve price that earns the most there (Myerson's
    revenue-maximising reserve, found on data)."""
    items, bids = generated_campaigns(n_items, seed)
    ratios, revenues = {}, {}

    def lists(policy: AdPolicy):
        for name, segment in split.segments.items():
            yield segment, _coldrec_lists(model, click, ranked.lists[name], segment.contexts, items, bids, policy)

    for floor in sorted(floors):
        with_slots, organic = [], []
        for segment, (shown, _, _, plain) in lists(AdPolicy(SLOTS, floor, RESERVE)):
            with_slots.append(ndcg(shown, segment.targets).mean())
            organic.append(ndcg(plain, segment.targets).mean())
        ratios[float(floor)] = float(np.mean(with_slots) / max(np.mean(organic), 1e-12))
    passing = [floor for floor, ratio in ratios.items() if ratio >= 1 - tolerance]
    floor = min(passing) if passing else max(ratios)
    for reserve in sorted(reserves):
        earned, users = 0.0, 0
        for segment, (shown, sponsored, prices, _) in lists(AdPolicy(SLOTS, floor, reserve)):
            earned += float((prices * _hits(shown, sponsored, segment.targets)).sum())
            users += len(shown)
        revenues[float(reserve)] = 1000 * earned / max(users, 1)
    reserve = max(revenues, key=lambda r: (revenues[r], -r))
    return ChosenPolicy(AdPolicy(SLOTS, floor, reserve), ratios, revenues)


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
                 seed: int = 0, on_step: Callable[[str], None] | None = None,
                 on_user: Callable[[], None] | None = None) -> AdEvaluation:
    """The comparison above; `params`: the model's (default: its first grid point)."""
    step = on_step or (lambda text: None)
    test, val = prepare_splits(dataset)
    cls = model_class(model_name)
    params = dict(params if params is not None else cls.param_grid[0])
    catalog = dataset.catalog
    step(f"{model_name}: fit on the validation cut's past")
    val_model = cls(**params).fit(val.past, catalog, dataset.profiles, now=val.cut)
    step("click model and relevance floor: rank the validation shoppers")
    val_ranked = split_pairs(val_model, val, on_user=on_user)
    click = val_ranked.click_model()
    chosen = choose_policy(val_model, click, val, val_ranked, len(catalog))
    policy = chosen.policy
    step(f"{model_name}: fit on the test cut's past")
    test_model = cls(**params).fit(test.past, catalog, dataset.profiles, now=test.cut)
    step("rank the test shoppers")
    test_ranked = split_pairs(test_model, test, on_user=on_user)
    items, bids = generated_campaigns(len(catalog), seed)
    purchase_rate = np.asarray(test.popularity, np.float64) / max(1, test.past.n_users)
    result = AdEvaluation(dataset.name, params, len(items), chosen)
    step("auctions")
    pooled: dict[str, dict[str, list]] = {}
    for name, segment in test.segments.items():
        lists = {"coldrec": _coldrec_lists(test_model, click, test_ranked.lists[name], segment.contexts, items,
                                           bids, policy)}
        plain = lists["coldrec"][3]
        for label, estimate in (("bid", np.ones(len(items))), ("popularity x bid", purchase_rate[items])):
            lists[label] = _shared_lists(plain, segment.exclude, items, bids, estimate, policy.reserve)
        for label in POLICIES:
            shown, sponsored, prices, organic = lists[label]
            result.rows.append(_policy_row(label, name, shown, sponsored, prices, organic, segment.targets))
            if is_cold_segment(name):
                parts = pooled.setdefault(label, {"lists": [], "targets": []})
                parts["lists"].append(lists[label])
                parts["targets"] += list(segment.targets)
    for label, parts in pooled.items():
        shown, sponsored, prices, organic = (np.concatenate([part[i] for part in parts["lists"]]) for i in range(4))
        result.rows.append(_policy_row(label, COLD, shown, sponsored, prices, organic, parts["targets"]))
    _calibration(result, click, test, test_ranked, items)
    return result


def _coldrec_lists(model, click, ranked_lists: list[Ranked], contexts, items, bids, policy: AdPolicy):
    """Each shopper's list with the coldrec policy's ads (the serving auction, `list_auction`), and without."""
    shown, sponsored, prices, plain = _empty(len(ranked_lists))
    bid_of = dict(zip(items.tolist(), bids.tolist(), strict=True))
    for row, (ranked, context) in enumerate(zip(ranked_lists, contexts, strict=True)):
        top, _ = model.arrange_ranked(ranked, N, context=context)
        plain[row, : len(top)] = top.items
        depth = ranked.take(slice(0, DEPTH))
        p = click.predict(ranked_pairs(depth, context))
        bidders = np.flatnonzero(np.isin(depth.items, items))
        organic = np.flatnonzero(np.isin(depth.items, top.items))
        sold = list_auction(p, organic, bidders, np.array([bid_of[int(i)] for i in depth.items[bidders]]), policy, N)
        _place(row, plain[row], depth.items[bidders[sold.winners]], sold.prices, shown, sponsored, prices)
    return shown, sponsored, prices, plain


def _shared_lists(plain: np.ndarray, exclude, items, bids, estimate, reserve: float):
    """The lists with the ads of a policy that values every advertised item the shopper has not bought (at the same
    reserve price)."""
    shown, sponsored, prices, _ = _empty(len(plain))
    for row, (organic, seen) in enumerate(zip(plain, exclude, strict=True)):
        open_rows = np.flatnonzero(~np.isin(items, seen))
        sold = second_price_auction(estimate[open_rows], bids[open_rows], len(SLOTS), reserve=reserve)
        _place(row, organic, items[open_rows[sold.winners]], sold.prices, shown, sponsored, prices)
    return shown, sponsored, prices, plain


def _empty(users: int):
    return (np.full((users, N), -1, np.int64), np.zeros((users, N), bool), np.zeros((users, N)),
            np.full((users, N), -1, np.int64))


def _place(row, organic, ads, ad_prices, shown, sponsored, prices) -> None:
    shown[row] = place_ads(organic, ads, SLOTS, N)
    for ad, price in zip(ads.tolist(), ad_prices.tolist(), strict=True):
        at = int(np.flatnonzero(shown[row] == ad)[0])
        sponsored[row, at] = True
        prices[row, at] = price


def _hits(shown: np.ndarray, sponsored: np.ndarray, targets) -> np.ndarray:
    """Sponsored places whose item the shopper bought afterwards."""
    return np.array([np.isin(s, t) for s, t in zip(shown, targets, strict=True)]).reshape(shown.shape) & sponsored


def _policy_row(policy, segment, shown, sponsored, prices, organic, targets) -> dict[str, Any]:
    hits = _hits(shown, sponsored, targets)
    filled = int(sponsored.sum())
    with_ads, without = ndcg(shown, targets), ndcg(organic, targets)
    return {
        "policy": policy, "segment": segment, "lists": len(shown), "slots filled": filled,
        "hit rate": float(hits.sum() / filled) if filled else float("nan"),
        "revenue / 1000 lists": float(1000 * (prices * hits).sum() / max(len(shown), 1)),
        "ndcg@10 with slots": float(with_ads.mean()) if len(with_ads) else float("nan"),
        "ndcg@10 organic": float(without.mean()) if len(without) else float("nan"),
    }


def _calibration(result: AdEvaluation, click: ClickModel, split: Split, ranked: CutRankings,
                 items: np.ndarray) -> None:
    """Both populations' calibration figures, per segment kind."""
    new_item = np.asarray(split.popularity) == 0
    groups: dict[tuple[str, str], list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
    for name, segment in split.segments.items():
        kind = COLD if is_cold_segment(name) else "warm users"
        within_p = click.predict(ranked.pairs[name])
        start = 0
        for ranked_list, context, seen, targets in zip(ranked.lists[name], segment.contexts, segment.exclude,
                                                       segment.targets, strict=True):
            depth = min(len(ranked_list), DEPTH)
            top_items = ranked_list.items[:depth]
            top_p = within_p[start: start + depth]
            start += depth
            advertised = np.isin(top_items, items)
            top = (top_p[advertised], np.isin(top_items[advertised], targets), top_items[advertised])
            rest = items[~np.isin(items, seen) & ~np.isin(items, top_items)]
            outside_p = np.full(len(rest), click.outside(known_count(context) == 0))
            every = (np.concatenate([top[0], outside_p]), np.concatenate([top[1], np.isin(rest, targets)]),
                     np.concatenate([top[2], rest]))
            for population, (p, y, at) in (("advertised", every), ("top", top)):
                for group in (kind, name, "all"):
                    groups.setdefault((population, group), []).append((p, y, at))
                new = new_item[at]
                groups.setdefault((population, NEW), []).append((p[new], y[new], at[new]))
    for (population, group), parts in groups.items():
        p = np.concatenate([part[0] for part in parts])
        y = np.concatenate([part[1] for part in parts]).astype(np.float64)
        if not len(p):
            continue
        rate = float(y.mean())
        ece, table = expected_calibration_error(p, y)
        constant = log_loss(np.full(len(y), rate), y) if 0 < rate < 1 else float("nan")
        loss = log_loss(p, y)
        result.calibration.append({
            "population": population, "segment": group, "pairs": len(p), "positives": int(y.sum()),
            "base rate": rate, "mean p": float(p.mean()), "ece": ece,
            "ece / base rate": ece / rate if rate else float("nan"), "log loss": loss,
            "base-rate log loss": constant, "log loss ratio": loss / constant if constant and constant == constant
            else float("nan"),
        })
        result.reliability[f"{population}: {group}"] = table


def write_plots(result: AdEvaluation, folder: Path) -> list[Path]:
    """ads_policies.png (hit rate and revenue per policy and segment) and ads_calibration.png (reliability)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    segments = list(dict.fromkeys(row["segment"] for row in result.rows))
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    width = 0.8 / len(POLICIES)
    for at, policy in enumerate(POLICIES):
        rows = {row["segment"]: row for row in result.rows if row["policy"] == policy}
        x = np.arange(len(segments)) + at * width
        for axis, metric in zip(axes, ("hit rate", "revenue / 1000 lists", "ndcg@10 with slots"), strict=True):
            axis.bar(x, [np.nan_to_num(rows[s][metric]) for s in segments], width, label=policy)
    organic = {row["segment"]: row["ndcg@10 organic"] for row in result.rows if row["policy"] == "coldrec"}
    axes[2].scatter(np.arange(len(segments)) + width, [organic[s] for s in segments], color="black", marker="_",
                    s=400, label="organic (no slots)", zorder=3)
    for axis, metric in zip(axes, ("sponsored-slot hit rate", "revenue per 1,000 lists", "NDCG@10 of the list"),
                            strict=True):
        axis.set_xticks(np.arange(len(segments)) + width, segments, rotation=30, ha="right")
        axis.set_title(metric)
    axes[0].legend()
    axes[2].legend(fontsize=7)
    fig.suptitle(f"{result.dataset}: sponsored slots by policy (test cut, generated campaigns)")
    fig.tight_layout()
    policies = folder / "ads_policies.png"
    fig.savefig(policies, dpi=120)
    plt.close(fig)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for axis, population in zip(axes, ("advertised", "top"), strict=True):
        top = 0.0
        for group in (COLD, "warm users", NEW):
            table = result.reliability.get(f"{population}: {group}")
            if table:
                p, rate = [b[0] for b in table], [b[1] for b in table]
                axis.plot(p, rate, marker="o", label=group)
                top = max(top, *p, *rate)
        axis.plot([0, top], [0, top], color="grey", linestyle=":", label="calibrated")
        axis.set_xlabel("predicted click probability (bin mean)")
        axis.set_ylabel("bought afterwards (bin rate)")
        axis.set_title(f"pairs: {population}")
        axis.legend(fontsize=8)
    fig.suptitle(f"{result.dataset}: click model reliability (test cut, {BINS} equal-count bins)")
    fig.tight_layout()
    calibration = folder / "ads_calibration.png"
    fig.savefig(calibration, dpi=120)
    plt.close(fig)
    return [policies, calibration]
