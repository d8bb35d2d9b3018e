"""`ModelVersions`: the numbered model directories of one service folder, and which of them is served.

    ROOT/versions/1/, 2/, ...   model directories (`coldrec.model`), each written once and never changed
    ROOT/versions/current       the served version's number (a text file, replaced atomically)
    ROOT/state/                 the store (not touched here)

A version is written into a hidden temporary folder, fsynced, renamed to its number (atomic), and only
then named current (the pointer file is written beside and renamed over the old one): a reader sees the
old version or the new one, never a half-written one. Numbers only grow: a rollback moves the pointer
back, and the next publish takes the number after the highest. The last `keep` versions are kept (the
current one always). A folder written before versions existed (ROOT/model) is served as version 1 and
moved to ROOT/versions/1 on the first publish.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from coldrec.model.manifest import MANIFEST, ModelDirectoryError

VERSIONS = "versions"
POINTER = "current"
LEGACY = "model"
#: Versions kept by `publish` unless told otherwise (the current one is kept in any case).
KEEP = 3
#: Beside a version's model files (not in its manifest, so never read by `load_model`): how it was made.
INFO = "version.json"

_NUMBER = re.compile(r"[1-9][0-9]*")


class ModelVersions:
    """The versions under `root` (a folder written by `coldrec build`)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.folder = self.root / VERSIONS
        self.pointer = self.folder / POINTER

    @staticmethod
    def holds_versions(path: str | Path) -> bool:
        """Is `path` a service folder (versions, or an older build's model/), rather than one model directory?"""
        path = Path(path)
        return (path / VERSIONS).is_dir() or (path / LEGACY / MANIFEST).is_file()

    def versions(self) -> list[int]:
        """The published version numbers, ascending (a not yet moved ROOT/model counts as 1)."""
        found = sorted(int(p.name) for p in self._entries() if _NUMBER.fullmatch(p.name) and p.is_dir())
        if not found and self._legacy().is_dir():
            return [1]
        return found

    def current(self) -> int | None:
        """The served version's number; None when there is none yet."""
        try:
            text = self.pointer.read_text(encoding="ascii").strip()
        except FileNotFoundError:  # an older build's folder, or (for a moment) one being moved into versions/
            return max(self.versions(), default=None)
        except (OSError, UnicodeDecodeError) as error:
            raise ModelDirectoryError(f"{self.pointer}: unreadable ({error})") from error
        if not _NUMBER.fullmatch(text):
            raise ModelDirectoryError(f"{self.pointer}: holds {text[:40]!r}, not a version number; "
                                      f"write the number of one of {self.folder}'s versions into it")
        return int(text)

    def path(self, version: int) -> Path:
        """The model directory of `version` (whether or not it exists)."""
        if version == 1 and not (self.folder / "1").is_dir() and self._legacy().is_dir():
            return self._legacy()
        return self.folder / str(int(version))

    def current_path(self) -> Path:
        """The served version's model directory; ModelDirectoryError when there is none."""
        version = self.current()
        if version is None:
            raise ModelDirectoryError(f"{self.root}: holds no model version yet; write one with "
                                      f"`coldrec build --out {self.root}`")
        path = self.path(version)
        if not path.is_dir():
            raise ModelDirectoryError(f"{self.pointer}: names version {version}, which {self.folder} lacks; "
                                      "`coldrec rollback --to N` names another")
        return path

    def info(self, version: int) -> dict:
        """What `version`'s writer recorded about it (`write_info`); empty when nothing was."""
        return read_info(self.path(version))

    def publish(self, write: Callable[[Path], None], keep: int = KEEP) -> int:
        """Write the next version with `write(folder)` (into a folder that does not exist yet), make it the
        current one, and remove the versions older than the last `keep` (never the current one). Returns
        its number. If `write` fails, nothing changes."""
        if keep < 1:
            raise ValueError(f"keep must be at least 1, not {keep}")
        self.folder.mkdir(parents=True, exist_ok=True)
        with self._locked():
            self._adopt_legacy()
            version = max(self.versions(), default=0) + 1
            temp = self.folder / f".{version}.{uuid.uuid4().hex[:12]}.writing"
            try:
                write(temp)
                if not (temp / MANIFEST).is_file():
                    raise ModelDirectoryError(f"{temp}: the writer left no {MANIFEST}; nothing was published")
                _sync_tree(temp)
                os.rename(temp, self.folder / str(version))
                _sync(self.folder)
            except BaseException:
                shutil.rmtree(temp, ignore_errors=True)
                raise
            self._point_to(version)
            self._prune(keep)
        return version

    def rollback(self, to: int | None = None) -> int:
        """Serve the version before the current one (or `to`); returns its number. ModelDirectoryError when
        there is none (older ones are removed after `keep` publishes)."""
        with self._locked():
            current, versions = self.current(), self.versions()
            if to is None:
                older = [v for v in versions if current is None or v < current]
                if not older:
                    kept = ", ".join(map(str, versions)) or "none"
                    raise ModelDirectoryError(f"{self.root}: no version older than {current} is kept "
                                              f"(kept: {kept})")
                to = older[-1]
            elif to not in versions:
                raise ModelDirectoryError(f"{self.root}: has no version {to} (kept: "
                                          f"{', '.join(map(str, versions)) or 'none'})")
            self._adopt_legacy()
            self._point_to(to)
            return to

    # ------------------------------------------------------------------ helpers
    def _entries(self) -> Iterator[Path]:
        return self.folder.iterdir() if self.folder.is_dir() else iter(())

    def _legacy(self) -> Path:
        return self.root / LEGACY

    def _adopt_legacy(self) -> None:
        """An older build's ROOT/model becomes version 1 (a rename: its files, and any memory maps, are kept)."""
        if self.pointer.exists() or not (self._legacy() / MANIFEST).is_file() or (self.folder / "1").exists():
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        os.rename(self._legacy(), self.folder / "1")
        _sync(self.root)
        self._point_to(1)

    def _point_to(self, version: int) -> None:
        temp = self.folder / f".{POINTER}.{uuid.uuid4().hex[:12]}"
        with open(temp, "w", encoding="ascii") as out:
            out.write(f"{version}\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, self.pointer)
        _sync(self.folder)

    def _prune(self, keep: int) -> None:
        current = self.current()
        versions = self.versions()
        for version in versions[:-keep]:
            if version != current:
                shutil.rmtree(self.folder / str(version), ignore_errors=True)  # servers' memory maps stay valid
        for stale in self._entries():  # a publish killed midway leaves its temporary folder
            if stale.name.endswith(".writing") and stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """One publish or rollback at a time (across processes: a lock file's flock)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def write_info(folder: str | Path, info: dict) -> None:
    """Record how a version was made (plain JSON) beside its model files; `publish`'s writer calls this."""
    (Path(folder) / INFO).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


def read_info(folder: str | Path) -> dict:
    """A version's record (`write_info`); empty for one written without it (an older build)."""
    try:
        info = json.loads((Path(folder) / INFO).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _sync(path: Path) -> None:
    """fsync a file or a folder (a folder's entries: a rename in it is on disk)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_tree(root: Path) -> None:
    """fsync every file and folder under `root` (a writer may not have)."""
    for folder, _, files in os.walk(root):
        for name in files:
            _sync(Path(folder, name))
        _sync(Path(folder))


def locate(path: str | Path) -> tuple[ModelVersions | None, int | None, Path]:
    """What `--model PATH` names: a service folder's current version (its `ModelVersions`, the number, the model
    directory), or a single model directory as it is (None, None, PATH). `OUT/model` of a folder written since
    versions exist means OUT. ModelDirectoryError when a service folder has no version yet."""
    path = Path(path)
    if path.name == LEGACY and not path.exists() and (path.parent / VERSIONS).is_dir():
        path = path.parent
    if not ModelVersions.holds_versions(path):
        return None, None, path
    versions = ModelVersions(path)
    for _ in range(3):  # a publish may move an older build's model/ into versions/ between the two reads
        version = versions.current()
        if version is None:
            break
        directory = versions.path(version)
        if directory.is_dir():
            return versions, version, directory
    return versions, None, versions.current_path()
