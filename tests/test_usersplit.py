"""The user split (BENCHMARK.md, "The user split: for logs without timestamps").

The main test reproduces `coldrec evaluate --split users`'s popularity and item-kNN figures with a small
independent implementation of the text (plain Python, written from BENCHMARK.md; it never calls the
project's split, ranking or metric code) on a generated sequence file.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from coldrec.data import InteractionLog, ItemCatalog
from coldrec.data.datasets import Dataset
from coldrec.data.usersplit import build_user_split, is_cold, validation_user_split
from coldrec.evaluate.protocol import prepare_splits, run_evaluation

N_ITEMS = 48  # < 51: every item keeps all its neighbours under item-kNN's first grid point (50)
N_CORE = 12  # items bought inside sequences; the others only ever come last (never in a training log)
N_USERS = 4000  # enough eligible warm users (> 2,000) for the seeded sample to matter


# ---------------------------------------------------------------------------- the generated shop


def write_shop(folder: Path, seed: int = 7) -> tuple[Path, list[str], Path]:
    """A catalog of numeric ids of 1 to 3 digits in shuffled order, and one sequence per user: 1 to 8 items from
    a favourite cluster of 4 core items (a popularity skew inside it, repeats allowed), the last one replaced by
    a "final" item half the time. Final items are never in a training log (it drops last items), so they tie at
    popularity 0 and rank by id as a number, and they are often the warm targets: the tie rule is tested. User
    ids are numbers of varied length too (sorted as strings, not as numbers)."""
    rng = random.Random(seed)
    items = [str(i) for i in rng.sample(range(1, 500), N_ITEMS)]
    core, final = items[:N_CORE], items[N_CORE:]
    catalog = folder / "catalog.csv"
    with open(catalog, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["item_id", "title"])
        writer.writerows([i, f"item {i}"] for i in items)
    sequences = folder / "sequences.csv"
    with open(sequences, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["user", "sequence"])
        for user in rng.sample(range(1, 10**6), N_USERS):
            cluster = rng.randrange(3)
            bought = []
            for _ in range(rng.choice([1, 2, 2, 3, 3, 4, 5, 6, 7, 8])):
                c = cluster if rng.random() < 0.8 else rng.randrange(3)
                bought.append(core[c * 4 + min(int(rng.expovariate(0.7)), 3)])
            if rng.random() < 0.5:
                bought[-1] = final[min(int(rng.expovariate(0.1)), len(final) - 1)]
            writer.writerow([str(user), " ".join(bought)])
    return catalog, items, sequences


# ---------------------------------------------------------------------------- the text, independently


def bucket(text: str) -> int:
    return int(hashlib.md5(text.encode("utf-8")).hexdigest(), 16) % 10


def reference_split(sequences: list[tuple[str, list[str]]], salt: str, seed: int):
    """(training log as (user, items) pairs, {segment: [(known items, targets)]}) as the text defines them."""
    cold = [(u, s) for u, s in sequences if bucket(salt + u) == 0]
    rest = [(u, s) for u, s in sequences if bucket(salt + u) != 0]
    training = [(u, s[:-1]) for u, s in rest if len(s) > 1]
    segments: dict[str, list[tuple[list[str], set[str]]]] = {}
    for k in (0, 1, 3):
        segments[f"cold k={k}"] = []
        for _, s in cold:
            if len(s) > k and set(s[k:]) - set(s[:k]):
                segments[f"cold k={k}"].append((s[:k], set(s[k:]) - set(s[:k])))
    eligible = sorted(u for u, s in rest if len(s) >= 2 and s[-1] not in s[:-1])
    chosen = eligible
    if len(eligible) > 2000:
        chosen = [str(u) for u in np.random.default_rng(seed).choice(eligible, 2000, replace=False)]
    sequence_of = dict(rest)
    segments["warm"] = [(sequence_of[u][:-1], {sequence_of[u][-1]}) for u in chosen]
    return training, segments


def reference_figures(sequences, items: list[str], salt: str = "", seed: int = 0):
    """{(segment, model): {"users", "ndcg@10", "recall@20", "hr@10"}} for pop and item-kNN (50 neighbours,
    shrink 0: cosine on distinct training-log buyers)."""
    training, segments = reference_split(sequences, salt, seed)
    buyers: dict[str, set[str]] = {i: set() for i in items}
    for user, bought in training:
        for item in bought:
            buyers[item].add(user)
    popularity = {i: len(b) for i, b in buyers.items()}

    def similarity(i: str, j: str) -> float:
        shared = len(buyers[i] & buyers[j])
        return 0.0 if i == j or not shared else shared / (math.sqrt(len(buyers[i])) * math.sqrt(len(buyers[j])))

    def ranked(scores: dict[str, float], seen: set[str]) -> list[str]:
        # ties: more training-log users first, then the id as a number
        allowed = [i for i in items if i not in seen]
        return sorted(allowed, key=lambda i: (-scores[i], -popularity[i], int(i)))[:20]

    out = {}
    for name, users in segments.items():
        for model in ("pop", "itemknn"):
            values = []
            for known, targets in users:
                seen = set(known)
                if model == "pop":
                    scores = {i: float(popularity[i]) for i in items}
                else:
                    scores = {j: sum(similarity(i, j) for i in seen) for j in items}
                top = ranked(scores, seen)
                dcg = sum(1 / math.log2(r + 2) for r, i in enumerate(top[:10]) if i in targets)
                ideal = sum(1 / math.log2(r + 2) for r in range(min(len(targets), 10)))
                values.append((dcg / ideal, len(set(top[:20]) & targets) / min(len(targets), 20),
                               float(bool(set(top[:10]) & targets))))
            out[(name, model)] = {"users": len(values)} | {
                metric: sum(v[m] for v in values) / len(values)
                for m, metric in enumerate(("ndcg@10", "recall@20", "hr@10"))
            }
    return out, training, segments


def read_sequences(path: Path) -> list[tuple[str, list[str]]]:
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    return [(user, items.split()) for user, items in rows[1:]]


# ---------------------------------------------------------------------------- the tests


def test_pop_and_itemknn_figures_match_an_independent_implementation(tmp_path):
    from coldrec.cli import app

    catalog, items, sequences = write_shop(tmp_path)
    out = tmp_path / "reports"
    result = CliRunner().invoke(app, [
        "evaluate", "--catalog", str(catalog), "--events", str(sequences), "--events-format", "sequences",
        "--split", "users", "--models", "pop,itemknn", "--no-tune", "--out", str(out),
    ])
    assert result.exit_code == 0, result.output
    assert "4,000 accepted" in result.output  # the load report is printed
    (path,) = out.glob("*/report.json")
    report = json.loads(path.read_text())
    assert report["split"] == "users" and "user split" in report["title"]
    assert "user split" in (path.parent / "report.md").read_text().splitlines()[0]

    seqs = read_sequences(sequences)
    expected, training, segments = reference_figures(seqs, items)
    assert report["split_info"]["warm eligible"] > 2000  # the sample was drawn
    assert report["segments"] == {name: len(users) for name, users in segments.items()}
    _, val_segments = reference_split(training, "validation:", 1)
    assert report["validation_segments"] == {name: len(users) for name, users in val_segments.items()}

    rows = {(r["segment"], r["model"]): r for r in report["rows"]}
    assert set(rows) == set(expected)
    for key, figures in expected.items():
        row = rows[key]
        assert row["users"] == figures["users"], key
        for metric in ("ndcg@10", "recall@20", "hr@10"):
            assert row[metric] == pytest.approx(figures[metric], rel=1e-9, abs=1e-12), (key, metric)
    # item-kNN is not popularity in disguise here: the comparison tests its scores
    assert rows[("cold k=1", "itemknn")]["ndcg@10"] != pytest.approx(rows[("cold k=1", "pop")]["ndcg@10"])


def toy_log() -> tuple[InteractionLog, ItemCatalog]:
    catalog = ItemCatalog.from_records([str(i) for i in range(6)], [f"item {i}" for i in range(6)])
    users, items, positions = [], [], []
    for u in range(40):
        sequence = [(u + j) % 6 for j in range(1 + u % 5)]
        if u % 7 == 0 and len(sequence) > 1:
            sequence[-1] = sequence[0]  # last item already bought: never a warm user
        users += [f"user{u}"] * len(sequence)
        items += sequence
        positions += list(range(len(sequence)))
    return InteractionLog.from_arrays(users, items, positions, timed=False), catalog


def test_user_split_segments_and_training_log():
    log, catalog = toy_log()
    split = build_user_split(log, catalog)
    cold = {u for u in log.users if is_cold(u)}
    assert split.kind == "users" and split.cut == 0 and not len(split.cold_items) and not split.past.timed
    assert cold and not cold & set(split.past.users[np.unique(split.past.user)])
    # the training log: every other user's sequence without its last item, in order
    for code in np.unique(log.user):
        user = log.users[code]
        if user in cold:
            continue
        mine = log.item[log.user == code]
        assert split.past.item[split.past.user == code].tolist() == mine[:-1].tolist()
    assert len(split.past) + len(split.future) == len(log)
    assert np.array_equal(split.popularity, split.past.distinct_users_per_item(len(catalog)))
    warm = split.segments["warm"]
    for context, targets, exclude in zip(warm.contexts, warm.targets, warm.exclude, strict=True):
        sequence = log.item[log.user_ids == context.user_id]
        assert targets.tolist() == [sequence[-1]] and sequence[-1] not in sequence[:-1]
        assert context.items.tolist() == sequence[:-1].tolist() and set(exclude) == set(sequence[:-1])
    assert [c.user_id for c in warm.contexts] == sorted(c.user_id for c in warm.contexts)
    for k in (0, 1, 3):
        segment = split.segments[f"cold k={k}"]
        for context, targets in zip(segment.contexts, segment.targets, strict=True):
            sequence = log.item[log.user_ids == context.user_id]
            assert context.user_id in cold and len(context.items) == k
            assert set(targets) == set(sequence[k:]) - set(sequence[:k]) and len(targets)
    # validation: the same procedure on the training log, its own salt and seed
    val = validation_user_split(split.past, catalog)
    assert {c.user_id for s in val.segments.values() for c in s.contexts} <= set(split.past.users)
    assert val.info["salt"] == "validation:" and val.info["seed"] == 1


def test_the_warm_sample_is_seeded_and_capped():
    log, catalog = toy_log()
    a = build_user_split(log, catalog, warm_sample=5)
    b = build_user_split(log, catalog, warm_sample=5, seed=1)
    ids = [c.user_id for c in a.segments["warm"].contexts]
    assert len(ids) == 5 and ids == [c.user_id for c in build_user_split(log, catalog, warm_sample=5)
                                     .segments["warm"].contexts]
    assert ids != [c.user_id for c in b.segments["warm"].contexts]


def test_an_untimed_log_refuses_the_time_split_and_time_models():
    log, catalog = toy_log()
    dataset = Dataset("toy", catalog, log)
    with pytest.raises(ValueError, match="no timestamps"):
        prepare_splits(dataset, "time")
    evaluation = run_evaluation(dataset, ["pop", "pop30"], tune=False, split="users")
    assert [r.name for r in evaluation.results] == ["pop"]
    assert evaluation.notes and "pop30" in evaluation.notes[0]
    assert evaluation.segment_names() == ["cold k=0", "cold k=1", "cold k=3", "warm"]
