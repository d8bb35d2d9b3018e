"""Merchandising rules: a shop's own levers on a served list, applied after the ranking and never to items the
list may not hold.

A rule targets one item, a category (as the `category` filter reads it: the path, a path above it, or one of its
levels, any case) or a brand (any case), optionally
between two times, and does one of:

- ``exclude``: the matching items leave the list;
- ``boost`` / ``bury``: the matching items move up / down: an item ranked r-th (from 1) competes as if ranked
  r / (1 + weight) (boost) or r x (1 + weight) (bury), so a weight of 1 halves (doubles) its rank whatever the
  scores' scale; several matching rules multiply;
- ``pin``: one item at a fixed position (from 1) of the list; a position past the list's end puts it last, a
  position past the items asked for leaves it out of this list.

Rules reorder the ranked list they are given: the items a request may hold (in stock, not removed, not filtered
out), so no rule brings an item back. Each served item a rule moved says so (`PROMOTED`, `PINNED`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

ACTIONS = ("boost", "bury", "pin", "exclude")
PROMOTED, PINNED = "promoted", "pinned"


@dataclass(frozen=True)
class Rule:
    rule_id: str
    action: str
    item_id: str | None = None
    category: str | None = None
    brand: str | None = None
    position: int | None = None  # pin: 1 = first
    weight: float = 1.0  # boost / bury
    starts_at: float | None = None  # unix seconds; None: always
    ends_at: float | None = None

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown action {self.action!r}; choose from {', '.join(ACTIONS)}")
        if sum(target is not None for target in (self.item_id, self.category, self.brand)) != 1:
            raise ValueError("a rule targets exactly one of item_id, category and brand")
        if self.action == "pin" and (self.item_id is None or self.position is None or self.position < 1):
            raise ValueError("a pin needs an item_id and a position from 1")

    def active(self, now: float) -> bool:
        return (self.starts_at is None or self.starts_at <= now) and (self.ends_at is None or now < self.ends_at)


class ItemFacts(Protocol):
    """What a rule matches on, per catalog position (`coldrec.serve.itemtable.ItemTable` is one)."""

    ids: np.ndarray  # item ids
    brands: np.ndarray  # brand names ("" for none)

    def in_category(self, category: str) -> np.ndarray:
        """The mask of positions whose category is `category`, under it, or has it as a level (any case)."""
        ...


def matches(rule: Rule, positions: np.ndarray, facts: ItemFacts) -> np.ndarray:
    """Which of `positions` the rule targets."""
    if rule.item_id is not None:
        return np.asarray(facts.ids[positions] == rule.item_id, bool)
    if rule.category is not None:
        return np.asarray(facts.in_category(rule.category)[positions], bool)
    wanted = str(rule.brand).strip().lower()
    return np.char.lower(facts.brands[positions].astype(str)) == wanted


def reorder(positions: np.ndarray, rules: Sequence[Rule], facts: ItemFacts, now: float) -> tuple[np.ndarray,
                                                                                                   np.ndarray]:
    """`positions` (a ranked list, best first) after the active exclude, boost and bury rules: the rows of
    `positions` to keep, in their new order, and per kept row whether a boost rule matched it."""
    live = [rule for rule in rules if rule.active(now) and rule.action in ("exclude", "boost", "bury")]
    rows = np.arange(len(positions))
    if not live or not len(positions):
        return rows, np.zeros(len(rows), bool)
    keep = np.ones(len(positions), bool)
    factor = np.ones(len(positions))
    boosted = np.zeros(len(positions), bool)
    for rule in live:
        hit = matches(rule, positions, facts)
        if rule.action == "exclude":
            keep &= ~hit
        elif rule.action == "boost":
            factor[hit] /= 1.0 + max(rule.weight, 0.0)
            boosted |= hit
        else:
            factor[hit] *= 1.0 + max(rule.weight, 0.0)
    rows = rows[keep]
    order = rows[np.lexsort((rows, (rows + 1.0) * factor[keep]))]  # ties: the better-ranked first
    return order, boosted[order]


def pin(listed: np.ndarray, available: np.ndarray, n: int, rules: Sequence[Rule], facts: ItemFacts,
        now: float) -> tuple[np.ndarray, np.ndarray]:
    """The list of at most n (`listed`: positions, best first) with the active pins applied: each pinned item that
    `available` (the positions the list may hold) contains goes to its position; a position past the list's end
    puts it last, one past n leaves it out of this list. Returns the list and which of its items are pinned."""
    pins = sorted((rule for rule in rules if rule.active(now) and rule.action == "pin"),
                  key=lambda rule: int(rule.position or 1))
    if not pins:
        return listed[:n], np.zeros(min(n, len(listed)), bool)
    # the pinned items the list may hold (a first visit's list is the whole catalog: matched in one pass)
    held = available[np.isin(facts.ids[available], [str(rule.item_id) for rule in pins])]
    position_of = {str(item): int(position) for position, item in zip(held, facts.ids[held], strict=True)}
    pinned: dict[int, int] = {}  # position -> slot (from 0)
    for rule in pins:
        position = position_of.get(str(rule.item_id))
        if position is not None and position not in pinned:
            pinned[position] = int(rule.position or 1) - 1
    sequence = [int(p) for p in listed if int(p) not in pinned]
    for position, slot in sorted(pinned.items(), key=lambda pair: pair[1]):
        sequence.insert(min(slot, len(sequence)), position)
    out = np.asarray(sequence[:n], np.int64)
    return out, np.isin(out, list(pinned))
