"""`data_fingerprint`: a sha256 over the data a model was fitted on, the same in every run and process."""

from __future__ import annotations

import hashlib
import struct
from typing import Any, cast

import numpy as np


def data_fingerprint(*parts: Any) -> str:
    """sha256 hex over `parts`: ndarrays (dtype, shape, values), str, bytes, numbers, None, lists, tuples,
    dicts (in their order), scipy.sparse matrices and pandas Series / DataFrames / Index (names and values;
    a frame's or series' index is left out). Equal data gives equal digests across runs and processes."""
    digest = hashlib.sha256(b"coldrec-fingerprint-1")
    for part in parts:
        _feed(digest, part)
    return digest.hexdigest()


def _tag(digest: Any, tag: bytes, payload: bytes = b"") -> None:
    digest.update(tag + struct.pack("<Q", len(payload)) + payload)


def _feed(digest: Any, value: Any) -> None:
    kind = type(value)
    if value is None:
        _tag(digest, b"N")
    elif kind is bool:
        _tag(digest, b"B", b"1" if value else b"0")
    elif kind is int:
        _tag(digest, b"I", str(value).encode())
    elif kind is float:
        _tag(digest, b"F", value.hex().encode())
    elif kind is str:
        _tag(digest, b"S", value.encode("utf-8", "surrogatepass"))
    elif kind in (bytes, bytearray, memoryview):
        _tag(digest, b"Y", bytes(value))
    elif isinstance(value, np.generic):
        _array(digest, np.asarray(value))
    elif isinstance(value, np.ndarray):
        _array(digest, value)
    elif kind in (list, tuple):
        _tag(digest, b"L" if kind is list else b"T", struct.pack("<Q", len(value)))
        for item in value:
            _feed(digest, item)
    elif kind is dict:
        _tag(digest, b"D", struct.pack("<Q", len(value)))
        for key, item in value.items():
            _feed(digest, key)
            _feed(digest, item)
    else:
        _other(digest, value)


def _other(digest: Any, value: Any) -> None:
    module = type(value).__module__
    if module.startswith("pandas"):
        import pandas as pd

        if isinstance(value, pd.DataFrame):
            _tag(digest, b"PF", struct.pack("<Q", value.shape[1]))
            for name in value.columns:
                _feed(digest, name)
                _array(digest, value[name].to_numpy())
            return
        if isinstance(value, pd.Series):
            _tag(digest, b"PS")
            _feed(digest, value.name)
            _array(digest, value.to_numpy())
            return
        if isinstance(value, pd.Index):
            _tag(digest, b"PI")
            _array(digest, value.to_numpy())
            return
    if module.startswith("scipy.sparse"):
        import scipy.sparse as sp

        if sp.issparse(value):
            csr = cast(Any, value).tocsr(copy=True)
            csr.sum_duplicates()
            csr.sort_indices()
            _tag(digest, b"SP", struct.pack("<QQ", *csr.shape))
            for array in (csr.indptr.astype(np.int64), csr.indices.astype(np.int64), csr.data):
                _array(digest, array)
            return
    raise TypeError(f"data_fingerprint takes arrays, str, numbers, lists, dicts, sparse matrices and pandas "
                    f"objects, not {type(value).__name__}")


def _array(digest: Any, array: np.ndarray) -> None:
    shape = struct.pack(f"<{array.ndim}Q", *array.shape)
    if array.dtype.hasobject:
        _tag(digest, b"AO", shape)
        for item in array.ravel(order="C"):
            _feed(digest, item.item() if isinstance(item, np.generic) else _scalar(item))
        return
    _tag(digest, b"A" + array.dtype.str.encode(), shape)
    data = np.ascontiguousarray(array)
    digest.update(struct.pack("<Q", data.nbytes))
    digest.update(data.reshape(-1).view(np.uint8).data if data.size else b"")


def _scalar(item: Any) -> Any:
    """An object array's element as a value `_feed` takes (NaN, NA and NaT as None)."""
    if item is None or type(item) in (str, int, float, bool, bytes):
        return item
    import pandas as pd

    if item is pd.NA or item is pd.NaT:
        return None
    if isinstance(item, pd.Timestamp):
        return str(item)
    return item
