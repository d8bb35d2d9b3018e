"""The manifest of a model directory (`manifest.json`): what wrote it, what it is, and every file's sha256."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
STATE = "state.json"
LEGACY_PICKLE = "model.pkl"
FORMAT_NAME = "coldrec-model"
REBUILD = "rebuild it with this coldrec: coldrec build ... --out DIR"

_SHA256 = re.compile(r"[0-9a-f]{64}")
_MODULE = re.compile(r"coldrec(\.[A-Za-z_][A-Za-z0-9_]*)+")
_CHUNK = 1 << 20


class ModelDirectoryError(ValueError):
    """A model directory that cannot be written or read as it is: the message names the directory,
    the file and what to do."""


@dataclass(frozen=True)
class Manifest:
    """What `manifest.json` holds. `files`: relative path -> sha256 of every part (all but the manifest);
    `modules`: the coldrec modules whose classes the state names (imported before it is decoded)."""

    format_version: int
    coldrec_version: str
    kind: str
    params: dict
    fingerprint: str
    created_at: str
    files: dict[str, str]
    extra: dict = field(default_factory=dict)
    modules: tuple[str, ...] = ()

    def to_json(self) -> str:
        data = {"format": FORMAT_NAME, **asdict(self)}
        data["modules"] = list(self.modules)
        return json.dumps(data, indent=2, allow_nan=False, default=_plain) + "\n"


def coldrec_version() -> str:
    """The installed coldrec's version ("0+unknown" when not installed as a distribution)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("coldrec")
    except PackageNotFoundError:
        return "0+unknown"


def sha256_file(path: Path) -> str:
    """sha256 hex of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    buffer = bytearray(_CHUNK)
    view = memoryview(buffer)
    with open(path, "rb") as f:
        while n := f.readinto(buffer):
            digest.update(view[:n])
    return digest.hexdigest()


def plain_json(value: Any, what: str, directory: Path) -> Any:
    """`value` through a JSON round trip (numpy scalars become Python ones); refused when it is not plain JSON."""
    try:
        return json.loads(json.dumps(value, allow_nan=False, default=_plain))
    except (TypeError, ValueError) as error:
        raise ModelDirectoryError(
            f"{directory}: {what} must be plain JSON (str keys; str, numbers, bools, None, lists, dicts; "
            f"no nan): {error}. Pass JSON-able values.") from error


def check_module(name: object, directory: Path) -> str:
    """A module name the manifest may ask to import: only `coldrec.…` modules."""
    if not isinstance(name, str) or not _MODULE.fullmatch(name):
        raise ModelDirectoryError(
            f"{directory / MANIFEST}: modules names {name!r}, not a coldrec module; only modules under "
            f"'coldrec.' are imported. The manifest was edited or is corrupt: {REBUILD}")
    return name


def check_relative(name: object, directory: Path) -> str:
    """A part's path: relative, '/'-separated, inside the directory (no '..', not the manifest)."""
    if (not isinstance(name, str) or not name or PurePosixPath(name).is_absolute() or "\\" in name
            or any(p in ("", ".", "..") for p in name.split("/")) or name == MANIFEST):
        raise ModelDirectoryError(
            f"{directory / MANIFEST}: files names {name!r}, not a relative path inside the directory. "
            f"The manifest was edited or is corrupt: {REBUILD}")
    return name


def read_manifest(directory: Path) -> Manifest:
    """The directory's manifest, checked (format, fields, file names); refused with ModelDirectoryError otherwise.

    Only `manifest.json` is read: the parts' checksums are verified by `load_model`.
    """
    directory = Path(directory)
    path = directory / MANIFEST
    if not path.is_file():
        if (directory / LEGACY_PICKLE).is_file():
            raise ModelDirectoryError(
                f"{directory}: written by an older coldrec ({LEGACY_PICKLE}, format 0), which this coldrec "
                f"refuses to load (a pickle runs code when read); {REBUILD} (writes {MANIFEST} and its parts)")
        what = "does not exist" if not directory.exists() else f"has no {MANIFEST}: not a model directory"
        raise ModelDirectoryError(f"{directory}: {what}; point at a directory written by save_model, or {REBUILD}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ModelDirectoryError(f"{path}: unreadable ({error}); the directory is corrupt: {REBUILD}") from error
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
        raise ModelDirectoryError(f"{path}: not a coldrec model manifest (no \"format\": \"{FORMAT_NAME}\"); {REBUILD}")
    version = data.get("format_version")
    if type(version) is not int:
        raise ModelDirectoryError(f"{path}: format_version is {version!r}, not an integer; {REBUILD}")
    if version > FORMAT_VERSION:
        raise ModelDirectoryError(
            f"{path}: written by a newer coldrec ({data.get('coldrec_version')!r}, format {version}); this coldrec "
            f"({coldrec_version()}) reads format {FORMAT_VERSION}. Upgrade coldrec, or {REBUILD}")
    if version < FORMAT_VERSION:
        raise ModelDirectoryError(
            f"{path}: format {version} is older than the format {FORMAT_VERSION} this coldrec reads; {REBUILD}")
    kinds = {"coldrec_version": str, "kind": str, "params": dict, "fingerprint": str, "created_at": str,
             "files": dict, "extra": dict, "modules": list}
    for name, kind in kinds.items():
        if not isinstance(data.get(name), kind):
            raise ModelDirectoryError(f"{path}: field {name!r} is missing or not a {kind.__name__}; "
                                      f"the manifest is corrupt: {REBUILD}")
    files = {}
    for name, digest in data["files"].items():
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            raise ModelDirectoryError(f"{path}: the checksum of {name!r} is not a sha256 hex digest; {REBUILD}")
        files[check_relative(name, directory)] = digest
    if STATE not in files:
        raise ModelDirectoryError(f"{path}: lists no {STATE}; the manifest is corrupt: {REBUILD}")
    return Manifest(
        format_version=version, coldrec_version=data["coldrec_version"], kind=data["kind"], params=data["params"],
        fingerprint=data["fingerprint"], created_at=data["created_at"], files=files, extra=data["extra"],
        modules=tuple(check_module(m, directory) for m in data["modules"]))


def _plain(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
