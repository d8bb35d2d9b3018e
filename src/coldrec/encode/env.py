"""What the encoders take from the process: the cache folder and the cores they may use.

The lowest module of `coldrec.encode` (standard library only): the registry, the backends and
the benchmark all read these, so none of them needs to import another for it.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_CACHE_DIR = Path("~/.cache/coldrec").expanduser()
CACHE_ENV = "COLDREC_CACHE"


def default_cache_dir() -> Path:
    """``$COLDREC_CACHE`` if set, else ``~/.cache/coldrec``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else DEFAULT_CACHE_DIR


def cpu_count() -> int:
    """Cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
