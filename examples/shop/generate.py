"""A small shop's own files, as a shop would export them: column names of its own, and a few bad rows.

    python examples/shop/generate.py --out shop

writes shop/products.csv (sku, name, details, maker, department, price_eur, listed_on), shop/orders.csv
(customer, sku, action, ordered_at as ISO times) and shop/interests.csv (customer, likes: "A|B"). Shoppers
arrive over half a year, each with one or two favourite departments and a taste for a few product types; a
few rows in each file are broken on purpose (a missing sku, a price that is not a number, an unknown sku, a
time that is not a time, a customer without an id), so `--skip-bad` has something to count.
"""

from __future__ import annotations

import argparse
import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

DEPARTMENTS = {
    "Kitchen": ["knife", "pan", "kettle", "cutting board", "mixing bowl", "spatula", "teapot", "grater"],
    "Garden": ["hose", "trowel", "planter", "pruner", "watering can", "seed tray", "rake", "gloves"],
    "Office": ["stapler", "notebook", "desk lamp", "binder", "gel pen", "paper tray", "label maker", "folder"],
    "Toys": ["puzzle", "building blocks", "toy car", "plush bear", "kite", "board game", "yo-yo", "doll house"],
    "Outdoor": ["tent", "sleeping bag", "headlamp", "water bottle", "backpack", "camping stove", "compass", "tarp"],
    "Bath": ["towel", "bath mat", "soap dish", "shower curtain", "toothbrush holder", "bath robe", "loofah", "mirror"],
}
ADJECTIVES = ["classic", "compact", "deluxe", "eco", "heavy-duty", "mini", "premium", "soft", "steel", "travel"]
COLOURS = ["black", "white", "green", "blue", "red", "grey", "oak", "bamboo"]
MAKERS = ["Nordvik", "Acme", "Hollis", "Brightway", "Tamura", "Verde", "Kestrel", "Oakley & Co"]
START = datetime(2026, 1, 5, tzinfo=UTC)


def generate(out: Path, events: int = 24_000, items: int = 1_200, seed: int = 0) -> dict[str, int]:
    """Write the three files under `out`; returns how many rows each has (bad rows included)."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    departments = list(DEPARTMENTS)
    products = []
    for position in range(items):
        department = departments[position % len(departments)]
        kind = DEPARTMENTS[department][rng.integers(len(DEPARTMENTS[department]))]
        adjective, colour, maker = rng.choice(ADJECTIVES), rng.choice(COLOURS), rng.choice(MAKERS)
        listed = START + timedelta(days=int(rng.integers(0, 200)) if position % 7 == 0 else 0)
        products.append({
            "sku": f"SKU-{10_000 + position}",
            "name": f"{maker} {adjective} {kind}, {colour}",
            "details": f"A {adjective} {kind} in {colour} from {maker}, for the {department.lower()}.",
            "maker": maker,
            "department": department,
            "price_eur": f"{rng.gamma(2.0, 12.0) + 2:.2f}",
            "listed_on": listed.date().isoformat(),
            "kind": kind,
        })
    by_department = {d: [i for i, p in enumerate(products) if p["department"] == d] for d in departments}
    kinds_of = np.array([p["kind"] for p in products])
    listed_at = np.array([datetime.fromisoformat(p["listed_on"]).replace(tzinfo=UTC).timestamp() for p in products])
    popularity = rng.zipf(1.6, items).astype(float)
    orders, likes = [], []
    customer = 0
    while len(orders) < events:
        customer += 1
        favourites = list(rng.choice(departments, size=int(rng.integers(1, 3)), replace=False))
        pool = np.array([i for d in favourites for i in by_department[d]])
        liked = np.isin(kinds_of[pool], rng.choice(kinds_of[pool], size=3))
        weight = popularity[pool] * np.where(liked, 4.0, 1.0)
        arrival = START + timedelta(days=float(rng.uniform(0, 180)))
        if rng.random() < 0.3:
            likes.append({"customer": f"c{customer}", "likes": "|".join(favourites)})
        at = arrival
        for _ in range(int(rng.integers(2, 18))):
            at += timedelta(hours=float(rng.exponential(30)))
            listed = listed_at[pool] <= at.timestamp()
            if not listed.any():
                continue
            chances = np.where(listed, weight, 0.0)
            item = int(pool[rng.choice(len(pool), p=chances / chances.sum())])
            action = rng.choice(["view", "cart", "purchase"], p=[0.5, 0.2, 0.3])
            orders.append({"customer": f"c{customer}", "sku": products[item]["sku"], "action": action,
                           "ordered_at": at.strftime("%Y-%m-%dT%H:%M:%SZ")})
    # broken on purpose, one of each kind
    products[3]["sku"] = ""
    products[5]["price_eur"] = "call us"
    orders[10]["sku"] = "SKU-NOPE"
    orders[20]["ordered_at"] = "yesterday-ish"
    orders[30]["customer"] = ""
    _write(out / "products.csv", [{k: v for k, v in p.items() if k != "kind"} for p in products])
    _write(out / "orders.csv", orders)
    _write(out / "interests.csv", likes)
    return {"products": len(products), "orders": len(orders), "interests": len(likes)}


def _write(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("shop"))
    parser.add_argument("--events", type=int, default=24_000)
    parser.add_argument("--items", type=int, default=1_200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    counts = generate(args.out, args.events, args.items, args.seed)
    print(f"wrote {args.out}/products.csv ({counts['products']:,} rows), orders.csv ({counts['orders']:,}), "
          f"interests.csv ({counts['interests']:,}); a few rows of each are broken on purpose")


if __name__ == "__main__":
    main()
