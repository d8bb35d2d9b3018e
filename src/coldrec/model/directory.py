"""`save_model` / `load_model`: a model directory written atomically and read with no pickle on any path."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from coldrec.model.codec import Decoder, Encoder
from coldrec.model.manifest import (
    FORMAT_VERSION,
    LEGACY_PICKLE,
    MANIFEST,
    REBUILD,
    STATE,
    Manifest,
    ModelDirectoryError,
    coldrec_version,
    plain_json,
    read_manifest,
    sha256_file,
)


def save_model(directory: Path, model: object, *, kind: str, params: dict, fingerprint: str,
               extra: dict | None = None) -> Manifest:
    """Write `model` as a model directory: `manifest.json`, `state.json` and its parts.

    Written into a sibling temp directory, then swapped in: an existing model directory (or an old
    `model.pkl` one) is replaced only once the write succeeded; any other non-empty directory is refused.
    `params` and `extra` are plain JSON. Refuses (ModelDirectoryError) values it cannot save, naming them.
    """
    directory = Path(directory)
    if not isinstance(kind, str) or not kind:
        raise ModelDirectoryError(f"{directory}: kind must be a non-empty str (e.g. the recommender's name)")
    if not isinstance(fingerprint, str):
        raise ModelDirectoryError(f"{directory}: fingerprint must be a str (data_fingerprint(...))")
    params = plain_json(params, "params", directory)
    extra = plain_json(extra or {}, "extra", directory)
    if not isinstance(params, dict) or not isinstance(extra, dict):
        raise ModelDirectoryError(f"{directory}: params and extra must be dicts")
    _check_replaceable(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    temp = directory.parent / f".{directory.name}.{uuid.uuid4().hex[:12]}.writing"
    temp.mkdir()
    try:
        encoder = Encoder(temp, directory)
        state = {"root": encoder.encode(model, "model")}
        (temp / STATE).write_text(json.dumps(state, allow_nan=False, separators=(",", ":")), encoding="utf-8")
        files = {rel: _hash_and_sync(temp / rel) for rel in [STATE, *encoder.files]}
        manifest = Manifest(
            format_version=FORMAT_VERSION, coldrec_version=coldrec_version(), kind=kind, params=params,
            fingerprint=fingerprint, created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            files=files, extra=extra, modules=tuple(sorted(encoder.modules)))
        (temp / MANIFEST).write_text(manifest.to_json(), encoding="utf-8")
        _hash_and_sync(temp / MANIFEST)
        _sync_dirs(temp, *{(temp / rel).parent for rel in encoder.files})
        _swap_in(temp, directory)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return manifest


def load_model(directory: Path, *, mmap: bool = True, expected_kind: str | None = None) -> tuple[object, Manifest]:
    """The model saved in `directory` and its manifest.

    Refused (ModelDirectoryError) when: there is no manifest (an old `model.pkl` directory is never
    unpickled); the format is newer or older than this coldrec's; the kind is not `expected_kind`; a
    listed file is missing or its sha256 differs; the state refers to files the manifest does not list,
    holds pickles, or names classes not registered / allow-listed. Files not in the manifest are ignored
    (never read). With `mmap`, arrays are copy-on-write memory maps (processes share the pages until one
    writes; writes never reach the files) and IVF faiss indexes map their lists read-only.
    """
    directory = Path(directory)
    manifest = read_manifest(directory)
    if expected_kind is not None and manifest.kind != expected_kind:
        raise ModelDirectoryError(
            f"{directory / MANIFEST}: holds a {manifest.kind!r} model, not the {expected_kind!r} asked for; "
            f"point at a {expected_kind!r} model directory, or {REBUILD}")
    verify(directory, manifest)
    try:
        state = json.loads((directory / STATE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ModelDirectoryError(f"{directory / STATE}: unreadable ({error}); {REBUILD}") from error
    if not isinstance(state, dict) or "root" not in state:
        raise ModelDirectoryError(f"{directory / STATE}: has no \"root\"; the directory is corrupt: {REBUILD}")
    for module in manifest.modules:  # checked by read_manifest: coldrec modules only; they register classes
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise ModelDirectoryError(
                f"{directory / MANIFEST}: names the module {module}, which this coldrec ({coldrec_version()}) "
                f"lacks ({error}); load it with coldrec {manifest.coldrec_version}, or {REBUILD}") from error
    decoder = Decoder(directory, manifest.files, mmap)
    decoder.check_classes(state["root"])
    return decoder.decode(state["root"], "model"), manifest


def verify(directory: Path, manifest: Manifest) -> None:
    """Every file the manifest lists exists inside `directory` and has its sha256."""
    root = directory.resolve()
    for rel, digest in manifest.files.items():
        path = directory / rel
        if path.is_symlink() or not path.is_file() or not path.resolve().is_relative_to(root):
            raise ModelDirectoryError(
                f"{path}: listed in the manifest but missing (or not a plain file inside {directory}); "
                f"the directory is incomplete: {REBUILD}")
        if sha256_file(path) != digest:
            raise ModelDirectoryError(
                f"{path}: its sha256 does not match the manifest: the file was changed or is corrupt; {REBUILD}")


def _check_replaceable(directory: Path) -> None:
    if directory.is_symlink() or (directory.exists() and not directory.is_dir()):
        raise ModelDirectoryError(f"{directory}: exists and is not a directory; choose another path")
    if directory.is_dir() and any(directory.iterdir()) and not (
            (directory / MANIFEST).is_file() or (directory / LEGACY_PICKLE).is_file()):
        raise ModelDirectoryError(
            f"{directory}: exists, is not empty and is not a model directory (no {MANIFEST} or {LEGACY_PICKLE}); "
            "saving would replace it whole: choose an empty or new directory")


def _swap_in(temp: Path, directory: Path) -> None:
    """Rename `temp` to `directory`; an existing one is moved aside first and removed after."""
    if not directory.exists():
        os.rename(temp, directory)
    else:
        old = directory.parent / f".{directory.name}.{uuid.uuid4().hex[:12]}.old"
        os.rename(directory, old)
        try:
            os.rename(temp, directory)
        except BaseException:
            os.rename(old, directory)
            raise
        shutil.rmtree(old, ignore_errors=True)  # open memory maps of it stay valid
    _sync_dirs(directory.parent)


def _hash_and_sync(path: Path) -> str:
    digest = sha256_file(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return digest


def _sync_dirs(*paths: Any) -> None:
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)
