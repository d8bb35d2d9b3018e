"""Model versions: publish, keep the last few, roll back, and a pointer that never names a half-written version."""

from __future__ import annotations

import json
import threading

import pytest

from coldrec.model import ModelDirectoryError
from coldrec.model.versions import ModelVersions, locate, read_info, write_info


def fake_model(tag: str):
    """A writer of a minimal "model directory" (a manifest and one part) tagged `tag`."""

    def write(folder):
        folder.mkdir()
        (folder / "part.bin").write_bytes(tag.encode() * 1000)
        (folder / "manifest.json").write_text(json.dumps({"tag": tag}))

    return write


def tag_of(folder) -> str:
    return json.loads((folder / "manifest.json").read_text())["tag"]


def test_publish_keeps_the_last_few_and_never_the_current_one(tmp_path):
    versions = ModelVersions(tmp_path)
    assert versions.current() is None and versions.versions() == []
    with pytest.raises(ModelDirectoryError, match="no model version"):
        versions.current_path()
    for n in range(1, 6):
        assert versions.publish(fake_model(f"v{n}"), keep=3) == n
        assert versions.current() == n and tag_of(versions.current_path()) == f"v{n}"
    assert versions.versions() == [3, 4, 5]
    assert versions.rollback() == 4 and versions.rollback() == 3
    with pytest.raises(ModelDirectoryError, match="no version older than 3"):
        versions.rollback()
    # publishing after a rollback takes the next number; the rolled-back-to current version is kept
    assert versions.publish(fake_model("v6"), keep=2) == 6
    assert versions.versions() == [5, 6]
    assert versions.rollback(to=5) == 5 and versions.publish(fake_model("v7"), keep=1) == 7
    assert versions.versions() == [7]
    with pytest.raises(ModelDirectoryError, match="has no version 3"):
        versions.rollback(to=3)
    assert not [p.name for p in versions.folder.iterdir() if p.name.startswith(".") and p.name != ".lock"]


def test_a_failed_write_publishes_nothing(tmp_path):
    versions = ModelVersions(tmp_path)
    versions.publish(fake_model("v1"))

    def broken(folder):
        fake_model("half")(folder)
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        versions.publish(broken)
    with pytest.raises(ModelDirectoryError, match="no manifest.json"):
        versions.publish(lambda folder: folder.mkdir())
    assert versions.current() == 1 and versions.versions() == [1]
    assert sorted(p.name for p in versions.folder.iterdir()) == [".lock", "1", "current"]


def test_readers_never_see_a_half_written_version(tmp_path):
    """While versions are published one after another, every read of the pointer names a complete version."""
    versions = ModelVersions(tmp_path)
    versions.publish(fake_model("v1"), keep=2)
    stop, seen, problems = threading.Event(), set(), []

    def read():
        while not stop.is_set():
            try:
                version, path = versions.current(), None
                path = versions.path(version)
                seen.add(version)
                assert tag_of(path) == f"v{version}"
            except FileNotFoundError:  # pruned between the two reads: a reader retries, it never reads a torn file
                continue
            except Exception as error:  # noqa: BLE001 - collected for the assertion below
                problems.append(repr(error))

    reader = threading.Thread(target=read)
    reader.start()
    for n in range(2, 30):
        versions.publish(fake_model(f"v{n}"), keep=2)
    stop.set()
    reader.join()
    assert not problems, problems[:3]
    assert len(seen) > 1 and versions.current() == 29


def test_info_is_kept_beside_the_model(tmp_path):
    versions = ModelVersions(tmp_path)

    def write(folder):
        fake_model("v1")(folder)
        write_info(folder, {"items_version": 7})

    versions.publish(write)
    assert versions.info(1) == {"items_version": 7} and read_info(tmp_path / "nowhere") == {}


def test_an_older_build_folder_is_version_1_and_moves_into_versions_on_publish(tmp_path):
    fake_model("legacy")(tmp_path / "model")
    (tmp_path / "state").mkdir()
    versions = ModelVersions(tmp_path)
    assert ModelVersions.holds_versions(tmp_path) and versions.current() == 1
    assert locate(tmp_path)[1:] == (1, tmp_path / "model")
    assert tag_of(versions.current_path()) == "legacy"
    assert versions.publish(fake_model("v2")) == 2
    assert not (tmp_path / "model").exists() and tag_of(versions.path(1)) == "legacy"
    assert versions.rollback() == 1 and tag_of(versions.current_path()) == "legacy"


def test_locate_what_serve_model_names(tmp_path):
    fake_model("bare")(tmp_path / "bare")
    assert locate(tmp_path / "bare") == (None, None, tmp_path / "bare")
    ModelVersions(tmp_path / "out").publish(fake_model("v1"))
    for named in (tmp_path / "out", tmp_path / "out" / "model"):  # OUT, and OUT/model as older builds wrote it
        found, version, directory = locate(named)
        assert found is not None and found.root == tmp_path / "out"
        assert version == 1 and directory == tmp_path / "out" / "versions" / "1"


def test_a_garbled_pointer_is_an_error_naming_it(tmp_path):
    versions = ModelVersions(tmp_path)
    versions.publish(fake_model("v1"))
    versions.pointer.write_text("latest\n")
    with pytest.raises(ModelDirectoryError, match="not a version number"):
        versions.current()
