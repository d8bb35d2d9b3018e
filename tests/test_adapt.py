"""Adapting the encoder to the shop (coldrec.adapt): pairs, augmentation, training, fingerprints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from coldrec.adapt import (
    AdaptConfig,
    AugmentConfig,
    PairKind,
    TrainConfig,
    pairs_from_log,
    training_pairs,
)
from coldrec.adapt.augment import (
    augment_history,
    augment_sequences,
    item_queries,
    pseudo_label_pairs,
    synthetic_queries,
    typo,
)
from coldrec.adapt.encoder import HeadEncoder
from coldrec.adapt.pairs import NO_ITEM
from coldrec.adapt.towers import HeadTower, make_head
from coldrec.adapt.train import held_out_recall, train_tower
from coldrec.data import InteractionLog, ItemCatalog
from coldrec.data.split import time_cut
from tests.synthetic import FakeEncoder
from tests.test_coldstart import make_shop

DAY = 86_400


@pytest.fixture(scope="module")
def shop():
    return make_shop(n_users=200)


def test_pairs_use_nothing_after_the_cut(shop):
    _, log = shop
    cut = time_cut(log)
    after = np.unique(log.item[log.time > cut])
    only_later = np.setdiff1d(after, log.item[log.time <= cut])
    pairs = pairs_from_log(log, cut=cut)
    assert len(pairs) and pairs.time.max() <= cut
    used = np.concatenate([pairs.history[pairs.history != NO_ITEM], pairs.target])
    assert not np.isin(used, only_later).any()
    # every pair's items are events of that time or earlier: the future alone gives new pairs
    assert len(pairs_from_log(log).after(cut)) > 0
    assert len(pairs_from_log(log).before(cut)) == len(pairs.select(np.flatnonzero(pairs.kind != PairKind.CO_BOUGHT))) + int(
        (pairs.kind == PairKind.CO_BOUGHT).sum())


def test_pairs_kinds_from_a_log_with_queries_and_baskets():
    log = InteractionLog.from_arrays(
        ["a", "a", "a", "b", "b"], [0, 1, 2, 3, 4], [10, 20, 20, 30, 40], query=[None, "red pen", None, "ink", None]
    )
    pairs = pairs_from_log(log, max_history=2)
    counts = pairs.counts()
    assert counts == {"sequence": 3, "query": 2, "co_bought": 2}
    sequence = pairs.select(np.flatnonzero(pairs.kind == PairKind.SEQUENCE))
    assert sequence.history.tolist()[1] == [0, 1] and sequence.target[1] == 2  # recent items, most recent last
    query = pairs.select(np.flatnonzero(pairs.kind == PairKind.QUERY))
    assert [query.texts[i] for i in query.text] == ["red pen", "ink"] and query.target.tolist() == [1, 3]
    co = pairs.select(np.flatnonzero(pairs.kind == PairKind.CO_BOUGHT))
    assert sorted(zip(co.history[:, -1], co.target)) == [(1, 2), (2, 1)]


def test_sequence_augmentation_keeps_shape_and_items():
    rng = np.random.default_rng(0)
    history = np.array([NO_ITEM, 3, 4, 5, 6])
    for _ in range(50):
        out = augment_history(history, rng)
        kept = out[out != NO_ITEM]
        assert out.shape == history.shape and 1 <= len(kept) <= 4 and set(kept) <= {3, 4, 5, 6}
        assert (out[: len(out) - len(kept)] == NO_ITEM).all()  # still left-padded
    masked = [augment_history(history, rng, crop=False, reorder=False, mask_prob=0.5) for _ in range(50)]
    assert any((m != NO_ITEM).sum() < 4 for m in masked)
    assert all(list(m[m != NO_ITEM]) == sorted(m[m != NO_ITEM]) for m in masked)  # masks keep order
    reordered = [augment_history(history, rng, crop=False, mask=False) for _ in range(50)]
    assert all(sorted(r[1:]) == [3, 4, 5, 6] for r in reordered) and any(list(r[1:]) != [3, 4, 5, 6] for r in reordered)
    cropped = [augment_history(history, rng, mask=False, reorder=False) for _ in range(50)]
    for c in cropped:  # a contiguous window of the original
        kept = list(c[c != NO_ITEM])
        start = [3, 4, 5, 6].index(kept[0])
        assert kept == [3, 4, 5, 6][start : start + len(kept)]


def test_augment_sequences_copies_only_multi_item_histories(shop):
    _, log = shop
    pairs = pairs_from_log(log)
    out = augment_sequences(pairs, np.random.default_rng(0), AugmentConfig(sequence_copies=2))
    eligible = ((pairs.kind == PairKind.SEQUENCE) & ((pairs.history != NO_ITEM).sum(1) > 1)).sum()
    assert len(out) == 2 * eligible and (out.kind == PairKind.SEQUENCE).all()
    assert out.history.shape[1] == pairs.max_history and out.time.max() <= pairs.time.max()


def test_typo_noise_changes_the_text():
    rng = np.random.default_rng(0)
    texts = ["stapler heavy duty", "black ink cartridge", "mesh office chair"]
    for text in texts * 20:
        noisy = typo(text, rng)
        assert noisy != text and abs(len(noisy) - len(text)) <= 1 and noisy.count(" ") == text.count(" ")
    assert typo("a 12 xy", rng) == "a 12 xy"  # nothing to misspell


def test_synthetic_queries_point_at_their_items():
    catalog = ItemCatalog.from_records(
        ["1", "2"], ["Swingline heavy duty stapler black", "Ink cartridge"], brand=["Swingline", ""],
        category=["Office > Staplers", "Office > Printer Ink"],
    )
    rng = np.random.default_rng(0)
    queries = item_queries("Swingline heavy duty stapler black", "Staplers", "Swingline", {"colour": "black"}, rng, count=5)
    assert "swingline staplers" in queries and "black colour" in queries and len(set(queries)) == len(queries)
    pairs = synthetic_queries(catalog, rng, AugmentConfig(queries_per_item=3, typo_prob=0.0))
    assert set(pairs.target) == {0, 1} and (pairs.kind == PairKind.SYNTHETIC_QUERY).all()
    for text, target in zip(pairs.texts, pairs.target):
        words = set(catalog.texts()[target].lower().replace(".", " ").split())
        assert set(text.split()) <= words


def test_pseudo_labels_link_new_items_to_nearest_established():
    vectors = np.eye(4, dtype=np.float32)[[0, 1, 2, 0, 1]]  # item 3 is a copy of 0, item 4 of 1
    vectors[4] = [0.6, 0.8, 0, 0]
    established = np.array([True, True, True, False, False])
    pairs = pseudo_label_pairs(vectors, established, neighbours=1, min_similarity=0.5)
    assert sorted(zip(pairs.history[:, -1], pairs.target)) == [(3, 0), (4, 1)]
    assert established[pairs.target].all() and not established[pairs.history[:, -1]].any()
    assert len(pseudo_label_pairs(vectors, established, neighbours=1, min_similarity=0.99)) == 1


def test_training_pairs_switches(shop):
    catalog, log = shop
    vectors = FakeEncoder().encode(catalog.texts())
    cut = time_cut(log)
    plain = training_pairs(log, catalog, vectors, AdaptConfig(augment=AugmentConfig.off()), cut=cut)
    full = training_pairs(log, catalog, vectors, AdaptConfig(), cut=cut)
    assert set(plain.counts()) <= {"sequence", "co_bought", "query"}
    assert full.counts()["synthetic_query"] > 0 and len(full) > len(plain)
    # only the sequence pairs of the past are altered copies; none is after the cut
    assert full.time.max() <= cut


def _planted_shop(n_clusters: int = 4, per_cluster: int = 30, seed: int = 0):
    """Items of cluster c share words; shoppers who buy from cluster c buy next from c + 1."""
    rng = np.random.default_rng(seed)
    words = [[f"w{c}x{j}" for j in range(6)] for c in range(n_clusters)]
    titles = [" ".join(rng.choice(words[c], 3, replace=False)) + f" n{c}y{i}" for c in range(n_clusters) for i in range(per_cluster)]
    encoder = FakeEncoder()
    vectors = encoder.encode(titles)
    histories, targets = [], []
    for _ in range(1500):
        c = int(rng.integers(n_clusters))
        histories.append(c * per_cluster + rng.integers(per_cluster))
        targets.append(((c + 1) % n_clusters) * per_cluster + rng.integers(per_cluster))
    history = np.full((1500, 5), NO_ITEM)
    history[:, -1] = histories
    from coldrec.adapt.pairs import TrainingPairs

    pairs = TrainingPairs.from_items(history, np.array(targets), PairKind.SEQUENCE)
    return vectors, pairs.select(np.arange(1200)), pairs.select(np.arange(1200, 1500))


# the residual head keeps the identity path, so it leaves the text space (where the planted
# partner cluster is far) more slowly than a linear map: a smaller gain is asked of it
@pytest.mark.parametrize(("head", "learning_rate", "gain"), [("linear", 1e-2, 0.2), ("residual", 3e-3, 0.08)])
def test_head_learns_a_planted_signal(head, learning_rate, gain):
    vectors, train, held_out = _planted_shop()
    tower = HeadTower(make_head(head, vectors.shape[1], 256, dropout=0.0), vectors, np.zeros((0, vectors.shape[1])))
    config = TrainConfig(epochs=6, batch_size=128, learning_rate=learning_rate, negatives="catalog", patience=6, threads=1,
                         show_progress=False)
    before = held_out_recall(tower, held_out, config, "cpu")
    report = train_tower(tower, train, held_out, config)
    after = held_out_recall(tower, held_out, config, "cpu")
    assert before < 0.05 and after > before + gain and report.best_epoch > 0  # perfect: 20 of 30 = 0.67


def test_in_batch_training_with_hard_negatives_runs_and_keeps_the_best_epoch():
    vectors, train, held_out = _planted_shop()
    tower = HeadTower(make_head("linear", vectors.shape[1]), vectors, np.zeros((0, vectors.shape[1])))
    config = TrainConfig(epochs=3, batch_size=128, learning_rate=3e-3, hard_negatives=2, patience=3, threads=1,
                         show_progress=False)
    report = train_tower(tower, train, held_out, config)
    recalls = [h["held_out_recall"] for h in report.history]
    assert len(recalls) == 4 and held_out_recall(tower, held_out, config, "cpu") == pytest.approx(max(recalls), abs=1e-6)


def test_fingerprint_follows_the_weights(tmp_path):
    base = FakeEncoder()
    head = make_head("linear", base.dim)
    first = HeadEncoder(base, head, {"kind": "linear", "dim": base.dim})
    same = HeadEncoder(base, make_head("linear", base.dim), {"kind": "linear", "dim": base.dim})
    assert first.fingerprint == same.fingerprint != base.fingerprint
    with torch.no_grad():
        head.projection.weight[0, 1] += 0.01
    changed = HeadEncoder(base, head, {"kind": "linear", "dim": base.dim})
    assert changed.fingerprint != first.fingerprint
    assert HeadEncoder(FakeEncoder("other-base"), head, {"kind": "linear", "dim": base.dim}).fingerprint != changed.fingerprint
    loaded = HeadEncoder.load(changed.save(tmp_path / "head"), base)
    assert loaded.fingerprint == changed.fingerprint
    texts = ["stapler paper", "router cable"]
    np.testing.assert_allclose(loaded.encode(texts), changed.encode(texts), atol=1e-6)
    with pytest.raises(ValueError):
        HeadEncoder.load(tmp_path / "head", FakeEncoder("other-base"))


def test_identity_head_keeps_the_base_vectors():
    base = FakeEncoder()
    encoder = HeadEncoder(base, make_head("linear", base.dim), {"kind": "linear", "dim": base.dim})
    texts = ["stapler paper", "router cable mouse"]
    np.testing.assert_allclose(encoder.encode(texts), base.encode(texts), atol=1e-6)


def test_adapted_recommender_fits_and_scores(shop):
    from coldrec.data import UserContext
    from coldrec.recommend.adapted import AdaptedColdStartRecommender
    from coldrec.recommend.registry import model_class, resolve_names

    catalog, log = shop
    base = FakeEncoder()
    model = AdaptedColdStartRecommender(encoder=base, epochs=2, max_training_users=200)
    model.fit(log, catalog)
    assert model._base_encoder is base and model.adaptation_.report.epochs_run >= 1
    assert (model.encoder.fingerprint != base.fingerprint) == (model.adaptation_.report.best_epoch > 0)
    contexts = [UserContext(items=[0, 1]), UserContext(interests=["Staplers"]), UserContext()]
    scores = model.score(contexts)
    assert scores.shape == (3, len(catalog)) and np.isfinite(scores).all()
    model.fit(log, catalog)  # a refit adapts the base encoder again, not the adapted one
    assert model._base_encoder is base
    assert model_class("coldrec-adapter-noaug").param_grid[0]["synthetic_queries"] is False
    assert "coldrec-adapter" in resolve_names("all") and "coldrec-lora" not in resolve_names("all")


def _transformer_smoke(mode: str):
    from coldrec.adapt.adapter import _adapt_transformer
    from coldrec.adapt.pairs import TrainingPairs

    texts = ["heavy duty stapler", "staples box", "black ink cartridge", "printer paper"]
    history = np.full((4, 5), NO_ITEM)
    history[:, -1] = [0, 1, 2, 3]
    pairs = TrainingPairs.from_items(history, np.array([1, 0, 3, 2]), PairKind.CO_BOUGHT)
    config = AdaptConfig.for_mode(mode, train=TrainConfig(epochs=1, batch_size=4, hard_negatives=1, hard_pool=2,
                                                            show_progress=False, learning_rate=1e-4))
    encoder, report = _adapt_transformer(FakeEncoder(), texts, pairs, pairs, config, config.train, "cpu", None)
    vectors = encoder.encode(texts)
    assert vectors.shape == (4, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-4)
    assert report.epochs_run == 1 and len(encoder.fingerprint) == 16


@pytest.mark.slow
def test_lora_smoke():
    _transformer_smoke("lora")


@pytest.mark.slow
def test_full_fine_tuning_smoke():
    _transformer_smoke("full")
