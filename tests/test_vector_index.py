"""`coldrec.retrieve.index.VectorIndex`: exact and IVF top-k, live adds, removals, storage."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from coldrec.retrieve.index import TIE_MARGIN, VectorIndex, ivf_lists


def _numpy_top(queries: np.ndarray, vectors: np.ndarray, positions: np.ndarray, k: int):
    """Score desc, position asc, by brute force."""
    scores = queries @ vectors.T
    order = np.lexsort((np.broadcast_to(positions, scores.shape), -scores), axis=1)[:, :k]
    return np.take_along_axis(scores, order, axis=1), positions[order]


def _clustered(n: int, dim: int, clusters: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    x = centres[rng.integers(0, clusters, n)] + 0.3 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_exact_matches_numpy_top_k_with_ties_by_position():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    x[[40, 120, 250]] = x[7]  # exact duplicates: ordered by position
    q = rng.normal(size=(30, 8)).astype(np.float32)
    q[0] = x[7]
    index = VectorIndex(kind="exact").fit(x)
    assert (len(index), index.dim, index.is_approximate) == (300, 8, False)
    scores, positions = index.search(q, 10)
    assert scores.dtype == np.float32 and positions.dtype == np.int64 and scores.shape == (30, 10)
    want_scores, want_positions = _numpy_top(q, x, np.arange(300), 10)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-5)
    assert (positions == want_positions).mean() > 0.99  # float rounding may swap near-ties
    assert positions[0, :4].tolist() == [7, 40, 120, 250]


def test_ties_past_the_margin_are_exact_and_zero_queries_are_answered():
    x = np.ones((TIE_MARGIN * 4, 4), np.float32)  # every vector ties
    index = VectorIndex(kind="exact").fit(x)
    scores, positions = index.search(np.ones((2, 4), np.float32), 5)
    assert positions.tolist() == [[0, 1, 2, 3, 4]] * 2
    _, positions = index.search(np.zeros((1, 4), np.float32), 3)  # all scores 0: ties by position
    assert positions.tolist() == [[0, 1, 2]]


def test_padding_when_k_exceeds_the_vectors_held():
    index = VectorIndex(kind="exact").fit(np.eye(3, dtype=np.float32))
    scores, positions = index.search(np.eye(3, dtype=np.float32)[:1], 5)
    assert positions.tolist() == [[0, 1, 2, -1, -1]]
    assert scores[0, 0] == 1.0 and np.isneginf(scores[0, 3:]).all()
    empty = VectorIndex()
    scores, positions = empty.search(np.ones((2, 3), np.float32), 4)
    assert (positions == -1).all() and np.isneginf(scores).all() and len(empty) == 0


@pytest.mark.parametrize("kind", ["exact", "ivf"])
def test_add_replace_remove(kind):
    x = _clustered(2000, 16, 20)
    index = VectorIndex(kind=kind).fit(x)
    assert index.is_approximate == (kind == "ivf")
    rng = np.random.default_rng(1)
    new = rng.normal(size=(2, 16)).astype(np.float32)
    new /= np.linalg.norm(new, axis=1, keepdims=True)
    index.add(np.array([2000, 5]), new)  # one new position, one replaced
    assert len(index) == 2001
    scores, positions = index.search(new, 1)
    assert positions[:, 0].tolist() == [2000, 5]  # the live part is exact: always found
    np.testing.assert_allclose(scores[:, 0], 1.0, rtol=1e-5)
    _, positions = index.search(x[[5]], 3)
    assert 5 not in positions[0] or np.isclose(float(new[1] @ x[5]), 1.0)  # the old vector is gone
    index.remove(np.array([5, 7, 99_999]))  # unknown positions are ignored
    assert len(index) == 1999
    _, positions = index.search(np.vstack([new[1], x[7]]), 50)
    assert 5 not in positions and 7 not in positions
    index.add(np.array([9, 9]), np.vstack([new[0], x[9]]))  # given twice: the last vector wins
    assert len(index) == 1999
    _, positions = index.search(x[[9]], 1)
    assert positions[0, 0] == 9


def test_ivf_recall_on_clustered_vectors():
    x = _clustered(6000, 32, 40)
    q = _clustered(200, 32, 40, seed=1)
    exact = VectorIndex(kind="exact").fit(x)
    ivf = VectorIndex(kind="auto", ivf_from=5000).fit(x)
    assert ivf.is_approximate and ivf.nprobe == 32
    assert ivf_lists(6000) == int(4 * np.sqrt(6000))
    _, want = exact.search(q, 10)
    _, got = ivf.search(q, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(want, got, strict=True)])
    assert recall > 0.9
    assert not VectorIndex(kind="auto", ivf_from=6001).fit(x).is_approximate


def test_save_load_and_pickle_round_trip(tmp_path):
    x = _clustered(3000, 16, 10)
    index = VectorIndex(kind="ivf", nprobe=8).fit(x)
    index.add(np.array([3000]), x[:1])
    index.remove(np.array([10]))
    q = _clustered(20, 16, 10, seed=2)
    before = index.search(q, 10)
    assert index.save(tmp_path, "items") == ["items.faiss", "items_live.faiss"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["items.faiss", "items_live.faiss"]
    loaded = VectorIndex.load(tmp_path, "items", nprobe=8)
    assert (len(loaded), loaded.dim, loaded.is_approximate, loaded.nprobe) == (3000, 16, True, 8)
    for a, b in zip(before, loaded.search(q, 10), strict=True):
        np.testing.assert_array_equal(a, b)
    assert VectorIndex.load(tmp_path, "items").nprobe == 32
    restored = pickle.loads(pickle.dumps(index))
    for a, b in zip(before, restored.search(q, 10), strict=True):
        np.testing.assert_array_equal(a, b)


def test_bad_input_is_refused():
    with pytest.raises(ValueError):
        VectorIndex(kind="hnsw")
    index = VectorIndex(kind="exact").fit(np.eye(4, dtype=np.float32))
    with pytest.raises(ValueError):
        index.search(np.ones((1, 3), np.float32), 2)
    with pytest.raises(ValueError):
        index.add(np.array([1, 2]), np.ones((1, 4), np.float32))
    with pytest.raises(ValueError):
        index.add(np.array([-1]), np.ones((1, 4), np.float32))
