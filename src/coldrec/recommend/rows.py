"""Per-item arrays that grow by a few rows at a time without copying all of them each time.

A live shop adds items one request at a time. Appending to a 100k x 384 array by
`np.concatenate` copies it whole (tenths of a second, more on a loaded machine); here each
array is a view of a larger buffer, so an append only writes the new rows, and the buffer
is reallocated (with room to spare) once it is full.
"""

from __future__ import annotations

from typing import Any

import numpy as np

ROOM_FRACTION = 0.25  # spare rows on reallocation, as a fraction of the rows held: amortised O(1) appends
MIN_ROOM = 1024


def append_rows(buffers: dict[str, np.ndarray], key: str, array: np.ndarray, count: int, fill) -> np.ndarray:
    """`array` followed by `count` rows of `fill`: a view of `buffers[key]`, reallocated only when full.

    An `array` that is not the view this function returned last for `key` (refit, loaded,
    replaced) is copied into a new buffer first.
    """
    n = len(array)
    buffer = buffers.get(key)
    if buffer is None or not _is_head_of(array, buffer) or len(buffer) < n + count:
        room = max(MIN_ROOM, int((n + count) * ROOM_FRACTION))
        buffer = np.empty((n + count + room, *array.shape[1:]), array.dtype)
        buffer[:n] = array
        buffers[key] = buffer
    buffer[n : n + count] = fill
    return buffer[: n + count]


def _is_head_of(array: np.ndarray, buffer: np.ndarray) -> bool:
    return (
        array.base is buffer
        and array.dtype == buffer.dtype
        and array.shape[1:] == buffer.shape[1:]
        and array.strides == buffer.strides
        and array.ctypes.data == buffer.ctypes.data
    )


def reserve_rows(buffers: dict[str, np.ndarray], key: str, array: np.ndarray, count: int) -> np.ndarray:
    """`array`'s rows as a view of a buffer with room for `count` more (copied into a new one when it has less).

    The contents do not change, so a reader holding the old array is unaffected: a writer can make room
    before it takes the lock readers wait for, and the append under the lock only writes the new rows.
    """
    n = len(array)
    buffer = buffers.get(key)
    if buffer is not None and _is_head_of(array, buffer) and len(buffer) >= n + count:
        return array
    room = max(MIN_ROOM, int((n + count) * ROOM_FRACTION), count)
    buffer = np.empty((n + room, *array.shape[1:]), array.dtype)
    buffer[:n] = array
    buffers[key] = buffer
    return buffer[:n]


def row_buffers(owner: Any) -> dict[str, np.ndarray]:
    """`owner`'s buffers behind its per-item arrays, in its `_buffers` attribute (made on first use; owners list
    it as transient: a saved or loaded object starts with none)."""
    buffers: dict[str, np.ndarray] | None = getattr(owner, "_buffers", None)
    if buffers is None:
        buffers = {}
        owner._buffers = buffers
    return buffers


def grow_fields(owner: object, fields, count: int) -> None:
    """`append_rows` on each of `owner`'s per-item arrays (`fields`: (attribute, fill) pairs)."""
    buffers = row_buffers(owner)
    for name, fill in fields:
        setattr(owner, name, append_rows(buffers, name, np.asarray(getattr(owner, name)), count, fill))


def reserve_fields(owner: object, fields, count: int) -> None:
    """`reserve_rows` on each of `owner`'s per-item arrays (`fields`: (attribute, fill) pairs)."""
    buffers = row_buffers(owner)
    for name, _ in fields:
        setattr(owner, name, reserve_rows(buffers, name, np.asarray(getattr(owner, name)), count))
