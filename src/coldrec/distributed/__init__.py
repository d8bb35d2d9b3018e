"""Work that grows with the catalog and the log, past one process: `RayExecutor` runs the partitioned work of
`coldrec.parallel` (catalog encoding, the ranker's training examples) as Ray tasks, and `batch_recommend` writes
every known shopper's top-n, in one process or on Ray, with the same results."""

from coldrec._lazy import lazy_exports

_EXPORTS = {"RayExecutor": ".cluster", "batch_recommend": ".batch", "BatchResult": ".batch"}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
__all__ = list(_EXPORTS)
