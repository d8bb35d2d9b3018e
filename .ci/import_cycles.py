"""Import cycles among the modules of a package, from their source (AST), without importing anything.

    python .ci/import_cycles.py [--src src] [--package coldrec] [--fail-on coldrec.encode ...]

An edge A -> B means A's code imports B: `import B`, `from B import x`, `from B import submodule`,
relative forms included, plus the packages above B that are not above A (importing `a.b.c` runs
`a/__init__` and `a/b/__init__` first). Edges are of three kinds:

- eager: at module level, so run when A is imported;
- lazy: inside a function or class body, or a package's `_EXPORTS` table for `coldrec._lazy.lazy_exports`;
- typing: under `if TYPE_CHECKING:` (never run; listed for mypy's sake only, not counted as a cycle).

It prints every cycle (strongly connected component) of the eager graph and of the eager + lazy graph,
with one closed path through each. It exits 1 when the eager graph has a cycle (with `--allow-eager`, never),
and with `--fail-on PREFIX` also when a cycle of either graph holds a module named PREFIX or under it.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

EAGER, LAZY, TYPING = "eager", "lazy", "typing"


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    kind: str
    line: int


def module_names(src: Path, package: str) -> dict[str, Path]:
    """Dotted name -> file, for every module of `package` under `src` (packages named by their __init__)."""
    names = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.Module) -> Iterator[tuple[ast.stmt, str]]:
    """(import statement, kind) for every import in the module."""

    def walk(nodes: Iterable[ast.stmt], kind: str) -> Iterator[tuple[ast.stmt, str]]:
        for node in nodes:
            if isinstance(node, ast.Import | ast.ImportFrom):
                yield node, kind
            elif isinstance(node, ast.If) and _is_type_checking(node.test):
                yield from walk(node.body, TYPING)
                yield from walk(node.orelse, kind)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                yield from walk(node.body, TYPING if kind == TYPING else LAZY)
            else:  # if / for / while / with / try / match: same kind as the enclosing block
                for field in ("body", "orelse", "finalbody", "handlers", "cases"):
                    for child in getattr(node, field, None) or ():
                        if isinstance(child, ast.stmt):
                            yield from walk([child], kind)
                        elif isinstance(child, ast.ExceptHandler | ast.match_case):
                            yield from walk(child.body, kind)

    yield from walk(tree.body, EAGER)


def _resolve(module: str, is_package: bool, level: int, name: str | None) -> str:
    """The absolute name of `from <level dots><name> import ...` written in `module`."""
    if not level:
        return name or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def _lazy_table(tree: ast.Module) -> Iterator[tuple[str, int]]:
    """Relative submodules named by a module-level `_EXPORTS = {"name": ".submodule", ...}`."""
    for node in tree.body:
        if not isinstance(node, ast.Assign) or not isinstance(node.value, ast.Dict):
            continue
        if any(isinstance(t, ast.Name) and t.id == "_EXPORTS" for t in node.targets):
            for value in node.value.values:
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    yield value.value, node.lineno


def _deepest(name: str, known: dict[str, Path]) -> str | None:
    parts = name.split(".")
    while parts and ".".join(parts) not in known:
        parts.pop()
    return ".".join(parts) or None


def _with_parents(source: str, target: str, known: dict[str, Path]) -> list[str]:
    """`target` and the packages above it that importing it runs (those above `source` already run)."""
    parts = target.split(".")
    out = []
    for i in range(1, len(parts) + 1):
        name = ".".join(parts[:i])
        if name in known and name != source and not source.startswith(name + "."):
            out.append(name)
    return out


def edges(src: Path, package: str) -> tuple[dict[str, Path], list[Edge]]:
    known = module_names(src, package)
    found: list[Edge] = []
    for module, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        is_package = path.name == "__init__.py"
        targets: list[tuple[str, str, int]] = []
        for node, kind in _imports(tree):
            if isinstance(node, ast.Import):
                targets += [(alias.name, kind, node.lineno) for alias in node.names]
            else:
                assert isinstance(node, ast.ImportFrom)
                base = _resolve(module, is_package, node.level, node.module)
                targets.append((base, kind, node.lineno))
                targets += [(f"{base}.{alias.name}", kind, node.lineno) for alias in node.names
                            if f"{base}.{alias.name}" in known]
        for relative, line in _lazy_table(tree):
            level = len(relative) - len(relative.lstrip("."))
            targets.append((_resolve(module, is_package, level, relative.lstrip(".") or None), LAZY, line))
        for name, kind, line in targets:
            deepest = _deepest(name, known)
            if deepest is None:
                continue  # not of this package
            for target in _with_parents(module, deepest, known):
                found.append(Edge(module, target, kind, line))
    return known, found


def cycles(nodes: Iterable[str], graph_edges: list[Edge]) -> list[list[str]]:
    """Strongly connected components with more than one module (or a module importing itself), sorted."""
    graph: dict[str, set[str]] = {n: set() for n in nodes}
    for e in graph_edges:
        graph[e.source].add(e.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0
    sys.setrecursionlimit(max(10000, sys.getrecursionlimit()))

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(components)


def closed_path(component: list[str], graph_edges: list[Edge]) -> list[Edge]:
    """One cycle through the component's first module, by breadth-first search inside the component."""
    inside = set(component)
    out: dict[str, list[Edge]] = {}
    for e in graph_edges:
        if e.source in inside and e.target in inside:
            out.setdefault(e.source, []).append(e)
    start = component[0]
    previous: dict[str, Edge] = {}
    frontier = [start]
    while frontier:
        following = []
        for v in frontier:
            for e in sorted(out.get(v, []), key=lambda e: (e.target, e.line)):
                if e.target == start:
                    path = [e]
                    while path[0].source != start:
                        path.insert(0, previous[path[0].source])
                    return path
                if e.target not in previous:
                    previous[e.target] = e
                    following.append(e.target)
        frontier = following
    return []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", type=Path, default=Path("src"))
    parser.add_argument("--package", default="coldrec")
    parser.add_argument("--fail-on", action="append", default=[], metavar="PREFIX",
                        help="exit 1 if a cycle holds this module or one below it (repeatable)")
    parser.add_argument("--allow-eager", action="store_true", help="do not fail on cycles of eager imports")
    args = parser.parse_args(argv)
    known, found = edges(args.src, args.package)
    failed = []
    for title, kinds in (("eager imports (run at import time)", {EAGER}),
                         ("eager + lazy imports (function-level, lazy_exports)", {EAGER, LAZY})):
        chosen = [e for e in found if e.kind in kinds]
        components = cycles(known, chosen)
        print(f"{title}: {len(known)} modules, {len(chosen)} edges, {len(components)} cycle(s)")
        for component in components:
            print(f"  cycle of {len(component)}: {', '.join(component)}")
            for e in closed_path(component, chosen):
                print(f"    {e.source} -> {e.target}  ({known[e.source]}:{e.line}, {e.kind})")
            if (kinds == {EAGER} and not args.allow_eager) or any(
                m == p or m.startswith(p + ".") for m in component for p in args.fail_on
            ):
                failed.append(component)
    if failed:
        print(f"error: {len(failed)} cycle(s) of eager imports or touching {', '.join(args.fail_on) or '-'}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
