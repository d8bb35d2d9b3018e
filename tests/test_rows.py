"""Per-item arrays that grow in place: appends write only the new rows until the buffer is full."""

from __future__ import annotations

import pickle

import numpy as np

from coldrec.recommend.rows import MIN_ROOM, append_rows


def test_appends_reuse_the_buffer_until_it_is_full_then_keep_every_row():
    buffers: dict[str, np.ndarray] = {}
    original = np.arange(12, dtype=np.float32).reshape(4, 3)
    grown = append_rows(buffers, "v", original, 2, 0)
    assert grown.shape == (6, 3) and np.array_equal(grown[:4], original) and not grown[4:].any()
    assert grown.base is buffers["v"] and not np.shares_memory(grown, original)  # the first call copies

    first = buffers["v"]
    grown[4] = 7  # rows written through the view stay when the array grows again
    again = append_rows(buffers, "v", grown, 3, np.nan)
    assert buffers["v"] is first and again.ctypes.data == grown.ctypes.data  # no copy: same memory
    assert again.shape == (9, 3) and (again[4] == 7).all() and np.isnan(again[6:]).all()
    assert grown.shape == (6, 3)  # an older view (a reader's snapshot) is unchanged

    full = append_rows(buffers, "v", again, len(first) - 9 + 1, 1)  # one row more than the room left
    assert buffers["v"] is not first and len(buffers["v"]) >= len(full) + MIN_ROOM
    assert np.array_equal(full[:4], original) and (full[4] == 7).all() and (full[9:] == 1).all()


def test_an_array_replaced_elsewhere_is_copied_not_mixed_up():
    buffers: dict[str, np.ndarray] = {}
    grown = append_rows(buffers, "v", np.zeros(5, np.int64), 1, 3)
    refit = np.arange(8, dtype=np.int64)  # e.g. a refit assigned a new array
    result = append_rows(buffers, "v", refit, 1, -1)
    assert list(result) == [*range(8), -1] and list(grown) == [0] * 5 + [3]
    other = append_rows(buffers, "w", grown, 0, 0)  # another key never writes into this key's buffer
    assert other.base is buffers["w"] and buffers["w"] is not buffers["v"]


def test_a_pickled_view_holds_only_its_own_rows():
    buffers: dict[str, np.ndarray] = {}
    grown = append_rows(buffers, "v", np.ones((100, 8), np.float32), 1, 0)
    restored = pickle.loads(pickle.dumps(grown, protocol=pickle.HIGHEST_PROTOCOL))
    assert restored.shape == (101, 8) and np.array_equal(restored, grown)
    assert len(pickle.dumps(grown)) < buffers["v"].nbytes / 2
