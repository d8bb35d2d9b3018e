"""The parts of a model directory in their own formats: .npy arrays, parquet frames, LightGBM text models,
faiss index files. Writers return the node's metadata; readers never unpickle."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

BIT_GENERATORS = ("MT19937", "PCG64", "PCG64DXSM", "Philox", "SFC64")


class PartError(ValueError):
    """A value a part cannot hold (save) or a part that is not what the state says (load)."""


# ------------------------------------------------------------------ arrays

def array_to_save(array: np.ndarray) -> tuple[np.ndarray, bool]:
    """(the array np.save writes, whether it loads back as an object array of str)."""
    if type(array) not in (np.ndarray, np.memmap):
        raise PartError(f"a {type(array).__name__} (an ndarray subclass) is not saved; pass np.asarray(...)")
    if array.dtype.hasobject:
        if array.dtype != object:
            raise PartError(f"a structured array with Python objects ({array.dtype}) is not saved")
        if not all(type(x) is str for x in array.flat):
            kinds = sorted({type(x).__name__ for x in array.flat if type(x) is not str})
            raise PartError(f"an object array holding {', '.join(kinds)} is not saved (only all-str object arrays "
                            "are); convert it to a numeric or str dtype, or mark the attribute __transient__")
        if any(x.endswith("\x00") for x in array.flat):
            raise PartError("an object array holding strings that end in NUL is not saved (a unicode array drops them)")
        return (array.astype(str) if array.size else np.empty(array.shape, "<U1")), True
    if not (array.flags.c_contiguous or array.flags.f_contiguous):
        array = np.ascontiguousarray(array)  # a strided view: its contents only
    return array, False


def write_array(path: Path, array: np.ndarray) -> None:
    np.save(path, array, allow_pickle=False)


def read_array(path: Path, mmap: bool, as_object: bool) -> np.ndarray:
    """The array in a .npy file (copy-on-write memory map with `mmap`); refuses pickles and non-.npy files."""
    try:
        loaded = np.load(path, mmap_mode="c" if mmap else None, allow_pickle=False)
    except ValueError as error:  # object dtype, a pickle or a bad header: never unpickled
        raise PartError(f"it is not a plain .npy array: Python objects or a pickle (never loaded), or a bad "
                        f"header ({error})") from error
    except (OSError, EOFError) as error:
        raise PartError(f"it is not a readable .npy file ({error})") from error
    if not isinstance(loaded, np.ndarray):
        close = getattr(loaded, "close", None)
        if close:
            close()
        raise PartError(f"it is a {type(loaded).__name__}, not a .npy array")
    if as_object:
        if loaded.dtype.kind != "U":
            raise PartError(f"the state says str objects, the file holds {loaded.dtype}")
        return loaded.astype(object)
    return loaded


# ------------------------------------------------------------------ scipy.sparse

SPARSE_PARTS = {
    "csr": ("data", "indices", "indptr"), "csc": ("data", "indices", "indptr"), "coo": ("data", "row", "col"),
}


def sparse_parts(matrix: Any) -> tuple[str, bool, dict[str, Any]]:
    """(format, whether a sparse array rather than matrix, component arrays and "shape")."""
    import scipy.sparse as sp

    fmt = matrix.format
    if fmt not in SPARSE_PARTS:
        raise PartError(f"a {fmt} sparse matrix is not saved; convert it (.tocsr())")
    if fmt == "coo" and matrix.ndim != 2:
        raise PartError("a coo array that is not 2-D is not saved")
    arrays = {name: getattr(matrix, name) for name in SPARSE_PARTS[fmt]}
    return fmt, isinstance(matrix, sp.sparray), {**arrays, "shape": matrix.shape}


def sparse_from(fmt: str, is_array: bool, shape: Any, parts: dict[str, np.ndarray]) -> Any:
    """The matrix, validated by scipy, keeping the saved index dtypes and (where scipy does) the arrays."""
    import scipy.sparse as sp

    valid_shape = isinstance(shape, list) and len(shape) == 2 and all(type(n) is int and n >= 0 for n in shape)
    if fmt not in SPARSE_PARTS or not valid_shape:
        raise PartError(f"a sparse node with format {fmt!r} and shape {shape!r}")
    cls = getattr(sp, f"{fmt}_{'array' if is_array else 'matrix'}")
    if fmt == "coo":
        data, row, col = (parts[k] for k in SPARSE_PARTS[fmt])
        matrix = cls((data, (row, col)), shape=tuple(shape))
        if matrix.row.dtype != row.dtype:
            matrix.coords = (row, col)
        return matrix
    data, indices, indptr = (parts[k] for k in SPARSE_PARTS[fmt])
    matrix = cls((data, indices, indptr), shape=tuple(shape))
    matrix.check_format(full_check=True)
    if matrix.indices.dtype != indices.dtype:  # scipy narrows int64 indices that fit in int32
        matrix.indices, matrix.indptr = indices, indptr
    return matrix


# ------------------------------------------------------------------ pandas

def frame_to_parquet(frame: Any, path: Path, encode_cell: Callable[[Any, str], Any]) -> dict:
    """Write `frame` as parquet; object columns that are not all str are JSON-encoded cell by cell."""
    import pandas as pd

    if isinstance(frame.columns, pd.MultiIndex) or not all(type(c) is str for c in frame.columns) \
            or frame.columns.has_duplicates:
        raise PartError("a DataFrame's column names must be unique strings (rename its columns)")
    meta: dict[str, Any] = {"dtypes": {c: str(t) for c, t in frame.dtypes.items()}, "json": [], "object_str": []}
    if not isinstance(frame.index, pd.MultiIndex):
        meta["index_dtype"] = str(frame.index.dtype)
    written = frame.copy(deep=False)
    for name in frame.columns:
        if frame[name].dtype != object:
            continue
        values = frame[name].to_numpy()
        if all(type(v) is str for v in values):
            meta["object_str"].append(name)
            continue
        meta["json"].append(name)
        cells = [json.dumps(encode_cell(v, f"[{name!r}][{i}]"), allow_nan=False, separators=(",", ":"))
                 for i, v in enumerate(values)]
        written[name] = pd.Series(cells, index=frame.index, dtype=str)
    try:
        written.to_parquet(path, engine="pyarrow")
    except Exception as error:  # noqa: BLE001 - pyarrow's many refusals
        raise PartError(f"parquet cannot hold this DataFrame ({type(error).__name__}: {error})") from error
    return meta


def frame_from_parquet(path: Path, meta: dict, decode_cell: Callable[[Any, str], Any]) -> Any:
    """The DataFrame of `frame_to_parquet`, its column dtypes as saved."""
    import pandas as pd

    frame = pd.read_parquet(path, engine="pyarrow")
    dtypes = meta["dtypes"]
    if list(frame.columns) != list(dtypes):
        raise PartError(f"its columns {list(frame.columns)} are not the state's {list(dtypes)}")
    for name in frame.columns:
        if name in meta["json"]:
            cells = np.empty(len(frame), dtype=object)
            for i, text in enumerate(frame[name].to_numpy()):
                cells[i] = decode_cell(json.loads(text), f"[{name!r}][{i}]")
            frame[name] = pd.Series(cells, index=frame.index, dtype=object)
        elif str(frame[name].dtype) != dtypes[name]:  # e.g. datetime64[s]: parquet holds ms
            frame[name] = frame[name].astype(dtypes[name] if name not in meta["object_str"] else object)
    index_dtype = meta.get("index_dtype")
    if index_dtype is not None and str(frame.index.dtype) != index_dtype:
        frame.index = frame.index.astype(index_dtype)
    return frame


# ------------------------------------------------------------------ LightGBM, faiss, numpy random

def is_booster(value: Any) -> bool:
    if not type(value).__module__.startswith("lightgbm"):
        return False
    import lightgbm

    return isinstance(value, lightgbm.Booster)


def write_booster(path: Path, booster: Any) -> dict:
    """LightGBM's text model (all iterations) and the best iteration."""
    path.write_text(booster.model_to_string(num_iteration=-1), encoding="utf-8")
    return {"best_iteration": int(booster.best_iteration)}


def read_booster(path: Path, meta: dict) -> Any:
    import lightgbm

    booster = lightgbm.Booster(model_str=path.read_text(encoding="utf-8"))
    booster.best_iteration = int(meta.get("best_iteration", 0))
    return booster


def faiss_kind(value: Any) -> str | None:
    """"index" / "binary" for a faiss index, else None."""
    if not type(value).__module__.startswith("faiss"):
        return None
    import faiss

    if isinstance(value, faiss.Index):
        return "index"
    return "binary" if isinstance(value, faiss.IndexBinary) else None


def write_faiss(path: Path, index: Any, kind: str) -> None:
    import faiss

    (faiss.write_index if kind == "index" else faiss.write_index_binary)(index, str(path))


def read_faiss(path: Path, kind: str, mmap: bool) -> Any:
    """faiss.read_index; with `mmap` IO_FLAG_MMAP (IVF lists become read-only maps; other types read plainly)."""
    import faiss

    if kind not in ("index", "binary"):
        raise PartError(f"a faiss node of kind {kind!r}")
    read = faiss.read_index if kind == "index" else faiss.read_index_binary
    try:
        if mmap:
            try:
                return read(str(path), faiss.IO_FLAG_MMAP)
            except RuntimeError:  # an index type that cannot map
                pass
        return read(str(path))
    except RuntimeError as error:
        raise PartError(f"faiss cannot read it ({str(error).splitlines()[0] if str(error) else error})") from error


def random_state_from(state: Any) -> np.random.RandomState:
    if not isinstance(state, dict) or state.get("bit_generator") != "MT19937":
        raise PartError("a RandomState node without an MT19937 state")
    random = np.random.RandomState()
    random.set_state(state)
    return random


def generator_from(state: Any) -> np.random.Generator:
    name = state.get("bit_generator") if isinstance(state, dict) else None
    if name not in BIT_GENERATORS:
        raise PartError(f"a Generator node with bit generator {name!r} (known: {', '.join(BIT_GENERATORS)})")
    bits = getattr(np.random, name)()
    bits.state = state
    return np.random.Generator(bits)
