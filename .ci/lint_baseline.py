"""The lint baseline: ruff and mypy codes still allowed in files that are not yet clean.

    python .ci/lint_baseline.py           # prune: drop what is clean now, add nothing
    python .ci/lint_baseline.py --init    # rebuild from every current finding (for an integrator, once)

The baseline is the block of pyproject.toml between the `>>> lint baseline` and `<<< lint baseline`
lines: `[tool.ruff.lint.per-file-ignores]` (file -> rule codes) and `[[tool.mypy.overrides]]`
(module -> `disable_error_code`). `make lint` honours it, so a listed file keeps passing with its
listed kinds of finding while every other file, and every other kind, must be clean. Fixing a file
and pruning shrinks the block; once it is empty, lint is strict everywhere. Both runs here ignore
the block, so they see every finding.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
BEGIN, END = "# >>> lint baseline", "# <<< lint baseline"
BLOCK = re.compile(rf"^{re.escape(BEGIN)}.*?^{re.escape(END)}[^\n]*\n", re.S | re.M)
TOOLS = ROOT / ".venv" / "bin"
#: added to every baselined module: a `# type: ignore[code]` there is unused while `code` is disabled
UNUSED_IGNORE = "unused-ignore"


def _without_block(text: str) -> str:
    return BLOCK.sub("", text)


def ruff_findings() -> dict[str, set[str]]:
    """File (relative to the repo) -> ruff codes found, per-file-ignores switched off."""
    run = subprocess.run([str(TOOLS / "ruff"), "check", "src", "--output-format", "json", "--no-cache",
                          "--config", "lint.per-file-ignores = {}"], cwd=ROOT, capture_output=True, text=True)
    found: dict[str, set[str]] = defaultdict(set)
    for finding in json.loads(run.stdout or "[]"):
        found[Path(finding["filename"]).resolve().relative_to(ROOT).as_posix()].add(finding["code"])
    return found


def mypy_findings() -> dict[str, set[str]]:
    """Module -> mypy error codes found, with pyproject.toml's settings less the baseline."""
    with tempfile.NamedTemporaryFile("w", suffix=".toml", dir=ROOT, prefix=".mypy-nobaseline-") as config:
        config.write(_without_block(PYPROJECT.read_text()))
        config.flush()
        run = subprocess.run([str(TOOLS / "mypy"), "--config-file", config.name, "--no-incremental", "src"],
                             cwd=ROOT, capture_output=True, text=True)
    found: dict[str, set[str]] = defaultdict(set)
    for line in run.stdout.splitlines():
        match = re.match(r"^(src/[^:]+\.py):\d+: error: .*\[([a-z0-9-]+)\]$", line)
        if match:
            module = Path(match[1]).relative_to("src").with_suffix("").as_posix().replace("/", ".")
            found[module.removesuffix(".__init__")].add(match[2])
    return found


def current_baseline(text: str) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    import tomllib

    match = BLOCK.search(text)
    if not match:
        return {}, {}
    block = tomllib.loads(match[0])
    ruff = {f: set(codes) for f, codes in block.get("tool", {}).get("ruff", {}).get("lint", {})
            .get("per-file-ignores", {}).items()}
    mypy = {o["module"]: set(o["disable_error_code"]) - {UNUSED_IGNORE} for o in block.get("tool", {})
            .get("mypy", {}).get("overrides", [])}
    return ruff, mypy


def render(ruff: dict[str, set[str]], mypy: dict[str, set[str]]) -> str:
    lines = [BEGIN + ": kinds of finding still allowed in files that their owners have yet to clean up.",
             "# Shrink it only: fix a file, then `python .ci/lint_baseline.py` drops what is clean (see that file)."]
    if ruff:
        lines += ["[tool.ruff.lint.per-file-ignores]"]
        for name, codes in sorted(ruff.items()):
            lines.append(f'"{name}" = [{", ".join(json.dumps(c) for c in sorted(codes))}]')
    for module, codes in sorted(mypy.items()):
        lines += ["", "[[tool.mypy.overrides]]", f'module = "{module}"',
                  f"disable_error_code = [{', '.join(json.dumps(c) for c in [*sorted(codes), UNUSED_IGNORE])}]"]
    lines.append(END)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--init", action="store_true", help="baseline every current finding (not only prune)")
    args = parser.parse_args(argv)
    text = PYPROJECT.read_text()
    ruff_now, mypy_now = ruff_findings(), mypy_findings()
    if args.init:
        ruff, mypy = ruff_now, mypy_now
    else:
        old_ruff, old_mypy = current_baseline(text)
        ruff = {f: codes & ruff_now.get(f, set()) for f, codes in old_ruff.items()}
        mypy = {m: codes & mypy_now.get(m, set()) for m, codes in old_mypy.items()}
    ruff = {f: c for f, c in ruff.items() if c}
    mypy = {m: c for m, c in mypy.items() if c}
    block = render(ruff, mypy)
    PYPROJECT.write_text(BLOCK.sub(lambda _: block, text) if BLOCK.search(text) else text.rstrip("\n") + "\n\n" + block)
    print(f"lint baseline: {len(ruff)} files for ruff, {len(mypy)} modules for mypy", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
