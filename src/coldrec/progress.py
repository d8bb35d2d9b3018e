"""Progress of a long job made of known steps: stage, percent and time left, in a terminal or a log.

Each step has an expected cost (seconds measured on a reference run); the share of the work done
is the finished steps' expected cost plus the running step's elapsed time (capped at its expected
cost), over the whole. The time left scales the remaining expected cost by how fast this machine
has been so far. A terminal gets a rich progress bar; anything else (a redirected log, CI) gets a
plain line at every step and every `heartbeat_s` seconds in between, so a quiet build never looks hung.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING

from rich.console import Console

if TYPE_CHECKING:
    from rich.progress import Progress


class StepProgress:
    def __init__(
        self, steps: Sequence[tuple[str, float]], console: Console, title: str = "", heartbeat_s: float = 15.0
    ):
        if not steps:
            raise ValueError("a job needs at least one step")
        self.names = [name for name, _ in steps]
        self.costs = [max(float(cost), 1e-3) for _, cost in steps]
        self.console = console
        self.title = title
        self.heartbeat_s = heartbeat_s
        self._current = -1
        self._step_started = self._started = 0.0
        self._done_cost = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._bar: Progress | None = None
        self._thread: threading.Thread | None = None

    # -------------------------------------------------------------- the job calls these
    def step(self, name: str, detail: str = "") -> None:
        """Start the named step (the ones before it count as done)."""
        with self._lock:
            index = self.names.index(name)
            now = time.perf_counter()
            self._done_cost = sum(self.costs[:index])
            self._current, self._step_started, self._detail = index, now, detail
        self._show(force=True)

    def note(self, detail: str) -> None:
        """A finer message within the running step (shown with the next update)."""
        with self._lock:
            self._detail = detail
        self._show(force=self._bar is not None)

    # -------------------------------------------------------------- figures
    def fraction(self) -> float:
        with self._lock:
            if self._current < 0:
                return 0.0
            running = min(time.perf_counter() - self._step_started, self.costs[self._current])
            return min(1.0, (self._done_cost + running) / sum(self.costs))

    def seconds_left(self) -> float | None:
        """Remaining expected cost x this machine's speed: seconds taken / expected cost of the finished steps, once
        they are a tenth of the job (clipped to 0.2x..5x; a tiny step says little), else the reference speed."""
        with self._lock:
            if self._current < 0:
                return None
            total = sum(self.costs)
            speed = 1.0
            if self._done_cost >= 0.1 * total:
                speed = min(5.0, max(0.2, (self._step_started - self._started) / self._done_cost))
            running = min(time.perf_counter() - self._step_started, self.costs[self._current] * 0.95)
            remaining = sum(self.costs[self._current:]) - running
            return max(0.0, remaining * speed)

    def line(self) -> str:
        left = self.seconds_left()
        name = self.names[self._current] if self._current >= 0 else "starting"
        detail = f" ({self._detail})" if getattr(self, "_detail", "") else ""
        eta = f", about {_duration(left)} left" if left is not None else ""
        elapsed = _duration(time.perf_counter() - self._started)
        return (f"{self.title + ': ' if self.title else ''}step {self._current + 1}/{len(self.names)} {name}{detail}"
                f" - {self.fraction():.0%} after {elapsed}{eta}")

    # -------------------------------------------------------------- display
    def __enter__(self) -> StepProgress:
        self._started = time.perf_counter()
        if self.console.is_terminal:
            from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                                 TimeElapsedColumn(), TextColumn("{task.fields[left]}"), console=self.console)
            self._task = self._bar.add_task(self.title, total=1.0, left="")
            self._bar.start()
        self._thread = threading.Thread(target=self._beat, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if kind is None:
            with self._lock:
                self._current, self._done_cost, self._detail = len(self.names) - 1, sum(self.costs[:-1]), ""
                self._step_started = time.perf_counter() - self.costs[-1]
        if self._bar is not None:
            if kind is None:
                self._bar.update(self._task, completed=1.0, left="done")
            self._bar.stop()
        if kind is None:
            self.console.print(f"{self.title + ': ' if self.title else ''}done in "
                               f"{_duration(time.perf_counter() - self._started)}")

    def _beat(self) -> None:
        last = time.perf_counter()
        while not self._stop.wait(1.0 if self._bar is not None else min(0.5, self.heartbeat_s / 2)):
            if self._bar is not None:
                self._show()
            elif time.perf_counter() - last >= self.heartbeat_s:
                self._show(force=True)
                last = time.perf_counter()

    def _show(self, force: bool = False) -> None:
        if self._bar is not None:
            left = self.seconds_left()
            name = self.names[self._current] if self._current >= 0 else ""
            detail = f" ({self._detail})" if getattr(self, "_detail", "") else ""
            self._bar.update(self._task, completed=self.fraction(), description=f"{self.title} {name}{detail}".strip(),
                             left=f"~{_duration(left)} left" if left is not None else "")
        elif force:
            self.console.print(self.line(), soft_wrap=True)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes} min {seconds:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"
