"""SASRec: it learns the direction of a sequence, saves as data, stops early and starts from text when asked."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from coldrec.data import InteractionLog, ItemCatalog
from coldrec.encode.hashing import HashingEncoder
from coldrec.model import data_fingerprint, load_model, save_model
from coldrec.recommend import UserContext
from coldrec.recommend.baselines import ItemKNNRecommender
from coldrec.recommend.baselines.sasrec import INIT_STD, SASRecRecommender

N_ITEMS = 300
GROUP = 10  # items j and k share title words when j // GROUP == k // GROUP
# small and quick: a fit takes about a second
FAST = {"dim": 32, "blocks": 1, "max_length": 10, "dropout": 0.1, "learning_rate": 1e-2, "max_epochs": 30}


def walks(n_users: int = 400, noise: float = 0.1, seed: int = 0) -> InteractionLog:
    """Each user walks a ring, i -> i + 1 (mod N_ITEMS), jumping to a random item with probability `noise`."""
    rng = np.random.default_rng(seed)
    users, items, times = [], [], []
    t = 0
    for u in range(n_users):
        at = int(rng.integers(N_ITEMS))
        for _ in range(int(rng.integers(6, 12))):
            users.append(f"u{u}")
            items.append(at)
            times.append(t)
            t += 1
            at = (at + 1) % N_ITEMS if rng.random() > noise else int(rng.integers(N_ITEMS))
    return InteractionLog.from_arrays(users, items, times)


def prefixes(n: int = 200, seed: int = 1) -> tuple[list[UserContext], np.ndarray]:
    """Three consecutive ring items per shopper, and the item that follows them."""
    starts = np.random.default_rng(seed).integers(N_ITEMS, size=n)
    contexts = [UserContext(items=(s + np.arange(3)) % N_ITEMS) for s in starts]
    return contexts, (starts + 3) % N_ITEMS


def hit_rates(model, contexts, targets) -> tuple[float, float]:
    """(hit rate @10, hit rate @1) of the next item, the context's items excluded."""
    top, _ = model.recommend(contexts, 10, exclude=[c.items for c in contexts])
    return float(np.mean([t in row for t, row in zip(targets, top, strict=True)])), float(np.mean(top[:, 0] == targets))


@pytest.fixture(scope="module")
def catalog() -> ItemCatalog:
    ids = [f"i{j}" for j in range(N_ITEMS)]
    return ItemCatalog.from_records(ids, [f"shade{j // GROUP} tone{j // GROUP} item{j}" for j in range(N_ITEMS)])


@pytest.fixture(scope="module")
def log() -> InteractionLog:
    return walks()


@pytest.fixture(scope="module")
def fitted(log, catalog) -> SASRecRecommender:
    import torch

    threads = torch.get_num_threads()
    model = SASRecRecommender(**FAST).fit(log, catalog)
    assert torch.get_num_threads() == threads  # restored
    return model


def test_importing_the_module_does_not_import_torch():
    code = ("import sys, coldrec.recommend.baselines, coldrec.recommend.baselines.sasrec; "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


def test_learns_the_direction_that_co_occurrence_cannot_see(fitted, log, catalog):
    contexts, targets = prefixes()
    hit10, hit1 = hit_rates(fitted, contexts, targets)
    knn10, knn1 = hit_rates(ItemKNNRecommender().fit(log, catalog), contexts, targets)
    # measured: SASRec 1.00 / 0.995; item-kNN 1.00 / 0.52. kNN's top 10 holds both neighbours of the prefix,
    # i + 3 and i - 1 (symmetric co-occurrence), but it cannot tell which one comes next: a coin flip at the top
    assert hit10 > 0.9
    assert hit1 > 0.85
    assert knn1 < 0.7
    assert hit1 > knn1 + 0.25


def test_a_position_sees_no_later_item_and_no_padding(fitted):
    import torch

    net = fitted.network()
    tokens = torch.tensor([[0, 0, 5, 6, 7, 8], [0, 0, 5, 6, 7, 90], [0, 1, 5, 6, 7, 8]])
    with torch.inference_mode():
        hidden = net(tokens)
        unpadded = net(tokens[:1, 2:])
    torch.testing.assert_close(hidden[1, :5], hidden[0, :5])  # only the last item differs
    assert not torch.allclose(hidden[1, 5], hidden[0, 5])
    torch.testing.assert_close(unpadded[0], hidden[0, 2:])  # padding changes nothing
    assert not torch.allclose(hidden[2, 5], hidden[0, 5])  # an earlier item does


def test_a_context_without_known_items_scores_all_equal(fitted):
    unknown = UserContext(items=np.array([N_ITEMS, N_ITEMS + 5]))  # positions added after the fit
    scores = fitted.score([UserContext(), unknown, UserContext(items=np.array([4, 5]))])
    assert scores.shape == (3, N_ITEMS) and scores.dtype == np.float32
    assert np.all(scores[0] == 0) and np.all(scores[1] == 0)
    assert scores[2].std() > 0
    # unknown positions in a context are ignored, not an error
    with_unknown = fitted.score([UserContext(items=np.array([4, N_ITEMS + 1, 5]))])
    np.testing.assert_array_equal(with_unknown[0], scores[2])


def test_only_the_last_max_length_items_count(fitted):
    recent = np.arange(100, 100 + FAST["max_length"])
    long = UserContext(items=np.concatenate([np.arange(40, 60), recent]))
    short = UserContext(items=recent)
    scores = fitted.score([long, short])
    np.testing.assert_allclose(scores[0], scores[1], rtol=1e-5, atol=1e-5)


def test_save_and_load_give_identical_scores_without_refitting(fitted, tmp_path, monkeypatch):
    contexts, _ = prefixes(50)
    contexts.append(UserContext())
    expected = fitted.score(contexts)  # builds the torch module: it must not be saved
    assert fitted._net is not None
    save_model(tmp_path / "m", fitted, kind="sasrec", params=fitted.get_params(), fingerprint=data_fingerprint("w"))
    loaded, manifest = load_model(tmp_path / "m", expected_kind="sasrec")
    assert manifest.params["text_init"] is False
    assert isinstance(loaded, SASRecRecommender) and loaded._net is None
    assert all(isinstance(v, np.ndarray) and v.dtype == np.float32 for v in loaded.weights_.values())

    def no_refit(*args, **kwargs):
        raise AssertionError("refitted")

    monkeypatch.setattr(loaded, "_fit", no_refit)
    np.testing.assert_array_equal(loaded.score(contexts), expected)
    assert loaded.epochs_ == fitted.epochs_ and loaded.validation_ndcg_ == fitted.validation_ndcg_


def test_early_stopping_keeps_the_best_epoch(fitted):
    assert 1 <= fitted.best_epoch_ <= fitted.epochs_ <= FAST["max_epochs"]
    if fitted.epochs_ < FAST["max_epochs"]:  # stopped by patience: that many epochs after the best
        assert fitted.epochs_ - fitted.best_epoch_ >= fitted.patience
        assert fitted.epochs_ - fitted.best_epoch_ == fitted.patience or fitted.epochs_ == fitted.min_epochs
    assert 0 < fitted.validation_ndcg_ <= 1
    assert fitted.validation_ndcg_ > 0.5  # measured 0.92 (10% of the walks' steps are random jumps)


def test_patience_waits_for_min_epochs(log, catalog):
    model = SASRecRecommender(**{**FAST, "patience": 1, "min_epochs": 4, "max_epochs": 6}).fit(log, catalog)
    assert 4 <= model.epochs_ <= 6


def test_the_time_budget_stops_after_one_batch(log, catalog):
    model = SASRecRecommender(**{**FAST, "max_seconds": 0.0}).fit(log, catalog)
    assert model.epochs_ == 1 and model.best_epoch_ == 1
    assert 0 <= model.validation_ndcg_ <= 1


def test_the_same_seed_gives_the_same_weights(log, catalog):
    quick = {**FAST, "max_epochs": 2}
    first, again = SASRecRecommender(**quick).fit(log, catalog), SASRecRecommender(**quick).fit(log, catalog)
    other = SASRecRecommender(**quick, random_state=1).fit(log, catalog)
    for key, value in first.weights_.items():
        np.testing.assert_array_equal(value, again.weights_[key])
    assert not np.array_equal(first.weights_["items.weight"], other.weights_["items.weight"])


def _group_similarity(table: np.ndarray) -> tuple[float, float]:
    """Mean cosine between item embeddings of the same title group, and between different groups."""
    unit = table / np.linalg.norm(table, axis=1, keepdims=True)
    cosine = unit @ unit.T
    group = np.arange(len(table)) // GROUP
    same = group[:, None] == group[None, :]
    np.fill_diagonal(same, False)
    different = group[:, None] != group[None, :]
    return float(cosine[same].mean()), float(cosine[different].mean())


def test_text_init_starts_the_item_embeddings_from_the_text(log, catalog):
    encoder = HashingEncoder(dim=128)
    start = SASRecRecommender(**{**FAST, "max_epochs": 0}, text_init=True, encoder=encoder).fit(log, catalog)
    table = start.weights_["items.weight"]
    assert np.all(table[0] == 0)  # padding
    assert table[1:].std() == pytest.approx(INIT_STD, rel=0.05)
    same, different = _group_similarity(table[1:])
    assert same > 0.5 and abs(different) < 0.1
    plain = SASRecRecommender(**{**FAST, "max_epochs": 0}).fit(log, catalog).weights_["items.weight"]
    assert plain[1:].std() == pytest.approx(INIT_STD, rel=0.05)
    assert _group_similarity(plain[1:])[0] < 0.1

    trained = SASRecRecommender(**{**FAST, "max_epochs": 10}, text_init=True, encoder=encoder).fit(log, catalog)
    contexts, targets = prefixes()
    assert hit_rates(trained, contexts, targets)[0] > 0.8
    assert trained.get_params()["text_init"] is True and "encoder" not in trained.get_params()


def test_the_grid_tries_both_initialisations():
    assert [p["text_init"] for p in SASRecRecommender.param_grid] == [False, True]
