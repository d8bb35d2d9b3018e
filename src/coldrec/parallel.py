"""Partitioned work: one `map` of a function over partitions, run in this process or by a cluster.

The work that grows with the catalog and the log (encoding the catalog, the ranker's training examples, batch
recommendations) is written once, as a function of one partition and of what every partition shares. An
`Executor` runs it: `InProcess` here, one partition after another; `coldrec.distributed.RayExecutor` as Ray
tasks. The partitions and the function are the same either way, so both give the same result; only where it
runs differs. The layers that do such work ask for `current_executor()`; a command that was given a cluster
runs them inside `running_on(executor)`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

Part = TypeVar("Part")
Result = TypeVar("Result")


class Executor(Protocol):
    """Runs `function(part, shared)` for every part and returns the results in the parts' order."""

    name: str

    def map(self, function: Callable[[Any, Any], Result], parts: Sequence[Any], shared: Any = None,
            description: str = "") -> list[Result]: ...


class InProcess:
    """Every partition in this process, one after another."""

    name = "in-process"

    def map(self, function: Callable[[Any, Any], Result], parts: Sequence[Any], shared: Any = None,
            description: str = "") -> list[Result]:
        return [function(part, shared) for part in parts]


_LOCAL = threading.local()
IN_PROCESS = InProcess()


def current_executor() -> Executor:
    """The executor this thread's partitioned work runs on (`InProcess` unless `running_on` chose another)."""
    return getattr(_LOCAL, "executor", IN_PROCESS)


@contextmanager
def running_on(executor: Executor) -> Iterator[Executor]:
    """Partitioned work started in this thread within the block runs on `executor`."""
    before = current_executor()
    _LOCAL.executor = executor
    try:
        yield executor
    finally:
        _LOCAL.executor = before


def partitions(count: int, size: int) -> list[slice]:
    """`count` rows as consecutive slices of at most `size` rows (the last may be shorter)."""
    if size < 1:
        raise ValueError(f"a partition holds at least one row, not {size}")
    return [slice(start, min(start + size, count)) for start in range(0, count, size)]
