"""coldrec.model: a model directory is data (JSON manifest + parts), loaded without unpickling anything."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from coldrec.model import (
    FORMAT_VERSION,
    ModelDirectoryError,
    data_fingerprint,
    load_model,
    read_manifest,
    register_class,
    save_model,
)
from coldrec.model import parts as model_parts


@register_class
class Holder:
    """A registered test class: attributes as given, `_cache` never saved."""

    __transient__ = ("_cache",)

    def __init__(self, **attributes):
        self.__dict__.update(attributes)


@register_class
class Stateful:
    """A registered class with its own __getstate__ / __setstate__."""

    def __init__(self, values):
        self.values = values
        self.derived = sum(values)

    def __getstate__(self):
        return {"values": self.values}

    def __setstate__(self, state):
        self.values = state["values"]
        self.derived = sum(self.values)


@register_class
class Slotted:
    __slots__ = ("a", "b")

    def __init__(self, a, b):
        self.a, self.b = a, b


@register_class
@dataclasses.dataclass(frozen=True)
class Frozen:
    x: int
    y: np.ndarray


class Unregistered:
    pass


class Payload:
    """Unpickling this touches `marker`: a stand-in for any code a pickle can run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _save(directory: Path, model, **kwargs):
    options = {"kind": "test", "params": {"alpha": 0.5}, "fingerprint": data_fingerprint("data")} | kwargs
    return save_model(directory, model, **options)


def _rehash(directory: Path, rel: str) -> None:
    """Make the manifest's checksum of `rel` match the file (what an attacker would do)."""
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["files"][rel] = hashlib.sha256((directory / rel).read_bytes()).hexdigest()
    (directory / "manifest.json").write_text(json.dumps(manifest))


def _edit_state(directory: Path, edit) -> None:
    state = json.loads((directory / "state.json").read_text())
    edit(state)
    (directory / "state.json").write_text(json.dumps(state))
    _rehash(directory, "state.json")


def _first_array(directory: Path) -> str:
    return next(rel for rel in read_manifest(directory).files if rel.startswith("arrays/"))


@pytest.fixture()
def small(tmp_path):
    directory = tmp_path / "model"
    _save(directory, Holder(vectors=np.arange(12, dtype=np.float32).reshape(3, 4), name="x"))
    return directory


# ------------------------------------------------------------------ round trip

def test_round_trip_of_every_supported_type(tmp_path):
    import faiss
    import lightgbm as lgb

    rng = np.random.default_rng(0)
    features, labels = rng.random((200, 4)), rng.random(200)
    booster = lgb.train({"objective": "regression", "verbose": -1, "num_leaves": 4, "seed": 0},
                        lgb.Dataset(features, labels), num_boost_round=5)
    vectors = rng.random((40, 8)).astype(np.float32)
    index = faiss.IndexFlatIP(8)
    index.add(vectors)
    frame = pd.DataFrame({
        "item_id": pd.array(["a", "b", "c"], dtype="string"),
        "title": ["one", "two", "three"],
        "price": [1.5, np.nan, 3.0],
        "created_at": pd.to_datetime(["2024-01-02 00:00:00", None, "2024-03-04 05:06:07"]).astype("datetime64[s]"),
        "attributes": [{"colour": "red", "size": [1, 2]}, None, {"n": 3, "ratio": math.nan}],
        "plain": pd.Series(["p", "q", "r"], dtype=object),
    })
    base = np.arange(20, dtype=np.int64).reshape(4, 5)
    shared = rng.random(6)
    inner = Holder(weights=shared, label="inner", pair=(1, "two", 3.0))
    model = Holder(
        base=base, column=base[:, 1], shared=shared, again=shared,
        matrix=sp.random(6, 7, density=0.3, format="csr", random_state=0),
        frame=frame, series=pd.Series([1, 2, 3], name="counts"),
        booster=booster, index=index, inner=inner, stateful=Stateful([1, 2, 3]),
        tuple_=(1, (2, 3), [4, {"k": None}]), by_int={1: "one", 2: "two"}, by_tuple={(1, 2): "pair"},
        dollars={"$array": "not a tag"}, scalars=[np.int64(7), np.float32(0.25), np.bool_(True)],
        special=[math.nan, math.inf, -math.inf], dtype=np.dtype("float32"), dtype_type=np.float64,
        ids=np.array(["i1", "i22", "i333"], dtype=object), empty=np.zeros((0, 3), np.float32),
        random=np.random.RandomState(5), generator=np.random.default_rng(6), members={"b", "a"}, raw=b"\x00\xff",
    )
    model.back = model
    manifest = _save(tmp_path / "m", model, extra={"note": "hi"})
    assert manifest.format_version == FORMAT_VERSION and manifest.kind == "test"
    assert manifest.params == {"alpha": 0.5} and manifest.extra == {"note": "hi"}
    assert manifest.created_at.endswith("+00:00")
    assert set(manifest.files) == {p.relative_to(tmp_path / "m").as_posix()
                                   for p in (tmp_path / "m").rglob("*") if p.is_file()} - {"manifest.json"}

    loaded, again = load_model(tmp_path / "m", expected_kind="test")
    assert again == read_manifest(tmp_path / "m") and again.files == manifest.files
    assert type(loaded) is Holder and loaded.back is loaded
    np.testing.assert_array_equal(loaded.base, base)
    np.testing.assert_array_equal(loaded.column, base[:, 1])
    assert loaded.again is loaded.shared and loaded.inner.weights is loaded.shared
    assert loaded.inner.label == "inner" and loaded.inner.pair == (1, "two", 3.0)
    assert loaded.stateful.values == [1, 2, 3] and loaded.stateful.derived == 6
    assert (loaded.matrix != model.matrix).nnz == 0 and loaded.matrix.format == "csr"
    assert loaded.matrix.indices.dtype == model.matrix.indices.dtype

    pd.testing.assert_frame_equal(loaded.frame.drop(columns="attributes"), frame.drop(columns="attributes"))
    assert loaded.frame["attributes"].dtype == object
    cells = loaded.frame["attributes"].tolist()
    assert cells[0] == {"colour": "red", "size": [1, 2]} and cells[1] is None
    assert cells[2]["n"] == 3 and math.isnan(cells[2]["ratio"])
    assert loaded.frame["created_at"].dtype == np.dtype("datetime64[s]")
    assert loaded.frame["plain"].dtype == object and loaded.frame["plain"].tolist() == ["p", "q", "r"]
    pd.testing.assert_series_equal(loaded.series, model.series)

    np.testing.assert_allclose(loaded.booster.predict(features), booster.predict(features))
    distances, ids = loaded.index.search(vectors[:5], 4)
    expected_distances, expected_ids = index.search(vectors[:5], 4)
    np.testing.assert_array_equal(ids, expected_ids)
    np.testing.assert_allclose(distances, expected_distances)

    assert loaded.tuple_ == (1, (2, 3), [4, {"k": None}])
    assert loaded.by_int == {1: "one", 2: "two"} and loaded.by_tuple == {(1, 2): "pair"}
    assert loaded.dollars == {"$array": "not a tag"}
    assert [type(s) for s in loaded.scalars] == [np.int64, np.float32, np.bool_] and loaded.scalars[1] == 0.25
    assert math.isnan(loaded.special[0]) and loaded.special[1:] == [math.inf, -math.inf]
    assert loaded.dtype == np.float32 and loaded.dtype_type is np.float64
    assert loaded.ids.dtype == object and loaded.ids.tolist() == ["i1", "i22", "i333"]
    assert loaded.empty.shape == (0, 3) and loaded.empty.dtype == np.float32
    assert loaded.random.rand() == np.random.RandomState(5).rand()
    assert loaded.generator.random() == np.random.default_rng(6).random()
    assert loaded.members == {"a", "b"} and loaded.raw == b"\x00\xff"


def test_transient_attributes_are_not_saved(tmp_path):
    model = Holder(kept=1)
    model._cache = object()  # unsaveable, and skipped
    _save(tmp_path / "m", model)
    loaded, _ = load_model(tmp_path / "m")
    assert loaded.kept == 1 and not hasattr(loaded, "_cache")


def test_allow_listed_third_party_models_round_trip(tmp_path):
    from implicit.cpu.als import AlternatingLeastSquares
    from lightfm import LightFM
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(1)
    user_items = sp.random(30, 40, density=0.2, format="csr", dtype=np.float32, random_state=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        als = AlternatingLeastSquares(factors=4, iterations=3, random_state=0, num_threads=1)
        als.fit(user_items, show_progress=False)
    lightfm = LightFM(no_components=4, loss="warp", random_state=np.random.RandomState(0))
    lightfm.fit(sp.coo_matrix(user_items), epochs=2, num_threads=1)
    data = rng.random((50, 6))
    pca = PCA(3, random_state=0).fit(data)
    _save(tmp_path / "m", {"als": als, "lightfm": lightfm, "pca": pca})
    loaded, _ = load_model(tmp_path / "m")

    assert type(loaded["als"]) is AlternatingLeastSquares and loaded["als"].factors == 4
    users = np.arange(5)
    for got, want in zip(loaded["als"].recommend(users, user_items[users], N=5),
                         als.recommend(users, user_items[users], N=5), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6)
    pairs = (np.array([0, 1, 2], np.int32), np.array([3, 4, 5], np.int32))
    np.testing.assert_allclose(loaded["lightfm"].predict(*pairs), lightfm.predict(*pairs))
    assert loaded["lightfm"].random_state is loaded["lightfm"].initial_random_state
    np.testing.assert_allclose(loaded["pca"].transform(data), pca.transform(data))


def test_coldrec_modules_are_recorded_and_imported(tmp_path):
    cls = type("InCodec", (), {"__module__": "coldrec.model.codec", "__qualname__": "InCodec"})
    register_class(cls)
    obj = cls()
    obj.value = 3
    manifest = _save(tmp_path / "m", obj)
    assert manifest.modules == ("coldrec.model.codec",)
    assert json.loads((tmp_path / "m" / "manifest.json").read_text())["modules"] == ["coldrec.model.codec"]
    assert load_model(tmp_path / "m")[0].value == 3


# ------------------------------------------------------------------ memory maps

def test_arrays_load_as_copy_on_write_memory_maps(small):
    rel = _first_array(small)
    before = (small / rel).read_bytes()
    loaded, _ = load_model(small)
    vectors = loaded.vectors
    assert isinstance(vectors, np.memmap) and vectors.flags.writeable
    vectors[0, 0] = 99.0  # copy-on-write: this process's page only
    assert vectors[0, 0] == 99.0
    assert (small / rel).read_bytes() == before
    assert load_model(small)[0].vectors[0, 0] == 0.0
    plain, _ = load_model(small, mmap=False)
    assert type(plain.vectors) is np.ndarray and plain.vectors[0, 0] == 0.0


# ------------------------------------------------------------------ refusals at load

def test_tampered_file_is_named(small):
    rel = _first_array(small)
    data = bytearray((small / rel).read_bytes())
    data[-1] ^= 0xFF
    (small / rel).write_bytes(bytes(data))
    with pytest.raises(ModelDirectoryError, match="sha256 does not match") as error:
        load_model(small)
    assert rel in str(error.value) and "rebuild" in str(error.value)


def test_missing_file_is_named(small):
    rel = _first_array(small)
    (small / rel).unlink()
    with pytest.raises(ModelDirectoryError, match="missing") as error:
        load_model(small)
    assert rel in str(error.value)


@pytest.mark.parametrize("mmap", [True, False])
@pytest.mark.parametrize("form", ["raw pickle", "object npy"])
def test_a_pickle_in_an_npy_runs_no_code(small, tmp_path, mmap, form):
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(Payload(probe)))
    assert probe.exists()  # the payload is live: unpickling it does run code
    marker = tmp_path / "marker"
    rel = _first_array(small)
    if form == "raw pickle":
        (small / rel).write_bytes(pickle.dumps(Payload(marker)))
    else:
        np.save(small / rel, np.array([Payload(marker)], dtype=object), allow_pickle=True)
    _rehash(small, rel)
    with pytest.raises(ModelDirectoryError, match="pickle") as error:
        load_model(small, mmap=mmap)
    assert rel in str(error.value)
    assert not marker.exists()


@pytest.mark.parametrize("name", ["os:system", "builtins:eval", "evil_module_xyz:Thing", "pickle:loads"])
def test_unknown_classes_are_refused_before_importing(small, tmp_path, monkeypatch, name):
    marker = tmp_path / "imported"
    (tmp_path / "evil_module_xyz.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).touch()\nclass Thing:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    _edit_state(small, lambda s: s["root"]["state"].update(evil={"$object": name, "state": {"x": 1}}))
    with pytest.raises(ModelDirectoryError, match="neither registered nor allow-listed") as error:
        load_model(small)
    assert name in str(error.value) and "state.json" in str(error.value)
    assert not marker.exists() and "evil_module_xyz" not in sys.modules


def test_manifest_modules_outside_coldrec_are_refused(small, tmp_path, monkeypatch):
    marker = tmp_path / "imported"
    (tmp_path / "evil_module_abc.py").write_text(f"from pathlib import Path\nPath({str(marker)!r}).touch()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    manifest = json.loads((small / "manifest.json").read_text())
    manifest["modules"] = ["evil_module_abc"]
    (small / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelDirectoryError, match="not a coldrec module"):
        load_model(small)
    assert not marker.exists() and "evil_module_abc" not in sys.modules


def test_state_referring_to_an_unlisted_file_is_refused(small):
    np.save(small / "arrays" / "planted.npy", np.ones(3))
    _edit_state(small, lambda s: s["root"]["state"].update(vectors={"$array": "arrays/planted.npy"}))
    with pytest.raises(ModelDirectoryError, match="does not list") as error:
        load_model(small)
    assert "arrays/planted.npy" in str(error.value)


@pytest.mark.parametrize("rel", ["../outside.npy", "/etc/passwd", "arrays/../../x", ""])
def test_manifest_paths_outside_the_directory_are_refused(small, rel):
    manifest = json.loads((small / "manifest.json").read_text())
    manifest["files"][rel] = "0" * 64
    (small / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelDirectoryError, match="not a relative path inside the directory"):
        load_model(small)


def test_files_not_in_the_manifest_are_ignored(small, tmp_path):
    marker = tmp_path / "marker"
    (small / "model.pkl").write_bytes(pickle.dumps(Payload(marker)))
    (small / "notes.txt").write_text("anything")
    loaded, _ = load_model(small)
    assert loaded.name == "x" and not marker.exists()


def test_a_model_pkl_directory_is_refused_as_older(tmp_path):
    marker = tmp_path / "marker"
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "model.pkl").write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(ModelDirectoryError, match=r"older coldrec \(model.pkl, format 0\)") as error:
        load_model(tmp_path / "old")
    assert "coldrec build" in str(error.value) and str(tmp_path / "old") in str(error.value)
    assert not marker.exists()


@pytest.mark.parametrize(("version", "message"), [(FORMAT_VERSION + 1, "newer coldrec"), (0, "older than")])
def test_other_format_versions_are_refused(small, version, message):
    manifest = json.loads((small / "manifest.json").read_text())
    manifest["format_version"] = version
    (small / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelDirectoryError, match=message):
        load_model(small)


def test_expected_kind_mismatch_is_refused(small):
    assert load_model(small, expected_kind="test")[1].kind == "test"
    with pytest.raises(ModelDirectoryError, match="'test' model, not the 'als'"):
        load_model(small, expected_kind="als")


def test_a_directory_without_a_manifest_is_refused(tmp_path):
    with pytest.raises(ModelDirectoryError, match="does not exist"):
        load_model(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelDirectoryError, match="not a model directory"):
        load_model(tmp_path / "empty")


# ------------------------------------------------------------------ refusals at save

@pytest.mark.parametrize(("value", "message"), [
    (Unregistered(), "is not registered"),
    (np.array([1, "a"], dtype=object), "object array holding int"),
    (lambda: 1, "is code, not data"),
    (pd.DataFrame({"a": [np.zeros(2)]}), "object column holds a ndarray"),
    (np.ma.masked_array([1, 2]), "ndarray subclass"),
])
def test_unsaveable_values_are_refused_by_path(tmp_path, value, message):
    with pytest.raises(ModelDirectoryError, match=message) as error:
        _save(tmp_path / "m", Holder(inner=Holder(bad=value)))
    assert "model.inner.bad" in str(error.value)
    assert not (tmp_path / "m").exists() and list(tmp_path.iterdir()) == []


def test_container_cycles_are_refused(tmp_path):
    cycle: list = []
    cycle.append(cycle)
    with pytest.raises(ModelDirectoryError, match="contains itself"):
        _save(tmp_path / "m", Holder(cycle=cycle))


def test_a_non_model_directory_is_not_replaced(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "events.csv").write_text("x")
    with pytest.raises(ModelDirectoryError, match="not a model directory"):
        _save(tmp_path / "data", Holder())
    assert (tmp_path / "data" / "events.csv").exists()


def test_a_failed_save_leaves_the_old_directory_intact(tmp_path, monkeypatch):
    directory = tmp_path / "m"
    _save(directory, Holder(version=1, vectors=np.ones(3)))
    before = {p: p.read_bytes() for p in directory.rglob("*") if p.is_file()}
    write = model_parts.write_array
    calls = []

    def failing(path, array):
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        write(path, array)

    monkeypatch.setattr(model_parts, "write_array", failing)
    with pytest.raises(OSError, match="disk full"):
        _save(directory, Holder(version=2, vectors=np.zeros(3), more=np.zeros(2)))
    assert {p: p.read_bytes() for p in directory.rglob("*") if p.is_file()} == before
    assert load_model(directory)[0].version == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temp directory left behind

    monkeypatch.setattr(model_parts, "write_array", write)
    _save(directory, Holder(version=3))
    assert load_model(directory)[0].version == 3 and not (directory / "arrays").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_a_model_pkl_directory_is_replaced_by_a_save(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model.pkl").write_bytes(b"old")
    _save(tmp_path / "m", Holder(version=1))
    assert not (tmp_path / "m" / "model.pkl").exists() and load_model(tmp_path / "m")[0].version == 1


# ------------------------------------------------------------------ fingerprints

def test_data_fingerprint_is_stable_and_sensitive():
    ids = pd.Series(["a", "b", "c"], name="item_id")
    events = np.array([[0, 1], [2, 0]], np.int64)
    digest = data_fingerprint(ids, events, "v1")
    assert digest == data_fingerprint(ids.copy(), events.copy(), "v1") and len(digest) == 64
    assert digest != data_fingerprint(ids, events[::-1], "v1")
    assert digest != data_fingerprint(ids, events.astype(np.int32), "v1")
    assert digest != data_fingerprint(ids, events, "v2")
    assert data_fingerprint("ab", "c") != data_fingerprint("a", "bc")
    script = ("import numpy as np, pandas as pd; from coldrec.model import data_fingerprint; "
              "print(data_fingerprint(pd.Series(['a', 'b', 'c'], name='item_id'), "
              "np.array([[0, 1], [2, 0]], np.int64), 'v1'))")
    env = dict(os.environ, PYTHONHASHSEED="12345")
    other = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    assert other.stdout.strip() == digest


def test_maps_of_a_replaced_directory_stay_readable(small):
    loaded, _ = load_model(small)
    _save(small, Holder(vectors=np.zeros(2), name="y"))
    np.testing.assert_array_equal(loaded.vectors, np.arange(12, dtype=np.float32).reshape(3, 4))
    assert load_model(small)[0].name == "y"


def test_slots_and_dataclasses_round_trip(tmp_path):
    model = [Slotted(1, [2]), Frozen(3, np.ones(2))]
    _save(tmp_path / "m", model)
    loaded, _ = load_model(tmp_path / "m")
    assert (loaded[0].a, loaded[0].b) == (1, [2])
    assert loaded[1].x == 3 and loaded[1].y.tolist() == [1.0, 1.0]
