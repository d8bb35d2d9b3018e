"""`RayExecutor`: the partitioned work of `coldrec.parallel` as Ray tasks, on a local Ray instance or a cluster.

`RayExecutor()` (or `RayExecutor("local")`) starts a Ray instance on this machine (stopped by `close`);
`RayExecutor("ray://host:10001")` or `RayExecutor("auto")` joins a running cluster, whose workers must have coldrec
(and the named encoder's package) installed. Each partition is one task of one CPU; what every partition shares is
put in Ray's object store once. Results come back in the partitions' order, whatever order the tasks end in. Ray is
imported only here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from tqdm.auto import tqdm

Result = TypeVar("Result")
#: the `--ray` value that starts a Ray instance on this machine
LOCAL = "local"
#: Ray's setting of its workers' niceness (read by the raylet from the environment)
WORKER_NICENESS = "RAY_worker_niceness"


class RayExecutor:
    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None, progress: bool = True):
        """`address`: a cluster to join (None or "local": start a local instance of `num_cpus` CPUs, default all)."""
        address = None if address in (None, "", LOCAL) else address
        try:
            import ray
        except ImportError as error:
            raise ImportError("--ray needs Ray: pip install 'coldrec[distributed]'") from error
        self._ray = ray
        self.address = address
        self.progress = progress
        self._started_here = not ray.is_initialized()
        if self._started_here:
            if address is None:
                # Ray starts its workers at nice 15 (its default for a node shared with other services): on this
                # machine's own instance the tasks are the job, and run at the priority an in-process run gets
                # (a batch partition took 10x as long at nice 15 beside two other jobs on 2 cores)
                os.environ.setdefault(WORKER_NICENESS, "0")
            # coldrec's own modules travel with the tasks' code (a local instance's workers share this
            # interpreter's packages); the dashboard and its metrics agent are not needed for batch work
            ray.init(address=address or None, num_cpus=None if address else num_cpus, include_dashboard=False,
                     log_to_driver=False, configure_logging=False,
                     runtime_env={"env_vars": _forwarded_environment()})
        self._remote: dict[Callable, Any] = {}

    def map(self, function: Callable[[Any, Any], Result], parts: Sequence[Any], shared: Any = None,
            description: str = "") -> list[Result]:
        ray = self._ray
        if not parts:
            return []
        remote = self._remote.get(function)
        if remote is None:
            remote = self._remote[function] = ray.remote(num_cpus=1)(function)
        shared_ref = ray.put(shared)
        pending = {remote.remote(part, shared_ref): index for index, part in enumerate(parts)}
        results: list[Any] = [None] * len(parts)
        with tqdm(total=len(parts), desc=f"{description} (ray)" if description else "ray tasks", unit="part",
                  disable=not self.progress or len(parts) < 2, leave=False) as bar:
            waiting = list(pending)
            while waiting:
                done, waiting = ray.wait(waiting, num_returns=1)
                for ref in done:
                    results[pending[ref]] = ray.get(ref)
                    bar.update(1)
        return results

    @property
    def cpus(self) -> int:
        """CPUs the cluster offers its tasks."""
        return int(self._ray.cluster_resources().get("CPU", 0))

    def close(self) -> None:
        """Stop the local Ray instance this executor started (a joined cluster keeps running)."""
        if self._started_here and self._ray.is_initialized():
            self._ray.shutdown()

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _forwarded_environment() -> dict[str, str]:
    """What a task must see as this process does: offline model loading, the encoder and cache choices."""
    names = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "COLDREC_ENCODER", "COLDREC_CACHE")
    return {name: os.environ[name] for name in names if name in os.environ}
