"""Write the lock files from what is installed: the exact versions pyproject.toml's extras resolve to.

    python .ci/lock.py [--check]

- requirements.lock: coldrec's dependencies with the `serve` and `lm` extras, and all that they need;
- requirements-dev.lock: what the `dev` extra (tests, lint, the load-test client) adds on top of that.

Each distribution's requirements are read from its installed metadata (markers evaluated for this
machine, extras followed), coldrec's own from pyproject.toml. torch is written as `torch==X` without
its local `+cpu` tag: the Makefile installs the CPU build first, from the same pinned version.
With --check it writes nothing and exits 1 when either file differs from what it would write.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
RUNTIME_EXTRAS = ("serve", "lm")
DEV_EXTRAS = ("dev",)
HEADER = {
    "requirements.lock": "# Exact versions of coldrec[{extras}], installed after torch=={torch} (CPU build). "
                         "Regenerate: make lock",
    "requirements-dev.lock": "# Exact versions that coldrec[{extras}] (tests, lint, load-test client) adds to "
                             "requirements.lock. Regenerate: make lock",
}


def _project() -> tuple[str, list[str], dict[str, list[str]]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return canonicalize_name(project["name"]), project["dependencies"], project["optional-dependencies"]


def _applies(requirement: Requirement, extra: str) -> bool:
    """Whether `requirement` (a line of a distribution's metadata) is needed by that distribution's `extra`
    ("" for its base requirements), on this machine; base lines are not repeated for an extra."""
    if requirement.marker is None:
        return extra == ""
    if not requirement.marker.evaluate({"extra": extra}):
        return False
    return extra == "" or not requirement.marker.evaluate({"extra": ""})


def closure(extras: tuple[str, ...]) -> dict[str, metadata.Distribution]:
    """Installed distributions that coldrec[extras] needs, by canonical name (coldrec itself left out)."""
    name, base, optional = _project()
    found: dict[str, metadata.Distribution] = {}
    missing: set[str] = set()
    done: set[tuple[str, str]] = set()  # (canonical name, extra or "")
    todo = [(name, "")] + [(name, extra) for extra in extras]
    while todo:
        key, extra = todo.pop()
        if (key, extra) in done:
            continue
        done.add((key, extra))
        if key == name:  # coldrec: from pyproject.toml (an extra may name another, as dev names coldrec[test])
            lines = [Requirement(r) for r in (base if extra == "" else optional[extra])]
            requirements = [r for r in lines if r.marker is None or r.marker.evaluate({"extra": extra})]
        else:
            if key not in found:
                try:
                    found[key] = metadata.distribution(key)
                except metadata.PackageNotFoundError:
                    missing.add(key)
                    continue
            requirements = [r for r in map(Requirement, found[key].requires or []) if _applies(r, extra)]
        for requirement in requirements:
            sub = canonicalize_name(requirement.name)
            todo += [(sub, "")] + [(sub, e) for e in requirement.extras]
    if missing:
        raise SystemExit(f"not installed (pip install them, then rerun): {', '.join(sorted(missing))}")
    return found


def pin(dist: metadata.Distribution) -> str:
    version = dist.version
    if canonicalize_name(dist.metadata["Name"]) == "torch":
        version = version.split("+")[0]
    return f"{dist.metadata['Name']}=={version}"


def render(name: str, dists: dict[str, metadata.Distribution], extras: tuple[str, ...], torch: str) -> str:
    lines = [pin(dists[key]) for key in sorted(dists)]
    return "\n".join([HEADER[name].format(extras=",".join(extras), torch=torch), *lines]) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a lock file is out of date; write nothing")
    args = parser.parse_args(argv)
    runtime = closure(RUNTIME_EXTRAS)
    dev = {k: d for k, d in closure(DEV_EXTRAS).items() if k not in runtime}
    torch = runtime["torch"].version.split("+")[0] if "torch" in runtime else "?"
    stale = []
    for name, dists, extras in (("requirements.lock", runtime, RUNTIME_EXTRAS),
                                ("requirements-dev.lock", dev, DEV_EXTRAS)):
        text = render(name, dists, extras, torch)
        path = ROOT / name
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
            print(f"{name}: {len(dists)} packages")
    if stale:
        print(f"out of date: {', '.join(stale)} (make lock)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
